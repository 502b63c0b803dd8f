"""Metrics of a set of volumes under an explicit protocol: per volume, pooled or per slice.

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

The per-volume metrics themselves are in `segan_lib.metrics.volume` and the summaries in
`segan_lib.metrics.summary`. Under ``"pooled"`` and ``"per_slice"`` the bootstrap CI
resamples whole volumes (slices of one volume are not independent).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from segan_lib.metrics.summary import SUMMARY_COLUMNS, _check_boot, _percentile_ci, summarize_table
from segan_lib.metrics.volume import (
    COUNT_COLUMNS, METRICS, RATIO_METRICS, _masks, _ratios, _spacing, confusion_counts, volume_metrics,
)

PROTOCOLS = ("per_volume", "pooled", "per_slice")

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


def _volume_rows(sid, p: np.ndarray, t: np.ndarray, sp: tuple[float, ...], protocol: str, compute_hd95: bool,
                 empty_slices: str) -> list[dict]:
    """The per_subject rows of one volume (one row, or one per axial slice under "per_slice")."""
    if protocol == "per_volume":
        return [{"subject": sid, **volume_metrics(p, t, sp, compute_hd95=compute_hd95).as_dict()}]
    if protocol == "pooled":
        return [{"subject": sid, **asdict(confusion_counts(p, t))}]
    if p.ndim != 3:
        raise ValueError(f"subject {sid}: per_slice needs 3-D volumes, got shape {p.shape}")
    rows = []
    for k in range(p.shape[-1]):
        ps, ts = p[..., k], t[..., k]
        m = volume_metrics(ps, ts, sp[:-1], compute_hd95=compute_hd95).as_dict()
        both_empty = m["tp"] + m["fp"] + m["fn"] == 0
        if both_empty and empty_slices == "exclude":
            m.update({name: float("nan") for name in METRICS})
        rows.append({"subject": sid, "slice": k, "both_empty": both_empty, **m})
    return rows


def _set_tables(rows: list[dict], protocol: str, n_boot: int, seed: int,
                ci: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_subject table, summary) of the rows of all volumes under `protocol`."""
    if protocol == "per_volume":
        table = pd.DataFrame(rows, columns=["subject", *METRICS, *COUNT_COLUMNS])
        summary = summarize_table(table, list(METRICS), n_boot, seed, ci)
    elif protocol == "pooled":
        table = pd.DataFrame(rows, columns=["subject", *COUNT_COLUMNS])
        summary = _pooled_summary(table, n_boot, seed, ci)
    else:
        table = pd.DataFrame(rows, columns=["subject", "slice", "both_empty", *METRICS, *COUNT_COLUMNS])
        summary = _slice_summary(table, list(METRICS), n_boot, seed, ci)
    return table, summary


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
        rows.extend(_volume_rows(sid, p, t, sp, protocol, compute_hd95, empty_slices))
    table, summary = _set_tables(rows, protocol, n_boot, seed, ci)
    note = protocol_note(protocol, empty_slices)
    summary.attrs["protocol"] = protocol
    summary.attrs["note"] = note
    table.attrs["protocol"] = protocol
    return SetEvaluation(protocol=protocol, per_subject=table, summary=summary, note=note)
