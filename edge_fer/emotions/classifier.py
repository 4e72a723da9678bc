"""Emotion classifiers: the int8 ExecuTorch program (shipped) and the float eager student.

Both take uint8 gray faces (N, S, S) already cropped by `preprocess.prepare_face` and return
per-face class probabilities (N, 7). The `.pte` runs on ExecuTorch's C++ runtime with XNNPACK,
by default through `edge_fer.native` (ctypes, no torch in the process); the `pybind` runtime
goes through executorch's own Python extension, which needs `import torch` (~190 MB more RSS,
~1 s more start-up). Neither imports `executorch.runtime`, which pulls in the export stack.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_fer.config import choices
from edge_fer.contracts import model_card
from edge_fer.contracts.model_card import ModelCard
from edge_fer.core import safe_io
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec, normalize

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
        try:
            out = self._module.method_meta("forward").output_tensor_meta(0).sizes()
            self.output_sizes = tuple(int(s) for s in out)
        except (RuntimeError, AttributeError, IndexError):
            self.output_sizes = (self.input_sizes[0], len(EMOTIONS))

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
    """The model card's path: beside the program, `.json` (edge_fer.contracts.model_card)."""
    return model_card.card_path(model_path)


def write_metadata(model_path: Path, metadata: ModelCard | dict) -> None:
    """Write the model's card beside it, atomically; a dict (e.g. a card as read from its file,
    edited) is checked and migrated first, so no card that cannot be read is ever written."""
    card = metadata if isinstance(metadata, ModelCard) else _as_model_error(model_card.from_json, metadata)
    model_card.write(model_path, card)


def read_card(model_path: Path) -> ModelCard:
    """The model card beside a program, checked: every way it can be wrong (missing, not a
    regular file, too big, not UTF-8 JSON, a value of the wrong type or outside what can work,
    a newer format) is a ModelError naming the file."""
    return _as_model_error(model_card.read, model_path)


def read_metadata(model_path: Path) -> dict:
    """The checked model card as its JSON object (see `read_card`)."""
    return read_card(model_path).to_json()


def _as_model_error(read: Callable[[Any], ModelCard], source: Any) -> ModelCard:
    try:
        return read(source)
    except model_card.CardError as exc:
        raise ModelError(str(exc)) from None


@dataclass(frozen=True)
class Calibration:
    """How logits become calibrated probabilities: softmax(logits * scale + bias), per class.
    Temperature scaling is the special case scale = 1/T, bias = 0; none is scale 1, bias 0."""

    scale: tuple[float, ...] = (1.0,) * len(EMOTIONS)
    bias: tuple[float, ...] = (0.0,) * len(EMOTIONS)

    @classmethod
    def of(cls, card: ModelCard | None) -> Calibration:
        """The card's calibration map, or none (scale 1, bias 0)."""
        if card is None or card.calibration is None:
            return cls()
        return cls(card.calibration.scale, card.calibration.bias)

    def __post_init__(self) -> None:
        # Built once, not per frame: the map runs on every classified batch.
        object.__setattr__(self, "_scale", np.asarray(self.scale, np.float32))
        object.__setattr__(self, "_bias", np.asarray(self.bias, np.float32))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 7) of logits (N, 7), float32."""
        return softmax(np.asarray(logits, np.float32) * self._scale + self._bias)


class PteClassifier:
    """The shipped int8 student, run by ExecuTorch's XNNPACK backend."""

    def __init__(
        self, path: Path, threads: int = 1, spec: PreprocessSpec | None = None, runtime: str = "auto"
    ) -> None:
        path = Path(path)
        head = read_head(path, 8)
        if len(head) < 8 or head[4:6] != PTE_MAGIC:
            raise ModelError(f"{path} is not an ExecuTorch program (.pte); re-export the model")
        self.path, self.threads = path, threads
        self.card = read_card(path) if spec is None else None
        self.calibration = Calibration.of(self.card)
        self.spec = spec or self.card.preprocess
        self.classes = EMOTIONS
        self._program, self.runtime = open_program(path, threads, runtime)
        sizes = self._program.input_sizes
        self.batch = sizes[0]  # the fixed batch, or the upper bound of a dynamic one
        self.dynamic_batch = self.card is not None and self.card.dynamic_batch
        if len(sizes) != 4 or tuple(sizes[1:]) != (1, self.spec.input_size, self.spec.input_size):
            self._program.close()
            raise ModelError(
                f"{path} takes input {tuple(sizes)}, but its metadata says "
                f"{self.spec.input_size}x{self.spec.input_size} gray faces"
            )
        out = tuple(getattr(self._program, "output_sizes", (self.batch, len(self.classes))))
        if out != (self.batch, len(self.classes)):
            self._program.close()
            raise ModelError(
                f"{path} outputs {out} per batch of {self.batch}, but this edge-fer needs "
                f"({self.batch}, {len(self.classes)}): one score per emotion; re-export the model"
            )

    @property
    def metadata(self) -> dict:
        """The model card as its JSON object ({} for a program opened with its own spec)."""
        return self.card.to_json() if self.card is not None else {}

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
        """Calibrated class probabilities (N, 7) for uint8 faces (N, S, S)."""
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.calibration.probabilities(self.logits(normalize(faces, self.spec)))

    def info(self) -> dict[str, str]:
        return {
            "file": str(self.path),
            "name": self.card.name if self.card is not None and self.card.name is not None else "?",
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
        self.spec = PreprocessSpec.from_dict(ckpt["preprocess"])  # load_model checked it
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


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a model file (never more: a model may be GBs), refusing
    anything but an existing regular file with a ModelError."""
    try:
        safe_io.check_length(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ModelError(
            f"model file {path} does not exist; set model.path in the config "
            "or train one with tools/train_mobilenet.py"
        ) from None
    except (OSError, safe_io.PathRefused) as exc:
        raise ModelError(
            f"model file {path} cannot be read ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ModelError(
                f"model file {path} is {safe_io.kind_of(mode)}, not a model file; set model.path"
            )
        return os.read(fd, size)
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _probe_faces(n: int, size: int) -> np.ndarray:
    """n distinct, deterministic uint8 faces: black, white, gradients, noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    kinds = [
        np.zeros((size, size)),
        np.full((size, size), 255.0),
        np.tile(ramp, (size, 1)),
        np.tile(ramp[:, None], (1, size)),
    ]
    faces = [kinds[i] if i < len(kinds) else rng.integers(0, 256, (size, size)) for i in range(n)]
    return np.stack(faces).astype(np.uint8)


def accept(classifier: Classifier, path: Path) -> None:
    """The acceptance test a model passes before the daemon uses it: batches of one face,
    of the program's batch and of one more (padding, chunking, a dynamic batch) give finite
    probabilities, one per class, summing to 1, that differ between different faces."""
    batch = int(getattr(classifier, "batch", 4))
    size = classifier.spec.input_size
    seen = []
    for n in sorted({1, max(batch, 4), batch + 1}):
        faces = _probe_faces(n, size)
        try:
            probs = np.asarray(classifier.classify_batch(faces))
        except Exception as exc:  # noqa: BLE001 - any failure to run is the model's
            raise ModelError(
                f"model {path} fails on a batch of {n} faces ({type(exc).__name__}: {str(exc)[:200]}); "
                "check its metadata (input.dynamic_batch) or re-export it"
            ) from None
        if probs.shape != (n, len(classifier.classes)):
            raise ModelError(
                f"model {path} gives scores shaped {probs.shape} for {n} faces, expected "
                f"({n}, {len(classifier.classes)}); re-export it"
            )
        if not np.isfinite(probs).all():
            raise ModelError(
                f"model {path} gives non-finite scores (NaN or infinity) on test faces; "
                "check its preprocess values or re-export it"
            )
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3) or (probs < 0).any():
            raise ModelError(f"model {path} gives scores that are not probabilities; re-export it")
        seen.append(probs)
    probs = seen[-1]
    if len(probs) >= 3 and np.ptp(probs, axis=0).max() < 1e-6:
        raise ModelError(
            f"model {path} gives every test face the same scores (its preprocess mean/std or "
            "weights are broken); re-export it"
        )


def load_classifier(path: Path, threads: int = 1, runtime: str = "auto") -> Classifier:
    """A classifier for a `.pte` program or a float `.pt` student checkpoint, accepted by
    `accept`. Every failure, whatever raised it, is a ModelError naming the file."""
    path = Path(path)
    try:
        classifier: Classifier = (
            TorchClassifier(path, threads)
            if path.suffix == ".pt"
            else PteClassifier(path, threads, runtime=runtime)
        )
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary owns every failure
        raise ModelError(f"model {path} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        accept(classifier, path)
    except BaseException:
        classifier.close()
        raise
    return classifier
