"""Frame sources: cameras, video files and network streams, and the frame boundary.

`base.py` has the `FrameSource` interface and the registry of source kinds; one module per
kind registers itself (`picamera.py`, `webcam.py`, `video.py`, `network.py`); `registry.py`
builds the source a `source` setting names (or finds one for `auto`); `reconnect.py` reopens
a source that drops out; `frames.py` checks every frame where it enters; `http_stream.py`
reads MJPEG cameras with bounded memory.
"""
