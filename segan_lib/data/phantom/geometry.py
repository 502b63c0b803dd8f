"""The phantom's grid: the BraTS field of view at a chosen voxel size, its affine, case ids.

The output grid is that of a BraTS scan (240x240x155 at 1 mm, k axial) resampled to the
requested voxel size, with the brain centre at world 0; `_rotation` is the small rotation
matrix the deformation and the tumour blobs share.
"""
from __future__ import annotations

import math

import numpy as np

from segan_lib.errors import ConfigError

#: grid of a BraTS scan at 1 mm, (i, j, k) with k the axial axis
BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)


def _check_voxel_size(voxel_size: float) -> float:
    try:
        s = float(voxel_size)
    except (TypeError, ValueError):
        raise ConfigError(f"phantom voxel_size must be a number of mm, got {voxel_size!r}") from None
    if not (0.5 <= s <= 16.0):
        raise ConfigError(f"phantom voxel_size must be between 0.5 and 16 mm, got {voxel_size!r}")
    return s


def grid_shape(voxel_size: float = 1.0) -> tuple[int, int, int]:
    """Shape of the BraTS field of view (240x240x155 mm) at `voxel_size` mm: ceil(240/s), ceil(155/s)."""
    s = _check_voxel_size(voxel_size)
    return tuple(int(math.ceil(n / s - 1e-9)) for n in BRATS_SHAPE)


def brats_affine(voxel_size: float = 1.0) -> np.ndarray:
    """BraTS-like affine diag(-s, -s, s) whose origin puts the grid centre (the brain centre) at world 0."""
    s = _check_voxel_size(voxel_size)
    shape = grid_shape(s)
    affine = np.diag([-s, -s, s, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return affine


def case_id_for(index: int) -> str:
    return f"Phantom_{index:03d}"


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
