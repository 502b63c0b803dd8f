"""Segmentation metrics: per volume, over a set of volumes, and per batch for training.

Every number in a results table comes from `evaluate_set`, whose `note` (the text of
`protocol_note`) goes under the table. The default protocol, and the one the project
reports, is ``"per_volume"``: each metric is computed on each 3-D volume, then averaged
over volumes. The authors mixed protocols (see the paper notes), so the others are
explicit options, never silent:

- ``"per_volume"``: metrics per 3-D volume, then mean (SD, median, 95% CI) over volumes.
- ``"pooled"``: the voxels of all volumes counted as one confusion matrix, then one
  Dice, precision, sensitivity and specificity for the set (no HD95).
- ``"per_slice"``: metrics per axial slice (the last axis), then the mean over all
  slices of all volumes. Slices empty in both prediction and truth are excluded by
  default (``empty_slices="exclude"``) or count as 1 (``empty_slices="one"``).

Inputs. Masks are numpy arrays of the same shape (else ValueError naming both
shapes). Boolean and integer arrays: non-zero is foreground (so a label map gives the
whole tumour). Floating arrays must hold only 0 and 1 (a probability map is refused:
call `binarize` first). `binarize(p, t)` is ``p > t``, the rule Keras' own metrics use
and the one the batch metrics below use.

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
percentiles; the two agree on symmetric errors and differ otherwise. Computed with
``scipy.ndimage.distance_transform_edt(sampling=spacing)`` on the bounding box of both
masks plus a one-voxel margin (which gives the same values as on the full array).

Aggregates (`summarize`): mean, SD (ddof=1), median, n (finite values), n_excluded
(NaN values), and the 95% percentile-bootstrap CI of the mean (2000 resamples, seeded
``numpy.random.Generator``, so deterministic). Under ``"pooled"`` and ``"per_slice"``
the bootstrap resamples whole volumes (slices of one volume are not independent).

Batch metrics for training monitoring (`dice_per_sample`, `precision_per_sample`,
`sensitivity_per_sample`, `specificity_per_sample`) use keras.ops only, so they run
under any Keras 3 backend and inside a compiled test_step; they share the formulas and
the empty convention above. With ``threshold=None`` they are soft (the probabilities
enter the counts directly: TP = sum(p g), ...). The SegAN soft-Dice *loss* (with
squared terms) is not here; it belongs with the losses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

PROTOCOLS = ("per_volume", "pooled", "per_slice")
RATIO_METRICS = ("dice", "precision", "sensitivity", "specificity")
METRICS = RATIO_METRICS + ("hd95",)
COUNT_COLUMNS = ("tp", "fp", "fn", "tn")
SUMMARY_COLUMNS = ("metric", "mean", "std", "median", "n", "n_excluded", "ci_low", "ci_high")

PROTOCOL_NOTES = {
    "per_volume": (
        "Metrics computed per 3-D volume, then averaged over volumes (mean, SD, median; "
        "95% percentile-bootstrap CI of the mean over volumes). HD95 in mm (MedPy "
        "definition); volumes with an empty prediction or truth have no HD95 and are "
        "excluded from its mean (n_excluded)."
    ),
    "pooled": (
        "All voxels of all volumes counted as one confusion matrix; one Dice, precision, "
        "sensitivity and specificity for the whole set (the 'mean' column holds this "
        "pooled value; no SD or median). 95% CI by bootstrap over volumes. No HD95."
    ),
    "per_slice": (
        "Metrics computed per axial slice (last axis), then averaged over all slices of "
        "all volumes; slices empty in both prediction and truth are excluded "
        "(n_excluded). HD95 in mm within the slice. 95% CI by bootstrap over volumes."
    ),
}
_PER_SLICE_INCLUDE_NOTE = (
    "Metrics computed per axial slice (last axis), then averaged over all slices of all "
    "volumes; slices empty in both prediction and truth count as 1 for Dice, precision, "
    "sensitivity and specificity. HD95 in mm within the slice (NaN, excluded, where a "
    "side is empty). 95% CI by bootstrap over volumes."
)


def protocol_note(protocol: str, empty_slices: str = "exclude") -> str:
    """The line to print under a table computed with `protocol`."""
    _check_protocol(protocol)
    if protocol == "per_slice" and _check_empty_slices(empty_slices) == "one":
        return _PER_SLICE_INCLUDE_NOTE
    return PROTOCOL_NOTES[protocol]


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
                "(a probability map?); binarize it first (segan_lib.metrics.core.binarize)"
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


def hd95(pred: Any, truth: Any, spacing: float | Sequence[float] = 1.0) -> float:
    """95th percentile of the pooled symmetric surface distances in mm (MedPy); NaN if a mask is empty."""
    a, b = surface_distances(pred, truth, spacing)
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.percentile(np.concatenate([a, b]), 95))


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


# ---------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class Summary:
    """Aggregate of one metric over subjects (NaN values excluded and counted)."""

    mean: float
    std: float
    median: float
    n: int
    n_excluded: int
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _percentile_ci(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def _check_boot(n_boot: int, ci: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def summarize(values: Iterable[float], n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> Summary:
    """Mean, SD (ddof=1), median, n, n_excluded (NaN) and percentile-bootstrap CI of the mean.

    The bootstrap draws `n_boot` resamples of the finite values with replacement from
    ``numpy.random.default_rng(seed)``: the same values and seed give the same CI.
    """
    _check_boot(n_boot, ci)
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    nan = np.isnan(v)
    n_excluded = int(nan.sum())
    v = v[~nan]
    n = int(v.size)
    if n == 0:
        return Summary(float("nan"), float("nan"), float("nan"), 0, n_excluded, float("nan"), float("nan"))
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))
    lo, hi = _percentile_ci(v[idx].mean(axis=1), ci)
    return Summary(mean, std, float(np.median(v)), n, n_excluded, lo, hi)


def summarize_table(
    per_subject: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """`summarize` applied to each metric column; one row per metric (columns SUMMARY_COLUMNS).

    `metrics` defaults to those of METRICS present in the table.
    """
    if metrics is None:
        metrics = [m for m in METRICS if m in per_subject.columns]
    missing = [m for m in metrics if m not in per_subject.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table (it has {list(per_subject.columns)})")
    rows = [
        {"metric": m, **summarize(per_subject[m].to_numpy(dtype=float), n_boot, seed, ci).as_dict()}
        for m in metrics
    ]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# ---------------------------------------------------------------- a set of volumes
@dataclass
class SetEvaluation:
    """What `evaluate_set` returns.

    per_subject: per_volume -> one row per volume (metrics and counts);
                 pooled -> one row per volume with its counts (the pooled metrics come from their sums);
                 per_slice -> one row per (volume, slice), NaN metrics on excluded slices.
    summary: one row per metric, columns SUMMARY_COLUMNS.
    note: the line that goes under every table made from it.
    """

    protocol: str
    per_subject: pd.DataFrame
    summary: pd.DataFrame
    note: str


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def _check_empty_slices(empty_slices: str) -> str:
    if empty_slices not in ("exclude", "one"):
        raise ValueError(f"empty_slices must be 'exclude' or 'one', got {empty_slices!r}")
    return empty_slices


def _items(predictions, truths, subject_ids):
    """Yield (subject, pred, truth) lazily from lists, iterables of pairs or of triples."""
    if truths is None:
        source = iter(predictions)
    else:
        source = zip(predictions, truths, strict=True)
    ids = iter(subject_ids) if subject_ids is not None else None
    for i, item in enumerate(source):
        if truths is not None:
            (p, t), sid = item, i
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            sid, p, t = item
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            (p, t), sid = item, i
        else:
            raise ValueError(
                f"item {i}: with truths=None, expected (prediction, truth) or (subject, prediction, truth) tuples"
            )
        if ids is not None:
            try:
                sid = next(ids)
            except StopIteration:
                raise ValueError(f"subject_ids has fewer entries than volumes (ran out at volume {i})") from None
        yield sid, p, t
    if ids is not None and next(ids, _END) is not _END:
        raise ValueError("subject_ids has more entries than there are volumes")


_END = object()


def _pooled_summary(counts: pd.DataFrame, n_boot: int, seed: int, ci: float) -> pd.DataFrame:
    c = counts[list(COUNT_COLUMNS)].to_numpy(dtype=np.float64)  # (volumes, 4)
    g = c.shape[0]
    total = c.sum(axis=0)
    point = _ratios(*total, np, 0.0)
    if g:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, g, size=(int(n_boot), g))
        boot_totals = c[idx].sum(axis=1)  # (n_boot, 4)
        boot = _ratios(*boot_totals.T, np, 0.0)
    rows = []
    for m in RATIO_METRICS:
        lo, hi = _percentile_ci(boot[m], ci) if g else (float("nan"), float("nan"))
        rows.append(
            {"metric": m, "mean": float(point[m]) if g else float("nan"), "std": float("nan"),
             "median": float("nan"), "n": g, "n_excluded": 0, "ci_low": lo, "ci_high": hi}
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _slice_summary(table: pd.DataFrame, metrics: Sequence[str], n_boot: int, seed: int, ci: float) -> pd.DataFrame:
    volumes = pd.unique(table["subject"]) if len(table) else []
    codes = pd.Categorical(table["subject"], categories=volumes).codes if len(table) else np.empty(0, int)
    g = len(volumes)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(int(n_boot), g)) if g else None
    rows = []
    for m in metrics:
        v = table[m].to_numpy(dtype=float)
        ok = ~np.isnan(v)
        n, n_excluded = int(ok.sum()), int((~ok).sum())
        if n == 0:
            rows.append({"metric": m, "mean": float("nan"), "std": float("nan"), "median": float("nan"),
                         "n": 0, "n_excluded": n_excluded, "ci_low": float("nan"), "ci_high": float("nan")})
            continue
        sums = np.bincount(codes[ok], weights=v[ok], minlength=g)
        cnts = np.bincount(codes[ok], minlength=g).astype(float)
        bs, bc = sums[idx].sum(axis=1), cnts[idx].sum(axis=1)
        boot = bs[bc > 0] / bc[bc > 0]
        lo, hi = _percentile_ci(boot, ci)
        std = float(v[ok].std(ddof=1)) if n > 1 else float("nan")
        rows.append({"metric": m, "mean": float(v[ok].mean()), "std": std, "median": float(np.median(v[ok])),
                     "n": n, "n_excluded": n_excluded, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def evaluate_set(
    predictions: Iterable[Any],
    truths: Iterable[Any] | None = None,
    *,
    spacing: float | Sequence[float] = 1.0,
    protocol: str = "per_volume",
    subject_ids: Iterable[Any] | None = None,
    compute_hd95: bool = True,
    empty_slices: str = "exclude",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> SetEvaluation:
    """Metrics of a set of volumes under an explicit `protocol` (see the module docstring).

    predictions, truths: two iterables of masks, consumed together and lazily (generators
    are fine: only one volume is held at a time); or truths=None and `predictions` an
    iterable of (prediction, truth) or (subject, prediction, truth). `subject_ids`
    overrides the subject names (default: the triple's first item, else 0, 1, ...).
    spacing: voxel size in mm, one value or one per axis, the same for every volume.
    compute_hd95: False skips HD95 (NaN); "pooled" never computes it.
    empty_slices ("per_slice" only): "exclude" (default) or "one".
    """
    _check_protocol(protocol)
    _check_empty_slices(empty_slices)
    _check_boot(n_boot, ci)
    rows: list[dict] = []
    for sid, pred, truth in _items(predictions, truths, subject_ids):
        p, t = _masks(pred, truth)
        sp = _spacing(spacing, p.ndim)
        if protocol == "per_volume":
            rows.append({"subject": sid, **volume_metrics(p, t, sp, compute_hd95=compute_hd95).as_dict()})
        elif protocol == "pooled":
            rows.append({"subject": sid, **asdict(confusion_counts(p, t))})
        else:
            if p.ndim != 3:
                raise ValueError(f"subject {sid}: per_slice needs 3-D volumes, got shape {p.shape}")
            for k in range(p.shape[-1]):
                ps, ts = p[..., k], t[..., k]
                m = volume_metrics(ps, ts, sp[:-1], compute_hd95=compute_hd95).as_dict()
                both_empty = m["tp"] + m["fp"] + m["fn"] == 0
                if both_empty and empty_slices == "exclude":
                    m.update({name: float("nan") for name in METRICS})
                rows.append({"subject": sid, "slice": k, "both_empty": both_empty, **m})
    if protocol == "per_volume":
        table = pd.DataFrame(rows, columns=["subject", *METRICS, *COUNT_COLUMNS])
        summary = summarize_table(table, list(METRICS), n_boot, seed, ci)
    elif protocol == "pooled":
        table = pd.DataFrame(rows, columns=["subject", *COUNT_COLUMNS])
        summary = _pooled_summary(table, n_boot, seed, ci)
    else:
        table = pd.DataFrame(rows, columns=["subject", "slice", "both_empty", *METRICS, *COUNT_COLUMNS])
        summary = _slice_summary(table, list(METRICS), n_boot, seed, ci)
    note = protocol_note(protocol, empty_slices)
    summary.attrs["protocol"] = protocol
    summary.attrs["note"] = note
    table.attrs["protocol"] = protocol
    return SetEvaluation(protocol=protocol, per_subject=table, summary=summary, note=note)


# ---------------------------------------------------------------- batch metrics (keras.ops only)
def _batch_ratios(y_true, y_pred, threshold, eps, per_channel):
    from keras import ops

    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    ndim = len(y_pred.shape)
    if len(y_true.shape) != ndim:
        raise ValueError(f"y_pred shape {tuple(y_pred.shape)} and y_true shape {tuple(y_true.shape)} differ in rank")
    if ndim < 2 or (per_channel and ndim < 3):
        raise ValueError(f"expected (batch, ..., C) tensors, got shape {tuple(y_pred.shape)}")
    if threshold is None:
        p = ops.cast(y_pred, "float32")
        g = ops.cast(y_true, "float32")
    else:
        p = ops.cast(ops.greater(y_pred, threshold), "float32")
        g = ops.cast(ops.not_equal(y_true, 0), "float32")
    axes = tuple(range(1, ndim - 1)) if per_channel else tuple(range(1, ndim))
    tp = ops.sum(p * g, axis=axes)
    fp = ops.sum(p * (1.0 - g), axis=axes)
    fn = ops.sum((1.0 - p) * g, axis=axes)
    tn = ops.sum((1.0 - p) * (1.0 - g), axis=axes)
    return _ratios(tp, fp, fn, tn, ops, eps)


def dice_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Dice of each sample of a (batch, H, W, C) batch: shape (batch,), or (batch, C) if per_channel.

    threshold: prediction foreground is ``y_pred > threshold`` and truth foreground is
    ``y_true != 0``; None gives the soft version (probabilities counted directly).
    A denominator <= eps counts as zero (module's empty convention: both empty -> 1).
    """
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["dice"]


def precision_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Precision of each sample; see `dice_per_sample` for the arguments and shapes."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["precision"]


def sensitivity_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Sensitivity (recall) of each sample; see `dice_per_sample`."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["sensitivity"]


def specificity_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Specificity of each sample; see `dice_per_sample`."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["specificity"]


def batch_metrics(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False) -> dict:
    """All four per-sample ratios at once (one pass over the batch): {name: (batch,) tensor}."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)
