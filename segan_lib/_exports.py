"""Lazy public names for the subpackages: importing a package loads none of its modules.

A package's ``__init__`` maps each public name to the module that defines it; the module is
imported on first use of the name. So ``import segan_lib.training`` (or ``segan --help``)
costs nothing, and TensorFlow is loaded only by code that uses a network.
"""
from __future__ import annotations

import importlib


def lazy_exports(package: str, names: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package whose public ``names`` live in its submodules.

    A module is named relative to the package (``"cache"``), or absolutely (``"segan_lib.constants"``)
    for a name the package passes on from a lower layer.
    """

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:  # also how `from package import submodule` falls back to the import system
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        full = module if module.startswith("segan_lib.") else f"{package}.{module}"
        return getattr(importlib.import_module(full), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
