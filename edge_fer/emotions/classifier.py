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
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_fer.config import choices
from edge_fer.core import safe_io
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec, SpecError, check_spec, normalize

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
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path: Path, metadata: dict) -> None:
    """Write the model's metadata JSON beside it, atomically."""
    safe_io.write_atomic(metadata_path(model_path), (json.dumps(metadata, indent=2) + "\n").encode(), 0o644)


MAX_METADATA_BYTES = 1 << 20


def read_metadata(model_path: Path) -> dict:
    """Read and check the metadata beside a model file: every way it can be wrong (missing,
    not a regular file, too big, not UTF-8 JSON, a value of the wrong type or outside what
    can work) is a ModelError naming the file."""
    path = metadata_path(model_path)
    try:
        return _read_metadata(model_path, path)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary owns every failure
        raise ModelError(
            f"model metadata {path} cannot be used ({type(exc).__name__}: {exc}); re-export it"
        ) from None


def _read_metadata(model_path: Path, path: Path) -> dict:
    try:
        raw = safe_io.read_bounded(path, MAX_METADATA_BYTES)
    except FileNotFoundError:
        raise ModelError(
            f"model metadata {path} is missing; it must sit beside {model_path} "
            "(re-export with tools/train_mobilenet.py --stages export)"
        ) from None
    except safe_io.PathRefused as exc:
        raise ModelError(f"model metadata: {exc}; re-export it") from None
    except OSError as exc:
        raise ModelError(f"model metadata {path} cannot be read ({exc.strerror or exc})") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"model metadata {path} is not UTF-8 (bad byte at offset {exc.start}); re-export it"
        ) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(
            f"model metadata {path} is not valid JSON ({str(exc)[:120]}); re-export it"
        ) from None
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata {path} must be a JSON object; re-export it")
    missing = {"classes", "preprocess"} - set(meta)
    if missing:
        raise ModelError(f"model metadata {path} lacks {sorted(missing)}; re-export it")
    if not isinstance(meta["classes"], list) or tuple(meta["classes"]) != EMOTIONS:
        raise ModelError(
            f"model {model_path} predicts {str(meta['classes'])[:200]}, "
            f"this edge-fer expects {list(EMOTIONS)}"
        )
    meta["preprocess"] = _checked_spec(path, meta["preprocess"])
    meta["input"] = _checked_input(path, meta.get("input"))
    if "name" in meta and not isinstance(meta["name"], str | int | float):
        raise ModelError(f"model metadata {path}: 'name' must be a string; re-export it")
    read_calibration(path, meta.get("calibration"))  # checked here, applied by the classifier
    return meta


TEMPERATURE_RANGE = (0.05, 20.0)
SCALE_RANGE = (0.05, 20.0)  # per-class logit multipliers: the inverse temperature's range
BIAS_RANGE = (-20.0, 20.0)


@dataclass(frozen=True)
class Calibration:
    """How logits become calibrated probabilities: softmax(logits * scale + bias), per class.
    Temperature scaling is the special case scale = 1/T, bias = 0; none is scale 1, bias 0."""

    scale: tuple[float, ...] = (1.0,) * len(EMOTIONS)
    bias: tuple[float, ...] = (0.0,) * len(EMOTIONS)

    @classmethod
    def from_temperature(cls, temperature: float) -> Calibration:
        return cls(scale=(1.0 / temperature,) * len(EMOTIONS))

    def __post_init__(self) -> None:
        # Built once, not per frame: the map runs on every classified batch.
        object.__setattr__(self, "_scale", np.asarray(self.scale, np.float32))
        object.__setattr__(self, "_bias", np.asarray(self.bias, np.float32))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 7) of logits (N, 7), float32."""
        return softmax(np.asarray(logits, np.float32) * self._scale + self._bias)


def read_calibration(path: Path, calibration: object) -> Calibration:
    """The metadata's `calibration` (written by tools/calibrate.py): `scale` and `bias` (7
    numbers each, vector scaling) or a single `temperature`; no calibration when absent."""
    if calibration is None:
        return Calibration()
    where = f"model metadata {path}: calibration"
    refit = "refit it with tools/calibrate.py"
    if not isinstance(calibration, dict):
        raise ModelError(f"{where} must be an object with scale and bias, or temperature; {refit}")
    if "scale" in calibration or "bias" in calibration:
        if "temperature" in calibration:
            raise ModelError(f"{where} gives both temperature and scale/bias; keep one; {refit}")
        scale = _numbers(where + ".scale", calibration.get("scale"), SCALE_RANGE, refit)
        bias = _numbers(where + ".bias", calibration.get("bias"), BIAS_RANGE, refit)
        return Calibration(scale, bias)
    value = calibration.get("temperature")
    lo, hi = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ModelError(
            f"{where}.temperature is {str(value)[:40]!r}, expected a number in [{lo:g}, {hi:g}]; {refit}"
        )
    return Calibration.from_temperature(float(value))


def _numbers(where: str, value: object, limits: tuple[float, float], refit: str) -> tuple[float, ...]:
    """`value` as one number per emotion, each within `limits`, or a ModelError."""
    lo, hi = limits
    ok = (
        isinstance(value, list)
        and len(value) == len(EMOTIONS)
        and all(not isinstance(v, bool) and isinstance(v, int | float) and lo <= v <= hi for v in value)
    )
    if not ok:
        raise ModelError(
            f"{where} is {str(value)[:60]!r}, expected {len(EMOTIONS)} numbers in [{lo:g}, {hi:g}]; {refit}"
        )
    return tuple(float(v) for v in value)


def _checked_spec(path: Path, data: object) -> dict:
    """The metadata's preprocessing, with every value in a range that can work (metadata
    written before the margin was stored meant 0.1)."""
    try:
        return check_spec(data, default_margin=0.1)
    except SpecError as exc:
        raise ModelError(f"model metadata {path}: {exc}; re-export the model") from None


def _checked_input(path: Path, data: object) -> dict:
    """The metadata's `input` section (optional): `dynamic_batch` must be true or false."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelError(
            f"model metadata {path}: 'input' must be an object such as "
            '{"dynamic_batch": true}; re-export the model'
        )
    dynamic = data.get("dynamic_batch", False)
    if not isinstance(dynamic, bool):
        raise ModelError(
            f"model metadata {path}: input.dynamic_batch must be true or false; re-export the model"
        )
    return {**data, "dynamic_batch": dynamic}


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
        self.metadata = read_metadata(path) if spec is None else {}
        self.calibration = read_calibration(metadata_path(path), self.metadata.get("calibration"))
        self.spec = spec or PreprocessSpec.from_dict(self.metadata["preprocess"])
        self.classes = EMOTIONS
        self._program, self.runtime = open_program(path, threads, runtime)
        sizes = self._program.input_sizes
        self.batch = sizes[0]  # the fixed batch, or the upper bound of a dynamic one
        self.dynamic_batch = bool((self.metadata.get("input") or {}).get("dynamic_batch", False))
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
