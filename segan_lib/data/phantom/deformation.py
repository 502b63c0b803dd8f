"""Step 2 of the phantom, deformation: one subject's brain, a random warp of the template.

A random similarity transform plus a smooth displacement field of a few mm maps the
output grid into the template; the tissue probability maps are sampled through it once,
inside the deformed brain's bounding box, as partial volumes (`_Tissues`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from segan_lib.data.phantom.anatomy import _BRAIN_CENTRE_MNI, _Anatomy
from segan_lib.data.phantom.fields import _control_shape, _resize
from segan_lib.data.phantom.geometry import BRATS_SHAPE, _rotation
from segan_lib.errors import DataError

#: exponent applied to the GM/WM/CSF probabilities before they are normalised (1: the template's own)
TISSUE_SHARPENING = 2.0

@dataclass
class _Tissues:
    """Deformed tissue probabilities in the subject's brain bounding box (sum to 1 inside `brain`)."""

    bbox: tuple[slice, slice, slice]  # where the box lies in the output grid
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray  # bool, the skull-stripped brain mask
    allowed: np.ndarray  # bool, subsampled by `allowed_step`: candidate tumour centres
    allowed_step: int


class _Deformation:
    """Output voxel -> template voxel: MNI = centre + R S world + d(world), d smooth (a few mm).

    d is a cubic spline through random control values every 25 mm, so it can be
    evaluated at any point; the map is evaluated exactly on a coarse grid and
    interpolated linearly to the voxels (it is smooth at that scale).
    """

    control_mm = 25.0

    def __init__(self, rng: np.random.Generator, anat: _Anatomy):
        self.anat = anat
        angles = np.deg2rad(np.clip(rng.normal(0.0, 3.0, size=3), -7.0, 7.0))
        scales = np.array([rng.uniform(0.92, 1.06), rng.uniform(0.92, 1.06), rng.uniform(0.94, 1.03)])
        self.linear = _rotation(angles) @ np.diag(scales)
        self.amplitude_mm = rng.uniform(1.5, 3.0)
        # control grid over the whole field of view (world, mm), one per displacement component
        extent = np.array(BRATS_SHAPE, float)
        self.control_origin = -extent / 2 - self.control_mm
        n_ctrl = tuple(int(math.ceil(e / self.control_mm)) + 3 for e in extent)
        self.control = rng.standard_normal((3, *n_ctrl)).astype(np.float64)
        self.control_filtered = [ndi.spline_filter(c, order=3, mode="mirror") for c in self.control]

    def template_voxels(self, ijk: np.ndarray) -> np.ndarray:
        """(3, N) output voxel indices -> (3, N) template voxel coordinates."""
        a = self.anat
        world = a.affine[:3, :3] @ ijk + a.affine[:3, 3:4]
        grid = (world - self.control_origin[:, None]) / self.control_mm
        disp = np.stack([ndi.map_coordinates(c, grid, order=3, mode="mirror", prefilter=False)
                         for c in self.control_filtered])
        mni = _BRAIN_CENTRE_MNI[:, None] + self.linear @ world + self.amplitude_mm * disp
        return a.world_to_template[:3, :3] @ mni + a.world_to_template[:3, 3:4]

    def on_grid(self, box: tuple[slice, ...], spacing_mm: float) -> np.ndarray:
        """Template coordinates (3, *box shape) of every voxel of `box`, via a coarse grid."""
        shape = tuple(sl.stop - sl.start for sl in box)
        coarse = _control_shape(shape, spacing_mm / self.anat.voxel_size)
        axes = [np.linspace(sl.start, sl.stop - 1, m) for sl, m in zip(box, coarse)]
        ijk = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
        tvox = self.template_voxels(ijk).reshape((3, *coarse)).astype(np.float32)
        return np.stack([_resize(c, shape, order=1) for c in tvox])

    def brain_box(self) -> tuple[slice, slice, slice]:
        """Bounding box in the output grid of the deformed brain (plus a margin), from a 4 mm grid."""
        a = self.anat
        step = max(1, int(round(4.0 / a.voxel_size)))
        axes = [np.arange(0, n, step) for n in a.shape]
        ijk = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).astype(np.float64)
        dist = ndi.map_coordinates(a.outside_mm, self.template_voxels(ijk), order=1, mode="constant", cval=1e3)
        idx = ijk[:, dist <= 4.0]
        if idx.size == 0:
            raise DataError("phantom: the deformed brain left the field of view (template data broken?)")
        margin = step + int(math.ceil(2.0 / a.voxel_size))
        lo = np.maximum(idx.min(1).astype(int) - margin, 0)
        hi = np.minimum(idx.max(1).astype(int) + margin + 1, a.shape)
        return tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))


def _deform_anatomy(rng: np.random.Generator, anat: _Anatomy) -> _Tissues:
    deformation = _Deformation(rng, anat)
    box = deformation.brain_box()
    coords = deformation.on_grid(box, 6.0)
    shape = coords.shape[1:]

    # only voxels near the brain are sampled: find them on a grid of half the resolution
    half = coords[:, ::2, ::2, ::2]
    near_half = ndi.map_coordinates(anat.outside_mm, half, order=1, mode="constant", cval=1e3)
    near_half = near_half <= 2.0 * anat.voxel_size + 1.0
    near = near_half[np.ix_(*(np.arange(n) // 2 for n in shape))]
    idx = np.flatnonzero(near)
    points = np.stack([c.ravel()[idx] for c in coords])

    def warp(a: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        out.ravel()[idx] = ndi.map_coordinates(a, points, order=1, mode="constant", cval=0.0, output=np.float32)
        return out

    gm, wm, mask = warp(anat.gm), warp(anat.wm), warp(anat.mask)
    step = max(1, int(round(4.0 / anat.voxel_size)))
    sub = np.ascontiguousarray(coords[:, ::step, ::step, ::step])
    allowed = ndi.map_coordinates(anat.allowed, sub, order=0, mode="constant", cval=0.0) > 0.5
    del coords, points
    brain = mask > 0.5
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    # the template's maps are an average over 152 brains, softer than one brain's partial volumes:
    # raising them to a power before normalising narrows the mixed border (calibrated against real
    # BRATS: CSF / white matter on T1c was 0.52 here against 0.30 on the real cases)
    for a in (gm, wm, csf):
        a **= TISSUE_SHARPENING
    total = gm + wm + csf
    np.maximum(total, 1e-6, out=total)
    for a in (gm, wm, csf):
        a /= total
        a[~brain] = 0.0
    allowed &= brain[::step, ::step, ::step]
    return _Tissues(box, gm, wm, csf, brain, allowed, step)
