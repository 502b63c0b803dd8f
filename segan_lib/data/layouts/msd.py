"""The Medical Segmentation Decathlon layout, Task01_BrainTumour: 4-D NIfTI, one file per case.

imagesTr/BRATS_NNN.nii.gz holds the four contrasts as channels (FLAIR, T1w, T1gd, T2w
by default, or as dataset.json's "modality" says), labelsTr/BRATS_NNN.nii.gz the label;
imagesTs/ alone (no labels) is read with require_label=False.
"""
from __future__ import annotations

import json
from pathlib import Path

from segan_lib.constants import CONTRASTS
from segan_lib.data.case import Case
from segan_lib.data.layouts.common import (
    Layout, Problem, _drop_duplicates, _listable, _listdir, _make_case, _problem, _resolve_grade, _warn_unreadable,
    _why, normalize_contrast,
)
from segan_lib.errors import DataError

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

    def _label_file(self, labels: Path | None, case_id: str) -> Path | None:
        """The label of `case_id` in the labels folder (either extension), or None."""
        if labels is not None:
            for ext in self.exts:
                if (labels / f"{case_id}{ext}").is_file():
                    return labels / f"{case_id}{ext}"
        return None

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
        unreadable: list = []
        names = _listdir(images, unreadable)
        if unreadable:  # the one folder of the images: the data set cannot be read
            raise DataError(f"cannot list the images folder ({_why(unreadable[0][1])})", path=images)
        if labels is not None:
            _listable(labels, unreadable)
            _warn_unreadable(unreadable, root)  # its labels then count as missing, and it says why
        for name in names:
            case_id = self._case_id(name)
            if case_id is None or not (images / name).is_file():
                continue
            files: dict[str, Path] = {c: images / name for c in CONTRASTS}
            label_path = self._label_file(labels, case_id)
            if label_path is not None:
                files["label"] = label_path
            elif require_label:
                expected = (labels or images.parent / "labelsTr") / f"{case_id}.nii.gz"
                problems.append(_problem(case_id, f"missing label file: expected {expected.parent.name}/"
                                         f"{case_id}.nii.gz next to {images.name}/{name}", expected))
                continue
            case = _make_case(case_id, self.key, files, channels)
            case.grade = _resolve_grade(case_id, None, grades)
            found.append((case, images / name))
        cases, dup = _drop_duplicates(found)
        return cases, problems + dup
