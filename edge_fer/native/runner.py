"""ctypes binding of `et_runner.cpp`: load a `.pte` and run float32 batches through it."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

_ERROR_BYTES = 512
_MAX_DIMS = 8


class RunnerError(RuntimeError):
    """The library or the program could not be loaded or run."""


def _declare(lib: ctypes.CDLL) -> None:
    handle, sizes = ctypes.c_void_p, ctypes.c_void_p
    lib.etr_open.restype = handle
    lib.etr_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    for name in ("etr_input_sizes", "etr_output_sizes"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [handle, sizes, ctypes.c_int]
    lib.etr_run.restype = ctypes.c_int64
    lib.etr_run.argtypes = [
        handle,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.etr_close.restype = None
    lib.etr_close.argtypes = [handle]


class EtRunner:
    """One loaded program with a single float32 input and output, batch first.

    The batch may be anything from 1 to the planned size when the program was exported with a
    dynamic batch; a fixed-batch program must be given exactly its batch.
    """

    def __init__(self, library: Path, program: Path, threads: int = 1) -> None:
        try:
            self._lib = ctypes.CDLL(str(library))
        except OSError as exc:
            raise RunnerError(
                f"cannot load the ExecuTorch runner {library}: {exc}; rebuild it "
                "with edge-fer-build-runtime --force"
            ) from None
        _declare(self._lib)
        self._error = ctypes.create_string_buffer(_ERROR_BYTES)
        self._handle = self._lib.etr_open(str(program).encode(), int(threads), self._error, _ERROR_BYTES)
        if not self._handle:
            raise RunnerError(f"ExecuTorch could not load {program}: {self._message()}")
        self.input_sizes = self._sizes(self._lib.etr_input_sizes)
        self.output_sizes = self._sizes(self._lib.etr_output_sizes)

    def _message(self) -> str:
        return self._error.value.decode(errors="replace")

    def _sizes(self, query) -> tuple[int, ...]:
        sizes = np.zeros(_MAX_DIMS, np.int64)
        ndim = query(self._handle, sizes.ctypes.data, _MAX_DIMS)
        return tuple(int(s) for s in sizes[:ndim])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch `x` shaped (n, *input_sizes[1:]), n <= input_sizes[0]."""
        if self._handle is None:
            raise RunnerError("the program was closed")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_sizes[1:]:
            raise RunnerError(
                f"input shape {x.shape} does not match the program's "
                f"(N, {', '.join(map(str, self.input_sizes[1:]))})"
            )
        out = np.empty((len(x), *self.output_sizes[1:]), np.float32)
        count = self._lib.etr_run(
            self._handle, x.ctypes.data, len(x), out.ctypes.data, out.size, self._error, _ERROR_BYTES
        )
        if count < 0:
            raise RunnerError(self._message())
        if count != out.size:
            raise RunnerError(
                f"the program returned {count} values for a batch of {len(x)}, expected {out.size}"
            )
        return out

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.etr_close(self._handle)
        self._handle = None

    def __del__(self) -> None:
        self.close()
