"""Bench scripts loaded by path, for tests of what they compute.

bench/ is not a package, and putting it on `sys.path` would let bench/fakeserver.py shadow
the `fakeserver` package; so each script is loaded from its file, and registered under its
plain name, which is how bench scripts import one another (`from simulation import ...`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["BENCH", "load"]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """bench/<name>.py as a module (once; later calls return the same module)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up; scripts import by name
    spec.loader.exec_module(module)
    return module
