"""A script of the checkout (a benchmark, a deploy helper) imported as a module, for a test of
its functions. Scripts import their neighbours by bare name (`from common import ...`), as
Python allows when it runs a script: its folder comes first on the path. `load_script` gives
the script the same view while it loads, by a finder for that folder alone, and leaves
`sys.path` as it was."""

from __future__ import annotations

import importlib.util
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType


class _Neighbours(MetaPathFinder):
    """Finds top-level modules in one folder, and nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        return PathFinder.find_spec(name, [self.folder]) if path is None else None


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The script at `path` as a fresh module called `name` (by default its file's name; its
    `__main__` block does not run); its neighbours in the same folder are importable while it
    loads. The module is not put in sys.modules."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python script")
    module = importlib.util.module_from_spec(spec)
    finder = _Neighbours(path.parent)
    sys.meta_path.append(finder)  # after the usual finders: an installed module still wins
    try:
        spec.loader.exec_module(module)
    finally:
        sys.meta_path.remove(finder)
    return module
