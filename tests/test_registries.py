"""The registries: source kinds, face detectors and outputs register themselves with the
config section they read, and the daemon builds each through its registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_fer.config import Config, ConfigError, DetectorConfig, check_source, choices, load_config
from edge_fer.faces import detect
from edge_fer.faces.detect import DetectorError, HaarDetector, YuNetDetector, detector_kinds, make_detector
from edge_fer.outputs import registration
from edge_fer.outputs.base import OutputContext
from edge_fer.outputs.registry import build_outputs, output_override
from edge_fer.runtime.service import Notifier
from edge_fer.runtime.stats import RunStats
from edge_fer.sources import base
from edge_fer.sources.base import CaptureError, RawFrame, SourceKind, SourceSettings, source_kinds
from edge_fer.sources.network import NetworkSource
from edge_fer.sources.picamera import Picamera2Source
from edge_fer.sources.registry import build_source, kind_of, make_source, source_forms, source_from_config
from edge_fer.sources.video import OpenCVSource

pytestmark = pytest.mark.fast  # units and contracts: the fast tier

# --- sources ---------------------------------------------------------------------------------

# One example of every form the help lists, and the kind that must take it.
EXAMPLES = {
    "picamera2": "picamera2",
    "webcam": "webcam",
    "webcam:3": "webcam",
    "file:/tmp/x.mp4": "file",
    "rtsp://cam.local:554/stream": "stream",
    "rtsps://cam.local/stream": "stream",
    "http://cam.local:8080/video.mjpg": "stream",
    "https://cam.local/video.mjpg": "stream",
}


def test_every_source_form_the_config_accepts_has_exactly_one_kind():
    assert {k.name for k in source_kinds()} == {"picamera2", "webcam", "file", "stream"}
    for spec, name in EXAMPLES.items():
        assert check_source(spec) == spec  # the config's boundary takes it...
        assert [k.name for k in source_kinds() if k.matches(spec)] == [name]  # ...and one kind
        assert kind_of(spec).name == name
    assert kind_of("auto") is None
    forms = source_forms()
    assert forms[0] == "auto" and {"picamera2", "webcam:INDEX", "file:PATH", "rtsp://..."} <= set(forms)


def test_a_source_no_kind_takes_is_a_config_error_naming_the_forms():
    with pytest.raises(ConfigError, match="'source'.*expected auto, .*picamera2.*file:PATH"):
        kind_of("ftp://cam/x")


def test_source_kinds_read_config_sections_that_exist():
    fields = {f.name for f in dataclasses.fields(Config)}
    for kind in source_kinds():
        assert set(kind.reads) <= fields, kind.name


def test_auto_asks_picamera2_then_webcam_then_the_video_and_a_stream_never():
    finders = [k.name for k in source_kinds() if k.find is not None]
    assert finders == ["picamera2", "webcam", "file"]
    assert next(k for k in source_kinds() if k.name == "stream").find is None


def test_each_kind_builds_its_source_from_its_section(tmp_path):
    config = load_config(None)
    video = tmp_path / "v.mp4"
    assert isinstance(make_source("picamera2", config.camera), Picamera2Source)
    webcam = make_source("webcam:3", config.camera)
    assert (
        isinstance(webcam, OpenCVSource) and webcam.target == 3 and webcam.size == config.camera.webcam_size
    )
    file = make_source(f"file:{video}", config.camera, loop_video=False, realtime=False)
    assert isinstance(file, OpenCVSource) and file.target == video and not file.loop and not file.realtime
    stream = make_source("rtsp://cam.local/s", config.camera)
    assert isinstance(stream, NetworkSource) and stream.name == "rtsp://cam.local/s"


def test_the_daemon_config_reaches_the_source_and_its_frame_check(tmp_path):
    video = tmp_path / "v.mp4"
    config = load_config(None)
    config.source, config.loop_video, config.pace = f"file:{video}", False, "fast"
    config.frames.max_pixels = 12_345
    source = source_from_config(config)
    assert isinstance(source, OpenCVSource) and source.target == video
    assert not source.loop and not source.realtime
    assert source.check.limits.max_pixels == 12_345 and source.check.source == source.name


class StubSource:
    def __init__(self, name: str) -> None:
        self.name = name

    def open(self) -> None:
        pass

    def read(self) -> RawFrame | None:
        return RawFrame(np.zeros((4, 4, 3), np.uint8))

    def close(self) -> None:
        pass

    def preview_host(self) -> None:
        return None


def test_a_registered_kind_is_built_by_name_and_takes_its_turn_in_auto(monkeypatch, tmp_path):
    seen = []

    def find(settings: SourceSettings):
        seen.append(settings.camera.index)
        return StubSource("stub:found"), ""

    kind = SourceKind(
        name="stub",
        forms=("stub:NAME",),
        reads=("camera",),
        matches=lambda spec: spec.startswith("stub:"),
        build=lambda spec, settings: StubSource(spec),
        find=find,
        auto_rank=15,  # after picamera2, before the webcam
    )
    monkeypatch.setitem(base._KINDS, "stub", kind)
    assert "stub:NAME" in source_forms()
    assert build_source("stub:x", SourceSettings()).name == "stub:x"
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")  # in case the fake is on the path
    source = build_source("auto", SourceSettings(fallback_video=tmp_path / "none.mp4"))
    assert source.name == "stub:found" and seen == [0]
    assert source.check.source == "stub:found"  # every source gets the frame check
    with pytest.raises(ValueError, match="registered twice"):
        base.register_source(dataclasses.replace(kind))


def test_auto_names_every_kind_it_tried(tmp_path):
    settings = SourceSettings(
        camera=dataclasses.replace(load_config(None).camera, index=7),
        fallback_video=tmp_path / "missing.mp4",
        shipped_demo=tmp_path / "gone.mp4",
    )
    with pytest.raises(CaptureError) as err:
        build_source("auto", settings)
    message = str(err.value)
    assert message.index("picamera2") < message.index("webcam 7") < message.index("missing.mp4")
    assert "gone.mp4" in message and "\n" not in message


# --- detectors -------------------------------------------------------------------------------


def test_every_detector_kind_the_config_offers_is_registered():
    assert set(detector_kinds()) == set(choices("detector.kind")) == {"haar", "yunet"}


def test_the_detector_is_built_from_its_section_by_its_registered_class():
    haar = make_detector(DetectorConfig(kind="haar"))
    assert isinstance(haar, HaarDetector)
    yunet = make_detector(DetectorConfig(kind="yunet", score_threshold=0.42))
    assert isinstance(yunet, YuNetDetector)
    # min_face is in main-frame pixels, which the finder applies: the detector keeps all.
    assert yunet.min_face == 1 and yunet.net.getScoreThreshold() == pytest.approx(0.42)


def test_an_unregistered_detector_kind_is_one_clear_error():
    with pytest.raises(
        DetectorError, match="no face detector 'cnn'; set detector.kind to one of haar, yunet"
    ):
        make_detector(DetectorConfig(kind="cnn"))


def test_a_registered_detector_is_what_its_kind_builds(monkeypatch):
    monkeypatch.setattr(detect, "_DETECTORS", dict(detect._DETECTORS))

    @detect.register_detector("everything")
    class Everything:
        name = "everything"

        @classmethod
        def from_config(cls, config: DetectorConfig) -> Everything:
            return cls()

        def detect(self, image: np.ndarray) -> list:
            return [(0, 0, image.shape[1], image.shape[0])]

    assert "everything" in detector_kinds()
    assert make_detector(DetectorConfig(kind="everything")).detect(np.zeros((5, 6))) == [(0, 0, 6, 5)]
    with pytest.raises(ValueError, match="registered twice"):
        detect.register_detector("everything")(HaarDetector)


# --- outputs ---------------------------------------------------------------------------------

ORDER = ["display", "recorder", "events", "stats", "systemd", "report", "mqtt", "metrics", "web", "console"]


def test_outputs_see_each_frame_in_the_documented_order():
    kinds = registration.output_kinds()
    assert [k.name for k in kinds] == ORDER
    table = registration.__doc__
    documented = [line.split()[:2] for line in table.splitlines() if line[:3].strip().isdigit()]
    assert documented == [[str(k.order), k.name] for k in kinds]
    fields = {f.name for f in dataclasses.fields(Config)}
    assert all(k.section in fields for k in kinds)


def _context(config: Config) -> OutputContext:
    return OutputContext(config, ("happy", "sad"), Notifier(use_library=False), None, "stub", RunStats(), {})


def test_only_what_the_config_turns_on_is_built(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config = load_config(None)
    config.display.mode, config.stats.path, config.console, config.log_summary_s = "none", None, "off", 0
    assert [o.name for o in build_outputs(_context(config))] == ["systemd"]
    config.events.path = str(tmp_path / "events.jsonl")
    config.report.path = tmp_path / "report.json"
    config.log_summary_s = 30
    outputs = build_outputs(_context(config))
    try:
        names = [type(o).__name__ for o in outputs]
        assert names == ["EventsLog", "SystemdStatus", "RunReport", "LogSummary"]
    finally:
        for output in outputs:
            output.close()


def test_the_console_factory_sees_whether_a_screen_shows_the_frames(monkeypatch):
    import sys

    from edge_fer.outputs.console import console_output

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    config = load_config(None)
    config.console, config.log_summary_s = "auto", 30
    screen = StubSource("window")
    assert type(console_output(_context(config), ())).__name__ == "ConsoleStatus"
    assert type(console_output(_context(config), (screen,))).__name__ == "LogSummary"
    config.log_summary_s = 0
    assert console_output(_context(config), (screen,)) is None


def test_an_override_replaces_an_output_in_place_and_is_undone():
    made = []

    def factory(ctx, earlier):
        made.append([o.name for o in earlier])
        return None

    config = load_config(None)
    config.display.mode, config.stats.path, config.console, config.log_summary_s = "none", None, "off", 0
    with output_override("web", factory):
        assert [k.name for k in registration.output_kinds()] == ORDER
        build_outputs(_context(config))
    with output_override("grab", factory, order=11):
        assert [k.name for k in registration.output_kinds()][:2] == ["display", "grab"]
    assert [k.name for k in registration.output_kinds()] == ORDER
    assert made == [["systemd"]]  # web's place: after systemd, the only output on
    with pytest.raises(ValueError, match="not registered"):
        with output_override("nothing", factory):
            pass


def test_two_outputs_at_one_order_or_one_name_twice_are_refused(monkeypatch):
    monkeypatch.setattr(registration, "_OUTPUTS", dict(registration._OUTPUTS))
    with pytest.raises(ValueError, match="both registered at order 30"):
        registration.register_output("another", section="events", order=30)(lambda ctx, earlier: None)
    with pytest.raises(ValueError, match="registered twice"):
        registration.register_output("web", section="web", order=91)(lambda ctx, earlier: None)
