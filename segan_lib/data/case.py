"""The one interface every BraTS layout is read through: a lazily loaded `Case`.

Arrays are in voxel order (i, j, k) as nibabel returns them for NIfTI; for the
.mha files of BRATS 2015 SimpleITK's (z, y, x) array is transposed to (x, y, z)
so every layout gives 240x240x155 for a BraTS scan, k being the axial axis.
Affines are voxel -> RAS+ world in mm (nibabel's convention); ITK's LPS
geometry is converted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from segan_lib.constants import CONTRASTS, GRADES  # noqa: F401 - GRADES is part of the data layer's names


@dataclass(frozen=True)
class LabelScheme:
    """What the integer labels of one BraTS release mean.

    `values`: every value a label file may hold. Region sets follow the BraTS
    convention: whole tumour (wt) = every non-zero label, tumour core (tc),
    enhancing tumour (et).
    """

    values: frozenset[int]
    tc: frozenset[int]
    et: frozenset[int]

    def regions(self, label: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "wt": label > 0,
            "tc": np.isin(label, sorted(self.tc)),
            "et": np.isin(label, sorted(self.et)),
        }


LABEL_SCHEMES: dict[str, LabelScheme] = {
    # 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing
    "brats2015": LabelScheme(frozenset({0, 1, 2, 3, 4}), frozenset({1, 3, 4}), frozenset({4})),
    # 1 necrotic / non-enhancing core, 2 oedema, 4 enhancing
    "brats2018": LabelScheme(frozenset({0, 1, 2, 4}), frozenset({1, 4}), frozenset({4})),
    # 1 necrotic core, 2 oedema, 3 enhancing
    "brats2023": LabelScheme(frozenset({0, 1, 2, 3}), frozenset({1, 3}), frozenset({3})),
    # 1 oedema, 2 non-enhancing, 3 enhancing
    "msd": LabelScheme(frozenset({0, 1, 2, 3}), frozenset({2, 3}), frozenset({3})),
}


# the key of a case's brain-mask file in `Case.files` / `Case.sources`, beside the contrasts and "label"
MASK_KEY = "mask"


@dataclass(frozen=True)
class Volume:
    """One 3-D image as read from disk, with its geometry."""

    data: np.ndarray  # 3-D, float32 for images, integer for labels
    affine: np.ndarray  # 4x4 voxel -> RAS+ mm
    header: dict  # a few fields worth keeping (format, dtype on disk, spacing, ...)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


@dataclass
class Case:
    """One subject of a data set. Nothing is read from disk until asked for.

    `sources` maps each contrast and "label" to a reader that returns a Volume;
    the reader validates what it reads and raises DataError naming this case
    and the file.
    """

    case_id: str
    grade: str | None  # "HGG", "LGG" or None when the layout does not say
    layout: str  # key of LABEL_SCHEMES / the detected layout name
    files: dict[str, Path]  # contrast, "label" or "mask" -> file on disk (for information and errors)
    sources: dict[str, Callable[[], Volume]] = field(repr=False)
    # key of LABEL_SCHEMES; None = the layout's own (layouts that name no scheme of their own,
    # nnU-Net and pattern, set it from dataset.json or --label-scheme)
    scheme: str | None = None

    @property
    def label_scheme(self) -> LabelScheme:
        return LABEL_SCHEMES[self.scheme or self.layout]

    @property
    def has_label(self) -> bool:
        return "label" in self.sources

    @property
    def has_mask(self) -> bool:
        """True when the layout names a brain-mask file for this case (MASK_KEY in `sources`)."""
        return MASK_KEY in self.sources

    @property
    def contrasts(self) -> list[str]:
        """The contrasts this case has files for, in the project's order (a subset of CONTRASTS)."""
        return [c for c in CONTRASTS if c in self.sources]

    def brain_mask(self) -> np.ndarray:
        """The brain mask the layout names (non-zero = brain), as a boolean array."""
        return self.volume(MASK_KEY).data > 0

    def volume(self, name: str) -> Volume:
        """Read one contrast ('t1', 't1c', 't2', 'flair') or 'label'."""
        from segan_lib.errors import DataError

        if name not in self.sources:
            raise DataError(f"no '{name}' in this case (it has {sorted(self.sources)})", case_id=self.case_id)
        return self.sources[name]()

    def image(self, contrast: str) -> np.ndarray:
        return self.volume(contrast).data

    def label(self) -> np.ndarray:
        return self.volume("label").data

    def whole_tumour(self) -> np.ndarray:
        """Binary whole-tumour mask: every non-zero label voxel."""
        return self.label() > 0

    def regions(self) -> dict[str, np.ndarray]:
        return self.label_scheme.regions(self.label())
