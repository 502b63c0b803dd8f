"""Analysis of the transfer study: pure functions from per-subject results to tables and a figure.

Nothing here trains or evaluates a model; every function takes DataFrames of per-subject
Dice (as the evaluation writes them) and returns DataFrames or a Figure, and
`write_transfer_outputs` writes them all.

Input 1, the transfer runs, one row per (run, test subject):
    target      contrast the model is fine-tuned and tested on ('t1', 't1c', 't2', 'flair')
    source      contrast of the pre-trained model; '' for a model trained from scratch
    strategy    'scratch' | 'full' (all trainable) | 'critic' (critic frozen) |
                'encoder' (segmentor encoder frozen)
    fraction    fraction of the target's training subjects (0.1, 0.25, 0.5, 1.0)
    n_subjects  number of target training subjects that fraction is
    seed, case_id, dice (Dice per 3-D volume, threshold 0.5; NaN allowed)
Input 2, the missing-contrast evaluation: model ('four_contrast', or 'contrast_dropout' for
the model trained with random contrast dropout), subset ('t1+t2', contrasts present, joined
by '+'), fill ('zero' | 'mean'), seed, case_id, dice.

Protocol, the same in every table:
- seeds: each subject's Dice is first averaged over the seeds of a run (`seed_averaged`), so
  a subject counts once; the mean over subjects of these values is the reported Dice, and
  its 95% CI is the percentile bootstrap over subjects (`metrics.summarize`).
- run-to-run spread (the "±"): the SD (ddof=1) over seeds of the per-seed mean Dice
  (`seed_spread`); NaN, and left out of the cell, with a single seed.
- paired tests: two-sided Wilcoxon signed-rank test on the seed-averaged Dice of the same
  test subjects, zero differences kept with ``zero_method="zsplit"`` (see `wilcoxon_paired`
  for why), effect size the matched-pairs rank-biserial correlation; the p-values of all
  comparisons made by one call of `strategy_comparisons` form one family, Holm-adjusted.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from segan_lib.constants import FINE_TUNING_STRATEGIES, MISSING_FILLS, TRANSFER_STRATEGIES
from segan_lib.reporting.figures import CONTRAST_TITLES, save_figure
from segan_lib.constants import CONTRASTS
from segan_lib.metrics.core import summarize
from segan_lib.reporting.tables import write_table
from segan_lib.study.transfer_plan import FOUR_CONTRAST_MODELS, MISSING_COLUMNS, RESULT_COLUMNS, contrast_subsets

ALPHA = 0.05
#: the zero-difference rule of every Wilcoxon test here (see wilcoxon_paired)
ZERO_METHOD = "zsplit"
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


# ---------------------------------------------------------------- seeds
def seed_averaged(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per-subject Dice averaged over seeds: columns `keys`, case_id, dice, n_seeds.

    NaN values are skipped (n_seeds counts the finite ones); a subject with no finite value
    keeps NaN, which `summarize` then excludes and counts.
    """
    keys = list(keys)
    g = df.groupby(keys + ["case_id"], sort=False, dropna=False)["dice"]
    return g.agg(dice="mean", n_seeds="count").reset_index()


def per_seed_means(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean Dice over subjects for each seed: columns `keys`, seed, dice."""
    keys = list(keys)
    return df.groupby(keys + ["seed"], sort=False, dropna=False)["dice"].mean().reset_index()


def seed_spread(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Run-to-run spread: SD (ddof=1) over seeds of the per-seed mean Dice; columns `keys`, seed_std, n_seeds."""
    keys = list(keys)
    g = per_seed_means(df, keys).groupby(keys, sort=False, dropna=False)["dice"]
    return g.agg(seed_std="std", n_seeds="count").reset_index()


def _summary_table(df: pd.DataFrame, keys: Sequence[str], n_boot: int = 2000) -> pd.DataFrame:
    """Per group of `keys`: mean and bootstrap CI over subjects of the seed-averaged Dice, seed spread."""
    keys = list(keys)
    if df.empty:
        return pd.DataFrame(columns=keys + ["mean", "ci_low", "ci_high", "seed_std", "n_seeds", "n_test",
                                            "n_excluded"])
    spread = seed_spread(df, keys).set_index(keys)
    rows = []
    for key, group in seed_averaged(df, keys).groupby(keys, sort=False, dropna=False):
        s = summarize(group["dice"].to_numpy(), n_boot=n_boot)
        key = key if isinstance(key, tuple) else (key,)
        sp = spread.loc[key if len(keys) > 1 else key[0]]
        rows.append({**dict(zip(keys, key)), "mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high,
                     "seed_std": float(sp["seed_std"]), "n_seeds": int(sp["n_seeds"]), "n_test": s.n,
                     "n_excluded": s.n_excluded})
    return pd.DataFrame(rows)


def format_cell(mean: float, ci_low: float, ci_high: float, seed_std: float = float("nan"), digits: int = 3) -> str:
    """'0.812 [0.781, 0.843] ±0.012'; the ± part only when the seed spread is known, '–' with no data."""
    if not np.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f} [{ci_low:.{digits}f}, {ci_high:.{digits}f}]"
    return text + (f" ±{seed_std:.{digits}f}" if np.isfinite(seed_std) else "")


# ---------------------------------------------------------------- strategy matrix
def strategy_matrix(df: pd.DataFrame, fraction: float = 1.0, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (target, source, strategy) at `fraction`, scratch rows included (source '').

    Columns: target, source, strategy, mean, ci_low, ci_high, seed_std, n_seeds, n_test
    (test subjects with a finite Dice), n_excluded (subjects without one).
    """
    d = _at_fraction(_results(df), fraction)
    out = _summary_table(d, ["target", "source", "strategy"], n_boot=n_boot)
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


def _title(contrast: str) -> str:
    return CONTRAST_TITLES.get(contrast, contrast)


# ---------------------------------------------------------------- statistics
@dataclass(frozen=True)
class PairedTest:
    """A two-sided Wilcoxon signed-rank test of a - b over paired subjects."""

    statistic: float     # scipy's statistic: min(W+, W-) (two-sided)
    p: float
    n: int               # pairs with both values finite (zero differences included)
    effect_r: float      # matched-pairs rank-biserial correlation, in [-1, 1], > 0 when a > b
    median_diff: float   # median of a - b
    mean_diff: float     # mean of a - b
    w_plus: float        # sum of the ranks of |a - b| over positive differences (+ half the zero ranks)
    w_minus: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def signed_rank_sums(d: Sequence[float]) -> tuple[float, float]:
    """W+ and W-: ranks of |d| (ties averaged), summed over positive and negative d.

    Zero differences are ranked too and their ranks split evenly between W+ and W-
    (the 'zsplit' rule), so W+ + W- = n(n + 1) / 2 always.
    """
    d = np.asarray(d, dtype=float)
    ranks = stats.rankdata(np.abs(d))
    zero = ranks[d == 0].sum()
    return float(ranks[d > 0].sum() + zero / 2), float(ranks[d < 0].sum() + zero / 2)


def rank_biserial(d: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation r = (W+ - W-) / (W+ + W-) (Kerby 2014); 0 when all d are 0.

    It is the proportion of favourable minus unfavourable rank mass: +1 when every pair
    favours a, -1 when every pair favours b; zero differences pull it towards 0.
    """
    w_plus, w_minus = signed_rank_sums(d)
    total = w_plus + w_minus
    return float((w_plus - w_minus) / total) if total > 0 else float("nan")


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of aligned per-subject values a and b.

    Pairs with a NaN on either side are dropped. Zero differences (the same Dice for both,
    e.g. both 0 on a missed tumour) use ``zero_method="zsplit"``: they stay in the ranking
    with their ranks split between W+ and W-. Unlike "wilcox" (which drops them), this keeps
    n equal to the number of paired subjects and counts identical results as evidence of no
    difference, so p and the effect size are not inflated by discarding ties; it is also the
    rule under which r = (W+ - W-) / (W+ + W-) is defined here. scipy chooses the method:
    exact for n <= 50 without ties or zeros, an exhaustive permutation test for n <= 13
    with them, the normal approximation otherwise. All differences zero: p = 1, r = 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be aligned, got shapes {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    if n == 0:
        nan = float("nan")
        return PairedTest(nan, nan, 0, nan, nan, nan, nan, nan)
    w_plus, w_minus = signed_rank_sums(d)
    if np.all(d == 0):
        # scipy has no variance to work with here; nothing differs, so nothing is significant
        statistic, p, r = n * (n + 1) / 4, 1.0, 0.0
    else:
        res = stats.wilcoxon(d, zero_method=ZERO_METHOD, alternative="two-sided")
        statistic, p, r = float(res.statistic), float(res.pvalue), rank_biserial(d)
    return PairedTest(float(statistic), p, n, r, float(np.median(d)), float(d.mean()), w_plus, w_minus)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order; NaN stays NaN and is not counted in m.

    With the m p-values sorted ascending p(1) <= ... <= p(m):
    adj(i) = max over j <= i of min(1, (m - j + 1) p(j)) (the running max keeps them monotone).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def _paired(a: pd.Series, b: pd.Series) -> dict[str, float | int]:
    """The Wilcoxon test of two per-subject Dice series (indexed by case_id) on the subjects both have.

    mean_a and mean_b are over the subjects with a finite value on both sides (the tested pairs).
    """
    common = a.index.intersection(b.index)
    va, vb = a.loc[common].to_numpy(), b.loc[common].to_numpy()
    t = wilcoxon_paired(va, vb)
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
        return _summary_table(d.iloc[:0], ["target", "source", "strategy", "fraction", "n_subjects"])
    out = _summary_table(pd.concat(parts), ["target", "source", "strategy", "fraction", "n_subjects"], n_boot)
    out = out.sort_values(["target", "source", "strategy", "fraction"], key=_matrix_sort_key, kind="stable")
    return out.reset_index(drop=True)


#: colour of each strategy in the figure (scratch dark, the fine-tuning strategies tab10)
STRATEGY_COLOURS = {"scratch": "#333333", "full": "#1f77b4", "critic": "#ff7f0e", "encoder": "#2ca02c"}
STRATEGY_LABELS = {"scratch": "from scratch", "full": "fine-tuned, all trainable",
                   "critic": "fine-tuned, critic frozen", "encoder": "fine-tuned, encoder frozen"}


def data_efficiency_figure(df: pd.DataFrame, table: pd.DataFrame | None = None) -> Figure:
    """Dice against target training subjects: one panel per target, one curve per strategy.

    Line: mean over subjects of the seed-averaged Dice; band: its bootstrap 95% CI; small
    dots: the per-seed means (the run-to-run spread), nudged sideways per strategy so
    they do not hide each other. x is log-scaled with a tick at each subject count.
    """
    d = _results(df)
    if table is None:
        table = data_efficiency_table(d)
    targets = _order(table["target"], CONTRASTS)
    n = max(len(targets), 1)
    fig = Figure(figsize=(3.6 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    if not targets:
        axes[0].text(0.5, 0.5, "no data-efficiency runs (fraction < 1)", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    seeds = per_seed_means(d, ["target", "source", "strategy", "n_subjects"])
    handles = {}
    for ax, target in zip(axes, targets):
        t = table[table["target"] == target]
        curves = list(t[["source", "strategy"]].drop_duplicates().itertuples(index=False))
        curves.sort(key=lambda c: TRANSFER_STRATEGIES.index(c.strategy) if c.strategy in TRANSFER_STRATEGIES else len(TRANSFER_STRATEGIES))
        for i, (source, strategy) in enumerate(curves):
            c = t[(t["source"] == source) & (t["strategy"] == strategy)].sort_values("n_subjects")
            colour = STRATEGY_COLOURS.get(strategy, f"C{i}")
            label = STRATEGY_LABELS.get(strategy, strategy)
            (line,) = ax.plot(c["n_subjects"], c["mean"], marker="o", markersize=4, color=colour, label=label)
            ax.fill_between(c["n_subjects"], c["ci_low"], c["ci_high"], color=colour, alpha=0.15, linewidth=0)
            s = seeds[(seeds["target"] == target) & (seeds["source"] == source) & (seeds["strategy"] == strategy)]
            nudge = 10 ** (0.02 * (i - (len(curves) - 1) / 2))   # a fraction of a decade, by strategy
            ax.scatter(s["n_subjects"] * nudge, s["dice"], s=9, color=colour, alpha=0.6, linewidths=0)
            handles.setdefault(label, line)
        ticks = sorted(t["n_subjects"].unique())
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(int(v)) for v in ticks])
        ax.minorticks_off()
        sources = _order(t.loc[t["source"] != "", "source"], CONTRASTS)
        ax.set_title(f"{_title(target)}" + (f" (pre-trained on {', '.join(map(_title, sources))})" if sources else ""),
                     fontsize=10)
        ax.set_xlabel(f"{_title(target)} training subjects")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test Dice (per volume)")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8)
    return fig


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


def missing_contrast_summary(df: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Numbers behind `missing_contrast_table`: one row per (model, subset, fill) present in the data,
    and per (model, fill) evaluated on all 15 subsets the subset SUBSET_AVERAGE (per-subject mean over them)."""
    out = _summary_table(_with_subset_average(_missing(df)), ["model", "subset", "fill"], n_boot)
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


# ---------------------------------------------------------------- everything
# what write_transfer_outputs writes into out_dir (the missing-contrast tables when it is given the results)
OUTPUT_NAMES = tuple(
    [f"transfer_{n}.{ext}" for n in ("strategy_matrix", "strategy_matrix_values", "comparisons", "best_per_target",
                                     "crossover", "data_efficiency", "missing_contrasts", "missing_contrasts_values",
                                     "missing_contrasts_dropout")
     for ext in ("csv", "md")] + ["transfer_data_efficiency.png", "transfer_data_efficiency.pdf"])


def write_transfer_outputs(results_df: pd.DataFrame, missing_df: pd.DataFrame | None,
                           out_dir: str | Path) -> list[Path]:
    """Write every table of the transfer study (CSV + Markdown, note underneath) and the figure.

    Files (prefix transfer_): strategy_matrix (printable) and strategy_matrix_values (numbers),
    comparisons, best_per_target, crossover, data_efficiency (+ .png, .pdf), and, when
    `missing_df` is given, missing_contrasts (printable), missing_contrasts_values and
    missing_contrasts_dropout (the dropout-trained model against the plain one; no rows
    when no model was trained with contrast dropout).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _results(results_df)
    comparisons = strategy_comparisons(results)
    matrix = strategy_matrix(results, 1.0)
    efficiency = data_efficiency_table(results)
    written: list[Path] = []

    def table(df: pd.DataFrame, name: str, title: str, note: str) -> None:
        written.extend(write_table(df, out / f"transfer_{name}", title, note))

    table(format_strategy_matrix(matrix), "strategy_matrix",
          "Transfer strategies at the full training set: test Dice per source -> target", DICE_NOTE)
    table(matrix, "strategy_matrix_values", "Transfer strategies at the full training set (values)",
          DICE_NOTE + " seed_std is the ±; n_test: test subjects with a Dice; n_excluded: without one.")
    table(comparisons, "comparisons", "Paired comparisons of the transfer strategies", TEST_NOTE)
    table(best_strategy_per_target(results, comparisons), "best_per_target",
          "Best strategy per target at the full training set",
          DICE_NOTE + " beats_scratch / p_holm_vs_scratch from the comparisons table. " + TEST_NOTE)
    table(crossover_fraction(results, comparisons), "crossover",
          "Smallest fraction of target training data at which fine-tuning no longer beats scratch",
          "crossover_fraction: smallest fraction at which the strategy does not beat scratch significantly "
          "(empty: beats it at every fraction); beats_at: fractions at which it does; gap: mean Dice "
          "strategy - scratch. " + DICE_NOTE + " " + TEST_NOTE)
    table(efficiency, "data_efficiency", "Test Dice against the number of target training subjects",
          DICE_NOTE + " seed_std is the ±; n_subjects: target training subjects.")
    written.extend(save_figure(data_efficiency_figure(results, efficiency), out / "transfer_data_efficiency"))
    if missing_df is not None:
        table(missing_contrast_table(missing_df), "missing_contrasts",
              "Four-contrast model with missing contrasts (● present, ○ missing and filled)",
              DICE_NOTE + " A missing contrast's input channel is filled with 0 ('zero') or, inside the brain "
              "(where any present contrast is non-zero), with that contrast's mean brain intensity over the "
              "training subjects ('mean'; 0 outside). 'dropout-trained': the four-contrast model trained with "
              "random contrast dropout (transfer.contrast_dropout). Average: per subject the mean Dice over the 15 "
              "subsets, then as every cell, the summary row of the missing-modality papers.")
        table(missing_contrast_summary(missing_df), "missing_contrasts_values",
              "Four-contrast model with missing contrasts (values)", DICE_NOTE)
        table(contrast_dropout_comparisons(missing_df), "missing_contrasts_dropout",
              "Four-contrast model trained with contrast dropout against the one trained without",
              "a: the model trained with random contrast dropout (each training slice's contrast zeroed with "
              "probability transfer.contrast_dropout, one always kept), b: the same model trained without; "
              "winner: dropout, plain or none. No rows: no model was trained with contrast dropout "
              "(transfer.contrast_dropout = 0). " + TEST_NOTE)
    return written
