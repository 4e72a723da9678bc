"""Config sections of reading emotions: the classifier and the per-face label smoothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fer.core.paths import DEFAULT_MODEL
from edge_fer.core.schema import setting
from edge_fer.emotions.labels import LABEL_GROUPS

MAX_THREADS = 16  # the Pi 5 has 4 cores; thousands of threads only slow start-up or crash


@dataclass
class ModelConfig:
    """The emotion classifier."""

    path: Path | None = setting(
        None,
        "the int8 .pte program (metadata .json beside it); null: the model shipped inside the package",
        flag="--model",
        flag_help="model file (.pte, or a float .pt checkpoint)",
    )
    threads: int = setting(
        1,
        "XNNPACK threads for the classifier (faces are tiny: 1 is best)",
        ge=1,
        le=MAX_THREADS,
        flag="--threads",
        flag_help="classifier threads (the Pi 5 has 4 cores; faces are tiny: 1 is best)",
    )
    runtime: str = setting(
        "auto",
        "auto | native (torch-free C++ runner) | pybind (executorch's Python extension, imports torch)",
        choices=("auto", "native", "pybind"),
        flag="--runtime",
        flag_help="how the .pte is run: auto | native (torch-free C++ runner) | pybind",
    )

    @property
    def file(self) -> Path:
        """The model file to load: `path`, or the shipped one."""
        return self.path if self.path is not None else DEFAULT_MODEL


@dataclass
class SmoothingConfig:
    """Per-face label smoothing."""

    window: int = setting(
        30,
        "rolling majority over the mean calibrated probabilities of each face's last K frames",
        ge=1,
        le=1000,
    )
    hysteresis: float = setting(
        0.3,
        "a face's label changes only when another label's mean probability beats it by this much",
        ge=0,
        le=0.5,
    )
    uncertain_below: float = setting(
        0.3,
        "a face is 'uncertain' while its label's mean probability is under this (0: always name a label)",
        ge=0,
        le=0.95,
    )
    groups: str = setting(
        "none",
        "publish coarser labels: none (the 7 emotions) | valence (positive, neutral, negative) | "
        "four (angry+disgust, fear+sad, happy+surprise, neutral)",
        choices=tuple(LABEL_GROUPS),
    )
    min_readable_px: int = setting(
        24,
        "faces smaller than this (main-frame pixels) are tracked and drawn but published as"
        " 'uncertain': the model reads them more than 10 points worse than 48 px faces"
        " (benchmarks/bench_range.py; 0: always name a label)",
        ge=0,
        le=512,
    )
    restart_below: float = setting(
        0.7,
        "restart a face's history when its look correlates below this with the previous frame's"
        " (someone else in the same place); 0 never restarts",
        ge=0,
        lt=1,
    )
