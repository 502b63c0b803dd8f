"""The folder layouts of the BraTS releases, each turned into a list of lazy `Case`s.

One reader per layout, each with
  * `matches(root) -> bool`: cheap, looks at file and folder names only;
  * `list_cases(root, grades, require_label) -> list[Case]`: builds the cases
    from the directory listing; every volume is read later, on demand, through
    `read_volume`. Problems visible from the names alone (a missing contrast or
    label file, two files for one contrast, two cases with one id) are raised
    here as `DataError`s.
  * `scan(...)`: as `list_cases` but returns the problems next to the good cases
    instead of raising, which is what `open_dataset(on_bad_case="skip")` uses.

Layouts (key: files of one case):
  brats2015: {HGG,LGG}/<case>/VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/*.mha,
             label VSD.Brain_3more.XX.O.OT.<id>/*.mha (the test set sits under HGG_LGG/)
  brats2018: <case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, optionally under HGG/ and LGG/
  brats2023: <case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz
  msd:       imagesTr/BRATS_NNN.nii.gz (4-D: FLAIR, T1w, T1gd, T2w), labelsTr/BRATS_NNN.nii.gz
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator, Mapping

from segan_lib.errors import DataError
from segan_lib.constants import CONTRASTS
from segan_lib.data.case import LABEL_SCHEMES, Case
from segan_lib.data.volume_io import read_volume

__all__ = [
    "Layout",
    "LAYOUTS",
    "Problem",
    "CONTRAST_ALIASES",
    "normalize_contrast",
    "Brats2015Layout",
    "Brats2018Layout",
    "Brats2023Layout",
    "MSDLayout",
]

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
}


def normalize_contrast(name: str) -> str | None:
    """The project's contrast name ('t1', 't1c', 't2', 'flair') for a release's name, or None."""
    return CONTRAST_ALIASES.get(name.strip().lower())


# folders that hold cases and what they say about the grade
_CONTAINERS: dict[str, str | None] = {"HGG": "HGG", "LGG": "LGG"}


@dataclass
class Problem:
    """A case (or file) dropped at listing time, and why."""

    key: str  # case id, or a path when no case id applies
    error: DataError


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


def _subdirs(folder: Path) -> Iterator[Path]:
    """Visible sub-folders of `folder`, sorted by name (nothing if it cannot be listed)."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not _hidden(e.name) and e.is_dir()]
    except OSError:
        return iter(())
    return iter(Path(e.path) for e in sorted(entries, key=lambda e: e.name))


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if not _hidden(n))
    except OSError:
        return []


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
    def candidate_dirs(self, root: Path) -> Iterator[tuple[Path, str | None]]:
        """(case folder, grade from the folder or None), lazily, in name order."""
        for child in _subdirs(root):
            if child.name.upper() in self.container_names:
                grade = self.container_names[child.name.upper()]
                for sub in _subdirs(child):
                    if self.is_case_dir(sub):
                        yield sub, grade
            elif self.is_case_dir(child):
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
        for folder, folder_grade in self.candidate_dirs(root):
            case, probs = self.case_from_dir(folder, folder_grade, require_label)
            problems.extend(probs)
            if case is not None:
                case.grade = _resolve_grade(case.case_id, folder_grade, grades)
                found.append((case, folder))
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
    sources = {}
    for name, path in files.items():
        kind = "label" if name == "label" else "image"
        channel = None if channels is None or name == "label" else channels[name]
        sources[name] = partial(read_volume, path, case_id=case_id, kind=kind, channel=channel)
    return Case(case_id=case_id, grade=None, layout=layout, files=dict(files), sources=sources)


# ----------------------------------------------------------------------------------------
# BRATS 2015: {HGG,LGG}/<case>/VSD.Brain.XX.O.MR_<contrast>.<id>/<...>.mha


class Brats2015Layout(Layout):
    key = "brats2015"
    title = "BRATS 2015 MetaImage"
    pattern = (
        "{HGG,LGG}/<case>/VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/*.mha "
        "with the label in VSD.Brain_3more.XX.O.OT.<id>/*.mha"
    )
    container_names = {"HGG": "HGG", "LGG": "LGG", "HGG_LGG": None}

    _MR = re.compile(r"^VSD\.Brain\.XX\.O\.MR_(T1|T1c|T2|Flair)\.\d+$", re.IGNORECASE)
    _OT = re.compile(r"^VSD\.Brain[^.]*\.XX\.O\.OT\.\d+$", re.IGNORECASE)
    _NAMES = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "flair"}
    _SUFFIXES = (".mha", ".mhd")

    def is_case_dir(self, folder: Path) -> bool:
        return any(self._MR.match(n) or self._OT.match(n) for n in _listdir(folder))

    def case_from_dir(self, folder, grade, require_label):
        case_id = folder.name
        dirs: dict[str, list[Path]] = {}
        for name in _listdir(folder):
            m = self._MR.match(name)
            if m:
                dirs.setdefault(self._NAMES[m.group(1).lower()], []).append(folder / name)
            elif self._OT.match(name):
                dirs.setdefault("label", []).append(folder / name)
        files: dict[str, Path] = {}
        problems: list[Problem] = []
        wanted = list(CONTRASTS) + ["label"]
        for what in wanted:
            pattern = (
                "VSD.Brain_3more.XX.O.OT.<id>/*.mha"
                if what == "label"
                else f"VSD.Brain.XX.O.MR_{_MR_NAME[what]}.<id>/*.mha"
            )
            candidates = dirs.get(what, [])
            if not candidates:
                if what == "label" and not require_label:
                    continue
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"missing {_describe(what)} file: no {pattern} in the case folder",
                            case_id=case_id,
                            path=folder / pattern.replace("<id>", "*"),
                        ),
                    )
                )
                continue
            if len(candidates) > 1:
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"several {_describe(what)} folders: "
                            + " and ".join(str(c) for c in candidates)
                            + " (expected one)",
                            case_id=case_id,
                        ),
                    )
                )
                continue
            inner = [n for n in _listdir(candidates[0]) if n.lower().endswith(self._SUFFIXES)]
            if not inner:
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"missing {_describe(what)} file: no .mha file in the folder",
                            case_id=case_id,
                            path=candidates[0] / "*.mha",
                        ),
                    )
                )
                continue
            if len(inner) > 1:
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"several {_describe(what)} files in one folder: {', '.join(inner)} (expected one)",
                            case_id=case_id,
                            path=candidates[0],
                        ),
                    )
                )
                continue
            files[what] = candidates[0] / inner[0]
        if problems:
            return None, problems
        return _make_case(case_id, self.key, files), []


_MR_NAME = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "Flair"}


def _describe(what: str) -> str:
    return "label" if what == "label" else f"{what} image"


# ----------------------------------------------------------------------------------------
# one folder per case, one NIfTI per contrast: BraTS 2018-2021 and 2023


class _FolderNiftiLayout(Layout):
    sep: str = "_"
    suffixes: dict[str, str] = {}  # project name or "label" -> the release's file suffix
    probe: str = ""  # suffix whose presence marks a case folder (used by matches)
    exts: tuple[str, ...] = (".nii.gz", ".nii")

    def _expected(self, case_id: str, what: str) -> str:
        return f"{case_id}{self.sep}{self.suffixes[what]}.nii.gz"

    def _file_kind(self, name: str) -> str | None:
        low = name.lower()
        for what, suf in self.suffixes.items():
            for ext in self.exts:
                if low.endswith(f"{self.sep}{suf}{ext}"):
                    return what
        return None

    def is_case_dir(self, folder: Path) -> bool:
        return any(self._file_kind(n) is not None for n in _listdir(folder))

    def case_from_dir(self, folder, grade, require_label):
        case_id = folder.name
        by_kind: dict[str, list[str]] = {}
        for name in _listdir(folder):
            what = self._file_kind(name)
            if what is not None:
                by_kind.setdefault(what, []).append(name)
        files: dict[str, Path] = {}
        problems: list[Problem] = []
        for what in list(CONTRASTS) + ["label"]:
            names = by_kind.get(what, [])
            if len(names) > 1:
                # prefer the file named after the folder, as the releases do
                own = [n for n in names if n.lower().startswith(case_id.lower() + self.sep)]
                if len(own) == 1:
                    names = own
            if not names:
                if what == "label" and not require_label:
                    continue
                expected = self._expected(case_id, what)
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"missing {_describe(what)} file: expected {expected} "
                            f"(pattern <case>{self.sep}{self.suffixes[what]}.nii.gz) in the case folder",
                            case_id=case_id,
                            path=folder / expected,
                        ),
                    )
                )
            elif len(names) > 1:
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"several {_describe(what)} files map to one case: "
                            + " and ".join(str(folder / n) for n in names)
                            + " (expected one)",
                            case_id=case_id,
                        ),
                    )
                )
            else:
                files[what] = folder / names[0]
        if problems:
            return None, problems
        return _make_case(case_id, self.key, files), []


class Brats2018Layout(_FolderNiftiLayout):
    key = "brats2018"
    title = "BraTS 2018-2021 NIfTI"
    pattern = "<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, optionally under HGG/ and LGG/"
    sep = "_"
    suffixes = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}


class Brats2023Layout(_FolderNiftiLayout):
    key = "brats2023"
    title = "BraTS 2023 GLI NIfTI"
    pattern = "<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz"
    sep = "-"
    suffixes = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "label": "seg"}


# ----------------------------------------------------------------------------------------
# Medical Segmentation Decathlon, Task01_BrainTumour

MSD_DEFAULT_CHANNELS: dict[str, int] = {"flair": 0, "t1": 1, "t1c": 2, "t2": 3}


class MSDLayout(Layout):
    key = "msd"
    title = "Medical Segmentation Decathlon Task01_BrainTumour"
    pattern = (
        "imagesTr/BRATS_NNN.nii.gz (4-D: FLAIR, T1w, T1gd, T2w) with labelsTr/BRATS_NNN.nii.gz "
        "(or imagesTs/ alone), dataset.json optional"
    )
    exts = (".nii.gz", ".nii")

    def _folders(self, root: Path) -> tuple[Path, Path | None, Path | None] | None:
        """(images folder, labels folder or None, dataset.json or None), or None if not MSD-like."""
        if root.name in ("imagesTr", "imagesTs"):
            labels = root.parent / ("labelsTr" if root.name == "imagesTr" else "labelsTs")
            meta = root.parent / "dataset.json"
            images = root
        else:
            images = None
            for name in ("imagesTr", "imagesTs"):
                if (root / name).is_dir():
                    images = root / name
                    break
            if images is None:
                return None
            labels = root / ("labelsTr" if images.name == "imagesTr" else "labelsTs")
            meta = root / "dataset.json"
        return images, (labels if labels.is_dir() else None), (meta if meta.is_file() else None)

    def _case_id(self, name: str) -> str | None:
        low = name.lower()
        for ext in self.exts:
            if low.endswith(ext):
                return name[: -len(ext)]
        return None

    def candidate_dirs(self, root):  # not folder-per-case
        return iter(())

    def matches(self, root) -> bool:
        root = Path(root)
        if not root.is_dir():
            return False
        folders = self._folders(root)
        if folders is None:
            return False
        return any(self._case_id(n) for n in _listdir(folders[0]))

    def channels(self, meta: Path | None) -> dict[str, int]:
        """Contrast -> channel index, from dataset.json's "modality" when present."""
        if meta is None:
            return dict(MSD_DEFAULT_CHANNELS)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read dataset.json ({exc})", path=meta) from exc
        modality = info.get("modality") if isinstance(info, dict) else None
        if not modality:
            return dict(MSD_DEFAULT_CHANNELS)
        mapping: dict[str, int] = {}
        try:
            items = sorted(((int(k), str(v)) for k, v in modality.items()))
        except (AttributeError, ValueError) as exc:
            raise DataError(f'cannot read "modality" of dataset.json: {modality!r}', path=meta) from exc
        for index, name in items:
            contrast = normalize_contrast(name)
            if contrast is not None:
                mapping[contrast] = index
        missing = [c for c in CONTRASTS if c not in mapping]
        if missing:
            raise DataError(
                f'"modality" {dict(modality)} does not name the contrasts {missing} '
                "(expected FLAIR, T1w, T1gd, T2w): not a brain tumour data set",
                path=meta,
            )
        return mapping

    def scan(self, root, grades=None, require_label=True):
        root = Path(root)
        folders = self._folders(root)
        if folders is None:
            return [], []
        images, labels, meta = folders
        channels = self.channels(meta)
        problems: list[Problem] = []
        found: list[tuple[Case, Path]] = []
        if images.name == "imagesTs" and require_label and labels is None:
            raise DataError(
                f"only test images ({images.name}/) and no labels; open it with require_label=False",
                path=images,
            )
        for name in _listdir(images):
            case_id = self._case_id(name)
            if case_id is None or not (images / name).is_file():
                continue
            files: dict[str, Path] = {c: images / name for c in CONTRASTS}
            label_path = None
            if labels is not None:
                for ext in self.exts:
                    if (labels / f"{case_id}{ext}").is_file():
                        label_path = labels / f"{case_id}{ext}"
                        break
            if label_path is not None:
                files["label"] = label_path
            elif require_label:
                expected = (labels or images.parent / "labelsTr") / f"{case_id}.nii.gz"
                problems.append(
                    Problem(
                        case_id,
                        DataError(
                            f"missing label file: expected {expected.parent.name}/{case_id}.nii.gz "
                            f"next to {images.name}/{name}",
                            case_id=case_id,
                            path=expected,
                        ),
                    )
                )
                continue
            case = _make_case(case_id, self.key, files, channels)
            case.grade = _resolve_grade(case_id, None, grades)
            found.append((case, images / name))
        cases, dup = _drop_duplicates(found)
        return cases, problems + dup


LAYOUTS: dict[str, Layout] = {
    layout.key: layout for layout in (Brats2015Layout(), Brats2018Layout(), Brats2023Layout(), MSDLayout())
}
assert set(LAYOUTS) == set(LABEL_SCHEMES)
