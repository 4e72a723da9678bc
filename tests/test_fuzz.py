"""Property-based fuzzing of every input boundary with Hypothesis, through the real loaders:
a generated config, metadata file, command line, source spec or output path either loads or
raises that boundary's typed error with a one-line message, never anything else.

Bounded so the suite stays fast: FUZZ_EXAMPLES inputs per test (about 1,300 in all)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from edge_fer.config import (
    DEFAULT_MODEL,
    Config,
    ConfigError,
    FramesConfig,
    check_source,
    flatten,
    load_config,
    validate,
)
from edge_fer.emotions.classifier import ModelError, load_classifier, read_metadata

FUZZ_EXAMPLES = 150
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WORK = Path(tempfile.mkdtemp(prefix="edge-fer-fuzz-"))
set_hypothesis_home_dir(WORK / ".hypothesis")  # its caches never land in the checkout
FIFO = WORK / "fifo"
os.mkfifo(FIFO)


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) < 2000, text[:3000]


# --- the config file ---------------------------------------------------------------------

KEYS = list(flatten(Config()))
SECTIONS = sorted({k.split(".")[0] for k in KEYS if "." in k})
LEAVES = sorted({k.split(".")[-1] for k in KEYS})
NASTY_STRINGS = [
    "auto",
    "file:/tmp/x.mp4",
    "webcam:3",
    "webcam:99999999999999999999",
    "~nosuchuser/x",
    "~/x",
    "/tmp/" + "n" * 300,
    "/" + "d/" * 2100,
    "-",
    "/dev/zero",
    str(FIFO),
    "a\0b",
    "",
    "mqtt://localhost:1883",
    "rtsp://cam/x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(LEAVES) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
sections = st.dictionaries(st.sampled_from(LEAVES), values, max_size=4)
documents = st.dictionaries(
    st.sampled_from(SECTIONS + [k for k in KEYS if "." not in k]) | st.text(max_size=6),
    sections | values,
    max_size=6,
)


def _load_text(text: str | bytes) -> Config | None:
    path = WORK / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return load_config(path)
    except ConfigError as exc:
        _one_line(exc)
        return None


@FUZZ
@given(documents)
def test_generated_config_documents_load_or_are_config_errors(doc):
    config = _load_text(yaml.safe_dump(doc, allow_unicode=True))
    if config is not None:
        assert validate(config) is config


YAML_TOKENS = [
    "{", "}", "[", "]", ": ", ":", ", ", " ", "\n", "  ", "- ", "&a ", "*a", "&b ", "*b", "!!str ",
    "!!python/name:os.system ", "<<: ", "source", "smoothing", "window", "stats", "path", "1", "0x1F",
    "1e400", ".nan", "'", '"', "# c", "---\n", "...\n", "\t", "%YAML 1.1\n", "? ", "|\n", ">\n", "~",
    "~nosuchuser/x", "null", "true", "9" * 40,
]  # fmt: skip


@pytest.mark.fast
@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join))
def test_generated_yaml_text_loads_or_is_a_config_error(text):
    _load_text(text)


@pytest.mark.fast
@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=300))
def test_generated_bytes_as_a_config_load_or_are_a_config_error(data):
    _load_text(data)


# --- model metadata ------------------------------------------------------------------------

SHIPPED_META: dict = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
META_PATHS = [
    ("classes",), ("preprocess",), ("preprocess", "input_size"), ("preprocess", "mean"),
    ("preprocess", "std"), ("preprocess", "margin"), ("input",), ("input", "dynamic_batch"),
    ("name",), ("calibration",), ("calibration", "temperature"), ("calibration", "scale"),
    ("calibration", "bias"),
]  # fmt: skip


@st.composite
def metadata(draw) -> dict:
    """The shipped metadata with a few keys replaced by generated values or removed."""
    meta = json.loads(json.dumps(SHIPPED_META))
    for keys in draw(st.lists(st.sampled_from(META_PATHS), max_size=3)):
        target = meta
        for k in keys[:-1]:
            if not isinstance(target.get(k), dict):
                target[k] = {}
            target = target[k]
        if draw(st.booleans()):
            target[keys[-1]] = draw(json_values)
        else:
            target.pop(keys[-1], None)
    return meta


@pytest.fixture(scope="module")
def fuzz_model(shipped_model) -> Path:
    model = WORK / "m.pte"
    shutil.copy(shipped_model, model)
    return model


def _write_meta(model: Path, content: dict | bytes) -> None:
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    model.with_suffix(".json").write_bytes(raw)


@FUZZ
@given(content=metadata() | st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_generated_metadata_reads_or_is_a_model_error(fuzz_model, content):
    _write_meta(fuzz_model, content)
    try:
        meta = read_metadata(fuzz_model)
    except ModelError as exc:
        _one_line(exc)
        return
    spec = meta["preprocess"]
    assert 8 <= spec["input_size"] <= 512 and 0 <= spec["mean"] <= 1 and 0.01 <= spec["std"] <= 10


@settings(FUZZ, max_examples=40)
@given(content=metadata())
def test_generated_metadata_through_the_whole_model_load(fuzz_model, content):
    """The real program with generated metadata: loaded and accepted, or a ModelError."""
    _write_meta(fuzz_model, content)
    try:
        classifier = load_classifier(fuzz_model)
    except ModelError as exc:
        _one_line(exc)
        return
    import numpy as np

    size = classifier.spec.input_size
    probs = classifier.classify_batch(np.zeros((2, size, size), np.uint8))
    classifier.close()
    assert probs.shape == (2, 7) and np.isfinite(probs).all()


# --- the command line ----------------------------------------------------------------------

FLAG_VALUES = {
    "--config": [str(FIFO), "/dev/zero", "~nosuchuser/c.yaml", "/nonexistent.yaml", "/tmp/" + "c" * 300],
    "--source": NASTY_STRINGS,
    "--display": ["none", "drm", "x"],
    "--model": ["/nonexistent.pte", "~nosuchuser/m.pte", "/tmp/" + "m" * 300],
    "--detector": ["haar", "yunet", "cnn"],
    "--yunet-model": ["/nonexistent.onnx", "~nosuchuser/y.onnx"],
    "--threads": ["0", "1", "16", "17", "-1", "1e3", "x"],
    "--runtime": ["auto", "native", "gpu"],
    "--max-frames": ["0", "1", "-5", "1" * 30],
    "--events-jsonl": ["-", "/dev/null", "~nosuchuser/e", "/tmp/" + "e" * 300, ""],
    "--report-json": ["/tmp/r.json", "~nosuchuser/r", ""],
    "--stats-path": ["/tmp/s.json", "~nosuchuser/s", "/" + "s/" * 2100],
    "--mqtt": ["mqtt://localhost", "http://x", "mqtt://u:p@h", "mqtt://h:99999", "mqtt://"],
    "--metrics-port": ["0", "1", "65535", "65536", "-1", "x"],
    "--web": ["0", "8080", "65536", "-1", "x", "--console"],
    "--console": ["auto", "on", "off", "maybe"],
    "--log-level": ["INFO", "TRACE"],
}
flag_lists = st.lists(
    st.sampled_from(sorted(FLAG_VALUES)).flatmap(
        lambda flag: st.tuples(st.just(flag), st.sampled_from(FLAG_VALUES[flag]) | st.text(max_size=12))
    ),
    max_size=5,
).map(lambda pairs: [part for pair in pairs for part in pair])


@FUZZ
@given(flag_lists)
def test_generated_command_lines_parse_or_exit_2_or_are_config_errors(argv):
    from edge_fer.apps.daemon import build_config, parse_args

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2  # the flag parser's one line: "edge-fer: error: ... (see edge-fer --help)"
        return
    if "--config" not in argv:
        args.config = None  # not this machine's /etc/edge-fer/config.yaml
    try:
        config = build_config(args)
    except ConfigError as exc:
        _one_line(exc)
        return
    assert validate(config) is config


# --- source specs and output paths ---------------------------------------------------------

PREFIXES = ["", "file:", "webcam:", "webcam", "picamera2", "rtsp://", "http://", "file:~", "file:/dev/"]
specs = st.tuples(st.sampled_from(PREFIXES), st.text(max_size=30) | st.sampled_from(NASTY_STRINGS)).map(
    "".join
)


@settings(FUZZ, max_examples=200)
@given(specs)
def test_generated_source_specs_check_or_are_config_errors(spec):
    from edge_fer.config import CameraConfig
    from edge_fer.sources.base import CaptureError
    from edge_fer.sources.registry import make_source

    try:
        check_source(spec)
    except ConfigError as exc:
        _one_line(exc)
        return
    if spec.startswith(("webcam", "file:")):
        source = make_source(spec, CameraConfig())
        if spec.startswith("file:"):
            try:
                source.open()
            except CaptureError as exc:
                _one_line(exc)
            finally:
                source.close()


def _under_work(path: str) -> str:
    """Generated paths stay inside WORK (nothing is created elsewhere), or name no one's home."""
    return path if path.startswith((str(WORK), "~nosuchuser")) else f"{WORK}/{path}"


path_parts = st.sampled_from(["~nosuchuser", ".", "sub", "fifo", "n" * 300, "\0", ""])
output_paths = st.lists(path_parts | st.text(min_size=1, max_size=10), min_size=1, max_size=4).map(
    lambda parts: _under_work("/".join(parts))
) | st.sampled_from([str(FIFO), "/dev/null", "/dev/zero", "/dev/full", str(WORK), "/" + "p/" * 2100])


@pytest.mark.fast
@FUZZ
@given(output_paths)
def test_generated_output_paths_open_or_are_output_errors(path):
    """Stats, report and events outputs (what --stats-path, --report-json, --events-jsonl
    name, already through the config's path check or not) open or raise OutputError."""
    from edge_fer.config import checked_path
    from edge_fer.outputs.base import OutputError
    from edge_fer.outputs.events import EventsLog
    from edge_fer.outputs.run_report import RunReport
    from edge_fer.outputs.stats_file import StatsFile

    try:
        checked_path("events.path", path)
    except ConfigError as exc:
        _one_line(exc)
    makers = (
        lambda: StatsFile(Path(path), 1.0),
        lambda: RunReport(Path(path), None),
        lambda: EventsLog(path),
    )
    for make in makers:
        try:
            output = make()
        except OutputError as exc:
            _one_line(exc)
            continue
        if isinstance(output, EventsLog):
            output.close()


# --- edge-fer-classify: image bytes, inputs, --annotate targets, its command line ---------

import cv2  # noqa: E402 - after the sections above, which need none of it

from edge_fer.apps import classify as photo  # noqa: E402
from edge_fer.core.image_header import HeaderError, image_size  # noqa: E402

_PICTURE = np.random.default_rng(3).integers(0, 255, (24, 32, 3), dtype=np.uint8)
REAL_IMAGES = [
    cv2.imencode(ext, _PICTURE)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp", ".tif", ".ppm")
]


@st.composite
def damaged_images(draw) -> bytes:
    """A real encoded image with a few bytes overwritten (sizes in its header among them) or cut."""
    data = bytearray(draw(st.sampled_from(REAL_IMAGES)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, min(len(data) - 1, 64)))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(FUZZ, max_examples=300)
@given(damaged_images() | st.binary(max_size=200))
def test_generated_image_bytes_decode_within_the_budget_or_are_image_errors(data):
    try:
        kind, w, h = image_size(data)
        assert isinstance(kind, str) and w >= 0 and h >= 0
    except HeaderError as exc:
        _one_line(exc)
    path = WORK / "photo.img"
    path.write_bytes(data)
    try:
        image = photo.read_image(path)
    except photo.ImageError as exc:
        _one_line(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= photo.MAX_PIXELS


NAMES = ["p.jpg", "p.png", "q.jpg", "p.annotated.jpg", "noext", "dir", "fifo.jpg", "link.jpg", "hard.jpg"]
SANDBOX = WORK / "classify"


def _sandbox() -> None:
    """Inputs of every kind under SANDBOX: images in two folders with one name, a folder, a
    FIFO, a symlink and a hard link to an image, a file without a suffix."""
    if SANDBOX.exists():
        shutil.rmtree(SANDBOX)
    for folder in ("a", "b", "a/dir"):
        (SANDBOX / folder).mkdir(parents=True)
    for folder in ("a", "b"):
        for name in ("p.jpg", "p.png", "q.jpg", "p.annotated.jpg"):
            (SANDBOX / folder / name).write_bytes(REAL_IMAGES[0])
        (SANDBOX / folder / "noext").write_text("notes")
    os.mkfifo(SANDBOX / "a" / "fifo.jpg")
    (SANDBOX / "a" / "link.jpg").symlink_to(SANDBOX / "b" / "p.jpg")
    os.link(SANDBOX / "a" / "q.jpg", SANDBOX / "a" / "hard.jpg")


_sandbox()
sandbox_paths = st.tuples(
    st.sampled_from(["a", "b", "a/dir", "a/../b", "."]), st.sampled_from(NAMES + [""])
).map(lambda parts: SANDBOX / parts[0] / parts[1])


@pytest.mark.fast
@FUZZ
@given(st.lists(sandbox_paths, min_size=1, max_size=5), sandbox_paths | st.sampled_from([SANDBOX / "out"]))
def test_generated_annotate_plans_never_touch_an_input_or_name_one_file_twice(inputs, out):
    images, errors = photo.expand_inputs(inputs, out)
    for error in errors:
        assert error and "\n" not in error
    assert all(os.path.exists(p) or os.path.islink(p) for p in images)
    if not images:
        return
    try:
        plan = photo.plan_annotations(out, images)
    except photo.ImageError as exc:
        _one_line(exc)
        return
    assert len(plan) == len(images)
    assert len({os.path.realpath(p) for p in plan}) == len(plan)  # never one target for two images
    for target in plan:
        assert not any(photo.same_file(target, image) for image in images)
    for target in plan:  # what the check made (the folder, its probe) is cleaned up, nothing else
        assert not target.exists() or target.is_file()


CLASSIFY_VALUES = {
    "--annotate": [
        str(SANDBOX / "a" / "p.jpg"),
        str(SANDBOX / "out"),
        str(SANDBOX / "a" / "noext"),
        "/dev/null",
    ],
    "--detector": ["haar", "yunet", "cnn"],
    "--yunet-model": ["/nonexistent.onnx", str(FIFO)],
    "--detect-width": ["0", "31", "480", "99999", "x"],
    "--threads": ["0", "1", "17", "x"],
    "--runtime": ["auto", "gpu"],
    "--config": [str(FIFO), "/dev/zero", "/nonexistent.yaml"],
}
classify_argv = st.tuples(
    st.lists(
        st.sampled_from([str(p) for p in (SANDBOX / "a", SANDBOX / "a" / "fifo.jpg", "/dev/zero")])
        | st.lists(sandbox_paths.map(str), max_size=3),
        max_size=3,
    ),
    st.lists(
        st.sampled_from(sorted(CLASSIFY_VALUES)).flatmap(
            lambda flag: st.tuples(
                st.just(flag), st.sampled_from(CLASSIFY_VALUES[flag]) | st.text(max_size=8)
            )
        ),
        max_size=3,
    ),
    st.booleans(),
).map(lambda t: [*t[0], *[part for pair in t[1] for part in pair], *(["--no-detect"] if t[2] else [])])


@FUZZ
@given(classify_argv)
def test_generated_classify_command_lines_end_in_a_documented_exit(argv):
    """Everything before the model loads (flags, config, inputs, the --annotate plan) is
    checked: a generated command line exits 2 or reaches the (missing) model and exits 3."""
    err = io.StringIO()
    handler = logging.StreamHandler(err)
    logging.getLogger("edge_fer.apps.classify").addHandler(handler)
    try:  # in WORK: a generated relative --annotate folder is made there, not in the checkout
        with contextlib.redirect_stderr(err), contextlib.chdir(WORK):
            code = photo.main([*argv, "--model", "/nonexistent/model.pte"], out=io.StringIO())
    except SystemExit as exc:  # argparse: its one usage line
        code = exc.code
    finally:
        logging.getLogger("edge_fer.apps.classify").removeHandler(handler)
    assert code in (2, 3), (code, err.getvalue())
    assert "Traceback" not in err.getvalue()


# --- output paths against each other and the inputs ----------------------------------------

OUTPUT_DIR = WORK / "outputs"
OUTPUT_DIR.mkdir()
(OUTPUT_DIR / "a.json").write_text("{}")
(OUTPUT_DIR / "link.json").symlink_to(OUTPUT_DIR / "a.json")
os.link(OUTPUT_DIR / "a.json", OUTPUT_DIR / "hard.json")
(OUTPUT_DIR / "video.mp4").write_bytes(b"\0" * 10)
(OUTPUT_DIR / "config.yaml").write_text("{}")
# Each spelling and the file it names (written down by hand: the oracle is not the code under
# test); /dev/null may take any number of outputs.
SPELLINGS = {
    "a.json": "A", "./a.json": "A", "link.json": "A", "hard.json": "A", "sub/../a.json": "A",
    "b.json": "B", "./b.json": "B", "c.json": "C", "video.mp4": "input", "config.yaml": "input",
    "/dev/null": None,
}  # fmt: skip


@pytest.mark.fast
@FUZZ
@given(
    st.fixed_dictionaries(
        {k: st.none() | st.sampled_from(sorted(SPELLINGS)) for k in ("events", "report", "stats", "record")}
    )
)
def test_generated_output_paths_clash_exactly_when_they_name_one_file(chosen):
    from edge_fer.config import check_output_paths

    config = Config()
    config.source = f"file:{OUTPUT_DIR / 'video.mp4'}"
    full = {
        k: None if v is None else (v if v.startswith("/") else str(OUTPUT_DIR / v)) for k, v in chosen.items()
    }
    config.events.path = full["events"]
    config.report.path = None if full["report"] is None else Path(full["report"])
    config.stats.path = None if full["stats"] is None else Path(full["stats"])
    config.record = None if full["record"] is None else Path(full["record"])
    files = [SPELLINGS[v] for v in chosen.values() if v is not None and SPELLINGS[v] is not None]
    expect_clash = len(set(files)) < len(files) or "input" in files
    try:
        check_output_paths(config, OUTPUT_DIR / "config.yaml")
    except ConfigError as exc:
        _one_line(exc)
        assert expect_clash, (chosen, str(exc))
        return
    assert not expect_clash, chosen


# --- the path and URL boundary: what argv and config files carry, any bytes included --------

# argv reaches Python as bytes decoded with surrogateescape: a \xff byte is the lone surrogate
# \udcff, which OpenCV's bindings cannot convert (it crashed the daemon). st.text() never
# generates surrogates, so they are drawn here on purpose.
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
argv_strings = (
    st.binary(max_size=40).map(os.fsdecode)
    | st.text(max_size=30)
    | st.lists(st.text(max_size=5) | surrogates, max_size=8).map("".join)
    | st.sampled_from(NASTY_STRINGS)
)
URL_PREFIXES = ("rtsp://", "http://", "https://", "rtsps://", "http://127.0.0.1:8080/", "rtsp://u@h/")


def _reaches_opencv_safely(value: str) -> None:
    """What the boundary let through is what C libraries take: UTF-8, no NUL, no control
    character; OpenCV's C++ gets it whole (cv2.utils.dumpString converts it as every OpenCV
    call with a path does, without touching the file system: a lone surrogate there is a
    SIGSEGV of this process)."""
    import unicodedata

    import cv2

    value.encode("utf-8")
    assert "\0" not in value and not any(unicodedata.category(c) == "Cc" for c in value)
    assert cv2.utils.dumpString(value) == f"String: {value}"


@pytest.mark.fast
@settings(FUZZ, max_examples=300)
@given(st.sampled_from(PREFIXES + list(URL_PREFIXES)), argv_strings)
def test_generated_paths_and_urls_are_refused_in_one_line_or_safe_for_opencv(prefix, rest):
    from edge_fer.config import CameraConfig, apply_overrides, checked_path
    from edge_fer.core.user_input import InputRefused, user_file, user_url
    from edge_fer.sources.registry import make_source

    spec = prefix + rest
    try:
        check_source(spec)
        config = apply_overrides(Config(), {"source": spec, "detector.yunet_model": rest or None})
    except ConfigError as exc:
        _one_line(exc)
    else:
        _reaches_opencv_safely(config.source)
        source = (
            make_source(config.source, CameraConfig()) if config.source.startswith(URL_PREFIXES) else None
        )
        if source is not None:
            _reaches_opencv_safely(source._credentialed)
    for check in (
        lambda: checked_path("model.path", rest),
        lambda: user_url(spec, "--source"),
        lambda: user_file(rest, "--yunet-model"),
    ):
        try:
            value = check()
        except (ConfigError, InputRefused) as exc:
            _one_line(exc)
            continue
        _reaches_opencv_safely(str(value))


# --- frames where they enter, and what a stream sends --------------------------------------

FRAME_DTYPES = ["uint8", "uint16", "int8", "int16", "float32", "float64", "bool", "int64"]
sides = st.sampled_from([0, 1, 2, 3, 15, 16, 17, 31, 32, 100, 239, 480, 640, 1000, 2000]) | st.integers(
    0, 700
)
frame_shapes = st.one_of(
    st.tuples(sides, sides),
    st.tuples(sides, sides, st.integers(0, 6)),
    st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 40), st.integers(0, 4)),
).filter(lambda shape: int(np.prod(shape)) <= 3_000_000)
frame_limits = st.builds(
    FramesConfig,
    max_pixels=st.integers(76_800, 400_000),
    max_aspect=st.floats(1.5, 64),
    min_side=st.integers(1, 64),
)


@pytest.fixture(scope="module")
def yunet():
    from edge_fer.config import DetectorConfig
    from edge_fer.faces.detect import make_detector

    return make_detector(DetectorConfig())


@pytest.mark.fast
@FUZZ
@given(frame_shapes, st.sampled_from(FRAME_DTYPES), st.integers(0, 255), frame_limits, st.integers(32, 960))
def test_generated_frames_are_used_within_the_limits_or_dropped(yunet, shape, dtype, fill, limits, width):
    """Any array a driver could hand over: dropped with a reason, or a BGR uint8 frame within
    the limits that the pipeline's detection image and the real detector take."""

    from edge_fer.config import DetectorConfig
    from edge_fer.faces.finder import FaceFinder
    from edge_fer.sources.frames import check_frame

    image = np.full(shape, fill).astype(dtype)
    checked = check_frame(image, limits)
    if checked.image is None:
        assert checked.why and "\n" not in checked.why
        return
    frame = checked.image
    h, w = frame.shape[:2]
    assert frame.dtype == np.uint8 and frame.shape == (h, w, 3) and frame.flags.c_contiguous
    assert min(h, w) >= min(limits.min_side, 1) and h * w <= limits.max_pixels
    assert max(h, w) <= limits.max_aspect * min(h, w) + 1  # scaling may round a pixel
    # Every pass of the daemon's search (coarse, a tile, a window around a face) takes it.
    finder = FaceFinder(lambda: yunet, DetectorConfig(detect_width=width))
    finder.round(frame, [], None)
    for box in finder.round(frame, [(0, 0, w, h), (w // 2, h // 2, 1, 1)], None):
        assert 0 <= box[0] and 0 <= box[1] and box[0] + box[2] <= w and box[1] + box[3] <= h


@pytest.fixture(scope="module")
def real_jpeg() -> bytes:
    import cv2

    from edge_fer.core.paths import DEFAULT_DATA

    face = sorted((DEFAULT_DATA / "test" / "happy").glob("*.jpg"))[0]
    image = cv2.resize(cv2.imread(str(face)), (96, 96))
    return cv2.imencode(".jpg", image)[1].tobytes()


mutations = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)


@pytest.mark.fast
@FUZZ
@given(st.binary(max_size=3000), mutations, st.booleans())
def test_generated_stream_parts_decode_within_the_budget_or_are_dropped(real_jpeg, junk, flips, use_real):
    from edge_fer.sources.frames import decode_jpeg

    data = bytearray(real_jpeg if use_real else junk)
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    limits = FramesConfig(max_decode_pixels=76_800)
    image, why = decode_jpeg(bytes(data), limits)
    if image is None:
        assert why and "\n" not in why
    else:
        assert image.ndim == 3 and image.shape[0] * image.shape[1] <= limits.max_decode_pixels


part_bodies = st.binary(max_size=3000)
stream_pieces = st.lists(
    st.one_of(
        st.tuples(st.just("part"), part_bodies, st.booleans()),  # (body, with Content-Length)
        st.tuples(st.just("junk"), st.binary(max_size=500), st.just(False)),
        st.tuples(st.just("big"), st.integers(5000, 20000).map(lambda n: b"\xab" * n), st.booleans()),
    ),
    max_size=12,
)


def _multipart(pieces) -> bytes:
    out = bytearray()
    for kind, body, sized in pieces:
        if kind == "junk":
            out += body
            continue
        out += b"\r\n--frame\r\nContent-Type: image/jpeg\r\n"
        if sized:
            out += b"Content-Length: %d\r\n" % len(body)
        out += b"\r\n" + body + b"\r\n"
    return bytes(out + b"\r\n--frame--\r\n")


@pytest.mark.fast
@FUZZ
@given(stream_pieces, st.sampled_from([b"frame", None]))
def test_generated_mjpeg_streams_yield_bounded_parts_and_end(pieces, boundary):
    """Any byte stream an HTTP camera sends: the reader yields parts no larger than its limit
    (larger ones dropped, saying why), well-formed sized parts intact, and ends at EOF."""
    from edge_fer.sources.http_stream import HttpCamera, HttpStreamError

    camera = HttpCamera("http://127.0.0.1:9/v.mjpg", 4096, 1.0, 1.0)
    camera.response = io.BufferedReader(io.BytesIO(_multipart(pieces)), buffer_size=1024)
    camera.kind, camera.boundary = "multipart", boundary
    got = []
    try:
        for part in camera.parts():
            assert part.body is not None or part.dropped
            assert part.body is None or len(part.body) <= 4096
            got.append(part.body)
    except HttpStreamError as exc:
        _one_line(exc)
        return
    clean = all(kind == "part" and sized and b"--frame" not in body for kind, body, sized in pieces)
    if clean and boundary is not None:
        assert got == [body for _k, body, _s in pieces]
