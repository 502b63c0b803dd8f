"""Surface and volume metrics of one binary segmentation against its truth: BraTS HD95, NSD, volume difference.

The surfaces and distances are those of `segan_lib.metrics.volume.surface_distances` (MedPy's: a
mask's surface is the mask XOR its 6-connected erosion; distances are Euclidean, in mm, between
surface-voxel centres, with the voxel spacing, anisotropic allowed), so the HD95 of volume.py and
the two numbers here share one surface and differ only in how they summarise the distances.
With S_p, S_t the surfaces of prediction and truth and d(x, S) the distance from x to the nearest
voxel of S:

    hd95_brats   max(P95{d(a, S_t): a in S_p}, P95{d(b, S_p): b in S_t}): the larger of the two directed
                 95th percentiles (numpy's linear interpolation, as volume.py's pooled HD95), the BraTS
                 toolkits' rule. Exactly one mask empty: BRATS_EMPTY_HD95_MM = 373.128664 mm, the diagonal
                 of the BraTS 240x240x155 1-mm grid, sqrt(240^2 + 240^2 + 155^2), the value the BraTS
                 toolkits report. Both empty: 0 (nothing to find and nothing found: no distance at all).
    nsd          normalised surface Dice at a tolerance tau in mm: the fraction of both surfaces within
                 tau of the other, (#{a in S_p: d(a, S_t) <= tau} + #{b in S_t: d(b, S_p) <= tau}) /
                 (#S_p + #S_t), counting surface voxels. DeepMind's surface-distance package computes the
                 same fraction on another surface (faces between voxels, placed on the voxel-corner grid
                 and weighted by their area); tests/metrics/test_surface.py measures the difference.
                 Both empty: 1; exactly one empty: 0 (the empty-mask rule of volume.py's ratios).
    volume_difference_ml   (#prediction voxels - #truth voxels) x voxel volume (product of the spacing,
                 mm^3) / 1000: positive when the prediction is larger.

`surface_metrics` gives HD95 (MedPy), hd95_brats and nsd from one distance computation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from segan_lib.metrics.volume import _masks, _spacing, hd95_from_distances, surface_distances

#: BraTS HD95 when exactly one of prediction and truth is empty: the diagonal of the 240x240x155 1-mm grid
BRATS_EMPTY_HD95_MM = math.sqrt(240.0**2 + 240.0**2 + 155.0**2)  # 373.128664...
DEFAULT_NSD_TOLERANCE_MM = 1.0
SURFACE_METRICS = ("hd95", "hd95_brats", "nsd")


def check_tolerance_mm(tolerance_mm: float) -> float:
    """The NSD tolerance as a float; ValueError unless it is a finite number of mm >= 0."""
    tol = float(tolerance_mm)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"the NSD tolerance must be a finite number of mm >= 0, got {tolerance_mm}")
    return tol


def _hd95_brats(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray, pred_empty: bool, truth_empty: bool) -> float:
    if pred_empty and truth_empty:
        return 0.0
    if pred_empty or truth_empty:
        return BRATS_EMPTY_HD95_MM
    return float(max(np.percentile(pred_to_truth, 95), np.percentile(truth_to_pred, 95)))


def _nsd(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray, pred_empty: bool, truth_empty: bool,
         tol: float) -> float:
    if pred_empty or truth_empty:
        return 1.0 if pred_empty and truth_empty else 0.0
    within = np.count_nonzero(pred_to_truth <= tol) + np.count_nonzero(truth_to_pred <= tol)
    return float(within / (pred_to_truth.size + truth_to_pred.size))


@dataclass(frozen=True)
class SurfaceMetrics:
    """The surface distances of one case, in mm (nsd a fraction; see the module for each definition)."""

    hd95: float  # MedPy's pooled HD95, NaN when a mask is empty
    hd95_brats: float
    nsd: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def surface_metrics(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0,
                    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> SurfaceMetrics:
    """HD95 (MedPy), BraTS HD95 and NSD at `tolerance_mm` of one case, from one distance computation."""
    p, t = _masks(pred, truth)
    sp = _spacing(spacing, p.ndim)
    tol = check_tolerance_mm(tolerance_mm)
    a, b = surface_distances(p, t, sp)
    p_empty, t_empty = not p.any(), not t.any()
    return SurfaceMetrics(hd95=hd95_from_distances(a, b), hd95_brats=_hd95_brats(a, b, p_empty, t_empty),
                          nsd=_nsd(a, b, p_empty, t_empty, tol))


def hd95_brats(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0) -> float:
    """The larger of the two directed 95th-percentile surface distances in mm; 373.13 with one side empty, 0 with both."""
    return surface_metrics(pred, truth, spacing).hd95_brats


def normalized_surface_dice(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0,
                            tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float:
    """Fraction of both surfaces within `tolerance_mm` of the other; 1 when both masks are empty, 0 with one."""
    return surface_metrics(pred, truth, spacing, tolerance_mm).nsd


def volume_difference_ml(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0) -> float:
    """(prediction volume - truth volume) in ml, from the voxel spacing in mm."""
    p, t = _masks(pred, truth)
    voxel_mm3 = float(np.prod(_spacing(spacing, p.ndim)))
    return (int(np.count_nonzero(p)) - int(np.count_nonzero(t))) * voxel_mm3 / 1000.0
