"""Shape statistics of a tumour mask: volume, connected components, surface, distance to a structure.

All in millimetres from the voxel spacing. The surface is the area of the voxel faces between the
mask and the outside (exact for boxes; a voxelised sphere's is about 1.5 times the smooth sphere's
at any resolution), so two masks compare fairly only on grids of the same spacing. Distances are
between voxel centres: two touching voxels are one spacing apart, overlapping masks 0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from segan_lib.errors import SeganError

#: 26-connectivity: voxels sharing a face, an edge or a corner belong to one component
FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


def _spacing3(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    s = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(v) for v in spacing)
    if len(s) != 3 or min(s) <= 0:
        raise SeganError(f"spacing must be one or three positive numbers of mm, got {spacing!r}")
    return s


def volume_ml(mask: np.ndarray, spacing: float | Sequence[float]) -> float:
    """Volume of the mask's voxels in millilitres (1 ml = 1000 mm^3)."""
    sx, sy, sz = _spacing3(spacing)
    return float(np.count_nonzero(mask)) * sx * sy * sz / 1000.0


def surface_area_mm2(mask: np.ndarray, spacing: float | Sequence[float]) -> float:
    """Area (mm^2) of the faces between mask voxels and non-mask voxels (the volume's edge counts as outside)."""
    m = np.pad(np.asarray(mask, bool), 1)
    sx, sy, sz = _spacing3(spacing)
    face = {0: sy * sz, 1: sx * sz, 2: sx * sy}
    return float(sum(np.count_nonzero(np.diff(m, axis=a)) * face[a] for a in range(3)))


def components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of 26-connected components and their sizes in voxels (largest first)."""
    labels, n = ndi.label(np.asarray(mask, bool), structure=FULL_CONNECTIVITY)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1] if n else np.zeros(0, int)
    return int(n), sizes


def distance_mm(a: np.ndarray, b: np.ndarray, spacing: float | Sequence[float]) -> float:
    """Smallest distance (mm) between a voxel centre of `a` and one of `b`; 0 where they overlap, NaN when
    either is empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    if (a & b).any():
        return 0.0
    return float(ndi.distance_transform_edt(~b, sampling=_spacing3(spacing))[a].min())


def tumour_shape(mask: np.ndarray, spacing: float | Sequence[float], structure: np.ndarray | None = None) -> dict:
    """volume_ml, n_components, largest_component_share, surface_mm2, surface_to_volume_per_mm, sphericity
    (pi^(1/3) (6 V)^(2/3) / A, shape apart from size: 1 for a smooth sphere, about 0.66 for a voxelised one,
    (pi/6)^(1/3) = 0.806 for a box-shaped cube, whose faces are voxel faces) and, given a structure (e.g. the
    ventricles), distance_mm from the mask to it."""
    vol = volume_ml(mask, spacing)
    n, sizes = components(mask)
    area = surface_area_mm2(mask, spacing)
    out = {
        "volume_ml": vol,
        "n_components": n,
        "largest_component_share": float(sizes[0] / sizes.sum()) if n else float("nan"),
        "surface_mm2": area,
        "surface_to_volume_per_mm": area / (vol * 1000.0) if vol > 0 else float("nan"),
        "sphericity": float(np.pi ** (1 / 3) * (6 * vol * 1000.0) ** (2 / 3) / area) if vol > 0 else float("nan"),
    }
    if structure is not None:
        out["distance_mm"] = distance_mm(mask, structure, spacing)
    return out
