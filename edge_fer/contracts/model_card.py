"""The model card: the JSON beside a shipped program (edge_fer_student.pte ->
edge_fer_student.json), written by the training's export stage (and tools/calibrate.py) and
read by the classifier before it runs the program.

What the runtime needs is typed and checked (`ModelCard`: classes, preprocessing, dynamic
batch, name, calibration); the rest (architecture, accuracy, training record, recipe) is kept
as written, for people, under `details`. `read` turns every way the file can be wrong (missing,
special, too big, not UTF-8 JSON, a value of the wrong type or outside what can work, a newer
format) into one `CardError` line naming the file and the fix.

Cards written before the format had a version (no `format_version`) are read by `migrate`, the
one place that knows the older format: their `preprocess` may lack `margin`, which then meant
0.1 (the crop margin before training stored its own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_fer.core import safe_io
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec, SpecError, check_spec

FORMAT_VERSION = 1
MAX_BYTES = 1 << 20
# The crop margin a card without format_version meant when its preprocess had none.
UNVERSIONED_MARGIN = 0.1

TEMPERATURE_RANGE = (0.05, 20.0)
SCALE_RANGE = (0.05, 20.0)  # per-class logit multipliers: the inverse temperature's range
BIAS_RANGE = (-20.0, 20.0)
REFIT = "refit it with tools/calibrate.py"


class CardError(ValueError):
    """A model card that cannot be used; the one-line message names the file and the fix."""


@dataclass(frozen=True)
class CalibrationMap:
    """How logits become calibrated probabilities: softmax(logits * scale + bias), per class
    (temperature scaling is scale = 1/T, bias = 0). `written` is the card's section as
    tools/calibrate.py wrote it (method, fit notes), kept for the round trip."""

    scale: tuple[float, ...]
    bias: tuple[float, ...]
    written: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ModelCard:
    """A shipped model's card (format `FORMAT_VERSION`)."""

    classes: tuple[str, ...]
    preprocess: PreprocessSpec
    dynamic_batch: bool = False  # the program takes any batch up to its first input dimension
    name: str | None = None
    calibration: CalibrationMap | None = None
    input: dict = field(default_factory=dict)  # shape, dtype, layout: notes for people
    details: dict = field(default_factory=dict)  # student, arch, params, accuracy, training, recipe...
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        """The card as its JSON file holds it."""
        out: dict[str, Any] = {"format_version": self.format_version}
        if self.name is not None:
            out["name"] = self.name
        out["classes"] = list(self.classes)
        out["input"] = {**self.input, "dynamic_batch": self.dynamic_batch}
        out["preprocess"] = self.preprocess.to_dict()
        out.update(self.details)
        if self.calibration is not None:
            out["calibration"] = dict(self.calibration.written) or {
                "scale": list(self.calibration.scale),
                "bias": list(self.calibration.bias),
            }
        return out


def card_path(model_path: Path) -> Path:
    """Where a program's card sits: beside it, same stem, `.json`."""
    return Path(model_path).with_suffix(".json")


def write(model_path: Path, card: ModelCard) -> None:
    """Write `card` beside the program at `model_path`, atomically (readable by the daemon's
    user: 0644). PathRefused / OSError when the target cannot be written."""
    text = json.dumps(card.to_json(), indent=2) + "\n"
    safe_io.write_atomic(card_path(model_path), text.encode(), 0o644)


def read(model_path: Path) -> ModelCard:
    """The checked card beside the program at `model_path`, migrated from older formats;
    CardError for anything that is wrong with it."""
    path = card_path(model_path)
    try:
        return from_json(_load(model_path, path), path, model_path)
    except CardError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary owns every failure
        raise CardError(
            f"model metadata {path} cannot be used ({type(exc).__name__}: {exc}); re-export it"
        ) from None


def _load(model_path: Path, path: Path) -> object:
    try:
        raw = safe_io.read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        raise CardError(
            f"model metadata {path} is missing; it must sit beside {model_path} "
            "(re-export with tools/train_mobilenet.py --stages export)"
        ) from None
    except safe_io.PathRefused as exc:
        raise CardError(f"model metadata: {exc}; re-export it") from None
    except OSError as exc:
        raise CardError(f"model metadata {path} cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CardError(
            f"model metadata {path} is not UTF-8 (bad byte at offset {exc.start}); re-export it"
        ) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CardError(f"model metadata {path} is not valid JSON ({str(exc)[:120]}); re-export it") from None


def migrate(data: dict, path: Path | str = "model metadata") -> dict:
    """A card's JSON object of any format version as this version's: the one place that
    reads older formats. Unversioned cards (before format 1) may lack preprocess.margin,
    which meant UNVERSIONED_MARGIN. CardError for a version this edge-fer does not know."""
    version = data.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CardError(
            f"model metadata {path}: format_version is {str(version)[:40]!r}, not a whole number; "
            "re-export the model"
        )
    if version > FORMAT_VERSION:
        raise CardError(
            f"model metadata {path} has format_version {version}, newer than this edge-fer reads "
            f"({FORMAT_VERSION}); update edge-fer or re-export the model with this one"
        )
    data = dict(data)
    if version == 0:
        if isinstance(data.get("preprocess"), dict):
            data["preprocess"] = {"margin": UNVERSIONED_MARGIN, **data["preprocess"]}
        data["format_version"] = 1
    return data


# Keys with a typed place in ModelCard; everything else goes to `details` as written.
_TYPED = ("format_version", "name", "classes", "input", "preprocess", "calibration")


def from_json(
    data: object, path: Path | str = "model metadata", model_path: Path | str = "the model"
) -> ModelCard:
    """A card's parsed JSON, migrated and checked; CardError naming the first problem."""
    if not isinstance(data, dict):
        raise CardError(f"model metadata {path} must be a JSON object; re-export it")
    data = migrate(data, path)
    missing = {"classes", "preprocess"} - set(data)
    if missing:
        raise CardError(f"model metadata {path} lacks {sorted(missing)}; re-export it")
    if not isinstance(data["classes"], list) or tuple(data["classes"]) != EMOTIONS:
        raise CardError(
            f"model {model_path} predicts {str(data['classes'])[:200]}, "
            f"this edge-fer expects {list(EMOTIONS)}"
        )
    try:
        spec = PreprocessSpec(**check_spec(data["preprocess"]))
    except SpecError as exc:
        raise CardError(f"model metadata {path}: {exc}; re-export the model") from None
    input_section, dynamic = _input(path, data.get("input"))
    name = data.get("name")
    if name is not None and not isinstance(name, str | int | float):
        raise CardError(f"model metadata {path}: 'name' must be a string; re-export it")
    return ModelCard(
        classes=EMOTIONS,
        preprocess=spec,
        dynamic_batch=dynamic,
        name=None if name is None else str(name),
        calibration=_calibration(path, data.get("calibration")),
        input=input_section,
        details={k: v for k, v in data.items() if k not in _TYPED},
        format_version=data["format_version"],
    )


def _input(path: Path | str, data: object) -> tuple[dict, bool]:
    """The `input` section (optional) and its `dynamic_batch`, which must be true or false."""
    if data is None:
        return {}, False
    if not isinstance(data, dict):
        raise CardError(
            f"model metadata {path}: 'input' must be an object such as "
            '{"dynamic_batch": true}; re-export the model'
        )
    dynamic = data.get("dynamic_batch", False)
    if not isinstance(dynamic, bool):
        raise CardError(
            f"model metadata {path}: input.dynamic_batch must be true or false; re-export the model"
        )
    return {k: v for k, v in data.items() if k != "dynamic_batch"}, dynamic


def _calibration(path: Path | str, data: object) -> CalibrationMap | None:
    """The `calibration` section (written by tools/calibrate.py): `scale` and `bias` (7 numbers
    each, vector scaling) or a single `temperature`; None when absent."""
    if data is None:
        return None
    where = f"model metadata {path}: calibration"
    if not isinstance(data, dict):
        raise CardError(f"{where} must be an object with scale and bias, or temperature; {REFIT}")
    if "scale" in data or "bias" in data:
        if "temperature" in data:
            raise CardError(f"{where} gives both temperature and scale/bias; keep one; {REFIT}")
        scale = _numbers(where + ".scale", data.get("scale"), SCALE_RANGE)
        bias = _numbers(where + ".bias", data.get("bias"), BIAS_RANGE)
        return CalibrationMap(scale, bias, dict(data))
    value = data.get("temperature")
    lo, hi = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise CardError(
            f"{where}.temperature is {str(value)[:40]!r}, expected a number in [{lo:g}, {hi:g}]; {REFIT}"
        )
    return CalibrationMap((1.0 / value,) * len(EMOTIONS), (0.0,) * len(EMOTIONS), dict(data))


def _numbers(where: str, value: object, limits: tuple[float, float]) -> tuple[float, ...]:
    """`value` as one number per emotion, each within `limits`, or a CardError."""
    lo, hi = limits
    ok = (
        isinstance(value, list)
        and len(value) == len(EMOTIONS)
        and all(not isinstance(v, bool) and isinstance(v, int | float) and lo <= v <= hi for v in value)
    )
    if not ok:
        raise CardError(
            f"{where} is {str(value)[:60]!r}, expected {len(EMOTIONS)} numbers in [{lo:g}, {hi:g}]; {REFIT}"
        )
    return tuple(float(v) for v in value)
