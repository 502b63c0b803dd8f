"""Deterministic per-volume preprocessing, and its inverse for predictions.

The paper's steps, in order (section IV-B and the authors' code):
1. (option) resample to an isotropic spacing; the paper works at BraTS' native 1 mm;
2. centre crop to 180x180x128 voxels, zero-padding an axis that is smaller;
3. clip at the 2nd and 98th percentile of the cropped volume (background included;
   option: brain voxels only);
4. min-max scale to [0, 1].
The window (start, possibly negative where padded) and the resampling are
recorded in a `PreprocessRecord` so that `restore_to_source` puts a prediction
back into the scan's own grid.
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


# ---------------------------------------------------------------- intensities
def clip_range(volume: np.ndarray, percentiles: tuple[float, float], region: str = "volume") -> tuple[float, float]:
    """The (low, high) clip values: percentiles over every voxel, or over non-zero ones ('brain')."""
    values = volume[volume != 0] if region == "brain" else volume
    if values.size == 0:  # an all-zero crop: nothing to scale
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
) -> PreprocessedCase:
    """Apply the paper's steps to one case's contrasts (and label, if any).

    crop_center: None (the paper) centres the crop on the volume; otherwise a point in the
    source grid's voxel coordinates (e.g. the centre of the brain) the crop is centred on,
    on the axes longer than the crop.
    """
    source_shape = tuple(int(n) for n in next(iter(images.values())).shape)
    new_shape = resampled_shape(source_shape, spacing, cfg.spacing_mm)
    if crop_center is None:
        start = centre_crop_start(new_shape, cfg.crop_shape)
    else:  # voxels as cells: the centre of source voxel i lies at (i + 0.5) * new / old - 0.5
        centre = [(float(m) + 0.5) * nn / so - 0.5 for m, nn, so in zip(crop_center, new_shape, source_shape)]
        start = crop_start_around(new_shape, cfg.crop_shape, centre)
    out = np.empty((len(contrasts), *cfg.crop_shape), dtype=np.float32)
    ranges = {}
    for i, contrast in enumerate(contrasts):
        vol = resample(images[contrast], new_shape, order=1)
        vol = crop_or_pad(vol, start, cfg.crop_shape)
        lo, hi = clip_range(vol, cfg.percentiles, cfg.percentile_region)
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
