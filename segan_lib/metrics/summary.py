"""Summaries of one metric over subjects: mean, SD, median and a bootstrap CI of the mean.

Aggregates (`summarize`): mean, SD (ddof=1), median, n (finite values), n_excluded
(NaN values), and the 95% percentile-bootstrap CI of the mean (2000 resamples, seeded
``numpy.random.Generator``, so deterministic). NaN values (an HD95 with an empty side,
an excluded slice) are left out and counted. `summarize_table` does it for each metric
column of a per-subject table; the protocols of `segan_lib.metrics.protocols` reuse the
CI helpers for their bootstrap over whole volumes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from segan_lib.metrics.volume import METRICS

SUMMARY_COLUMNS = ("metric", "mean", "std", "median", "n", "n_excluded", "ci_low", "ci_high")


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
