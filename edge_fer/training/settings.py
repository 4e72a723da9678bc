"""Every knob of a training run, declared once: `TrainSettings`.

Each field is declared with the settings schema the daemon config uses too
(`edge_fer.core.schema.setting`: type, default, limits, choices, one-line doc). From this one
declaration come tools/train_mobilenet.py's flags (`--distill-epochs` for `distill_epochs`),
the keys a recipe file may hold (recipes/*.yaml), their type checks and their limits. Nothing
here imports torch, so a bad flag or recipe is refused before torch loads.

Old recipes and command lines go through one migration, `migrate`: settings of dropped
experiments (`RETIRED`) are accepted at the value that meant "off" and dropped, any other
value refused with the reason. Old records (`portable_record`) get relative paths.

Relative paths in a recipe resolve against the checkout (PROJECT_ROOT), not the working
directory, so a recipe means the same from anywhere. Records (config.json, done markers,
model metadata) write paths inside the checkout relative to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_fer.core.paths import DEFAULT_DATA, PROJECT_ROOT
from edge_fer.core.safe_io import PathRefused, read_bounded
from edge_fer.core.safe_yaml import parse_yaml
from edge_fer.core.schema import (
    SchemaError,
    check,
    coerce,
    element_type,
    flag_name,
    parse_text,
    setting,
    shown,
    spec,
)
from edge_fer.emotions.preprocess import MARGIN_RANGE
from edge_fer.nets.students import STUDENTS

STAGES = ("teacher", "distill", "prune", "quantize", "export")
RECIPES = PROJECT_ROOT / "recipes"
QUICK_RECIPE = RECIPES / "quick.yaml"
MAX_RECIPE_BYTES = 1 << 20
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Set by the CLI from --recipe, recorded with the run; never a flag or a recipe key.
RECORDED = ("recipe", "recipe_sha256")
# Settings of dropped experiments: still accepted at the value that means "off", so old recipes
# and command lines keep working; any other value is refused with the reason (`migrate`).
RETIRED: dict[str, tuple[Any, str]] = {
    "kd_views": (
        0,
        "cached teacher views overfit: 66.95% against the live teacher's 67.29%, see the model card",
    ),
}


class SettingError(SchemaError):
    """A bad flag, recipe or combination of settings; the message names it and the fix."""


@dataclass
class TrainSettings:
    """Every knob of a run (the CLI's flags, a recipe's keys), saved as runs/<name>/config.json."""

    data: Path = setting(DEFAULT_DATA, "FER2013 folder (train/, test/) or fer2013.csv ($EDGE_FER_DATA)")
    runs: Path = setting(PROJECT_ROOT / "runs", "folder the run folder <name>/ goes in")
    name: str = setting("main", "run folder name (letters, digits, . _ -)")
    last_stage: str = setting(
        "export", "the last stage a plain rerun goes to (teacher: a teacher-only run)", choices=STAGES
    )
    device: str = setting("cpu", "cpu, or cuda when a GPU is there")
    threads: int | None = setting(None, "CPU threads for torch (default: torch's own choice)", ge=1, le=256)
    seed: int = setting(0, "seed of initialisation, augmentation and subsets", ge=0, le=2**31 - 1)
    input_size: int = setting(48, "face side in pixels the nets take", ge=16, le=512)
    subset: float = setting(1.0, "fraction of the training faces to use", gt=0, le=1)
    batch_size: int = setting(128, "faces per training step", ge=1, le=65536)
    teacher_widths: tuple[int, ...] = setting(
        (32, 64, 128, 256), "FaceVGG stage widths (channels)", ge=1, le=4096
    )
    teacher_epochs: int = setting(24, "teacher training epochs", ge=1, le=10000)
    teacher_lr: float = setting(0.1, "teacher peak learning rate (OneCycle SGD)", gt=0, le=10)
    teachers: tuple[Path, ...] = setting(
        (),
        "teacher.pt files trained in other runs: distil from their ensemble (mean logits); the\n"
        "teacher stage then evaluates it instead of training one",
    )
    student: str = setting(
        "mobilenetv2", "the student net, by its name in edge_fer/nets/students.py", choices=tuple(STUDENTS)
    )
    width: float = setting(1.25, "student width multiplier (mobilenetv2)", gt=0, le=8)
    last_channels: int = setting(512, "student's last 1x1 conv channels (mobilenetv2)", ge=8, le=8192)
    init_student: Path | None = setting(
        None, "student.pt/pruned.pt of an earlier run to continue distilling (its architecture is kept)"
    )
    distill_epochs: int = setting(36, "distillation epochs", ge=1, le=10000)
    student_lr: float = setting(0.1, "student peak learning rate (fine-tune: 0.2x)", gt=0, le=10)
    weight_decay: float = setting(
        5e-5, "SGD weight decay of distill and fine-tune (the teacher's dense convs: 10x)", ge=0, le=1
    )
    pct_start: float = setting(
        0.2, "OneCycle warm-up fraction of the teacher and distill (fine-tune: half)", gt=0, lt=1
    )
    alpha: float = setting(0.5, "KD weight a in (1-a)*CE + a*T^2*KL; 0 trains without a teacher", ge=0, le=1)
    temperature: float = setting(4.0, "KD temperature T", gt=0, le=100)
    kd_mixup: float = setting(
        0.0,
        "mixup Beta(a, a) parameter for distill and fine-tune; the live teacher labels the mixed\n"
        "faces (0: off)",
        ge=0,
        le=10,
    )
    average_last: int = setting(
        0,
        "average the student's weights over the last K distill epochs (SWA-style, batch-norm\n"
        "statistics recomputed); kept if it beats every single epoch (0: off)",
        ge=0,
    )
    teacher_tta: bool = setting(
        False, "the live teacher labels each batch with its flip-TTA logits (mean of face and mirror)"
    )
    degrade: float = setting(
        0.0,
        "probability of each camera degradation (noise, blur, exposure, JPEG, far face, roll, box\n"
        "jitter, occlusion) per training face in distill and fine-tune (0: off)",
        ge=0,
        le=1,
    )
    multires: float = setting(
        0.0,
        "multi-resolution training: a second, independent chance per training face of the far-face\n"
        "degradation (10-40 px of real detail), on top of degrade's (0: off)",
        ge=0,
        le=1,
    )
    teacher_sees: str = setting(
        "clean",
        "with degrade: the teacher labels the clean face (robust distillation) or the degraded one",
        choices=("clean", "degraded"),
    )
    keep_ratio: float = setting(
        0.85, "hidden channels kept by prune (1: no pruning, no fine-tune)", gt=0, le=1
    )
    wise_alpha: float = setting(
        1.0,
        "with keep_ratio 1 and init_student: the student kept is (1-a)*init_student + a*student\n"
        "(weight-space interpolation, WiSE-FT: recovers clean accuracy after a robust fine-tune; 1: off)",
        ge=0,
        le=1,
    )
    soup: tuple[Path, ...] = setting(
        (),
        "with keep_ratio 1: student.pt files of other fine-tunes from the same init_student,\n"
        "averaged uniformly with this run's student (a model soup) before wise_alpha mixes it back",
    )
    finetune_epochs: int = setting(6, "fine-tune epochs after pruning", ge=1, le=10000)
    finetune_average_last: int = setting(
        0, "like average_last, over the last K fine-tune epochs after pruning (0: off)", ge=0
    )
    calibration: int = setting(
        1024, "training faces that calibrate int8 activation ranges", ge=1, le=1_000_000
    )
    qat_epochs: int = setting(
        0,
        "opt-in: quantization-aware epochs when PTQ costs > 0.5 point or agrees < 98% with float\n"
        "(0: never; measured, QAT did not beat PTQ here)",
        ge=0,
    )
    qat_always: bool = setting(False, "run QAT even when PTQ meets its targets")
    qat_lr: float = setting(0.002, "QAT learning rate", gt=0, le=10)
    float_blocks: int = setting(
        2, "first layers kept float in the int8 program (1: stem, 2: stem + first block, 0: none)", ge=0
    )
    crop_margin: float = setting(
        -0.05,
        "box margin the daemon crops faces with, in the model's metadata (negative: inside the box)",
        ge=MARGIN_RANGE[0],
        le=MARGIN_RANGE[1],
    )
    ship: Path | None = setting(None, "also copy the exported model and its metadata into this folder")
    recipe: Path | None = setting(None, "the recipe file these settings came from (set by --recipe)")
    recipe_sha256: str | None = setting(None, "the recipe file's SHA-256 (set by --recipe)")

    def to_json(self) -> dict:
        """The settings as JSON values, paths inside the checkout relative to it."""

        def plain(v: object) -> object:
            if isinstance(v, Path):
                return portable(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in vars(self).items()}


def portable(path: Path | str) -> str:
    """`path` as records write it: relative to the checkout when inside it or beside it
    (../shared/datasets/fer2013), else as given."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    for base in (PROJECT_ROOT, PROJECT_ROOT.parent):
        if path.is_relative_to(base):
            return os.path.relpath(path, PROJECT_ROOT)
    return str(path)


def migrate(
    values: dict[str, Any], where: str = "", name_of: Any = str, fix: str = "delete the key"
) -> dict[str, Any]:
    """The one migration of old settings (a recipe's keys, the flags given): each RETIRED
    setting at its "off" value is dropped; at any other value a SettingError names it as the
    user wrote it (`name_of(key)`, e.g. `flag`), why it was removed and `fix`."""
    out = {}
    for key, value in values.items():
        if key not in RETIRED:
            out[key] = value
            continue
        off, why = RETIRED[key]
        if value != off:
            raise SettingError(f"{where}{name_of(key)} was removed ({why}); {fix}")
    return out


def portable_record(record: dict) -> dict:
    """A saved settings record (config.json, a done marker's "settings") with its paths as
    `to_json` writes them now: runs before it wrote absolute ones. Retired settings stay: a
    record tells what was run."""
    out = dict(record)
    for f in dataclasses.fields(TrainSettings):
        value = out.get(f.name)
        if "Path" not in str(f.type) or value is None:
            continue
        out[f.name] = [portable(v) for v in value] if isinstance(value, list) else portable(value)
    return out


def fields() -> dict[str, dataclasses.Field]:
    """The settings a flag or a recipe key can set, by name."""
    return {f.name: f for f in dataclasses.fields(TrainSettings) if f.name not in RECORDED}


def flag(name: str) -> str:
    """The command-line flag of a setting: distill_epochs -> --distill-epochs."""
    return flag_name(name)


def check_value(name: str, value: Any, where: str) -> None:
    """`value` within setting `name`'s limits (each item of a tuple), else SettingError."""
    check(where, value, spec(fields()[name]), SettingError, as_flag=True)


def _resolved(value: Any, base: Path) -> Any:
    if isinstance(value, Path) and not value.is_absolute():
        return base / value
    if isinstance(value, tuple):
        return tuple(_resolved(v, base) for v in value)
    return value


def parse_flag(name: str, text: str) -> Any:
    """A flag's text as setting `name`'s value (comma lists for tuples), limits checked;
    relative paths resolve against the working directory."""
    value = parse_text(flag(name), text, str(fields()[name].type), SettingError)
    check_value(name, value, flag(name))
    return _resolved(value, Path.cwd())


def _recipe_value(name: str, value: Any, where: str) -> Any:
    """A recipe's value for setting `name`, typed as the field says (YAML lists for tuples)."""
    annotation = str(fields()[name].type)
    element = element_type(annotation)
    label = f"{where}: setting '{name}'"
    if element is None:
        typed = coerce(label, value, annotation, SettingError)
    elif isinstance(value, list):
        typed = tuple(
            coerce(f"{where}: setting '{name}[{i}]'", v, element, SettingError) for i, v in enumerate(value)
        )
    else:
        raise SettingError(f"{where}: {name} must be a list, e.g. {name}: [a, b], got {shown(value)}")
    check_value(name, typed, f"{where}: {name}")
    return _resolved(typed, PROJECT_ROOT)


@dataclass
class Recipe:
    """A recipe file: its settings, or the recipes it chains, and its SHA-256."""

    path: Path
    sha256: str
    values: dict[str, Any]
    chain: tuple[Path, ...] = ()


def read_recipe(path: Path) -> Recipe:
    """Load and check recipes/<x>.yaml: a mapping of setting: value (the flags' names with _),
    or `chain: [recipes/a.yaml, ...]` (with an optional `ship:`) to run several in order.
    Every problem (unreadable or special file, bad YAML, unknown key, wrong type, out of
    range) is a one-line SettingError naming the file and the key."""
    where = f"recipe {path}"
    try:
        data = read_bounded(path, MAX_RECIPE_BYTES)
    except PathRefused as exc:
        raise SettingError(f"{where}: {exc}; pass a YAML recipe file (recipes/*.yaml)") from None
    except OSError as exc:
        raise SettingError(f"{where} cannot be read ({exc.strerror or exc}); check the path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingError(
            f"{where} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    loaded = parse_yaml(text, where, SettingError)
    if not isinstance(loaded, dict):
        raise SettingError(
            f"{where} must be a mapping of setting: value (e.g. distill_epochs: 80), got {shown(loaded)}"
        )
    sha256 = hashlib.sha256(data).hexdigest()
    known = fields()
    if "chain" in loaded:
        extra = sorted(str(k) for k in loaded if k not in ("chain", "ship"))
        if extra:
            raise SettingError(f"{where}: a chain recipe holds only chain: and ship:, not {extra[0]!r}")
        steps = loaded["chain"]
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s for s in steps):
            raise SettingError(f"{where}: chain must be a list of recipe files, e.g. [recipes/a.yaml]")
        values = {"ship": _recipe_value("ship", loaded["ship"], where)} if "ship" in loaded else {}
        return Recipe(Path(path), sha256, values, tuple(PROJECT_ROOT / s for s in steps))
    values = {}
    for key, value in migrate(loaded, f"{where}: ").items():
        if key not in known:
            raise SettingError(
                f"{where}: unknown setting {shown(key)}; the keys are the flags' names with _ "
                f"(e.g. distill_epochs); see tools/train_mobilenet.py --help"
            )
        values[key] = _recipe_value(key, value, where)
    return Recipe(Path(path), sha256, values)


def validate(settings: TrainSettings, check_files: bool = True) -> TrainSettings:
    """Rules that span settings (and, with `check_files`, that input checkpoints exist)."""
    s = settings
    for name, value in vars(s).items():
        if name in fields() and value is not None:
            check_value(name, value, flag(name))
    if not NAME_PATTERN.match(s.name):
        raise SettingError(f"--name {s.name!r}: use 1-64 letters, digits, '.', '_' or '-' (a folder name)")
    if not 0 <= s.average_last <= s.distill_epochs:
        raise SettingError(
            f"--average-last must be between 0 and --distill-epochs ({s.distill_epochs}), "
            f"got {s.average_last}"
        )
    if not 0 <= s.finetune_average_last <= s.finetune_epochs:
        raise SettingError(
            f"--finetune-average-last must be between 0 and --finetune-epochs ({s.finetune_epochs}), "
            f"got {s.finetune_average_last}"
        )
    if s.soup and s.keep_ratio < 1:
        raise SettingError("--soup averages unpruned fine-tunes; it needs --keep-ratio 1")
    if s.wise_alpha < 1 and s.keep_ratio < 1:
        raise SettingError("--wise-alpha mixes back an unpruned fine-tune; it needs --keep-ratio 1")
    if s.wise_alpha < 1 and s.init_student is None:
        raise SettingError(
            "--wise-alpha < 1 mixes the student back towards --init-student; set --init-student "
            "(or --wise-alpha 1)"
        )
    soup = [path.resolve() for path in s.soup]
    if len(set(soup)) < len(soup):
        raise SettingError("--soup names one student twice; a soup takes each fine-tune once")
    own = (s.runs / s.name / "student.pt").resolve()
    if own in soup:
        raise SettingError(
            f"--soup lists this run's own student ({portable(own)}), which the soup holds already; "
            "list only the other fine-tunes"
        )
    if check_files:  # --soup students are checked when the run reaches prune (they may be training)
        for path in (*s.teachers, *([s.init_student] if s.init_student else [])):
            if not path.is_file():
                problem = "is not a regular file" if path.exists() else "does not exist"
                raise SettingError(
                    f"checkpoint {portable(path)} {problem}; pass a .pt file written by a finished run"
                )
    return s


def build_settings(*layers: dict[str, Any]) -> TrainSettings:
    """TrainSettings from the defaults with each layer's values on top (later layers win)."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update({k: v for k, v in layer.items() if v is not None})
    return TrainSettings(**values)
