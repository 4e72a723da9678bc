"""Offline: classification metrics."""
