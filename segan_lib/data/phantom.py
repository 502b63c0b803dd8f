"""The embedded BraTS-like synthetic data set ("phantom").

No BraTS copy can be downloaded in every setting, so the project ships a
generator of a BraTS-like data set built from real anatomy: the MNI152 ICBM
2009a (symmetric) T1 template and its grey- and white-matter probability maps,
which the nilearn package carries inside its wheel (no download at run time).

One synthetic subject is made in five steps, each a small function below:

1. anatomy: the skull-stripped template brain (mask = template > 0), CSF =
   brain - GM - WM, resampled once into the BraTS grid (240x240x155 at 1 mm,
   k axial, brain centred) at the requested voxel size (cached);
2. deformation: a random similarity transform (small rotation, scaling) plus a
   smooth low-frequency displacement field of a few mm, applied once to the
   tissue probability maps (partial volumes are kept, not hard labels);
3. tumours: one (sometimes two) lesions of irregular shape, a union of
   displaced anisotropic blobs perturbed by smooth noise; the oedema grows
   preferentially along white matter; compartments use the BraTS 2018-2021
   labels 1 (necrotic / non-enhancing core), 2 (oedema), 4 (enhancing);
   high grade: necrosis inside an enhancing rim, large oedema; low grade: a
   large non-enhancing core, bright on T2/FLAIR, little or no enhancement;
4. contrasts: T1, T1c, T2, FLAIR from tissue-specific intensities (the table
   `INTENSITIES`, jittered per subject), mixed by partial volume, tumour
   compartments with soft edges and smooth texture;
5. artefacts: partial-volume blur, smooth multiplicative bias field, Rician
   noise, per-scan intensity scale; stored as int16 (labels uint8), background 0.

`generate_phantom` writes the BraTS 2018-2021 layout
`<out>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`, `grades.csv` and
`phantom.json`; the same (seed, index, voxel size) gives the same bytes.
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from segan_lib.atomic import atomic_write_text
from segan_lib.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------
# constants

#: grid of a BraTS scan at 1 mm, (i, j, k) with k the axial axis
BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
from segan_lib.constants import CONTRASTS
#: file suffix of each contrast and of the label in the BraTS 2018-2021 layout
FILE_SUFFIX: dict[str, str] = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}
LABEL_NECROTIC, LABEL_OEDEMA, LABEL_ENHANCING = 1, 2, 4
#: the paper's BRATS 2015 training set: 220 high-grade and 54 low-grade subjects
N_HGG_PAPER, N_LGG_PAPER = 220, 54
#: bump when the generator's output changes for the same parameters
GENERATOR_VERSION = 1

#: tissue -> (T1, T1c, T2, FLAIR), relative to white matter on T1, before per-subject jitter.
#: "nonenhancing" is the low-grade core (label 1), bright on T2 and FLAIR.
INTENSITIES: dict[str, tuple[float, float, float, float]] = {
    "wm": (1.00, 1.00, 0.40, 0.45),
    "gm": (0.75, 0.75, 0.55, 0.55),
    "csf": (0.30, 0.30, 1.00, 0.10),
    "oedema": (0.85, 0.85, 0.85, 0.95),
    "enhancing": (0.65, 1.30, 0.70, 0.75),
    "necrosis": (0.35, 0.40, 0.90, 0.50),
    "nonenhancing": (0.55, 0.57, 0.95, 0.85),
}
#: relative amplitude of the smooth texture inside each tumour compartment
TEXTURE = {"oedema": 0.06, "enhancing": 0.12, "necrosis": 0.10, "nonenhancing": 0.07}

#: MNI world point (mm) put at the centre of the BraTS grid (the brain's centre, a little
#: above it in z so that the top of the brain fits and the lower brainstem is cut, as in BraTS)
_BRAIN_CENTRE_MNI = np.array([0.0, -17.0, 12.0])
_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass
class PhantomSubject:
    """One synthetic subject in the BraTS grid: four int16 contrasts, a uint8 label (0, 1, 2, 4)."""

    images: dict[str, np.ndarray]  # 't1', 't1c', 't2', 'flair' -> int16 3-D
    label: np.ndarray  # uint8 3-D, values in {0, 1, 2, 4}
    affine: np.ndarray  # 4x4 voxel -> RAS+ mm, shared by every file of the case
    grade: str  # 'HGG' or 'LGG'
    case_id: str


# ----------------------------------------------------------------------------------------
# geometry


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


# ----------------------------------------------------------------------------------------
# smooth random fields


def _resize(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """scipy.ndimage.zoom to an exact shape, corners aligned (grid_mode=False)."""
    if tuple(array.shape) == tuple(shape):
        return array
    factors = [n / m for n, m in zip(shape, array.shape)]
    out = ndi.zoom(array, factors, order=order, mode="nearest", grid_mode=False)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def _control_shape(shape: tuple[int, ...], cell: float) -> tuple[int, ...]:
    """Number of control points with spacing ~`cell` voxels covering `shape` (at least 2 per axis)."""
    return tuple(max(2, int(math.ceil((n - 1) / max(cell, 1e-6))) + 1) for n in shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Smooth random field of `shape`, correlation length ~`cell` voxels, zero mean and unit std.

    White noise on a control grid, interpolated by cubic splines (a linear second stage
    when the output is large keeps the cost down; the field is smooth at that scale).
    """
    coarse = rng.standard_normal(_control_shape(shape, cell), dtype=np.float32)
    if np.prod(shape) > 2e5 and cell > 4:
        mid = tuple(min(n, max(2, int(math.ceil((n - 1) / 2.0)) + 1)) for n in shape)
        field = _resize(_resize(coarse, mid, order=3), shape, order=1)
    else:
        field = _resize(coarse, shape, order=3)
    field = field.astype(np.float32, copy=False)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def _quantile_threshold(values: np.ndarray, count: int) -> float:
    """Threshold t such that about `count` of `values` are > t."""
    count = int(np.clip(count, 1, values.size))
    if count >= values.size:
        return float(values.min()) - 1e-3
    kth = values.size - count - 1
    return float(np.partition(values, kth)[kth])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------
# anatomy (cached)


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


# ----------------------------------------------------------------------------------------
# deformation


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
    total = gm + wm + csf
    np.maximum(total, 1e-3, out=total)
    for a in (gm, wm, csf):
        a /= total
        a[~brain] = 0.0
    allowed &= brain[::step, ::step, ::step]
    return _Tissues(box, gm, wm, csf, brain, allowed, step)


# ----------------------------------------------------------------------------------------
# tumours


@dataclass
class _TumourSpec:
    centre: np.ndarray  # bbox voxel index
    volume_ml: float  # whole tumour (labels 1, 2, 4)
    core_fraction: float  # (1 + 4) / whole
    enhancing_fraction: float  # 4 / (1 + 4)
    grade: str


@dataclass
class _TumourMaps:
    """Tumour compartments in the bbox: hard label and soft weights (sum <= 1)."""

    label: np.ndarray  # uint8
    oedema: np.ndarray  # float32 weights
    enhancing: np.ndarray
    core: np.ndarray  # necrosis (HGG) or non-enhancing core (LGG)
    texture: np.ndarray  # smooth unit-std noise inside the tumour boxes


def _draw_tumour_specs(rng: np.random.Generator, tissues: _Tissues, grade: str, s: float) -> list[_TumourSpec]:
    """One tumour, sometimes two, placed in deep cerebral white matter of this subject."""
    candidates = np.argwhere(tissues.allowed)
    if len(candidates) == 0:  # cannot happen with the MNI anatomy; keep a sane fallback
        candidates = np.argwhere(tissues.brain[:: tissues.allowed_step, :: tissues.allowed_step, :: tissues.allowed_step])
    n_tumours = 2 if rng.random() < 0.15 else 1
    if grade == "HGG":
        total_ml = float(np.exp(rng.uniform(np.log(15.0), np.log(150.0))))
    else:
        total_ml = float(np.exp(rng.uniform(np.log(10.0), np.log(100.0))))
    volumes = [total_ml] if n_tumours == 1 else [total_ml * 0.7, total_ml * 0.3]
    specs: list[_TumourSpec] = []
    for volume in volumes:
        for _ in range(50):
            c = candidates[rng.integers(len(candidates))] * tissues.allowed_step
            c = c + rng.integers(0, tissues.allowed_step, size=3)
            radius_vox = (3 * volume * 1000.0 / (4 * np.pi)) ** (1 / 3) / s
            if all(np.linalg.norm(c - o.centre) > 1.5 * radius_vox + 20.0 / s for o in specs):
                break
        if grade == "HGG":
            core = rng.uniform(0.25, 0.5)
            enh = rng.uniform(0.4, 0.75)
        else:
            core = rng.uniform(0.45, 0.8)
            enh = rng.uniform(0.02, 0.08) if rng.random() < 0.35 else 0.0
        specs.append(_TumourSpec(c.astype(float), volume, core, enh, grade))
    return specs


def _blob_field(rng: np.random.Generator, offsets_mm: list[np.ndarray], radius_mm: float) -> tuple[np.ndarray, float]:
    """Union of 2-5 displaced, rotated, anisotropic blobs: max_k (1 - |A_k (x - c_k)|), x in mm."""
    n_blobs = int(rng.integers(2, 6))
    field = None
    radii = []
    for k in range(n_blobs):
        if k == 0:
            centre = np.zeros(3)
        else:
            direction = rng.normal(size=3)
            centre = direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.8) * radius_mm
        r = radius_mm * rng.uniform(0.45, 0.85) * rng.uniform(0.7, 1.3, size=3)
        radii.append(float(np.mean(r)))
        rot = _rotation(rng.uniform(-np.pi, np.pi, size=3))
        d2 = None
        for a in range(3):
            u = sum(rot[a, b] * (offsets_mm[b] - centre[b]) for b in range(3)) / r[a]
            d2 = u * u if d2 is None else d2 + u * u
        blob = 1.0 - np.sqrt(d2)
        field = blob if field is None else np.maximum(field, blob)
    return field.astype(np.float32), float(np.mean(radii))


def _make_tumour(rng: np.random.Generator, spec: _TumourSpec, tissues: _Tissues, s: float):
    """Label and soft weights of one tumour inside its own sub-box of the bbox."""
    box_shape = tissues.brain.shape
    whole_vox = spec.volume_ml * 1000.0 / s**3
    core_vox = whole_vox * spec.core_fraction
    radius_whole = (3 * spec.volume_ml * 1000.0 / (4 * np.pi)) ** (1 / 3)
    radius_core = radius_whole * spec.core_fraction ** (1 / 3)
    half = (1.9 * radius_whole + 10.0) / s
    lo = np.maximum(np.floor(spec.centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(spec.centre + half) + 1, box_shape).astype(int)
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shape = tuple(int(b - a) for a, b in zip(lo, hi))

    # smooth fields on a working grid of >= 2 mm, then linear interpolation to the voxels
    h = max(2.0, s)
    work = _control_shape(shape, h / s)
    offsets = [((np.linspace(lo[a], hi[a] - 1, work[a]) - spec.centre[a]) * s).reshape(
        [-1 if b == a else 1 for b in range(3)]) for a in range(3)]
    blobs, r_mean = _blob_field(rng, offsets, radius_core)
    lobes, rough = (0.25, 0.07) if spec.grade == "HGG" else (0.4, 0.1)  # low grade: less round, diffuse
    g = blobs + lobes * _smooth_noise(rng, work, 0.6 * radius_core / h) + rough * _smooth_noise(rng, work, 5.0 / h)
    oedema_noise = _smooth_noise(rng, work, 7.0 / h)
    core_noise = _smooth_noise(rng, work, max(0.5 * radius_core, 4.0) / h)
    texture = _smooth_noise(rng, work, 3.0 / h)
    g, oedema_noise, core_noise, texture = (_resize(f, shape, order=1) for f in (g, oedema_noise, core_noise, texture))

    brain = tissues.brain[sub]
    wm, csf = tissues.wm[sub], tissues.csf[sub]
    width = 0.8 / r_mean  # soft edge of ~1 mm in field units

    # core = top of the blob field; oedema = a lower level of it, extended along white matter
    t_core = _quantile_threshold(g[brain], int(round(core_vox)))
    h_field = g + 0.55 * (wm - 0.5) - 0.6 * csf + 0.12 * oedema_noise
    t_whole = _quantile_threshold(h_field[brain], int(round(whole_vox)))
    s_core = _sigmoid((g - t_core) / width) * brain
    s_whole = np.maximum(_sigmoid((h_field - t_whole) / width) * brain, s_core)
    core = s_core > 0.5
    if spec.grade == "HGG":  # the outer part of the core enhances, its centre is necrotic
        e = -(g + 0.3 * core_noise)
        e_width = width
    else:  # a patchy spot of enhancement, if any
        e = core_noise
        e_width = 0.8 / max(0.5 * radius_core, 4.0)
    if spec.enhancing_fraction > 0 and core.any():
        t_enh = _quantile_threshold(e[core], int(round(spec.enhancing_fraction * core.sum())))
        s_enh = _sigmoid((e - t_enh) / e_width)
    else:
        s_enh = np.zeros_like(g)

    # oedema islands not connected to the core are dropped (with their soft edge)
    components, _ = ndi.label(s_whole > 0.5)
    kept = np.isin(components, np.unique(components[core & (components > 0)]))
    s_oedema = (s_whole - s_core) * ndi.binary_dilation(kept)

    label = np.where(kept, LABEL_OEDEMA, 0).astype(np.uint8)
    label[core & (s_enh > 0.5)] = LABEL_ENHANCING
    label[core & (s_enh <= 0.5)] = LABEL_NECROTIC
    weights = {"enhancing": s_core * s_enh, "core": s_core * (1.0 - s_enh), "oedema": s_oedema}
    return sub, label, weights, texture


def _make_tumours(rng: np.random.Generator, tissues: _Tissues, grade: str, s: float) -> _TumourMaps:
    shape = tissues.brain.shape
    maps = _TumourMaps(np.zeros(shape, np.uint8), *(np.zeros(shape, np.float32) for _ in range(4)))
    rank = np.array([0, 2, 1, 0, 3], dtype=np.uint8)  # priority of labels 0, 1, 2, -, 4
    for spec in _draw_tumour_specs(rng, tissues, grade, s):
        sub, label, weights, texture = _make_tumour(rng, spec, tissues, s)
        old = maps.label[sub]
        maps.label[sub] = np.where(rank[label] > rank[old], label, old)
        for name in ("oedema", "enhancing", "core"):
            np.maximum(getattr(maps, name)[sub], weights[name], out=getattr(maps, name)[sub])
        inside = label > 0
        maps.texture[sub][inside] = texture[inside]
    total = maps.oedema + maps.enhancing + maps.core
    over = total > 1.0
    for name in ("oedema", "enhancing", "core"):
        getattr(maps, name)[over] /= total[over]
    return maps


# ----------------------------------------------------------------------------------------
# intensities and artefacts


def _jittered_intensities(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The intensity table with independent per-subject jitter (~6 %) on every entry."""
    return {tissue: np.array(v) * np.exp(rng.normal(0.0, 0.06, size=4)) for tissue, v in INTENSITIES.items()}


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], degree: int = 3) -> np.ndarray:
    """Smooth multiplicative bias over a box: exp of a random polynomial of the normalised position.

    sum_{p+q+r<=degree} c_pqr x^p y^q z^r, evaluated as one matrix product
    (x^p y^q over the (i, j) plane) @ (sum_r c_pqr z^r along k).
    """
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    pairs = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
    plane = np.stack([np.multiply.outer(x**p, y**q).ravel() for p, q in pairs], axis=1)
    along_k = np.zeros((len(pairs), shape[2]), np.float32)
    for row, (p, q) in enumerate(pairs):
        for r in range(degree + 1 - p - q):
            if p + q + r:
                along_k[row] += np.float32(rng.normal(0.0, 0.10 / (p + q + r))) * z**r
    return np.exp(plane @ along_k).reshape(shape)


def _render_contrasts(rng: np.random.Generator, tissues: _Tissues, tumours: _TumourMaps, grade: str,
                      s: float) -> dict[str, np.ndarray]:
    """Four contrasts in the bbox (int16), background 0."""
    table = _jittered_intensities(rng)
    core_name = "necrosis" if grade == "HGG" else "nonenhancing"
    idx = np.flatnonzero(tissues.brain)

    def gather(a: np.ndarray) -> np.ndarray:
        return a.ravel()[idx]

    gm, wm, csf = gather(tissues.gm), gather(tissues.wm), gather(tissues.csf)
    oed, enh, core = gather(tumours.oedema), gather(tumours.enhancing), gather(tumours.core)
    tex = gather(tumours.texture)
    healthy = 1.0 - (oed + enh + core)
    shape = tissues.brain.shape
    blur_sigma = 0.5 / s

    images = {}
    for c, name in enumerate(CONTRASTS):
        v = {t: np.float32(table[t][c]) for t in table}
        value = healthy * (wm * v["wm"] + gm * v["gm"] + csf * v["csf"])
        value += oed * (v["oedema"] * (1 + TEXTURE["oedema"] * tex))
        value += enh * (v["enhancing"] * (1 + TEXTURE["enhancing"] * tex))
        value += core * (v[core_name] * (1 - TEXTURE[core_name] * tex))
        if blur_sigma > 0.2:  # partial-volume blur of the acquisition
            vol = np.zeros(shape, np.float32)
            vol.ravel()[idx] = value
            value = gather(ndi.gaussian_filter(vol, blur_sigma, truncate=3.0))
        value *= gather(_bias_field(rng, shape))
        scale = np.float32(np.exp(rng.uniform(np.log(300.0), np.log(2500.0))))
        sigma = np.float32(rng.uniform(0.015, 0.035))
        n1 = rng.standard_normal(value.size, dtype=np.float32)
        n2 = rng.standard_normal(value.size, dtype=np.float32)
        value = np.sqrt((value + sigma * n1) ** 2 + (sigma * n2) ** 2) * scale  # Rician magnitude
        out = np.zeros(shape, np.int16)
        out.ravel()[idx] = np.clip(np.rint(value), 1, 32767).astype(np.int16)
        images[name] = out
    return images


# ----------------------------------------------------------------------------------------
# one subject


def _subject_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Independent generators for deformation, tumours and contrasts of subject `index`."""
    if int(seed) < 0 or int(index) < 0:
        raise ConfigError(f"phantom seed and index must be >= 0, got seed={seed}, index={index}")
    root = np.random.SeedSequence(int(seed), spawn_key=(int(index),))
    return [np.random.default_rng(child) for child in root.spawn(3)]


def make_subject(seed: int, index: int, grade: str, voxel_size: float = 1.0) -> PhantomSubject:
    """Synthetic subject `index` of the phantom with `seed`, generated directly at `voxel_size` mm."""
    if grade not in ("HGG", "LGG"):
        raise ConfigError(f"phantom grade must be 'HGG' or 'LGG', got {grade!r}")
    anat = _anatomy(_check_voxel_size(voxel_size))
    rng_deform, rng_tumour, rng_contrast = _subject_streams(seed, index)
    tissues = _deform_anatomy(rng_deform, anat)
    tumours = _make_tumours(rng_tumour, tissues, grade, anat.voxel_size)
    box_images = _render_contrasts(rng_contrast, tissues, tumours, grade, anat.voxel_size)

    images = {}
    for name, box in box_images.items():
        full = np.zeros(anat.shape, np.int16)
        full[tissues.bbox] = box
        images[name] = full
    label = np.zeros(anat.shape, np.uint8)
    label[tissues.bbox] = tumours.label * tissues.brain
    return PhantomSubject(images, label, anat.affine.copy(), grade, case_id_for(index))


def phantom_grades(n: int, seed: int) -> list[str]:
    """Grade of each index: round(n * 54/274) LGG, the rest HGG, the LGG indices drawn with `seed`."""
    n = int(n)
    if n < 0:
        raise ConfigError(f"phantom n must be >= 0, got {n}")
    n_lgg = int(round(n * N_LGG_PAPER / (N_HGG_PAPER + N_LGG_PAPER)))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2**31 - 1,)))
    lgg = set(rng.permutation(n)[:n_lgg].tolist())
    return ["LGG" if i in lgg else "HGG" for i in range(n)]


# ----------------------------------------------------------------------------------------
# writing


def _nifti_gz_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii.gz as bytes, reproducible: gzip header without file name and with mtime 0."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=1) as gz:
        gz.write(img.to_bytes())
    return buf.getvalue()


def case_files(case_dir: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """Contrast / 'label' -> file of a case in the BraTS 2018-2021 layout."""
    case_dir = Path(case_dir)
    return {key: case_dir / f"{case_id}_{suffix}.nii.gz" for key, suffix in FILE_SUFFIX.items()}


def write_subject(subject: PhantomSubject, out_dir: str | os.PathLike) -> Path:
    """Write one case atomically: into '<out>/.<case>.tmp-<pid>', then rename to '<out>/<case>'."""
    out_dir = Path(out_dir)
    final = out_dir / subject.case_id
    tmp = out_dir / f".{subject.case_id}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        arrays = {**subject.images, "label": subject.label}
        for key, path in case_files(tmp, subject.case_id).items():
            path.write_bytes(_nifti_gz_bytes(arrays[key], subject.affine))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _case_complete(case_dir: Path, case_id: str) -> bool:
    return case_dir.is_dir() and all(p.is_file() and p.stat().st_size > 0 for p in case_files(case_dir, case_id).values())


def phantom_parameters(n: int, seed: int, voxel_size: float) -> dict:
    """What decides the bytes of a phantom folder (compared on reruns)."""
    s = _check_voxel_size(voxel_size)
    return {"generator": "segan_lib.data.phantom", "generator_version": GENERATOR_VERSION, "n": int(n),
            "seed": int(seed), "voxel_size": s, "shape": list(grid_shape(s))}


def _provenance() -> dict:
    from importlib import metadata

    try:
        from segan_lib import __version__ as lib_version
    except ImportError:
        lib_version = None
    try:
        nilearn_version = metadata.version("nilearn")
    except metadata.PackageNotFoundError:
        nilearn_version = None
    return {"segan_lib_version": lib_version, "nilearn_version": nilearn_version,
            "anatomy": "MNI152 ICBM 2009a symmetric T1, GM and WM maps from the nilearn package data",
            "layout": "brats2018", "labels": {"1": "necrotic / non-enhancing core", "2": "oedema",
                                              "4": "enhancing tumour"}}


def _generate_one(args: tuple) -> str:
    out_dir, seed, index, grade, voxel_size = args
    subject = make_subject(seed, index, grade, voxel_size)
    write_subject(subject, out_dir)
    return subject.case_id


def generate_phantom(out_dir: str | os.PathLike, n: int = 60, seed: int = 0, voxel_size: float = 1.0,
                     overwrite: bool = False, progress: bool = False, workers: int = 1) -> list[str]:
    """Write the phantom in the BraTS 2018-2021 layout; return the case ids (all n).

    Complete cases already there (same parameters) are skipped; a folder holding a phantom
    made with other parameters, or other files, is an error unless `overwrite` (which
    removes only what a phantom consists of: Phantom_* cases, grades.csv, phantom.json).
    """
    out = Path(out_dir)
    params = phantom_parameters(n, seed, voxel_size)
    meta_path, grades_path = out / "phantom.json", out / "grades.csv"
    case_ids = [case_id_for(i) for i in range(int(n))]
    grades = phantom_grades(n, seed)

    if out.exists() and not out.is_dir():
        raise DataError("phantom output is not a folder", path=out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".Phantom_*.tmp-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    existing = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    foreign = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    if existing is not None and {k: existing.get(k) for k in params} != params or existing is None and foreign:
        if not overwrite:
            what = (f"holds a phantom made with other parameters ({ {k: existing.get(k) for k in params} }, "
                    f"asked for {params})" if existing is not None else f"is not empty and has no phantom.json "
                    f"(found {sorted(foreign)[:5]})")
            raise DataError(f"phantom folder {what}; choose another folder or overwrite", path=out)
        for p in out.iterdir():
            if p.is_dir() and p.name.startswith("Phantom_"):
                shutil.rmtree(p)
        for p in (meta_path, grades_path):
            p.unlink(missing_ok=True)

    atomic_write_text(meta_path, json.dumps({**params, **_provenance()}, indent=2, sort_keys=True) + "\n")
    todo = [(out, int(seed), i, grades[i], params["voxel_size"]) for i, cid in enumerate(case_ids)
            if not _case_complete(out / cid, cid)]
    t0 = time.perf_counter()

    def report(done: int, cid: str) -> None:
        if progress:
            print(f"phantom: {cid} ({done}/{len(todo)} new, {time.perf_counter() - t0:.1f} s)", file=sys.stderr,
                  flush=True)

    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            for done, cid in enumerate(pool.map(_generate_one, todo), start=1):
                report(done, cid)
    else:
        for done, job in enumerate(todo, start=1):
            report(done, _generate_one(job))

    lines = ["case_id,grade"] + [f"{cid},{g}" for cid, g in zip(case_ids, grades)]
    atomic_write_text(grades_path, "\n".join(lines) + "\n")
    return case_ids
