"""Video files, and the OpenCV reader they share with USB webcams (`OpenCVSource`).

Source kind `file` (`source: file:PATH`; top-level keys `loop_video`, `pace` and
`fallback_video`): a file plays at its own frame rate unless `pace: fast`, and loops unless
`loop_video: false`. Last in `auto`: when no camera was found it plays `fallback_video`,
then the demo video that ships in the package.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from edge_fer.config import checked_path
from edge_fer.core.paths import SHIPPED_DEMO_VIDEO
from edge_fer.sources.base import (
    CaptureError,
    EndOfStream,
    FrameSource,
    RawFrame,
    SourceKind,
    SourceSettings,
    register_source,
)
from edge_fer.sources.frames import FrameCheck, decode_size_refusal

log = logging.getLogger(__name__)

# Still images: the daemon refuses them (edge-fer-classify is for photos).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


class OpenCVSource:
    """A USB webcam (integer index) or a video file (path), read with cv2.VideoCapture."""

    def __init__(
        self,
        target: int | Path,
        loop: bool = False,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        realtime: bool = False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.target, self.loop, self.size, self.fps = target, loop, size, fps
        self.is_file = not isinstance(target, int)
        self.name = f"file:{target}" if self.is_file else f"webcam:{target}"
        self.capture: cv2.VideoCapture | None = None
        self.check = FrameCheck(source=self.name)  # the registry gives it the config's limits
        # A file plays at its own frame rate when `realtime` (a live camera paces itself).
        self.realtime = realtime and self.is_file
        self._sleep = sleep
        self._period = 0.0
        self._due: float | None = None
        self.paced_wait_s = 0.0  # how long the last read slept to keep the file's pace

    def _check_file(self) -> None:
        path = Path(self.target)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise CaptureError(
                f"video file {path} does not exist; set source to file:PATH with an existing video"
            ) from None
        except OSError as exc:
            raise CaptureError(
                f"video file {path} cannot be read ({exc.strerror}); check its permissions"
            ) from None
        if stat.S_ISDIR(mode):
            raise CaptureError(
                f"video source {path} is a directory; set source to file:PATH of a video file "
                f"(for a folder of photos: edge-fer-classify {path})"
            )
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise CaptureError(
                f"source file:{path} is a still image, not a video; classify photos with "
                f"edge-fer-classify {path}"
            )
        if not stat.S_ISREG(mode):
            raise CaptureError(
                f"video source {path} is not a regular file (a FIFO or device); "
                "use a video file, or webcam:INDEX for a camera"
            )

    def open(self) -> None:
        if self.is_file:
            self._check_file()
        cap = cv2.VideoCapture(str(self.target) if self.is_file else self.target)
        if not cap.isOpened():
            cap.release()
            what = "video file" if self.is_file else "webcam"
            raise CaptureError(f"cannot open {what} {self.target}; check it is connected/readable")
        if not self.is_file and self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        if self.is_file:
            # Before a frame is decoded: a video too large to decode within the memory budget.
            refusal = decode_size_refusal(
                cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                self.check.limits,
                f"video file {self.target}",
            )
            if refusal is not None:
                cap.release()
                raise CaptureError(refusal)
            ok, first = cap.read()
            if not ok or first is None or first.ndim != 3:
                cap.release()
                raise CaptureError(
                    f"video file {self.target} has no readable frames; check it "
                    "plays (e.g. with ffprobe) or pick another video"
                )
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._period = 1.0 / fps if 0 < fps <= 1000 else 1.0 / 30
            self._due = None
        self.capture = cap

    def _pace(self) -> None:
        """Wait until this frame is due at the file's frame rate; a late frame restarts the
        clock instead of rushing the next ones."""
        now = time.monotonic()
        self.paced_wait_s = 0.0
        if self._due is None or now - self._due > self._period:
            self._due = now
        elif self._due > now:
            self.paced_wait_s = self._due - now
            self._sleep(self.paced_wait_s)
        self._due += self._period

    def read(self) -> RawFrame | None:
        assert self.capture is not None, "open() first"
        if self.realtime:
            self._pace()
        ok, image = self.capture.read()
        if not ok and self.is_file:
            if not self.loop:
                raise EndOfStream(self.name)
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
            if not ok:  # it played before: the file changed or went away; reconnect logic
                raise CaptureError(f"video file {self.target} stopped giving frames")
        image = self.check(image) if ok else None
        return RawFrame(image) if image is not None else None

    def preview_host(self) -> None:
        return None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def fallback_chain(fallback_video: Path | None, shipped_demo: Path = SHIPPED_DEMO_VIDEO) -> list[Path]:
    """The videos `auto` plays when there is no camera, first found first: the configured
    `fallback_video` (by default the FER2013 demo, when it was built), then the demo that
    ships in the package. `fallback_video: null` turns both off."""
    if fallback_video is None:
        return []
    chain = [Path(fallback_video)]
    if Path(shipped_demo) != chain[0]:
        chain.append(Path(shipped_demo))
    return chain


def _build(spec: str, settings: SourceSettings) -> FrameSource:
    path = checked_path("source", spec[5:])
    return OpenCVSource(path, loop=settings.loop_video, realtime=settings.realtime)


def _find(settings: SourceSettings) -> tuple[FrameSource | None, str]:
    if settings.fallback_video is None:
        return None, "no fallback video (fallback_video: null)"
    tried = []
    for video in fallback_chain(settings.fallback_video, settings.shipped_demo):
        if Path(video).is_file():
            what = "the shipped demo video" if video == settings.shipped_demo else "fallback video"
            log.info("source auto: no camera found, playing %s %s", what, video)
            return OpenCVSource(Path(video), loop=settings.loop_video, realtime=settings.realtime), ""
        tried.append(f"fallback video {video} (missing)")
    return None, ", ".join(tried)


register_source(
    SourceKind(
        name="file",
        forms=("file:PATH",),
        reads=("loop_video", "pace", "fallback_video"),
        matches=lambda spec: spec.startswith("file:"),
        build=_build,
        find=_find,
        auto_rank=90,
    )
)
