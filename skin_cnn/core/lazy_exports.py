"""Package attributes imported from their module on first use.

A stage's ``__init__`` names what it exports without importing it: importing
:mod:`skin_cnn.evaluation` to read one table must not load every module of the stage, and
importing :mod:`skin_cnn` must not load TensorFlow. :func:`lazy_exports` gives the package the
module-level ``__getattr__`` and ``__dir__`` (PEP 562) that do this.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str],
                 moved: Mapping[str, str] | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package named ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``; it must be in ``sys.modules`` (true while its ``__init__`` runs).
    exports : mapping of str -> str
        Public name -> the module that defines it. A name is imported on first access and stored
        in the package, so later accesses skip ``__getattr__``.
    moved : mapping of str -> str, optional
        Names that left the package -> where they are now: asking for one is an ImportError that
        says where it went (``from package import name`` shows it), not a bare AttributeError.
    """
    namespace = vars(sys.modules[package])
    moved = dict(moved or {})

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value  # the next access skips this function
            return value
        if name in moved:
            raise ImportError(f"{package}.{name} is now {moved[name]}.{name} (from {moved[name]} import {name})")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
