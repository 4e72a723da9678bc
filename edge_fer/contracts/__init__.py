"""Typed, versioned files that edge-fer programs exchange."""
