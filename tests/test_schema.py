"""The settings schema (edge_fer/core/schema.py): one declaration gives the types, limits, errors,
flags and example file of the daemon config and of the training settings."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.config import (
    Config,
    ConfigError,
    DetectorConfig,
    apply_overrides,
    example_yaml,
    flatten,
    load_config,
    normalised,
    validate,
)
from edge_fer.core import schema
from edge_fer.core.schema import SchemaError, Spec, setting

pytestmark = pytest.mark.fast  # units and contracts: the fast tier

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    """An inner section."""

    ratio: float = setting(0.5, "a fraction", gt=0, le=1, flag="--ratio")
    size: tuple[int, int] = setting((4, 3), "width and height")


@dataclass
class Demo:
    """A small declared schema, as an application would write one."""

    count: int = setting(3, "how many", ge=1, le=10, flag="--count", metavar="N")
    mode: str = setting("a", "a | b", choices=("a", "b"), flag="--mode")
    on: bool = setting(True, "switch", flag="--on")
    where: Path | None = setting(None, "a file", flag="--where")
    widths: tuple[int, ...] = setting((1, 2), "comma list", ge=1, le=8)
    inner: Inner = setting(factory=Inner)


# --- Phrasing of limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected", "must_float", "must_int"),
    [
        (Spec(gt=0, lt=1), "a number between 0 and 1", "positive, below 1", "positive, below 1"),
        (
            Spec(ge=76_800, le=33_177_600),
            "a number >= 76800 and <= 33177600",
            "in [76800, 33177600]",
            "between 76800 and 33177600",
        ),
        (Spec(ge=1, le=16), "a positive number up to 16", "in [1, 16]", "between 1 and 16"),
        (Spec(ge=1), "a positive number", "at least 1", "a positive integer"),
        (Spec(gt=0), "a positive number", "positive", "positive"),
        (Spec(ge=0), "a number >= 0", "0 or more", "0 or more"),
        (Spec(gt=0, le=10), "a positive number up to 10", "positive, at most 10", "positive, at most 10"),
        (Spec(gt=0, le=1), "a positive number up to 1", "in (0, 1]", "in (0, 1]"),
        (Spec(ge=0.05, le=3600), "a number >= 0.05 and <= 3600", "in [0.05, 3600]", "between 0.05 and 3600"),
        (Spec(choices=("tcp", "udp")), "one of tcp, udp", "one of tcp, udp", "one of tcp, udp"),
    ],
)
def test_limits_read_the_same_in_every_message(spec, expected, must_float, must_int):
    assert spec.expected() == expected
    assert spec.must_be(integer=False) == must_float
    assert spec.must_be(integer=True) == must_int


# --- Coercion and checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value", "result"),
    [
        ("int", 3, 3),
        ("float", 3, 3.0),
        ("float | None", None, None),
        ("bool", False, False),
        ("str", "x", "x"),
        ("Path | None", "/tmp/a", Path("/tmp/a")),
        ("tuple[int, int]", [640, 480], (640, 480)),
    ],
)
def test_coerce_types_yaml_values(annotation, value, result):
    got = schema.coerce("setting 'k'", value, annotation)
    assert got == result and type(got) is type(result)


@pytest.mark.parametrize(
    ("annotation", "value", "needle"),
    [
        ("int", True, "expected an integer"),
        ("int", 2.5, "expected an integer"),
        ("int", None, "expected an integer"),
        ("float", float("nan"), "expected a finite number"),
        ("float", "1", "expected a finite number"),
        ("bool", "yes", "expected true or false"),
        ("str", "", "expected a non-empty string"),
        ("str", "a\x00b", "is not valid"),
        ("Path", "", "expected a file path"),
        ("Path", "/tmp/a\nb", "control character"),
        ("tuple[int, int]", [0, 480], "expected [width, height]"),
        ("tuple[int, int]", [1, 2, 3], "expected [width, height]"),
    ],
)
def test_coerce_refuses_in_one_line_naming_the_setting(annotation, value, needle):
    class Refused(SchemaError):
        pass

    with pytest.raises(Refused) as error:
        schema.coerce("setting 'k'", value, annotation, Refused)
    message = str(error.value)
    assert needle in message and message.startswith("setting 'k'") and "\n" not in message


def test_flag_text_is_typed_like_yaml_values():
    assert schema.parse_text("--n", "12", "int") == 12
    assert schema.parse_text("--w", " 1, 2 ,3", "tuple[int, ...]") == (1, 2, 3)
    assert schema.parse_text("--p", "a,b", "tuple[Path, ...]") == (Path("a"), Path("b"))
    for text, annotation, needle in [
        ("x", "int", "--f expects an integer, got 'x'"),
        ("inf", "float", "--f expects a finite number"),
        (" , ", "tuple[int, ...]", "--f expects a comma list"),
        ("~nosuchuser_zz/x", "Path", "nosuchuser_zz"),
    ]:
        with pytest.raises(SchemaError, match=needle):
            schema.parse_text("--f", text, annotation)


def test_check_names_the_setting_in_the_style_of_its_source():
    declared = Spec(ge=1, le=16)
    schema.check("k", 16, declared)
    with pytest.raises(
        SchemaError, match=r"^config key 'k': 0 is not valid; expected a positive number up to 16$"
    ):
        schema.check("config key 'k'", 0, declared)
    with pytest.raises(SchemaError, match=r"^--threads must be between 1 and 16, got 17$"):
        schema.check("--threads", 17, declared, as_flag=True)
    with pytest.raises(SchemaError, match=r"^--w must be between 1 and 16, got 0$"):
        schema.check("--w", (3, 0), declared, as_flag=True)  # each item of a tuple


def test_build_types_nested_sections_and_refuses_unknown_keys():
    built = schema.build(Demo, {"count": 4, "inner": {"ratio": 1}}, lambda k: f"key '{k}'", SchemaError)
    assert built == Demo(count=4, inner=Inner(ratio=1.0))
    with pytest.raises(SchemaError, match=r"unknown config key 'inner.nope'; allowed keys here: ratio, size"):
        schema.build(Demo, {"inner": {"nope": 1}}, str, SchemaError)
    with pytest.raises(SchemaError, match="section 'inner' must be a mapping"):
        schema.build(Demo, {"inner": [1]}, str, SchemaError)
    with pytest.raises(SchemaError, match=r"^key 'inner.ratio': 'x' is not valid"):
        schema.build(Demo, {"inner": {"ratio": "x"}}, lambda k: f"key '{k}'", SchemaError)


def test_with_values_copies_and_never_changes_the_original():
    demo = Demo()
    changed = schema.with_values(demo, {"count": 5, "inner.ratio": 0.25})
    assert (changed.count, changed.inner.ratio) == (5, 0.25)
    assert demo == Demo() and changed.inner is not demo.inner


# --- Flags ------------------------------------------------------------------------------------


def _parse(argv: list[str], capsys) -> tuple[argparse.Namespace | None, str]:
    p = argparse.ArgumentParser(prog="demo")
    added = schema.add_flags(p, Demo)
    try:
        args = p.parse_args(argv)
        schema.check_flags(p, args, added)
    except SystemExit as stop:
        assert stop.code == 2
        return None, capsys.readouterr().err.strip().splitlines()[-1]
    return args, schema.given(args, added)


def test_flags_come_from_the_declarations(capsys):
    args, values = _parse(
        ["--count", "4", "--no-on", "--mode", "b", "--ratio", "0.5", "--where", "x"], capsys
    )
    assert values == {"count": 4, "on": False, "mode": "b", "inner.ratio": 0.5, "where": Path("x")}
    assert _parse([], capsys)[1] == {}  # nothing given: nothing overrides the file
    help_text = argparse.ArgumentParser()
    schema.add_flags(help_text, Demo)
    shown = help_text.format_help()
    assert "--count N" in shown and "how many [count]" in shown and "--widths" not in shown
    for argv, needle in [
        (["--count", "11"], "demo: error: --count must be between 1 and 10, got 11 (config key count)"),
        (["--ratio", "0"], "demo: error: --ratio must be in (0, 1], got 0.0 (config key inner.ratio)"),
        (["--count", "x"], "argument --count: invalid int value: 'x'"),
        (["--ratio", "nan"], "argument --ratio: invalid float value: 'nan'"),
        (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
        (["--where", "a\tb"], "argument --where:"),
    ]:
        assert _parse(argv, capsys) == (None, needle) or needle in _parse(argv, capsys)[1], argv


OLD_DAEMON_FLAGS = [
    ("--source", "webcam:1", "source", "webcam:1"),
    ("--pace", "fast", "pace", "fast"),
    ("--instance", "cam0", "instance", "cam0"),
    ("--display", "none", "display.mode", "none"),
    ("--no-fullscreen", None, "display.fullscreen", False),
    ("--no-top3", None, "display.top3", False),
    ("--model", "/tmp/m.pte", "model.path", Path("/tmp/m.pte")),
    ("--detector", "haar", "detector.kind", "haar"),
    ("--yunet-model", "/tmp/y.onnx", "detector.yunet_model", Path("/tmp/y.onnx")),
    ("--threads", "4", "model.threads", 4),
    ("--runtime", "native", "model.runtime", "native"),
    ("--events-jsonl", "-", "events.path", "-"),
    ("--report-json", "/tmp/r.json", "report.path", Path("/tmp/r.json")),
    ("--stats-path", "/tmp/s.json", "stats.path", Path("/tmp/s.json")),
    ("--mqtt", "mqtt://broker:1883", "mqtt.url", "mqtt://broker:1883"),
    ("--metrics-port", "9100", "metrics.port", 9100),
    ("--web", "8090", "web.port", 8090),
    ("--console", "off", "console", "off"),
    ("--no-loop", None, "loop_video", False),
    ("--log-summary", "5", "log_summary_s", 5.0),
    ("--log-level", "DEBUG", "log_level", "DEBUG"),
]


@pytest.mark.parametrize(
    ("flag", "text", "key", "value"), OLD_DAEMON_FLAGS, ids=[f[0] for f in OLD_DAEMON_FLAGS]
)
def test_every_daemon_flag_still_sets_its_key(flag, text, key, value):
    from edge_fer.apps.daemon import build_config, parse_args

    args = parse_args([flag] + ([text] if text is not None else []))
    args.config = None  # the defaults, not this machine's /etc/edge-fer/config.yaml
    assert flatten(build_config(args))[key] == value


def test_the_photo_tool_takes_the_same_flags_for_its_keys(capsys):
    from edge_fer.apps.classify import parse_args

    args = parse_args(["x.jpg", "--detect-width", "640", "--threads", "2", "--detector", "haar"])
    assert (args.detect_width, args.threads, args.detector) == (640, 2, "haar")
    with pytest.raises(SystemExit):
        parse_args(["x.jpg", "--detect-width", "16"])
    assert "--detect-width must be between 32 and 8192, got 16 (config key detector.detect_width)" in (
        capsys.readouterr().err
    )


NUMERIC = [
    (key, f)
    for key, _, f in schema.walk(Config())
    if schema.base_type(str(f.type)) in ("int", "float") and schema.spec(f).has_limits
]


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from(NUMERIC), st.floats(-1e6, 1e6, allow_nan=False))
def test_a_flag_and_the_config_file_allow_the_same_values(pair, number):
    """One declaration, one rule: a value a flag refuses is refused in the file, and back."""
    key, f = pair
    value = int(number) if schema.base_type(str(f.type)) == "int" else number
    try:
        schema.check("--flag", value, schema.spec(f), as_flag=True)
        flag_ok = True
    except SchemaError:
        flag_ok = False
    try:
        apply_overrides(Config(), {key: value})
        file_ok = True
    except ConfigError as exc:
        assert key in str(exc) or key == "camera.index"
        file_ok = False
    assert flag_ok == file_ok or key == "camera.index"  # its upper limit is a cross-key rule


# --- Validation leaves the config alone --------------------------------------------------------


def test_validate_only_checks_and_normalised_is_a_new_config():
    config = Config(instance="cam1")
    before = dataclasses.replace(config, stats=dataclasses.replace(config.stats))
    assert validate(config) is config and config == before  # unchanged
    derived = normalised(config)
    assert derived is not config and config == before
    assert derived.stats.path == Path("/run/edge-fer-cam1/stats.json")
    base = load_config(None)
    changed = apply_overrides(base, {"smoothing.window": 5, "instance": "cam2"})
    assert base == load_config(None) and changed.smoothing.window == 5
    assert changed.stats.path == Path("/run/edge-fer-cam2/stats.json")


# --- The example file --------------------------------------------------------------------------


def test_the_example_file_documents_and_loads_back_to_the_defaults(tmp_path):
    text = example_yaml()
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path) == dataclasses.replace(Config(), fallback_video=None)
    for key, _, f in schema.walk(Config()):
        leaf = key.rsplit(".", 1)[-1]
        assert f"{leaf}: " in text and schema.spec(f).doc.split("\n")[0][:30] in text, key
    demo = schema.example_yaml(Demo(), ["# demo", ""])
    assert demo.startswith("# demo\n\ncount: 3  # how many (a positive number up to 10)\n")
    assert "inner:  # An inner section.\n  ratio: 0.5  # a fraction (a positive number up to 1)\n" in demo


# --- Well-known paths ----------------------------------------------------------------------------


def _in_child(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT)


def test_the_daemon_honours_edge_fer_yunet_like_tools_and_benchmarks(tmp_path):
    code = (
        "from edge_fer.config import load_config; from edge_fer.core.paths import DEFAULT_YUNET;"
        "c = load_config(None); print(c.detector.yunet_file); print(DEFAULT_YUNET)"
    )
    moved = tmp_path / "yunet.onnx"
    lines = _in_child(code, EDGE_FER_YUNET=str(moved)).stdout.split()
    assert lines == [str(moved), str(moved)]
    assert DetectorConfig(yunet_model=Path("/x.onnx")).yunet_file == Path("/x.onnx")  # the key wins
    shipped = _in_child(code, EDGE_FER_YUNET="").stdout.split()  # empty: unset
    assert shipped[0] == shipped[1] and shipped[0].endswith("face_detection_yunet_2026may.onnx")
    bad = _in_child(
        "from edge_fer.config import load_config, ConfigError\n"
        "try:\n load_config(None)\nexcept ConfigError as e:\n print(e)",
        EDGE_FER_YUNET="/tmp/a\tb.onnx",
    )
    assert "$EDGE_FER_YUNET" in bad.stdout and "control character" in bad.stdout


def test_well_known_paths_are_importable_from_their_old_place():
    import edge_fer.config as config
    from edge_fer.core import paths

    assert (
        config.DEFAULT_MODEL is paths.DEFAULT_MODEL and config.DEFAULT_DEMO_VIDEO is paths.DEFAULT_DEMO_VIDEO
    )
    assert config.DEFAULT_CONFIG_PATH == paths.DEFAULT_CONFIG


# --- Training settings use the same engine -------------------------------------------------------


def test_train_settings_are_declared_with_the_schema():
    from edge_fer.training import settings as train

    for f in dataclasses.fields(train.TrainSettings):
        assert "spec" in f.metadata and schema.spec(f).doc, f.name
    assert train.parse_flag("teacher_widths", "8,16") == (8, 16)
    with pytest.raises(train.SettingError, match=r"^--seed must be between 0 and 2147483647, got -1$"):
        train.parse_flag("seed", "-1")


def test_retired_settings_go_through_one_migration():
    from edge_fer.training.settings import RETIRED, SettingError, migrate

    name = next(iter(RETIRED))
    off = RETIRED[name][0]
    assert migrate({name: off, "seed": 1}) == {"seed": 1}
    with pytest.raises(SettingError, match=rf"^recipe r.yaml: {name} was removed \(.*\); delete the key$"):
        migrate({name: "other"}, "recipe r.yaml: ")


def test_the_daemons_command_line_module_imports_only_the_standard_library_first():
    """The schema is imported before the daemon's signal handlers are in place: no YAML,
    numpy, OpenCV or config package yet (they take long enough for a SIGHUP to kill it)."""
    probe = (
        "import sys, edge_fer.apps.daemon\n"
        "print([m for m in ('yaml', 'numpy', 'cv2', 'edge_fer.config') if m in sys.modules])"
    )
    assert _in_child(probe).stdout.strip() == "[]"
