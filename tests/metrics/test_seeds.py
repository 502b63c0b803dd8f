"""segan_lib.metrics.seeds.two_level_bootstrap: the interval of a mean difference over subjects and seeds,
on tables whose bounds follow from counting the resamples by hand."""
import numpy as np
import pytest

from segan_lib.metrics.seeds import two_level_bootstrap
from segan_lib.metrics.summary import summarize


def test_seeds_that_disagree_give_an_interval_across_zero_however_many_subjects_agree():
    # 24 subjects, three seeds whose models differ by +0.1, -0.1, +0.1 on every subject: each subject's
    # seed-averaged difference is +0.033, so a subject bootstrap collapses there; a resample of the seeds
    # that draws only the second seed (probability 1/27 = 3.7%, over the 2.5% tail) gives -0.1, one of
    # only the others (8/27) +0.1, so the 95% interval's bounds are those exactly
    table = np.tile([0.1, -0.1, 0.1], (24, 1))
    mean, low, high = two_level_bootstrap(table)
    assert mean == pytest.approx(0.1 / 3)
    assert (low, high) == (pytest.approx(-0.1), pytest.approx(0.1))
    s = summarize(table.mean(axis=1))
    assert s.ci_low == pytest.approx(0.1 / 3) and s.ci_high == pytest.approx(0.1 / 3)


def test_seeds_that_agree_keep_the_subject_interval_and_one_seed_is_the_subject_bootstrap():
    table = np.full((10, 3), 0.25)
    assert two_level_bootstrap(table) == (pytest.approx(0.25), pytest.approx(0.25), pytest.approx(0.25))
    column = np.linspace(0.0, 0.9, 10)
    s = summarize(column, seed=3)
    assert two_level_bootstrap(column.reshape(-1, 1), seed=3) == (pytest.approx(column.mean()), s.ci_low, s.ci_high)


def test_missing_cells_are_skipped_and_the_result_is_seeded():
    rng = np.random.default_rng(0)
    table = rng.normal(0.05, 0.02, (12, 3))
    table[0, 1] = np.nan
    table = np.vstack([table, np.full(3, np.nan)])  # a subject with no value at all is dropped
    mean, low, high = two_level_bootstrap(table, seed=7)
    assert mean == pytest.approx(np.nanmean(table)) and low < mean < high
    assert two_level_bootstrap(table, seed=7) == (mean, low, high)
    assert all(np.isnan(v) for v in two_level_bootstrap(np.full((2, 2), np.nan)))
    with pytest.raises(ValueError, match="2-D"):
        two_level_bootstrap(np.zeros(3))
