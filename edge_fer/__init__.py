"""edge-fer: facial emotion recognition on the Raspberry Pi 5."""

__version__ = "0.1.0"
