"""The study's seed protocol: per-subject values of runs trained with several seeds, summarised.

Input: a long table, one row per (group keys..., seed, case_id) with a value column
(`value`, "dice" by default). Every table of the project follows the same rules:
- a subject counts once: its value is first averaged over the seeds (`seed_averaged`);
  the mean over subjects of these values is the reported number, and its 95% CI the
  percentile bootstrap over subjects (`metrics.summary.summarize`);
- run-to-run spread (the "±"): the SD (ddof=1) over seeds of the per-seed mean over
  subjects (`seed_spread`); NaN with a single seed;
- `seed_summary` gives both per group: mean, ci_low, ci_high, seed_std, n_seeds, n_test
  (subjects with a value), n_excluded (subjects without one).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from segan_lib.metrics.summary import summarize

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
