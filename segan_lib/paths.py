"""Every folder the project reads or writes, derived from one root.

The root is the repository checkout (the folder holding pyproject.toml), or
SEGAN_ROOT when set (e.g. to keep data, runs and figures on a scratch disk of a
GPU server, or in a temporary folder for a test). Relative paths given by a user
or a profile are resolved against it. Profiles and notebooks are part of the
code and always come from the checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    env = os.environ.get("SEGAN_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return _PACKAGE_DIR.parent


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: as given if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p)


def checkout_root() -> Path:
    return _PACKAGE_DIR.parent


def params_dir() -> Path:
    return checkout_root() / "params"


def data_dir() -> Path:
    return project_root() / "data"


def phantom_dir() -> Path:
    return data_dir() / "phantom"


def cache_dir() -> Path:
    return data_dir() / "cache"


def splits_fallback_dir() -> Path:
    """Where splits go when the data folder itself cannot be written to."""
    return data_dir() / "splits"


def runs_dir() -> Path:
    return project_root() / "runs"


def figures_dir() -> Path:
    return project_root() / "figures"


def notebooks_dir() -> Path:
    return checkout_root() / "notebooks"
