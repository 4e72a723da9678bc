"""From a `source` setting to a frame source, through the registered source kinds.

Importing this module imports every source module, and each registers its kind
(`edge_fer.sources.base.register_source`): picamera2, webcam, file, stream. `source: auto`
asks the kinds that can be found, in their `auto_rank` order (picamera2, then a webcam,
then the fallback video), and logs what it found; the error says everything it tried.
"""

from __future__ import annotations

from pathlib import Path

from edge_fer.config import CameraConfig, Config, ConfigError, FramesConfig, StreamConfig
from edge_fer.core.paths import SHIPPED_DEMO_VIDEO
from edge_fer.sources import network, picamera, video, webcam  # noqa: F401 - they register their kinds
from edge_fer.sources.base import CaptureError, FrameSource, SourceKind, SourceSettings, source_kinds
from edge_fer.sources.frames import FrameCheck

AUTO = "auto"


def source_forms() -> list[str]:
    """Every `source:` value the registered kinds take, `auto` first (for help and errors)."""
    return [AUTO, *(form for kind in source_kinds() for form in kind.forms)]


def kind_of(spec: str) -> SourceKind | None:
    """The registered kind that handles `spec` (None for `auto`); ConfigError for a value no
    kind takes (the config's `source` check refuses those before they get here)."""
    if spec == AUTO:
        return None
    for kind in source_kinds():
        if kind.matches(spec):
            return kind
    raise ConfigError(f"config key 'source': {spec!r} is not valid; expected {', '.join(source_forms())}")


def find_source(settings: SourceSettings) -> FrameSource:
    """`auto`: the first kind that finds its source, in `auto_rank` order (CaptureError
    naming every kind tried when none does)."""
    tried = []
    for kind in source_kinds():
        if kind.find is None:
            continue
        source, why = kind.find(settings)
        if source is not None:
            return source
        tried.append(why)
    raise CaptureError(
        "no frame source found; tried " + ", ".join(tried) + ". Connect a camera, "
        "or set source: file:PATH to a video"
    )


def build_source(spec: str, settings: SourceSettings) -> FrameSource:
    """The (unopened) source `spec` names, its frames checked against `settings.frames`."""
    kind = kind_of(spec)
    source = find_source(settings) if kind is None else kind.build(spec, settings)
    source.check = FrameCheck(settings.frames, source.name)  # type: ignore[attr-defined]
    return source


def source_from_config(config: Config) -> FrameSource:
    """The source a daemon config names (`source` and the sections its kind reads)."""
    settings = SourceSettings(
        camera=config.camera,
        stream=config.stream,
        frames=config.frames,
        fallback_video=config.fallback_video,
        loop_video=config.loop_video,
        realtime=config.pace == "realtime",
    )
    return build_source(config.source, settings)


def make_source(
    spec: str,
    cam: CameraConfig,
    fallback_video: Path | None = None,
    loop_video: bool = True,
    stream: StreamConfig | None = None,
    realtime: bool = True,
    frames: FramesConfig | None = None,
    shipped_demo: Path = SHIPPED_DEMO_VIDEO,
) -> FrameSource:
    """Choose the frame source named by `spec` from the sections given one by one (auto:
    camera, webcam, then `fallback_chain`). `realtime`: video files play at their own frame
    rate (False: as fast as they decode). `frames`: the limits every frame is checked
    against where it enters."""
    settings = SourceSettings(
        camera=cam,
        stream=stream or StreamConfig(),
        frames=frames,
        fallback_video=fallback_video,
        loop_video=loop_video,
        realtime=realtime,
        shipped_demo=shipped_demo,
    )
    return build_source(spec, settings)
