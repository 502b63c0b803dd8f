"""The study's seed protocol: per-subject values of runs trained with several seeds, summarised.

Input: a long table, one row per (group keys..., seed, case_id) with a value column
(`value`, "dice" by default). Every table of the project follows the same rules:
- a subject counts once: its value is first averaged over the seeds (`seed_averaged`);
  the mean over subjects of these values is the reported number, and its 95% CI the
  percentile bootstrap over subjects (`metrics.summary.summarize`);
- run-to-run spread (the "±"): the SD (ddof=1) over seeds of the per-seed mean over
  subjects (`seed_spread`); NaN with a single seed;
- `seed_summary` gives both per group: mean, ci_low, ci_high, seed_std, n_seeds, n_test
  (subjects with a value), n_excluded (subjects without one);
- a difference between two models trained with the same seeds is decided on an interval that
  resamples both the seeds and the subjects (`two_level_bootstrap`): the subjects of one seed
  share that seed's trained model, so they are not independent evidence about the methods.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from segan_lib.metrics.summary import _check_boot, _percentile_ci, summarize

SEED_SUMMARY_COLUMNS = ("mean", "ci_low", "ci_high", "seed_std", "n_seeds", "n_test", "n_excluded")


def seed_averaged(df: pd.DataFrame, keys: Sequence[str], value: str = "dice") -> pd.DataFrame:
    """Per-subject value averaged over seeds: columns `keys`, case_id, `value`, n_seeds.

    NaN values are skipped (n_seeds counts the finite ones); a subject with no finite value
    keeps NaN, which `summarize` then excludes and counts.
    """
    keys = list(keys)
    g = df.groupby(keys + ["case_id"], sort=False, dropna=False)[value]
    return g.agg(**{value: "mean", "n_seeds": "count"}).reset_index()


def per_seed_means(df: pd.DataFrame, keys: Sequence[str], value: str = "dice") -> pd.DataFrame:
    """Mean over subjects for each seed: columns `keys`, seed, `value`."""
    keys = list(keys)
    return df.groupby(keys + ["seed"], sort=False, dropna=False)[value].mean().reset_index()


def seed_spread(df: pd.DataFrame, keys: Sequence[str], value: str = "dice") -> pd.DataFrame:
    """Run-to-run spread: SD (ddof=1) over seeds of the per-seed mean; columns `keys`, seed_std, n_seeds."""
    keys = list(keys)
    g = per_seed_means(df, keys, value).groupby(keys, sort=False, dropna=False)[value]
    return g.agg(seed_std="std", n_seeds="count").reset_index()


def seed_summary(df: pd.DataFrame, keys: Sequence[str], value: str = "dice", n_boot: int = 2000) -> pd.DataFrame:
    """Per group of `keys`: mean and bootstrap CI over subjects of the seed-averaged value, seed spread."""
    keys = list(keys)
    if df.empty:
        return pd.DataFrame(columns=keys + list(SEED_SUMMARY_COLUMNS))
    spread = seed_spread(df, keys, value).set_index(keys)
    rows = []
    for key, group in seed_averaged(df, keys, value).groupby(keys, sort=False, dropna=False):
        s = summarize(group[value].to_numpy(), n_boot=n_boot)
        key = key if isinstance(key, tuple) else (key,)
        sp = spread.loc[key if len(keys) > 1 else key[0]]
        rows.append({**dict(zip(keys, key)), "mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high,
                     "seed_std": float(sp["seed_std"]), "n_seeds": int(sp["n_seeds"]), "n_test": s.n,
                     "n_excluded": s.n_excluded})
    return pd.DataFrame(rows)


def two_level_bootstrap(matrix, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean of a subjects x seeds table and its percentile-bootstrap CI over both levels.

    Each resample draws the seeds (columns) with replacement, then the subjects (rows) with
    replacement, and takes the mean of that block (NaN cells skipped; subjects with no finite value
    dropped first), so the interval holds the run-to-run spread of training as well as the spread
    over subjects: with a few seeds whose models disagree it straddles zero even when every
    subject's seed-averaged value points the same way. One seed: the subject bootstrap of
    `metrics.summary.summarize` (the same draws for the same seed).
    Returns (mean, ci_low, ci_high); NaN for an empty table.
    """
    _check_boot(n_boot, ci)
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"a subjects x seeds table is 2-D, got shape {m.shape}")
    m = m[np.isfinite(m).any(axis=1)]
    if m.size == 0:
        nan = float("nan")
        return nan, nan, nan
    mean = float(np.nanmean(m))
    if m.shape[1] == 1:
        s = summarize(m[:, 0], n_boot=n_boot, seed=seed, ci=ci)
        return mean, s.ci_low, s.ci_high
    rng = np.random.default_rng(seed)
    n_subjects, n_seeds = m.shape
    cols = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds))
    rows = rng.integers(0, n_subjects, size=(int(n_boot), n_subjects))
    boot = np.array([np.nanmean(m[np.ix_(r, c)]) for r, c in zip(rows, cols)])
    lo, hi = _percentile_ci(boot, ci)
    return mean, lo, hi
