"""Offline: the FER2013 loaders and the demo material built from data."""
