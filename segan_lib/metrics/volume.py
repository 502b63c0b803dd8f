"""Metrics of one binary segmentation against its truth: counts, the four ratios, HD95.

Every number in a results table starts here (`volume_metrics` per subject; the set-level
protocols are in `segan_lib.metrics.protocols`, the summaries in `segan_lib.metrics.summary`,
the Keras batch versions in `segan_lib.metrics.batch`, which share `_ratios`).

Inputs. Masks are numpy arrays of the same shape (else ValueError naming both
shapes). Boolean and integer arrays: non-zero is foreground (so a label map gives the
whole tumour). Floating arrays must hold only 0 and 1 (a probability map is refused:
call `binarize` first). `binarize(p, t)` is ``p > t``, the rule Keras' own metrics use
and the one the batch metrics use.

Formulas, from the confusion counts TP, FP, FN, TN (`confusion_counts`, the one place
they are counted):
    Dice = 2TP / (2TP + FP + FN)    precision = TP / (TP + FP)
    sensitivity = TP / (TP + FN)    specificity = TN / (TN + FP)

Empty-mask convention (one rule for all four ratios): when a ratio's denominator is
zero, the ratio is 1 if prediction and truth are identical (FP + FN = 0) and 0
otherwise. Hence:

    case                          Dice  precision  sensitivity  specificity  HD95
    both empty                     1       1           1         TN/(TN+0)=1  NaN
    prediction empty, truth not    0       0           0          computed    NaN
    truth empty, prediction not    0       0           0          computed    NaN
    truth fills the whole volume  comp.   comp.       comp.     1 if identical else 0

(so any error on a subject with an empty side scores 0, and a correct "nothing there"
scores 1, as MONAI's DiceMetric with ``ignore_empty=False``). HD95 needs a surface on
both sides: with either or both masks empty it is NaN, and aggregates exclude NaN
values and report how many they excluded (``n_excluded``).

HD95 (MedPy's ``hd95``): the surface of a mask is the mask XOR its binary erosion by
the connectivity-1 structure (6-neighbourhood in 3-D; outside the array counts as
background); for every surface voxel of A the Euclidean distance in mm (voxel
`spacing`, anisotropic allowed) to the nearest surface voxel of B, and the same from B
to A; both sets are pooled and HD95 is their 95th percentile (numpy's default linear
interpolation). BraTS toolkits take instead the maximum of the two directed 95th
percentiles (`segan_lib.metrics.surface.hd95_brats`, with the normalised surface Dice and the
volume difference); the two agree on symmetric errors and differ otherwise. Computed with
``scipy.ndimage.distance_transform_edt(sampling=spacing)`` on the bounding box of both
masks plus a one-voxel margin (which gives the same values as on the full array).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

RATIO_METRICS = ("dice", "precision", "sensitivity", "specificity")
METRICS = RATIO_METRICS + ("hd95",)
COUNT_COLUMNS = ("tp", "fp", "fn", "tn")


# ---------------------------------------------------------------- inputs
def binarize(prob: Any, threshold: float = 0.5) -> np.ndarray:
    """Foreground where ``prob > threshold`` (the batch metrics use the same rule)."""
    return np.asarray(prob) > threshold


def _as_mask(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if np.any((a != 0) & (a != 1)):
            raise ValueError(
                f"{name} is a floating array with values other than 0 and 1 "
                "(a probability map?); binarize it first (segan_lib.metrics.volume.binarize)"
            )
        return a != 0
    if np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.complexfloating):
        return a != 0
    try:
        return a.astype(bool)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} of dtype {a.dtype} cannot be read as a binary mask") from exc


def _masks(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_mask(pred, "prediction")
    t = _as_mask(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    return p, t


def _spacing(spacing: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    if np.ndim(spacing) == 0:
        sp = (float(spacing),) * ndim
    else:
        sp = tuple(float(s) for s in spacing)
        if len(sp) != ndim:
            raise ValueError(f"spacing {tuple(spacing)} has {len(sp)} values for a {ndim}-D mask")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing {sp} must be finite and positive")
    return sp


# ---------------------------------------------------------------- counts and formulas
@dataclass(frozen=True)
class Counts:
    """Confusion counts of a binary segmentation."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def confusion_counts(pred: Any, truth: Any) -> Counts:
    """TP, FP, FN, TN of two binary masks of the same shape."""
    p, t = _masks(pred, truth)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    tn = int(p.size) - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def _ratio(num, den, err, xp, eps):
    """num / den, or where den <= eps: 1 if err <= eps (identical masks), else 0.

    `xp` is numpy or keras.ops: only functions both provide are used.
    """
    empty = xp.less_equal(den, eps)
    safe = xp.where(empty, 1.0, den)
    value = xp.divide(num, safe)
    return xp.where(empty, xp.where(xp.less_equal(err, eps), 1.0, 0.0), value)


def _ratios(tp, fp, fn, tn, xp, eps) -> dict:
    """The four overlap ratios from counts (scalars or arrays); the only copy of the formulas."""
    err = xp.add(fp, fn)
    two_tp = xp.multiply(tp, 2.0)
    return {
        "dice": _ratio(two_tp, xp.add(two_tp, err), err, xp, eps),
        "precision": _ratio(tp, xp.add(tp, fp), err, xp, eps),
        "sensitivity": _ratio(tp, xp.add(tp, fn), err, xp, eps),
        "specificity": _ratio(tn, xp.add(tn, fp), err, xp, eps),
    }


def ratios_from_counts(counts: Counts) -> dict[str, float]:
    """Dice, precision, sensitivity, specificity of `counts` (empty convention of the module)."""
    r = _ratios(
        np.float64(counts.tp), np.float64(counts.fp), np.float64(counts.fn), np.float64(counts.tn), np, 0.0
    )
    return {k: float(v) for k, v in r.items()}


def dice(pred: Any, truth: Any) -> float:
    """2TP / (2TP + FP + FN); 1 when both masks are empty."""
    return ratios_from_counts(confusion_counts(pred, truth))["dice"]


def precision(pred: Any, truth: Any) -> float:
    """TP / (TP + FP); with nothing predicted: 1 if the truth is empty too, else 0."""
    return ratios_from_counts(confusion_counts(pred, truth))["precision"]


def sensitivity(pred: Any, truth: Any) -> float:
    """TP / (TP + FN) (recall); with an empty truth: 1 if nothing is predicted, else 0."""
    return ratios_from_counts(confusion_counts(pred, truth))["sensitivity"]


def specificity(pred: Any, truth: Any) -> float:
    """TN / (TN + FP); with no negative voxel in the truth: 1 if the masks are identical, else 0."""
    return ratios_from_counts(confusion_counts(pred, truth))["specificity"]


# ---------------------------------------------------------------- HD95
def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def surface_distances(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (prediction surface -> truth surface, truth -> prediction).

    Either mask empty: two empty arrays.
    """
    p, t = _masks(pred, truth)
    sp = _spacing(spacing, p.ndim)
    if not p.any() or not t.any():
        return np.empty(0), np.empty(0)
    both = p | t
    lo, hi = [], []
    for axis in range(p.ndim):
        other = tuple(a for a in range(p.ndim) if a != axis)
        idx = np.flatnonzero(both.any(axis=other))
        lo.append(max(int(idx[0]) - 1, 0))
        hi.append(min(int(idx[-1]) + 2, p.shape[axis]))
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sp_surf, st_surf = _surface(p[box]), _surface(t[box])
    d_to_t = ndimage.distance_transform_edt(~st_surf, sampling=sp)
    d_to_p = ndimage.distance_transform_edt(~sp_surf, sampling=sp)
    return d_to_t[sp_surf], d_to_p[st_surf]


def hd95_from_distances(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray) -> float:
    """HD95 (MedPy) of the two directed distance sets of `surface_distances`; NaN if either is empty."""
    if pred_to_truth.size == 0 or truth_to_pred.size == 0:
        return float("nan")
    return float(np.percentile(np.concatenate([pred_to_truth, truth_to_pred]), 95))


def hd95(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0) -> float:
    """95th percentile of the pooled symmetric surface distances in mm (MedPy); NaN if a mask is empty."""
    return hd95_from_distances(*surface_distances(pred, truth, spacing))


# ---------------------------------------------------------------- one volume
@dataclass(frozen=True)
class VolumeMetrics:
    """The metrics of one subject (HD95 in mm, NaN when a mask is empty or not computed)."""

    dice: float
    precision: float
    sensitivity: float
    specificity: float
    hd95: float
    tp: int
    fp: int
    fn: int
    tn: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def volume_metrics(
    pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0, *, compute_hd95: bool = True
) -> VolumeMetrics:
    """Dice, precision, sensitivity, specificity, HD95 (mm) and the counts of one volume."""
    p, t = _masks(pred, truth)
    sp = _spacing(spacing, p.ndim)
    c = confusion_counts(p, t)
    r = ratios_from_counts(c)
    h = hd95(p, t, sp) if compute_hd95 else float("nan")
    return VolumeMetrics(hd95=h, tp=c.tp, fp=c.fp, fn=c.fn, tn=c.tn, **r)
