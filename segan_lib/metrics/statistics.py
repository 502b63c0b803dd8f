"""Paired statistics of two models on the same test subjects: Wilcoxon signed-rank, effect size, Holm.

The study compares models on per-subject values (Dice) of the same test subjects, so
every test here is paired: the two-sided Wilcoxon signed-rank test of the differences
a - b (`wilcoxon_paired`, with the matched-pairs rank-biserial correlation as effect
size, and `paired_difference_test`, the mean difference and p-value the claims table
prints), and the Holm step-down adjustment of a family of p-values (`holm`). Zero
differences follow one rule in every test of the project, ZERO_METHOD = "zsplit": they stay
in the ranking with their ranks split evenly between W+ and W- (see `wilcoxon_paired` for
why); the claims table and the transfer analysis both use it. The bootstrap CI of a mean is
not here but in `segan_lib.metrics.summary`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

#: the zero-difference rule of every Wilcoxon signed-rank test of the project (scipy's `zero_method`):
#: zero differences kept, their ranks split evenly between W+ and W- (why: `wilcoxon_paired`)
ZERO_METHOD = "zsplit"


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


def wilcoxon_paired(a: Sequence[float], b: Sequence[float], zero_method: str = ZERO_METHOD) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of aligned per-subject values a and b.

    Pairs with a NaN on either side are dropped. Zero differences (the same Dice for both,
    e.g. both 0 on a missed tumour) use ZERO_METHOD (``"zsplit"``) by default: they stay in the
    ranking with their ranks split between W+ and W-. Unlike "wilcox" (which drops them), this
    keeps n equal to the number of paired subjects and counts identical results as evidence of
    no difference, so p and the effect size are not inflated by discarding ties; it is also the
    rule under which r = (W+ - W-) / (W+ + W-) is defined here. `zero_method` (scipy's
    "zsplit", "wilcox" or "pratt") sets the rule of statistic and p only: w_plus, w_minus and
    effect_r are always the zsplit ones. scipy chooses the method:
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
        res = stats.wilcoxon(d, zero_method=zero_method, alternative="two-sided")
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


def paired_difference_test(differences: Sequence[float], zero_method: str = ZERO_METHOD) -> tuple[float, float, int]:
    """(mean, p, n) of paired differences a - b: their mean, the two-sided Wilcoxon signed-rank p-value, their number.

    NaN differences (a subject missing a value on one side) are dropped first. With no
    difference left the mean is NaN and p = 1; with all differences zero p = 1 (scipy has no
    variance to work with, and nothing differs). `zero_method` defaults to the project's rule,
    ZERO_METHOD ("zsplit": zero differences kept, n counts them), as in `wilcoxon_paired`.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0 or np.all(d == 0):
        return float(d.mean()) if d.size else float("nan"), 1.0, int(d.size)
    return float(d.mean()), float(stats.wilcoxon(d, zero_method=zero_method).pvalue), int(d.size)
