"""Reading and averaging the transfer study's long result tables, one row per (run, test subject).

`_results` and `_missing` check and normalise the two inputs described in
`segan_lib.study.transfer_analysis` (the transfer runs; the missing-contrast evaluation),
the study's seed protocol (`seed_averaged`, `seed_spread`, `seed_summary`: a subject counts
once, its Dice averaged over seeds; the "±" is the SD over seeds of the per-seed mean) is
`segan_lib.metrics.seeds`, shared with the paper's tables, and re-exported here with the cell
format (`format_cell`, from `segan_lib.reporting.tables`). The helpers that order contrasts, strategies and subsets live here too.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from segan_lib.constants import CONTRASTS, MISSING_FILLS, TRANSFER_STRATEGIES
from segan_lib.metrics.seeds import per_seed_means, seed_averaged, seed_spread, seed_summary  # noqa: F401 - re-exported
from segan_lib.reporting.figures import CONTRAST_TITLES
from segan_lib.reporting.tables import format_cell  # noqa: F401 - re-exported
from segan_lib.study.transfer_plan import FOUR_CONTRAST_MODELS, MISSING_COLUMNS, RESULT_COLUMNS, contrast_subsets


# ---------------------------------------------------------------- inputs
def _order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    """Distinct values, the known ones in their canonical order first, then the rest sorted."""
    values = list(dict.fromkeys(values))
    return [v for v in known if v in values] + sorted(v for v in values if v not in known)


def _sort_key(known: Sequence[str]):
    rank = {v: i for i, v in enumerate(known)}
    return lambda s: s.map(lambda v: (rank.get(v, len(known)), str(v)))


def _check_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing} (has {list(df.columns)})")


def _results(df: pd.DataFrame) -> pd.DataFrame:
    """A checked, normalised copy of the transfer results (source '' for scratch, float fraction)."""
    _check_columns(df, RESULT_COLUMNS, "the transfer results")
    out = df.loc[:, list(RESULT_COLUMNS)].copy()
    out["source"] = out["source"].fillna("").astype(str)
    out["strategy"] = out["strategy"].astype(str)
    unknown = sorted(set(out["strategy"]) - set(TRANSFER_STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategy {unknown}; expected one of {TRANSFER_STRATEGIES}")
    # a model trained from scratch has no source, whatever the runner wrote there
    out.loc[out["strategy"] == "scratch", "source"] = ""
    no_source = (out["strategy"] != "scratch") & (out["source"] == "")
    if no_source.any():
        raise ValueError(f"{int(no_source.sum())} fine-tuning rows have no source contrast")
    out["target"] = out["target"].astype(str)
    out["fraction"] = out["fraction"].astype(float)
    out["case_id"] = out["case_id"].astype(str)
    out["dice"] = out["dice"].astype(float)
    # a duplicated row would silently weigh one subject twice in a per-seed mean
    dup = out.duplicated(["target", "source", "strategy", "fraction", "seed", "case_id"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} duplicated (target, source, strategy, fraction, seed, case_id) rows")
    counts = out.groupby(["target", "fraction"])["n_subjects"].nunique()
    if (counts > 1).any():
        bad = [f"{t} at {f:g}" for (t, f) in counts[counts > 1].index]
        raise ValueError(f"several n_subjects values for one target and fraction: {bad}")
    return out


def _at_fraction(df: pd.DataFrame, fraction: float) -> pd.DataFrame:
    return df[np.isclose(df["fraction"], float(fraction))]


def _canonical_subset(subset: str) -> str:
    parts = [p.strip().lower() for p in str(subset).split("+") if p.strip()]
    unknown = sorted(set(parts) - set(CONTRASTS))
    if unknown or not parts:
        raise ValueError(f"subset {subset!r}: expected contrasts from {CONTRASTS} joined by '+'")
    return "+".join(c for c in CONTRASTS if c in parts)


def all_subsets() -> list[str]:
    """The 15 non-empty contrast subsets: by number of contrasts, then in t1, t1c, t2, flair order."""
    return ["+".join(c) for c in contrast_subsets()]


def _title(contrast: str) -> str:
    return CONTRAST_TITLES.get(contrast, contrast)


# ---------------------------------------------------------------- missing contrasts
def _missing(df: pd.DataFrame) -> pd.DataFrame:
    """A checked, normalised copy of the missing-contrast results (canonical subset names)."""
    _check_columns(df, MISSING_COLUMNS, "the missing-contrast results")
    d = df.loc[:, list(MISSING_COLUMNS)].copy()
    d["model"] = d["model"].astype(str)
    unknown = sorted(set(d["model"]) - set(FOUR_CONTRAST_MODELS))
    if unknown:
        raise ValueError(f"unknown model {unknown} in the missing-contrast results; expected one of "
                         f"{FOUR_CONTRAST_MODELS}")
    d["subset"] = d["subset"].map(_canonical_subset)
    d["fill"] = d["fill"].astype(str)
    d["case_id"] = d["case_id"].astype(str)
    d["dice"] = d["dice"].astype(float)
    return d


#: the subset label of the literature's summary row: per subject, the mean Dice over the 15 subsets
SUBSET_AVERAGE = "average"


def _with_subset_average(d: pd.DataFrame) -> pd.DataFrame:
    """d plus, for each (model, fill, seed, subject) evaluated on all 15 subsets, a row of subset
    SUBSET_AVERAGE holding that subject's mean Dice over them (the missing-modality papers' 'average')."""
    n_subsets = len(all_subsets())
    g = d.groupby(["model", "fill", "seed", "case_id"], sort=False)
    avg = g.agg(dice=("dice", "mean"), n=("subset", "nunique")).reset_index()
    avg = avg[avg["n"] == n_subsets].drop(columns="n").assign(subset=SUBSET_AVERAGE)
    return pd.concat([d, avg[list(MISSING_COLUMNS)]], ignore_index=True)


def _missing_sort_key(s: pd.Series) -> pd.Series:
    known = {"model": FOUR_CONTRAST_MODELS, "subset": all_subsets() + [SUBSET_AVERAGE], "fill": MISSING_FILLS}[s.name]
    return _sort_key(known)(s)
