"""One rule for zero differences in every Wilcoxon test: segan_lib.metrics.statistics.ZERO_METHOD ("zsplit").

A hand-made case with two zero differences among 14: |d| = 0, 0, 1, ..., 11, 12, the -12 the only
negative one. Ranks: the zeros share 1.5 and 1.5, 1 ... 11 get 3 ... 13, 12 gets 14. Under
"zsplit" the zeros' 3 rank units are split: W- = 14 + 1.5 = 15.5, W+ = 105 - 15.5 = 89.5, n = 14;
"wilcox" would drop them (n = 12, W- = 12) and give another p.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segan_lib.metrics import statistics as S

D = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12], dtype=float)


def test_the_rule_is_zsplit_and_every_caller_uses_the_one_constant():
    from segan_lib.study.transfer_analysis import tables as transfer_tables

    assert S.ZERO_METHOD == "zsplit"
    assert transfer_tables.ZERO_METHOD is S.ZERO_METHOD


def test_zero_differences_are_kept_with_their_ranks_split():
    assert S.signed_rank_sums(D) == (89.5, 15.5)
    ref = stats.wilcoxon(D, zero_method="zsplit")
    assert ref.statistic == 15.5
    dropped = stats.wilcoxon(D, zero_method="wilcox")
    assert dropped.statistic == 12.0 and dropped.pvalue != pytest.approx(ref.pvalue, rel=1e-3)
    t = S.wilcoxon_paired(D, np.zeros_like(D))  # the default rule
    assert t.n == 14 and t.statistic == 15.5 and t.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert t.effect_r == pytest.approx((89.5 - 15.5) / 105)
    mean, p, n = S.paired_difference_test(D)  # the claims table's test: the same rule by default
    assert (mean, n) == (pytest.approx(54 / 14), 14) and p == pytest.approx(ref.pvalue, rel=1e-12)


def test_the_claims_table_and_the_transfer_analysis_give_the_same_p():
    from segan_lib.study.transfer_analysis.tables import _paired

    cases = [f"c{i}" for i in range(D.size)]
    a, b = pd.Series(0.5 + D / 100, index=cases), pd.Series(0.5, index=cases)
    transfer = _paired(a, b)
    _, p, n = S.paired_difference_test((a - b).to_numpy())
    assert transfer["n"] == n == 14 and transfer["p"] == pytest.approx(p, rel=1e-12)
