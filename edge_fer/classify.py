"""Emotion classifiers: the int8 ExecuTorch program (shipped) and the float eager student.

Both take uint8 gray faces (N, S, S) already cropped by `preprocess.prepare_face` and return
per-face class probabilities (N, 7). The `.pte` runs on ExecuTorch's C++ runtime with XNNPACK,
by default through `edge_fer.native` (ctypes, no torch in the process); the `pybind` runtime
goes through executorch's own Python extension, which needs `import torch` (~190 MB more RSS,
~1 s more start-up). Neither imports `executorch.runtime`, which pulls in the export stack.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_fer.config import choices
from edge_fer.labels import EMOTIONS
from edge_fer.preprocess import MARGIN_RANGE, PreprocessSpec, normalize

log = logging.getLogger(__name__)

PTE_MAGIC = b"ET"  # ExecuTorch flatbuffers carry the file identifier "ET##" at offset 4


class ModelError(RuntimeError):
    """A model file that cannot be used; the message names the file and the fix."""


class Classifier(Protocol):
    """Emotion probabilities for cropped gray faces."""

    classes: tuple[str, ...]
    spec: PreprocessSpec

    def classify_batch(self, faces: np.ndarray) -> np.ndarray:
        """uint8 faces (N, S, S) -> probabilities (N, len(classes))."""
        ...

    def info(self) -> dict[str, str]:
        """file, name, runtime and threads, as strings (logs, metrics labels)."""
        ...

    def close(self) -> None:
        """Free the model now."""
        ...


class Program(Protocol):
    """A loaded `.pte`: one float32 input and output, batch first."""

    input_sizes: tuple[int, ...]  # as planned; the batch is the upper bound of a dynamic one

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


RUNTIMES = choices("model.runtime")


def _missing_for_pybind() -> list[str]:
    return [m for m in ("torch", "executorch") if importlib.util.find_spec(m) is None]


class PybindProgram:
    """The `.pte` through executorch's Python extension (imports torch, which it links)."""

    def __init__(self, path: Path, threads: int) -> None:
        missing = _missing_for_pybind()
        if missing:
            raise ModelError(
                f"the pybind runtime needs {' and '.join(missing)}, which this install does not "
                "have (the Pi install is torch-free); use model.runtime native, or pip install "
                "'edge-fer[train]'"
            )
        _preflight_pybind(path)
        import torch
        from executorch.extension.pybindings import _C as et

        self._torch = torch
        et._unsafe_reset_threadpool(max(1, threads))  # before loading: the delegate keeps the pool
        try:
            self._module = et._load_for_executorch(str(path))
            sizes = self._module.method_meta("forward").input_tensor_meta(0).sizes()
        except RuntimeError as exc:
            raise ModelError(
                f"ExecuTorch could not load {path}: {exc}; re-export or re-copy the model"
            ) from None
        self.input_sizes = tuple(int(s) for s in sizes)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._module.forward((self._torch.from_numpy(x),))[0].numpy()

    def close(self) -> None:
        self._module = None


_PREFLIGHT = """
import sys
from executorch.extension.pybindings import _C as et
module = et._load_for_executorch(sys.argv[1])
module.method_meta("forward").input_tensor_meta(0).sizes()
"""


def _preflight_pybind(path: Path) -> None:
    """Load the program once in a child process: some corrupt programs crash the Python
    extension's loader outright (a segfault would take the daemon with it)."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _PREFLIGHT, str(path)], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"cannot check {path} with executorch's Python extension ({exc})") from None
    if done.returncode < 0:
        raise ModelError(
            f"{path} crashes ExecuTorch's loader (signal {-done.returncode}): the "
            "program is corrupt; re-export or re-copy the model"
        )


def open_program(path: Path, threads: int, runtime: str = "auto") -> tuple[Program, str]:
    """Load a `.pte` with the chosen runtime; `auto` prefers the torch-free native runner and
    builds it on first use, falling back to the Python extension with a warning."""
    from edge_fer.native import EtRunner, NativeBuildError, RunnerError, ensure_library

    if runtime not in RUNTIMES:
        raise ModelError(f"model runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime != "pybind":
        try:
            return EtRunner(ensure_library(), path, max(1, threads)), "native"
        except NativeBuildError as exc:
            if runtime == "native":
                raise ModelError(f"model.runtime is native, but {exc}") from None
            if _missing_for_pybind():
                raise ModelError(f"{exc} (no fallback: this install has no torch)") from None
            log.warning(
                "falling back to executorch's Python extension, which imports torch "
                "(~190 MB more memory): %s",
                exc,
            )
        except RunnerError as exc:
            raise ModelError(str(exc)) from None
    return PybindProgram(path, threads), "pybind"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def metadata_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path: Path, metadata: dict) -> None:
    """Write the model's metadata JSON beside it, atomically."""
    path = metadata_path(model_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    tmp.replace(path)


def read_metadata(model_path: Path) -> dict:
    """Read and check the metadata beside a model file."""
    path = metadata_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"model metadata {path} is missing; it must sit beside {model_path} "
            "(re-export with tools/train_mobilenet.py --stages export)"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"model metadata {path} is not valid JSON ({exc}); re-export it") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata {path} must be a JSON object; re-export it")
    missing = {"classes", "preprocess"} - set(meta)
    if missing:
        raise ModelError(f"model metadata {path} lacks {sorted(missing)}; re-export it")
    if not isinstance(meta["classes"], list) or tuple(meta["classes"]) != EMOTIONS:
        raise ModelError(
            f"model {model_path} predicts {meta['classes']}, this edge-fer expects {list(EMOTIONS)}"
        )
    meta["preprocess"] = _checked_spec(path, meta["preprocess"])
    return meta


def _checked_spec(path: Path, data: object) -> dict:
    """The metadata's preprocessing, with every value in a range that can work."""
    if not isinstance(data, dict):
        raise ModelError(
            f"model metadata {path}: 'preprocess' must be an object with input_size, "
            "margin, mean and std; re-export the model"
        )

    def number(key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ModelError(
                f"model metadata {path}: preprocess.{key} is {value!r}, not a number; re-export the model"
            )
        return float(value)

    size, margin = number("input_size", 48), number("margin", 0.1)
    mean, std = number("mean", 0.5), number("std", 0.5)
    if size != int(size) or not 8 <= size <= 512:
        raise ModelError(
            f"model metadata {path}: preprocess.input_size {size:g} must be a whole "
            "number of pixels between 8 and 512"
        )
    lo, hi = MARGIN_RANGE
    if not lo <= margin <= hi:
        raise ModelError(f"model metadata {path}: preprocess.margin {margin:g} must be in [{lo:g}, {hi:g}]")
    if not 1e-3 <= std <= 1e3:
        raise ModelError(
            f"model metadata {path}: preprocess.std {std:g} must be positive (every "
            "face would get the same label); re-export the model"
        )
    return {"input_size": int(size), "margin": margin, "mean": mean, "std": std}


class PteClassifier:
    """The shipped int8 student, run by ExecuTorch's XNNPACK backend."""

    def __init__(
        self, path: Path, threads: int = 1, spec: PreprocessSpec | None = None, runtime: str = "auto"
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"model file {path} does not exist; set model.path in the config "
                "or train one with tools/train_mobilenet.py"
            )
        head = path.read_bytes()[:8]
        if len(head) < 8 or head[4:6] != PTE_MAGIC:
            raise ModelError(f"{path} is not an ExecuTorch program (.pte); re-export the model")
        self.path, self.threads = path, threads
        self.metadata = read_metadata(path) if spec is None else {}
        self.spec = spec or PreprocessSpec.from_dict(self.metadata["preprocess"])
        self.classes = EMOTIONS
        self._program, self.runtime = open_program(path, threads, runtime)
        sizes = self._program.input_sizes
        self.batch = sizes[0]  # the fixed batch, or the upper bound of a dynamic one
        self.dynamic_batch = bool(self.metadata.get("input", {}).get("dynamic_batch", False))
        if tuple(sizes[1:]) != (1, self.spec.input_size, self.spec.input_size):
            raise ModelError(
                f"{path} takes input {tuple(sizes)}, but its metadata says "
                f"{self.spec.input_size}x{self.spec.input_size} gray faces"
            )

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits for normalized input (N, 1, S, S): all faces in one call when the program
        takes them, else in program-sized batches."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(x), len(self.classes)), np.float32)
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
            if len(chunk) < self.batch and not self.dynamic_batch:  # fixed batch: pad the tail
                chunk = np.concatenate(
                    [chunk, np.zeros((self.batch - len(chunk), *chunk.shape[1:]), np.float32)]
                )
            out[start : start + self.batch] = self._program.run(chunk)[: len(x) - start]
        return out

    def classify_batch(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return softmax(self.logits(normalize(faces, self.spec)))

    def info(self) -> dict[str, str]:
        return {
            "file": str(self.path),
            "name": str(self.metadata.get("name", "?")),
            "runtime": self.runtime,
            "threads": str(self.threads),
        }

    def close(self) -> None:
        """Free the program now (its thread pool is shared process-wide)."""
        self._program.close()


class TorchClassifier:
    """The float student in eager PyTorch, from a training checkpoint (debugging, comparison)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import torch

        from edge_fer.nets.checkpoint import CheckpointError, load_model

        try:
            model, ckpt = load_model(Path(path))
        except CheckpointError as exc:
            raise ModelError(str(exc)) from None
        torch.set_num_threads(max(1, threads))
        self._torch = torch
        self.path, self.threads = Path(path), threads
        self.model = model
        self.spec = PreprocessSpec.from_dict(_checked_spec(Path(path), ckpt.get("preprocess")))
        self.classes = EMOTIONS

    def info(self) -> dict[str, str]:
        return {
            "file": str(self.path),
            "name": "float checkpoint",
            "runtime": "torch",
            "threads": str(self.threads),
        }

    def close(self) -> None:
        pass

    def classify_batch(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        x = self._torch.from_numpy(normalize(faces, self.spec))
        with self._torch.no_grad():  # in chunks: a whole test set at once needs GBs of activations
            logits = np.concatenate([self.model(x[i : i + 256]).numpy() for i in range(0, len(x), 256)])
        return softmax(logits)


def load_classifier(path: Path, threads: int = 1, runtime: str = "auto") -> Classifier:
    """A classifier for a `.pte` program or a float `.pt` student checkpoint."""
    path = Path(path)
    if path.suffix == ".pt":
        return TorchClassifier(path, threads)
    return PteClassifier(path, threads, runtime=runtime)
