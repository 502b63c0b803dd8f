"""What every layout reader shares: contrast names, `Problem`, the `Layout` base, listing helpers.

`Layout` implements listing for folder-per-case releases (`candidate_dirs`, `matches`,
`scan`, `list_cases`) on top of two methods each release defines (`is_case_dir`,
`case_from_dir`); the helpers list folders without hidden entries, resolve a case's
grade, drop duplicate case ids and build a lazy `Case` whose volumes are read on demand.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator, Mapping

from segan_lib.data.case import MASK_KEY, Case
from segan_lib.data.volume_io import read_volume
from segan_lib.errors import DataError

# every name a release uses for a contrast -> the project's name
CONTRAST_ALIASES: dict[str, str] = {
    "t1": "t1",
    "t1w": "t1",
    "t1n": "t1",
    "native t1": "t1",
    "t1-native": "t1",
    "t1c": "t1c",
    "t1ce": "t1c",
    "t1gd": "t1c",
    "t1-gd": "t1c",
    "t1+c": "t1c",
    "t1+gd": "t1c",
    "t1post": "t1c",
    "t1-post": "t1c",
    "t2": "t2",
    "t2w": "t2",
    "flair": "flair",
    "t2f": "flair",
    "t2-flair": "flair",
    "t2flair": "flair",
    "t2_flair": "flair",
    # spellings of nnU-Net and other conversions (matched without separators, see normalize_contrast)
    "t1wce": "t1c",
    "t1wgd": "t1c",
    "t1contrast": "t1c",
    "t1postcontrast": "t1c",
    "t2wflair": "flair",
}


def _squeezed(name: str) -> str:
    """`name` lower-cased without spaces, hyphens and underscores ('T1-Gd' -> 't1gd')."""
    return "".join(ch for ch in name.strip().lower() if ch not in " -_")


_SQUEEZED_ALIASES = {_squeezed(alias): contrast for alias, contrast in CONTRAST_ALIASES.items()}


def normalize_contrast(name: str) -> str | None:
    """The project's contrast name ('t1', 't1c', 't2', 'flair') for a release's name, or None.

    Spaces, hyphens and underscores do not count ('T1_Gd', 'T1 CE', 'T2-FLAIR' are understood)."""
    return CONTRAST_ALIASES.get(name.strip().lower()) or _SQUEEZED_ALIASES.get(_squeezed(name))


# folders that hold cases and what they say about the grade
_CONTAINERS: dict[str, str | None] = {"HGG": "HGG", "LGG": "LGG"}


@dataclass
class Problem:
    """A case (or file) dropped at listing time, and why."""

    key: str  # case id, or a path when no case id applies
    error: DataError


def _problem(case_id: str, what: str, path: Path | None = None) -> Problem:
    """A Problem of one case, its DataError naming the case (and the file, when given)."""
    return Problem(case_id, DataError(what, case_id=case_id, path=path))


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


class UnreadableFolderWarning(UserWarning):
    """A folder of a data set cannot be listed (permission denied ...): whatever it holds is left out."""


def _subdirs(folder: Path, unreadable: list | None = None) -> Iterator[Path]:
    """Visible sub-folders of `folder`, sorted by name (nothing if it cannot be listed, which is
    recorded in `unreadable` as (folder, exception) when given)."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not _hidden(e.name) and e.is_dir()]
    except OSError as exc:
        if unreadable is not None:
            unreadable.append((Path(folder), exc))
        return iter(())
    return iter(Path(e.path) for e in sorted(entries, key=lambda e: e.name))


def _listdir(folder: Path, unreadable: list | None = None) -> list[str]:
    """Visible names in `folder`, sorted ([] if it cannot be listed, recorded in `unreadable` when given)."""
    try:
        return sorted(n for n in os.listdir(folder) if not _hidden(n))
    except OSError as exc:
        if unreadable is not None:
            unreadable.append((Path(folder), exc))
        return []


def _listable(folder: Path, unreadable: list | None) -> bool:
    """False (recorded in `unreadable`) when `folder` cannot be listed; True without a record to keep."""
    if unreadable is None:
        return True
    try:
        with os.scandir(folder):
            pass
    except OSError as exc:
        unreadable.append((Path(folder), exc))
        return False
    return True


def _why(exc: OSError) -> str:
    return "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or type(exc).__name__)


def _warn_unreadable(unreadable: list, root: Path) -> None:
    """One UnreadableFolderWarning naming the folders of `root` that could not be listed, if any."""
    if not unreadable:
        return
    listing = ", ".join(f"{folder} ({_why(exc)})" for folder, exc in unreadable[:10])
    more = f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
    warnings.warn(f"cannot list {len(unreadable)} folder{'s' if len(unreadable) != 1 else ''} of the data set at "
                  f"{root}: {listing}{more}; whatever they hold is left out (make them readable if they hold cases)",
                  UnreadableFolderWarning, stacklevel=4)


def _resolve_grade(case_id: str, folder_grade: str | None, grades: Mapping[str, str | None] | None):
    mapped = grades.get(case_id) if grades else None
    if folder_grade is not None:
        if mapped is not None and mapped != folder_grade:
            warnings.warn(
                f"case {case_id}: the grade mapping says {mapped} but the case sits in a {folder_grade} "
                f"folder; using {folder_grade}",
                stacklevel=4,
            )
        return folder_grade
    return mapped


class Layout:
    """Base of the per-release readers."""

    key: str = ""
    title: str = ""  # spelled-out name for people
    pattern: str = ""  # one-line description of the files, for error messages
    container_names: Mapping[str, str | None] = _CONTAINERS

    # --- to implement -------------------------------------------------------------------
    def is_case_dir(self, folder: Path) -> bool:
        raise NotImplementedError

    def case_from_dir(
        self, folder: Path, grade: str | None, require_label: bool
    ) -> tuple[Case | None, list[Problem]]:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------
    def candidate_dirs(self, root: Path, unreadable: list | None = None) -> Iterator[tuple[Path, str | None]]:
        """(case folder, grade from the folder or None), lazily, in name order; folders that cannot be
        listed go into `unreadable` as (folder, exception) when it is given."""
        for child in _subdirs(root, unreadable):
            if child.name.upper() in self.container_names:
                grade = self.container_names[child.name.upper()]
                for sub in _subdirs(child, unreadable):
                    if _listable(sub, unreadable) and self.is_case_dir(sub):
                        yield sub, grade
            elif _listable(child, unreadable) and self.is_case_dir(child):
                yield child, None

    def matches(self, root: str | Path) -> bool:
        root = Path(root)
        if not root.is_dir():
            return False
        return next(self.candidate_dirs(root), None) is not None

    def scan(
        self, root: str | Path, grades: Mapping[str, str | None] | None = None, require_label: bool = True
    ) -> tuple[list[Case], list[Problem]]:
        root = Path(root)
        found: list[tuple[Case, Path]] = []
        problems: list[Problem] = []
        unreadable: list[tuple[Path, OSError]] = []
        for folder, folder_grade in self.candidate_dirs(root, unreadable):
            case, probs = self.case_from_dir(folder, folder_grade, require_label)
            problems.extend(probs)
            if case is not None:
                case.grade = _resolve_grade(case.case_id, folder_grade, grades)
                found.append((case, folder))
        _warn_unreadable(unreadable, root)  # never dropped silently: it may be a case
        cases, dup_problems = _drop_duplicates(found)
        return cases, problems + dup_problems

    def list_cases(
        self, root: str | Path, grades: Mapping[str, str | None] | None = None, require_label: bool = True
    ) -> list[Case]:
        cases, problems = self.scan(root, grades, require_label)
        if problems:
            raise problems[0].error
        return cases

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


def _drop_duplicates(found: list[tuple[Case, Path]]) -> tuple[list[Case], list[Problem]]:
    by_id: dict[str, list[tuple[Case, Path]]] = {}
    for case, where in found:
        by_id.setdefault(case.case_id, []).append((case, where))
    cases: list[Case] = []
    problems: list[Problem] = []
    for case_id, items in by_id.items():
        if len(items) == 1:
            cases.append(items[0][0])
        else:
            paths = " and ".join(str(w) for _, w in items)
            problems.append(
                Problem(case_id, DataError(f"duplicate case id: found at {paths}", case_id=case_id))
            )
    cases.sort(key=lambda c: c.case_id)
    return cases, problems


def _make_case(
    case_id: str,
    layout: str,
    files: dict[str, Path],
    channels: dict[str, int] | None = None,
) -> Case:
    """A lazy Case of these files (contrast, "label", MASK_KEY -> path); `channels`: contrast -> channel of a
    4-D file (MSD). A brain mask is read as an image (it may be stored as floats) and is never a channel."""
    sources = {}
    for name, path in files.items():
        kind = "label" if name == "label" else "image"
        channel = None if channels is None or name in ("label", MASK_KEY) else channels[name]
        sources[name] = partial(read_volume, path, case_id=case_id, kind=kind, channel=channel)
    return Case(case_id=case_id, grade=None, layout=layout, files=dict(files), sources=sources)


def _describe(what: str) -> str:
    return "label" if what == "label" else "brain mask" if what == MASK_KEY else f"{what} image"


def _no_image_problem(case_id: str, folder: Path, expected: str) -> Problem:
    """The Problem of a case folder that holds a label (or mask) but no image of any contrast.

    A missing contrast is not a problem at listing time (the case is listed with those it has, and
    each step checks the contrasts it needs); a case with none at all is of no use to any step."""
    return _problem(case_id, f"has no image file of any contrast (expected {expected} in the case folder)", folder)
