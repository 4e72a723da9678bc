"""ExecuTorch without torch: a small C ABI (`et_runner.cpp`) over the runtime libraries the
executorch wheel ships, built once with the system C++ compiler and called through ctypes.

The wheel's Python extension links libtorch, so going through it costs ~190 MB of RSS and ~1 s
of start-up for `import torch`; the daemon needs neither to run a `.pte`.
"""

from edge_fer.native.build import NativeBuildError, build_library, ensure_library, library_path
from edge_fer.native.runner import EtRunner, RunnerError

__all__ = ["EtRunner", "NativeBuildError", "RunnerError", "build_library", "ensure_library", "library_path"]
