"""The transfer study's tables: strategy matrix, paired comparisons, best strategy, crossover,
data efficiency and the missing-contrast tables, each a DataFrame from the long result tables.

Protocol, the same in every table: the Dice cells are the seed-averaged summaries of
`segan_lib.study.transfer_analysis.results`; the paired tests are the two-sided Wilcoxon
signed-rank test of `segan_lib.metrics.statistics.wilcoxon_paired` on the seed-averaged Dice
of the same test subjects, zero differences kept with ``zero_method="zsplit"``
(segan_lib.metrics.statistics.ZERO_METHOD, the project's one rule), effect size the matched-pairs rank-biserial correlation; the p-values of all
comparisons made by one call of `strategy_comparisons` (or `contrast_dropout_comparisons`)
form one family, Holm-adjusted. DICE_NOTE and TEST_NOTE are the notes printed under them.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd

from segan_lib.constants import CONTRASTS, FINE_TUNING_STRATEGIES, MISSING_FILLS, TRANSFER_STRATEGIES
from segan_lib.metrics.statistics import ZERO_METHOD, holm, wilcoxon_paired
from segan_lib.study.transfer_analysis.results import (
    SUBSET_AVERAGE, _at_fraction, _missing, _missing_sort_key, _order, _results, _sort_key, _title,
    _with_subset_average, all_subsets, format_cell, seed_averaged, seed_summary,
)
from segan_lib.study.transfer_plan import FOUR_CONTRAST_MODELS

ALPHA = 0.05
# ZERO_METHOD, the zero-difference rule of every Wilcoxon test here, is the project's one
# (segan_lib.metrics.statistics.ZERO_METHOD, "zsplit"); re-exported from here for the old name
PRESENT, ABSENT = "●", "○"

#: the note under every table of Dice values
DICE_NOTE = (
    "Dice per 3-D volume (threshold 0.5). Each cell: mean over test subjects of the per-subject "
    "mean over seeds, [bootstrap 95% CI over subjects (2000 resamples)], ± SD over seeds of the "
    "per-seed mean Dice (run-to-run spread; absent with a single seed)."
)
#: the note under every table of tests
TEST_NOTE = (
    "Paired over the same test subjects, on the per-subject Dice averaged over seeds: "
    "Wilcoxon signed-rank test, two-sided, zero differences kept with their ranks split "
    "evenly (zero_method 'zsplit'); p_holm: Holm step-down adjustment across the whole family "
    "of comparisons in this table; significant: p_holm < 0.05. effect_r: matched-pairs "
    "rank-biserial correlation (W+ - W-) / (W+ + W-), positive when a is better; diff: mean of a - b."
)


# ---------------------------------------------------------------- strategy matrix
def strategy_matrix(df: pd.DataFrame, fraction: float = 1.0, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (target, source, strategy) at `fraction`, scratch rows included (source '').

    Columns: target, source, strategy, mean, ci_low, ci_high, seed_std, n_seeds, n_test
    (test subjects with a finite Dice), n_excluded (subjects without one).
    """
    d = _at_fraction(_results(df), fraction)
    out = seed_summary(d, ["target", "source", "strategy"], n_boot=n_boot)
    if out.empty:
        return out
    out = out.sort_values(["target", "source", "strategy"], key=_matrix_sort_key, kind="stable")
    return out.reset_index(drop=True)


def _matrix_sort_key(s: pd.Series) -> pd.Series:
    known = {"target": CONTRASTS, "source": ("",) + CONTRASTS, "strategy": TRANSFER_STRATEGIES}.get(s.name)
    return _sort_key(known)(s) if known else s


def format_strategy_matrix(matrix: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The wide, printable matrix: rows 'source -> target', one column per strategy.

    Scratch does not depend on a source, so the target's scratch cell is repeated on each of
    its source rows (each row then reads against its own baseline); a target with only
    scratch runs gets the row 'none -> target'.
    """
    strategies = _order(matrix["strategy"], TRANSFER_STRATEGIES)
    rows = []
    for target in _order(matrix["target"], CONTRASTS):
        m = matrix[matrix["target"] == target]
        scratch = m[m["strategy"] == "scratch"]
        sources = _order(m.loc[m["source"] != "", "source"], CONTRASTS) or [""]
        for source in sources:
            row = {"source -> target": f"{_title(source) if source else 'none'} -> {_title(target)}"}
            for strategy in strategies:
                hit = scratch if strategy == "scratch" else m[(m["source"] == source) & (m["strategy"] == strategy)]
                row[strategy] = (format_cell(*hit.iloc[0][["mean", "ci_low", "ci_high", "seed_std"]], digits=digits)
                                 if len(hit) else "–")
            rows.append(row)
    return pd.DataFrame(rows, columns=["source -> target", *strategies])


# ---------------------------------------------------------------- paired comparisons
def _paired(a: pd.Series, b: pd.Series) -> dict[str, float | int]:
    """The Wilcoxon test of two per-subject Dice series (indexed by case_id) on the subjects both have.

    mean_a and mean_b are over the subjects with a finite value on both sides (the tested pairs).
    """
    common = a.index.intersection(b.index)
    va, vb = a.loc[common].to_numpy(), b.loc[common].to_numpy()
    t = wilcoxon_paired(va, vb, zero_method=ZERO_METHOD)
    both = np.isfinite(va) & np.isfinite(vb)
    return {"mean_a": float(va[both].mean()) if both.any() else float("nan"),
            "mean_b": float(vb[both].mean()) if both.any() else float("nan"),
            "diff": t.mean_diff, "median_diff": t.median_diff, "p": t.p, "effect_r": t.effect_r, "n": t.n}


def _holm_family(out: pd.DataFrame, a, b) -> pd.DataFrame:
    """Add p_holm (one family: every row), significant (p_holm < ALPHA) and winner (a, b or 'none')."""
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = (out["p_holm"] < ALPHA).astype(bool)
    out["winner"] = np.where(~out["significant"], "none", np.where(out["effect_r"] > 0, a, b))
    return out


def _pairs(strategies: Sequence[str]) -> list[tuple[str, str]]:
    """Each fine-tuning strategy vs scratch, then the fine-tuning strategies pairwise."""
    ft = [s for s in FINE_TUNING_STRATEGIES if s in strategies]
    return [(s, "scratch") for s in ft] + list(itertools.combinations(ft, 2))


COMPARISON_COLUMNS = ("target", "fraction", "source", "a", "b", "mean_a", "mean_b", "diff", "median_diff",
                      "p", "p_holm", "effect_r", "n", "significant", "winner")


def strategy_comparisons(df: pd.DataFrame, fraction: float | None = None) -> pd.DataFrame:
    """Paired comparisons of the strategies, per (target, fraction) and source, Holm-adjusted as one family.

    For each target, fraction (all when `fraction` is None) and source: each fine-tuning
    strategy vs scratch, and the fine-tuning strategies pairwise, on the seed-averaged Dice
    of the test subjects both have (`wilcoxon_paired`). Columns: COMPARISON_COLUMNS;
    diff = mean_a - mean_b over those subjects; winner is a or b when significant (by the
    sign of effect_r, the direction the test measured), else 'none'.
    """
    d = _results(df)
    if fraction is not None:
        d = _at_fraction(d, fraction)
    avg = seed_averaged(d, ["target", "fraction", "source", "strategy"])
    rows = []
    for target in _order(avg["target"], CONTRASTS):
        for frac in sorted(avg.loc[avg["target"] == target, "fraction"].unique()):
            here = avg[(avg["target"] == target) & (avg["fraction"] == frac)]
            scratch = here[here["strategy"] == "scratch"].set_index("case_id")["dice"]
            for source in _order(here.loc[here["source"] != "", "source"], CONTRASTS):
                runs = {s: g.set_index("case_id")["dice"] for s, g in here[here["source"] == source].groupby("strategy")}
                if len(scratch):
                    runs["scratch"] = scratch
                for a, b in _pairs(list(runs)):
                    rows.append({"target": target, "fraction": float(frac), "source": source, "a": a, "b": b,
                                 **_paired(runs[a], runs[b])})
    out = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_holm", "significant", "winner")])
    out = _holm_family(out, out["a"], out["b"])
    return out.loc[:, list(COMPARISON_COLUMNS)].reset_index(drop=True)


# ---------------------------------------------------------------- summaries of the comparisons
def best_strategy_per_target(df: pd.DataFrame, comparisons: pd.DataFrame | None = None,
                             n_boot: int = 2000) -> pd.DataFrame:
    """At fraction 1.0, per target: the (strategy, source) with the highest mean Dice and whether it beats scratch.

    `comparisons` defaults to ``strategy_comparisons(df)`` over all fractions, the family the
    comparisons table holds, so p_holm here is the same number as there. beats_scratch is
    True only when the best run is a fine-tuning one and its comparison with scratch is
    significant in its favour (False when the best is scratch itself).
    """
    matrix = strategy_matrix(df, 1.0, n_boot=n_boot)
    if comparisons is None:
        comparisons = strategy_comparisons(df)
    vs = _at_fraction(comparisons, 1.0)
    vs = vs[vs["b"] == "scratch"]
    rows = []
    for target in _order(matrix["target"], CONTRASTS):
        m = matrix[matrix["target"] == target]
        best = m.loc[m["mean"].idxmax()]
        scratch = m[m["strategy"] == "scratch"]
        scratch_mean = float(scratch["mean"].iloc[0]) if len(scratch) else float("nan")
        row = {"target": target, "strategy": best["strategy"], "source": best["source"], "mean": best["mean"],
               "ci_low": best["ci_low"], "ci_high": best["ci_high"], "scratch_mean": scratch_mean,
               "diff_vs_scratch": float("nan"), "p_holm_vs_scratch": float("nan"), "beats_scratch": False}
        hit = vs[(vs["target"] == target) & (vs["source"] == best["source"]) & (vs["a"] == best["strategy"])]
        if len(hit):
            h = hit.iloc[0]
            row.update(diff_vs_scratch=h["diff"], p_holm_vs_scratch=h["p_holm"],
                       beats_scratch=bool(h["significant"] and h["winner"] == h["a"]))
        rows.append(row)
    return pd.DataFrame(rows)


def data_efficiency_sources(df: pd.DataFrame) -> dict[str, list[str]]:
    """target -> the source contrast(s) of its fine-tuning runs below fraction 1 (the data-efficiency runs)."""
    d = _results(df)
    low = d[(d["fraction"] < 1.0) & (d["strategy"] != "scratch")]
    return {t: _order(low.loc[low["target"] == t, "source"], CONTRASTS) for t in _order(low["target"], CONTRASTS)}


def _fraction_label(f: float) -> str:
    return f"{f:g}"


def crossover_fraction(df: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per target, data-efficiency source and fine-tuning strategy: where fine-tuning stops beating scratch.

    crossover_fraction is the smallest fraction at which the strategy does not beat scratch
    significantly (Holm-adjusted, in its favour), None (NaN in the column) when it beats
    scratch at every fraction; crossover_n_subjects is the training-subject count there. beats_at lists
    the fractions at which it does beat scratch (so a non-monotone pattern shows), and
    'gap <fraction>' the mean Dice difference strategy - scratch at each fraction.
    `comparisons` defaults to ``strategy_comparisons(df)`` over all fractions.
    """
    d = _results(df)
    if comparisons is None:
        comparisons = strategy_comparisons(d)
    n_train = d.groupby(["target", "fraction"])["n_subjects"].first()
    vs = comparisons[comparisons["b"] == "scratch"]
    fractions = sorted(vs["fraction"].unique())
    rows = []
    for target, sources in data_efficiency_sources(d).items():
        for source in sources:
            for strategy in [s for s in FINE_TUNING_STRATEGIES if s in set(vs["a"])]:
                c = vs[(vs["target"] == target) & (vs["source"] == source) & (vs["a"] == strategy)]
                if c.empty:
                    continue
                c = c.sort_values("fraction")
                beats = c["significant"] & (c["winner"] == strategy)
                not_beating = c.loc[~beats, "fraction"]
                cross = float(not_beating.iloc[0]) if len(not_beating) else None
                row = {"target": target, "source": source, "strategy": strategy, "crossover_fraction": cross,
                       "crossover_n_subjects": int(n_train.loc[(target, cross)]) if cross is not None else None,
                       "beats_at": ", ".join(_fraction_label(f) for f in c.loc[beats, "fraction"])}
                gaps = dict(zip(c["fraction"], c["diff"]))
                row.update({f"gap {_fraction_label(f)}": gaps.get(f, float("nan")) for f in fractions})
                rows.append(row)
    columns = ["target", "source", "strategy", "crossover_fraction", "crossover_n_subjects", "beats_at",
               *(f"gap {_fraction_label(f)}" for f in fractions)]
    out = pd.DataFrame(rows, columns=columns)
    # None -> NaN: keep the subject counts integers (an empty CSV cell, not 100.0)
    out["crossover_fraction"] = out["crossover_fraction"].astype(float)
    out["crossover_n_subjects"] = out["crossover_n_subjects"].astype("Int64")
    return out


# ---------------------------------------------------------------- data efficiency
def data_efficiency_table(df: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Dice against the number of target training subjects, per target, strategy and fraction.

    Rows: scratch (source '') and each fine-tuning strategy of the target's data-efficiency
    source(s), at every fraction run. Columns: target, source, strategy, fraction,
    n_subjects (training), mean, ci_low, ci_high, seed_std, n_seeds, n_test, n_excluded.
    """
    d = _results(df)
    parts = []
    for target, sources in data_efficiency_sources(d).items():
        t = d[d["target"] == target]
        parts.append(t[(t["strategy"] == "scratch") | t["source"].isin(sources)])
    if not parts:
        return seed_summary(d.iloc[:0], ["target", "source", "strategy", "fraction", "n_subjects"])
    out = seed_summary(pd.concat(parts), ["target", "source", "strategy", "fraction", "n_subjects"], n_boot=n_boot)
    out = out.sort_values(["target", "source", "strategy", "fraction"], key=_matrix_sort_key, kind="stable")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- missing contrasts
def missing_contrast_summary(df: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Numbers behind `missing_contrast_table`: one row per (model, subset, fill) present in the data,
    and per (model, fill) evaluated on all 15 subsets the subset SUBSET_AVERAGE (per-subject mean over them)."""
    out = seed_summary(_with_subset_average(_missing(df)), ["model", "subset", "fill"], n_boot=n_boot)
    if out.empty:
        return out
    out = out.sort_values(["model", "subset", "fill"], key=_missing_sort_key, kind="stable")
    return out.reset_index(drop=True)


def _missing_column(model: str, fill: str) -> str:
    return f"Dice, {fill} fill" + (", dropout-trained" if model == "contrast_dropout" else "")


def missing_contrast_table(df: pd.DataFrame, digits: int = 3, n_boot: int = 2000) -> pd.DataFrame:
    """The 15 contrast subsets x fill mode, as the missing-modality tables of the literature.

    Columns: T1, T1c, T2, FLAIR ('●' present, '○' missing), then 'Dice, <fill> fill' per
    fill mode (zero, mean, then any other) with 'mean [95% CI] ±seed SD', and the same
    columns ', dropout-trained' for the model trained with contrast dropout when the results
    hold one; rows in the order of `all_subsets` (one contrast first), '–' where a subset
    was not evaluated; then, as in the missing-modality papers, the row 'Average' (T1 column)
    of the per-subject mean over the 15 subsets, when some model and fill has all of them.
    """
    summary = missing_contrast_summary(df, n_boot)
    fills = _order(summary["fill"], MISSING_FILLS) if len(summary) else list(MISSING_FILLS)
    models = _order(summary["model"], FOUR_CONTRAST_MODELS) if len(summary) else ["four_contrast"]
    index = summary.set_index(["model", "subset", "fill"]) if len(summary) else None

    def dice_cells(subset: str) -> dict[str, str]:
        cells = {}
        for model in models:
            for fill in fills:
                cell = "–"
                if index is not None and (model, subset, fill) in index.index:
                    s = index.loc[(model, subset, fill)]
                    cell = format_cell(s["mean"], s["ci_low"], s["ci_high"], s["seed_std"], digits)
                cells[_missing_column(model, fill)] = cell
        return cells

    rows = [{**{_title(c): PRESENT if c in subset.split("+") else ABSENT for c in CONTRASTS}, **dice_cells(subset)}
            for subset in all_subsets()]
    if index is not None and (index.index.get_level_values("subset") == SUBSET_AVERAGE).any():
        rows.append({**dict(zip((_title(c) for c in CONTRASTS), ("Average", "", "", ""))),
                     **dice_cells(SUBSET_AVERAGE)})
    return pd.DataFrame(rows)


DROPOUT_COLUMNS = ("subset", "fill", "mean_dropout", "mean_plain", "diff", "median_diff", "p", "p_holm", "effect_r",
                   "n", "significant", "winner")


def contrast_dropout_comparisons(df: pd.DataFrame) -> pd.DataFrame:
    """Does training with contrast dropout help when contrasts are missing? Paired, per subset and fill.

    For each (subset, fill) evaluated for both models: Wilcoxon signed-rank test of the
    dropout-trained model (a) against the plain four-contrast model (b) on the seed-averaged
    Dice of the same test subjects, and per fill on the subjects' mean over the 15 subsets
    (subset SUBSET_AVERAGE); all rows one Holm family. Columns: DROPOUT_COLUMNS;
    winner 'dropout', 'plain' or 'none'. No rows when either model is absent.
    """
    avg = seed_averaged(_with_subset_average(_missing(df)), ["model", "subset", "fill"])
    rows = []
    for (subset, fill), here in avg.groupby(["subset", "fill"], sort=False):
        by_model = {m: g.set_index("case_id")["dice"] for m, g in here.groupby("model")}
        if not set(FOUR_CONTRAST_MODELS) <= set(by_model):
            continue
        test = _paired(by_model["contrast_dropout"], by_model["four_contrast"])
        test["mean_dropout"], test["mean_plain"] = test.pop("mean_a"), test.pop("mean_b")
        rows.append({"subset": subset, "fill": fill, **test})
    out = pd.DataFrame(rows, columns=[c for c in DROPOUT_COLUMNS if c not in ("p_holm", "significant", "winner")])
    out = _holm_family(out, "dropout", "plain")
    if len(out):
        out = out.sort_values(["subset", "fill"], key=_missing_sort_key, kind="stable")
    return out.loc[:, list(DROPOUT_COLUMNS)].reset_index(drop=True)
