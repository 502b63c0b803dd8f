"""Step 1 of the phantom, anatomy: the MNI152 template prepared for one voxel size (cached).

The skull-stripped ICBM 2009a T1 template and its grey- and white-matter maps are read
from nilearn's package data (no download, no nilearn import), smoothed for coarse voxel
sizes, and turned into an `_Anatomy`: the tissue maps, a soft brain mask, the distance
outside the brain and where a tumour centre may lie.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from segan_lib.data.phantom.fields import _resize
from segan_lib.data.phantom.geometry import _check_voxel_size, brats_affine, grid_shape
from segan_lib.errors import DataError

#: MNI world point (mm) put at the centre of the BraTS grid (the brain's centre, a little
#: above it in z so that the top of the brain fits and the lower brainstem is cut, as in BraTS)
_BRAIN_CENTRE_MNI = np.array([0.0, -17.0, 12.0])
_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def _mni_data_dir() -> Path | None:
    spec = find_spec("nilearn")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data"


@functools.lru_cache(maxsize=1)
def _mni_maps() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """MNI152 2009a T1, GM, WM as float32 in [0, 1] and their (shared) affine.

    Read straight from nilearn's package data (no network, no nilearn import); if
    that layout ever changes, nilearn's own loaders of the same packaged files are used.
    """
    import nibabel as nib

    folder = _mni_data_dir()
    maps: dict[str, np.ndarray] = {}
    affine = None
    if folder is not None and all((folder / f).is_file() for f in _MNI_FILES.values()):
        for name, fname in _MNI_FILES.items():
            img = nib.load(str(folder / fname))
            data = np.asarray(img.dataobj, dtype=np.float32)
            maps[name] = data / max(float(data.max()), 1e-6)
            affine = img.affine
    else:
        try:
            from nilearn import datasets
        except ImportError as exc:
            raise DataError("the phantom needs the nilearn package (it carries the MNI152 template)") from exc
        loaders = {"t1": datasets.load_mni152_template, "gm": datasets.load_mni152_gm_template,
                   "wm": datasets.load_mni152_wm_template}
        for name, load in loaders.items():
            img = load(resolution=1)
            maps[name] = np.asarray(img.get_fdata(), dtype=np.float32)
            affine = img.affine
    return maps, np.asarray(affine, dtype=np.float64)


@dataclass(frozen=True)
class _Anatomy:
    """The template prepared for one voxel size (arrays in template voxel space)."""

    voxel_size: float
    shape: tuple[int, int, int]  # output grid
    affine: np.ndarray  # output voxel -> world
    gm: np.ndarray  # template maps, pre-smoothed for coarse voxel sizes
    wm: np.ndarray
    mask: np.ndarray  # soft brain mask (skull-stripped template support)
    outside_mm: np.ndarray  # distance (mm) outside the brain mask, 0 inside
    allowed: np.ndarray  # float 0/1: where a tumour centre may lie (deep cerebral white matter)
    world_to_template: np.ndarray  # 4x4, MNI world mm -> template voxel


@functools.lru_cache(maxsize=4)
def _anatomy(voxel_size: float) -> _Anatomy:
    s = _check_voxel_size(voxel_size)
    maps, t_affine = _mni_maps()
    inside = maps["t1"] > 0
    mask = inside.astype(np.float32)
    gm = np.minimum(maps["gm"], mask)
    wm = np.minimum(maps["wm"], mask)
    if s > 1.0:  # partial-volume averaging of a coarse voxel, so sampling does not alias
        sigma = 0.42 * math.sqrt(s * s - 1.0)
        gm, wm, mask = (ndi.gaussian_filter(a, sigma, truncate=3.0) for a in (gm, wm, mask))

    # distances at 2 mm (plenty for a margin and a depth), interpolated back to the template grid
    half = inside[::2, ::2, ::2]
    outside_mm = _resize(ndi.distance_transform_edt(~half).astype(np.float32) * 2.0, inside.shape, order=1)
    depth_mm = _resize(ndi.distance_transform_edt(half).astype(np.float32) * 2.0, inside.shape, order=1)

    # tumour centres: deep cerebral white matter, >= 12 mm inside the brain, off the midline,
    # not in the cerebellum or brainstem
    ii, jj, kk = (np.arange(n, dtype=np.float32).reshape([-1 if b == a else 1 for b in range(3)])
                  for a, n in enumerate(inside.shape))
    x, y, z = (t_affine[a, 0] * ii + t_affine[a, 1] * jj + t_affine[a, 2] * kk + t_affine[a, 3] for a in range(3))
    allowed = (maps["wm"] > 0.5) & (depth_mm >= 12.0) & (np.abs(x) >= 12.0) & (z >= -30.0)
    allowed &= ~((y < -40.0) & (z < -5.0))
    return _Anatomy(s, grid_shape(s), brats_affine(s), gm.astype(np.float32), wm.astype(np.float32),
                    mask.astype(np.float32), outside_mm, allowed.astype(np.float32), np.linalg.inv(t_affine))
