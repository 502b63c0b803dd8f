"""Tissue classes of a scan: normal tissue (CSF, grey, white matter), the tumour compartments of its
label, the ventricles; and the phantom's own tissue maps, which its generator knows exactly.

A tissue map is an integer volume: 0 outside the brain, else 1 + the index of the tissue in TISSUES.
The tumour compartments come from the label, whatever the release's scheme (COMPARTMENTS); the
phantom's label 1 is necrosis in a high-grade subject and the non-enhancing core in a low-grade one,
as its renderer draws them (segan_lib.data.phantom.render). The phantom's normal tissue is the
largest of its deformed CSF / GM / WM partial volumes in each voxel, recomputed from the same
random stream `make_subject` uses (the deformation has its own stream, so no other step is rerun).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from segan_lib.errors import DataError

#: the tissues compared, normal first; a tissue map stores 1 + the index here (0 = not brain)
TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "oedema", "enhancing", "necrosis", "nonenhancing")
NORMAL_TISSUES: tuple[str, ...] = ("csf", "gm", "wm")
TISSUE_TITLES: dict[str, str] = {"csf": "CSF", "gm": "grey matter", "wm": "white matter", "oedema": "oedema",
                                 "enhancing": "enhancing", "necrosis": "necrosis", "nonenhancing": "non-enhancing"}
#: label value -> tumour compartment, per label scheme (BraTS 2018-2021's 1 is the necrotic and
#: non-enhancing core together: counted as necrosis)
COMPARTMENTS: dict[str, dict[int, str]] = {
    "brats2015": {1: "necrosis", 2: "oedema", 3: "nonenhancing", 4: "enhancing"},
    "brats2018": {1: "necrosis", 2: "oedema", 4: "enhancing"},
    "brats2023": {1: "necrosis", 2: "oedema", 3: "enhancing"},
    "msd": {1: "oedema", 2: "nonenhancing", 3: "enhancing"},
}


def tissue_code(name: str) -> int:
    return TISSUES.index(name) + 1


def compartments_of(scheme: str, phantom_grade: str | None = None) -> dict[int, str]:
    """Label value -> compartment for a label scheme; for the phantom (phantom_grade 'HGG' or 'LGG') label
    1 is necrosis (HGG) or the non-enhancing core (LGG)."""
    if scheme not in COMPARTMENTS:
        raise DataError(f"unknown label scheme {scheme!r}; known: {', '.join(COMPARTMENTS)}")
    names = dict(COMPARTMENTS[scheme])
    if phantom_grade is not None:
        names[1] = "necrosis" if phantom_grade == "HGG" else "nonenhancing"
    return names


def tissue_map(brain: np.ndarray, normal: np.ndarray, label: np.ndarray | None, compartments: dict[int, str]) -> np.ndarray:
    """The tissue map (uint8) of a scan: `normal` (0 CSF, 1 GM, 2 WM) inside `brain`, the label's compartments
    over it. Voxels of the label outside the brain mask count too (a tumour is brain)."""
    out = np.zeros(np.shape(brain), np.uint8)
    out[brain] = np.asarray(normal)[brain].astype(np.uint8) + 1
    if label is not None:
        for value, name in compartments.items():
            out[label == value] = tissue_code(name)
    return out


# ---------------------------------------------------------------- the ventricles
def ventricle_mask(csf: np.ndarray, brain: np.ndarray, spacing: float, *, min_depth_mm: float = 12.0,
                   centre_radius_mm: float = 30.0) -> np.ndarray:
    """The lateral ventricles: the largest 6-connected CSF component, among the CSF voxels at least
    `min_depth_mm` inside the brain mask, that comes within `centre_radius_mm` of the brain's centre of mass.

    The depth keeps the sulcal CSF and the cisterns at the surface apart from the ventricles; the centre
    keeps a deep sulcus or a cyst far from the middle from being taken for them. Empty when no deep CSF
    component reaches the centre.
    """
    brain = np.asarray(brain, bool)
    depth = ndi.distance_transform_edt(np.pad(brain, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    deep = np.asarray(csf, bool) & (depth >= min_depth_mm)
    labels, n = ndi.label(deep)
    if n == 0:
        return np.zeros(brain.shape, bool)
    centre = np.array(ndi.center_of_mass(brain))
    grid = np.indices(brain.shape, sparse=True)
    near = sum(((g - c) * spacing) ** 2 for g, c in zip(grid, centre)) <= centre_radius_mm ** 2
    candidates = np.unique(labels[near & deep])
    candidates = candidates[candidates > 0]
    if candidates.size == 0:
        return np.zeros(brain.shape, bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    return labels == candidates[np.argmax(sizes[candidates])]


# ---------------------------------------------------------------- the phantom's truth
def phantom_tissue_truth(seed: int, index: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(brain, normal) of phantom subject `index` made with `seed` at `voxel_size` mm, in its full grid:
    the skull-stripped brain mask and, inside it, 0 CSF / 1 GM / 2 WM (the largest partial volume)."""
    from segan_lib.data.phantom.anatomy import _anatomy
    from segan_lib.data.phantom.deformation import _deform_anatomy
    from segan_lib.data.phantom.subject import _subject_streams

    anat = _anatomy(float(voxel_size))
    rng_deform = _subject_streams(seed, index)[0]  # the stream make_subject deforms the anatomy with
    tissues = _deform_anatomy(rng_deform, anat)
    brain = np.zeros(anat.shape, bool)
    normal = np.zeros(anat.shape, np.uint8)
    brain[tissues.bbox] = tissues.brain
    normal[tissues.bbox] = np.argmax(np.stack([tissues.csf, tissues.gm, tissues.wm]), axis=0)
    normal[~brain] = 0
    return brain, normal
