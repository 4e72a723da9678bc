"""Frame sources: cameras, video files and network streams, and the frame boundary."""
