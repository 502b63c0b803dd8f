"""Deterministic per-volume preprocessing, and its inverse for predictions.

The paper's steps, in order (section IV-B and the authors' code):
1. (option) resample to an isotropic spacing; the paper works at BraTS' native 1 mm;
2. centre crop to 180x180x128 voxels, padding an axis that is smaller with the background;
3. clip at the 2nd and 98th percentile of the cropped volume (background included;
   option: brain voxels only);
4. min-max scale to [0, 1].
The window (start, possibly negative where padded) and the resampling are
recorded in a `PreprocessRecord` so that `restore_to_source` puts a prediction
back into the scan's own grid.

The background (the air around the head) is not assumed to be 0: intensity-normalised scans
(z-scored inside the brain) store it as their minimum, a negative value. `background_value`
finds it (the minimum when a sizeable part of the voxels hold it, else 0), and `brain_region`
takes the case's brain mask when the layout names one, else the voxels off the background; the
padding, the 'brain' percentiles and the brain-centred crop of prediction (`brain_centre`) use them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from segan_lib.config import PreprocessConfig

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class PreprocessRecord:
    """Everything needed to map between a scan's grid and its preprocessed crop."""

    source_shape: Shape3
    source_spacing: tuple[float, float, float]
    resampled_shape: Shape3
    crop_start: Shape3  # in the resampled grid; negative where the crop was padded
    crop_shape: Shape3
    clip_range: dict[str, tuple[float, float]]  # contrast -> (low, high) intensity used for clipping

    def to_json(self) -> dict:
        d = asdict(self)
        d["clip_range"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.clip_range.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "PreprocessRecord":
        return cls(
            source_shape=tuple(d["source_shape"]),
            source_spacing=tuple(d["source_spacing"]),
            resampled_shape=tuple(d["resampled_shape"]),
            crop_start=tuple(d["crop_start"]),
            crop_shape=tuple(d["crop_shape"]),
            clip_range={k: (float(v[0]), float(v[1])) for k, v in d["clip_range"].items()},
        )


# ---------------------------------------------------------------- geometry
def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: float) -> Shape3:
    """Shape of a volume of `shape` voxels of `spacing` mm at `target_spacing` mm (same extent)."""
    return tuple(max(1, int(round(n * s / target_spacing))) for n, s in zip(shape, spacing))


def resample(volume: np.ndarray, out_shape: Sequence[int], order: int) -> np.ndarray:
    """Resample to out_shape over the same field of view (voxels as cells, edges aligned).

    order 1 for intensities and probabilities, 0 for labels. Returns the input
    itself when the shape already matches, so 1 mm BraTS is never interpolated.
    """
    out_shape = tuple(int(n) for n in out_shape)
    if tuple(volume.shape) == out_shape:
        return volume
    zoom = [o / i for o, i in zip(out_shape, volume.shape)]
    # grid_mode: a voxel is a cell, so the resampled grid covers exactly the same extent
    out = ndimage.zoom(volume, zoom, order=order, mode="nearest", grid_mode=True)
    assert out.shape == out_shape, (out.shape, out_shape)
    return out


def centre_crop_start(shape: Sequence[int], crop_shape: Sequence[int]) -> Shape3:
    """Start of a centred window; negative on an axis shorter than the window (padding)."""
    return tuple((n - c) // 2 for n, c in zip(shape, crop_shape))


def crop_start_around(shape: Sequence[int], crop_shape: Sequence[int], centre: Sequence[float]) -> Shape3:
    """Start of a window centred on `centre` (voxel coordinates of this grid), kept inside the volume.

    Only axes longer than the window move; a shorter axis is padded evenly as in centre_crop_start.
    """
    starts = []
    for n, c, m in zip(shape, crop_shape, centre):
        if n <= c:
            starts.append((n - c) // 2)
        else:
            starts.append(int(min(max(int(round(float(m) - (c - 1) / 2.0)), 0), n - c)))
    return tuple(starts)


def crop_or_pad(volume: np.ndarray, start: Sequence[int], crop_shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """The window [start, start + crop_shape) of volume, `fill` where it falls outside."""
    out = np.full(tuple(crop_shape), fill, dtype=volume.dtype)
    src, dst = _overlap(volume.shape, start, crop_shape)
    out[dst] = volume[src]
    return out


def uncrop(cropped: np.ndarray, start: Sequence[int], full_shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Inverse of crop_or_pad: put the window back into a volume of full_shape."""
    out = np.full(tuple(full_shape), fill, dtype=cropped.dtype)
    src, dst = _overlap(full_shape, start, cropped.shape)
    out[src] = cropped[dst]
    return out


def _overlap(full_shape, start, crop_shape):
    src, dst = [], []
    for n, s, c in zip(full_shape, start, crop_shape):
        lo, hi = max(s, 0), min(s + c, n)
        if hi <= lo:  # no overlap on this axis
            src.append(slice(0, 0))
            dst.append(slice(0, 0))
        else:
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
    return tuple(src), tuple(dst)


# ---------------------------------------------------------------- background and brain
# the least share of the voxels the minimum value must hold to be taken for a flat background; BraTS
# scans hold 80-86% background (the two real BRATS 2015 z-scored cases: 81% and 86% at their minimum)
BACKGROUND_MIN_FRACTION = 0.01


def background_value(volume: np.ndarray) -> float:
    """The value of the air around the head: the image's minimum when at least BACKGROUND_MIN_FRACTION of
    the voxels hold it (0 for raw BraTS scans, the negative minimum of z-scored ones), else 0 (a background
    of noise, where no single value is the air: the convention of raw scans)."""
    lo = volume.min()
    if np.count_nonzero(volume == lo) >= BACKGROUND_MIN_FRACTION * volume.size:
        return float(lo)
    return 0.0


def off_background(volume: np.ndarray, background: float | None = None) -> np.ndarray:
    """Boolean: the voxels whose value is not the background (`background`, default background_value).

    A tolerance of 1e-6 of the value range absorbs the float32 rounding of linear resampling, which can
    move a flat background by a step or two (9.5e-7 off the minimum -5.34 of a real z-scored FLAIR
    resampled to 1.4 mm; the tolerance there is 1.7e-5)."""
    background = background_value(volume) if background is None else float(background)
    span = float(volume.max() - volume.min())
    return np.abs(volume - np.float32(background)) > 1e-6 * max(span, 1e-30)


def brain_region(images, mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean brain of a case: its brain mask (non-zero) when given, else every voxel where some
    contrast differs from its background value. `images`: the contrasts' arrays (a dict or a sequence)."""
    if mask is not None:
        return np.asarray(mask) != 0
    volumes = list(images.values()) if isinstance(images, dict) else list(images)
    brain = np.zeros(volumes[0].shape, bool)
    for v in volumes:
        brain |= off_background(v)
    return brain


def brain_centre(images, mask: np.ndarray | None = None) -> list[float] | None:
    """The centre of the brain's bounding box (voxel coordinates), or None when no voxel is brain."""
    nz = np.nonzero(brain_region(images, mask))
    return [(ix.min() + ix.max()) / 2.0 for ix in nz] if nz[0].size else None


# ---------------------------------------------------------------- intensities
def clip_range(volume: np.ndarray, percentiles: tuple[float, float], region: str = "volume",
               brain: np.ndarray | None = None, background: float | None = None) -> tuple[float, float]:
    """The (low, high) clip values: percentiles over every voxel ('volume'), or over the brain ('brain'):
    the voxels of `brain` (a mask of this grid) when given, else those that differ from the background
    (`background`, by default background_value(volume))."""
    if region == "brain":
        if brain is None:
            brain = off_background(volume, background)
        values = volume[brain]
    else:
        values = volume
    if values.size == 0:  # no brain voxel in the crop: nothing to scale
        return 0.0, 0.0
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(hi)


def clip_and_scale(volume: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and map linearly to [0, 1]; a constant volume maps to zeros."""
    clipped = np.clip(volume.astype(np.float32, copy=False), low, high)
    if high <= low:
        return np.zeros_like(clipped, dtype=np.float32)
    return ((clipped - np.float32(low)) / np.float32(high - low)).astype(np.float32)


# ---------------------------------------------------------------- whole cases
@dataclass
class PreprocessedCase:
    case_id: str
    images: np.ndarray  # (contrasts, X, Y, Z) float32 in [0, 1]
    label: np.ndarray | None  # (X, Y, Z) uint8, the layout's label values, nearest-neighbour resampled
    contrasts: tuple[str, ...]
    record: PreprocessRecord


def preprocess_arrays(
    images: dict[str, np.ndarray],
    label: np.ndarray | None,
    spacing: Sequence[float],
    cfg: PreprocessConfig,
    contrasts: Sequence[str],
    case_id: str = "",
    crop_center: Sequence[float] | None = None,
    brain_mask: np.ndarray | None = None,
) -> PreprocessedCase:
    """Apply the paper's steps to one case's contrasts (and label, if any).

    crop_center: None (the paper) centres the crop on the volume; otherwise a point in the
    source grid's voxel coordinates (e.g. the centre of the brain) the crop is centred on,
    on the axes longer than the crop.
    brain_mask: the case's brain mask in the source grid (non-zero = brain), used for the 'brain'
    percentiles; without it the brain is the voxels off each contrast's background value.
    Padding takes each contrast's background value, so it stays the darkest value after scaling.
    """
    source_shape = tuple(int(n) for n in next(iter(images.values())).shape)
    new_shape = resampled_shape(source_shape, spacing, cfg.spacing_mm)
    if crop_center is None:
        start = centre_crop_start(new_shape, cfg.crop_shape)
    else:  # voxels as cells: the centre of source voxel i lies at (i + 0.5) * new / old - 0.5
        centre = [(float(m) + 0.5) * nn / so - 0.5 for m, nn, so in zip(crop_center, new_shape, source_shape)]
        start = crop_start_around(new_shape, cfg.crop_shape, centre)
    out = np.empty((len(contrasts), *cfg.crop_shape), dtype=np.float32)
    brain = None
    if brain_mask is not None and cfg.percentile_region == "brain":
        mask = resample((np.asarray(brain_mask) != 0).astype(np.uint8), new_shape, order=0)
        brain = crop_or_pad(mask, start, cfg.crop_shape).astype(bool)
    ranges = {}
    for i, contrast in enumerate(contrasts):
        background = background_value(images[contrast])
        vol = resample(images[contrast], new_shape, order=1)
        vol = crop_or_pad(vol, start, cfg.crop_shape, fill=background)
        lo, hi = clip_range(vol, cfg.percentiles, cfg.percentile_region, brain=brain, background=background)
        ranges[contrast] = (lo, hi)
        out[i] = clip_and_scale(vol, lo, hi)
    cropped_label = None
    if label is not None:
        lab = resample(label.astype(np.uint8, copy=False), new_shape, order=0)
        cropped_label = crop_or_pad(lab, start, cfg.crop_shape)
    record = PreprocessRecord(
        source_shape=source_shape,
        source_spacing=tuple(float(s) for s in spacing),
        resampled_shape=new_shape,
        crop_start=start,
        crop_shape=tuple(cfg.crop_shape),
        clip_range=ranges,
    )
    return PreprocessedCase(case_id, out, cropped_label, tuple(contrasts), record)


def restore_to_source(prediction: np.ndarray, record: PreprocessRecord, order: int = 0) -> np.ndarray:
    """Put a prediction made on the crop back into the scan's own grid.

    order 0 for a mask or label image, 1 for a probability map (threshold after).
    Voxels outside the crop window are 0 (background).
    """
    if tuple(prediction.shape) != tuple(record.crop_shape):
        raise ValueError(f"prediction has shape {prediction.shape}, the crop was {record.crop_shape}")
    full = uncrop(prediction, record.crop_start, record.resampled_shape)
    return resample(full, record.source_shape, order=order)
