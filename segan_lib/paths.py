"""Every folder the project reads or writes, derived from one root.

Two kinds of folder:
- shipped with the code: the profiles (params/) and the notebooks. In a checkout they are the
  repository's params/ and notebooks/; in an installed wheel, the copies the build put in
  segan_lib/_data/ (setup.py copies them there; the repository's folders stay the one source).
- the project root, where data/, runs/, figures/ (and the tables in it) go, and where a user's own
  params/*.yaml are looked for beside the shipped profiles. In order of precedence: `segan --root DIR`
  (which sets SEGAN_ROOT for the command and every process it starts), the environment variable
  SEGAN_ROOT, else the checkout (the folder holding pyproject.toml) when running from one, or the
  current folder when installed. Relative paths given by a user or a profile are resolved against it.
"""
from __future__ import annotations

import os
from pathlib import Path

from segan_lib.errors import SeganError

_PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_DATA_DIR = _PACKAGE_DIR / "_data"  # only in an installed wheel (never in a checkout: git-ignored)
ROOT_ENV = "SEGAN_ROOT"


def installed() -> bool:
    """True when this segan_lib is an installed wheel (it carries its profiles), False in a checkout."""
    return SHIPPED_DATA_DIR.is_dir()


def project_root() -> Path:
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path.cwd().resolve() if installed() else _PACKAGE_DIR.parent


def pin_root(root: str | os.PathLike | None) -> Path:
    """The root for this process and its children: `root` (--root, an existing folder) if given.

    It goes into SEGAN_ROOT, so that study workers and notebook kernels, which start in other
    folders, use the same root; an installed package falling back to the current folder pins it
    likewise. In a checkout without --root nothing is set (the default is the checkout anyway).
    """
    if root is not None:
        folder = Path(root).expanduser().resolve()
        if not folder.is_dir():
            raise SeganError(f"--root {root}: no such folder (create it first; the project's data/, runs/ "
                             "and figures/ go inside)")
        os.environ[ROOT_ENV] = str(folder)
    elif installed() and not os.environ.get(ROOT_ENV):
        os.environ[ROOT_ENV] = str(project_root())
    return project_root()


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: as given if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p)


def checkout_root() -> Path:
    """The folder holding the package: the repository in a checkout (site-packages when installed)."""
    return _PACKAGE_DIR.parent


def params_dir() -> Path:
    """The shipped profiles (and their data files, _*.yaml)."""
    return SHIPPED_DATA_DIR / "params" if installed() else checkout_root() / "params"


def root_params_dir() -> Path:
    """A user's own profiles: params/ in the project root."""
    return project_root() / "params"


def profile_dirs() -> list[Path]:
    """Where profiles are found, in order; a name in a later folder overrides the same name in an earlier one."""
    shipped, own = params_dir(), root_params_dir()
    return [shipped] if own.resolve() == shipped.resolve() else [shipped, own]


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
    """The shipped notebooks."""
    return SHIPPED_DATA_DIR / "notebooks" if installed() else checkout_root() / "notebooks"
