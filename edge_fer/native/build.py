"""Build `et_runner.cpp` against the installed executorch wheel (`edge-fer-build-runtime`).

The library's name carries the executorch version, the CPU architecture and a digest of the
source and of the wheel's location, so a stale or foreign build is never picked up.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from edge_fer.core import safe_io
from edge_fer.core.user_input import FlagParser, path_arg

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("et_runner.cpp")
DEFAULT_BUILD_DIR = Path(__file__).with_name("_build")
# The runtime, the CPU kernels for any op left outside the delegate, the XNNPACK delegate and
# its thread pool. Kernels and delegate register themselves from static initializers, so they
# are linked with --no-as-needed.
LINKED_LIBRARIES = (
    "executorch",
    "executorch_kernels_optimized",
    "executorch_backend_xnnpack",
    "executorch_threadpool",
)
COMPILE_TIMEOUT_S = 600


class NativeBuildError(RuntimeError):
    """The runner library cannot be built or found; the message says what to do."""


def executorch_root() -> Path:
    """The installed executorch package folder, found without importing it (it imports torch)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise NativeBuildError(
            "executorch's runtime is not installed; in the edge-fer checkout run "
            "pip install --no-deps -r deploy/requirements-runtime.txt"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for needed in ("include/executorch/extension/module/module.h", "lib/libexecutorch.so"):
        if not (root / needed).is_file():
            raise NativeBuildError(
                f"the executorch wheel at {root} has no {needed}; install the "
                "pinned executorch==1.5.1, which ships its C++ runtime"
            )
    return root


def library_path(build_dir: Path | None = None) -> Path:
    """Where the runner for this source, executorch wheel and architecture lives."""
    root = executorch_root()
    digest = hashlib.sha256(SOURCE.read_bytes() + str(root).encode()).hexdigest()[:12]
    version = importlib.metadata.version("executorch")
    name = f"libet_runner-{version}-{platform.machine()}-{digest}.so"
    return (build_dir or DEFAULT_BUILD_DIR) / name


def find_compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler or not shutil.which(compiler):
        raise NativeBuildError(
            "no C++ compiler found to build the ExecuTorch runner; install "
            "one (sudo apt install g++) or set CXX"
        )
    return compiler


def compile_command(compiler: str, root: Path, output: Path) -> list[str]:
    lib = root / "lib"
    include = root / "include"
    return [
        compiler,
        "-std=c++17",
        "-O2",
        "-shared",
        "-fPIC",
        "-Wno-deprecated-declarations",
        # What the wheel's executorch-config.cmake asks consumers to compile with.
        "-DC10_USING_CUSTOM_GENERATED_MACROS",
        "-DET_EVENT_TRACER_ENABLED",
        f"-I{include}",
        f"-I{include / 'executorch/runtime/core/portable_type/c10'}",
        str(SOURCE),
        f"-L{lib}",
        "-Wl,--no-as-needed",
        *(f"-l{name}" for name in LINKED_LIBRARIES),
        "-Wl,--as-needed",
        f"-Wl,-rpath,{lib}",
        "-o",
        str(output),
    ]


def build_library(build_dir: Path | None = None) -> Path:
    """Compile the runner (a few seconds) and return its path; the file appears atomically."""
    target = library_path(build_dir)
    compiler = find_compiler()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise PermissionError(13, "Permission denied (read-only or not ours)")
    except OSError as exc:
        raise NativeBuildError(
            f"cannot create {target.parent} ({exc.strerror}); run the build "
            "as the user who installed edge-fer"
        ) from None
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    log_path = target.parent / "build.log"
    command = compile_command(compiler, executorch_root(), partial)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeBuildError(f"running {compiler} failed: {exc}") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        reason = errors[0] if errors else f"exit status {done.returncode}"
        try:
            log_path.write_text(" ".join(command) + "\n" + done.stdout + done.stderr)
            where = f"full output in {log_path}"
        except OSError as exc:  # a read-only install (ProtectSystem=strict): still say why
            where = f"no build.log: {exc.strerror}"
        raise NativeBuildError(f"compiling the ExecuTorch runner failed: {reason} ({where})")
    try:  # a loaded older library stays mapped: the rename never rewrites it in place
        safe_io.write_atomic(target, partial.read_bytes(), 0o755)
    except (OSError, safe_io.PathRefused) as exc:
        raise NativeBuildError(
            f"cannot install the runner to {target} ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    for stale in target.parent.glob("libet_runner-*.so"):  # builds for an older source or wheel
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def ensure_library(build_dir: Path | None = None, build: bool = True) -> Path:
    """The runner library, built first if it is missing and `build` is set."""
    target = library_path(build_dir)
    if target.is_file():
        return target
    if not build:
        raise NativeBuildError(f"the ExecuTorch runner is not built ({target}); run edge-fer-build-runtime")
    log.info("building the torch-free ExecuTorch runner (once, a few seconds)")
    return build_library(build_dir)


def main(argv: list[str] | None = None) -> int:
    parser = FlagParser(
        prog="edge-fer-build-runtime",
        description="Build the torch-free ExecuTorch runner the daemon uses to run the .pte.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if it is up to date")
    parser.add_argument(
        "--build-dir",
        type=path_arg,
        default=None,
        help=f"where to put the library (default: {DEFAULT_BUILD_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        path = build_library(args.build_dir) if args.force else ensure_library(args.build_dir)
    except NativeBuildError as exc:
        print(f"edge-fer-build-runtime: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
