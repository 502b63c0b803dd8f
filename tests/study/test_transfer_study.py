"""The transfer study's plan, its per-run settings and the missing-contrast filling (no training here:
the smoke study in test_notebooks runs the whole study through its notebook)."""
from collections import Counter

import numpy as np
import pytest

from segan_lib.config import load_profile
from segan_lib.errors import ConfigError
from segan_lib.study.transfer_plan import contrast_subsets, fill_absent, plan, run_profile


def test_the_transfer_profile_plans_every_run_once_after_its_source():
    runs = plan(load_profile("transfer"))
    # per seed: 2 four-contrast (with and without contrast dropout) + 4 scratch + 4 sources x 3 targets
    # x 3 strategies + 4 targets x 3 fractions x 4
    assert len(runs) == 3 * (2 + 4 + 36 + 48)
    assert len({r.name for r in runs}) == len(runs)
    position = {r.name: i for i, r in enumerate(runs)}
    for r in runs:
        if r.init_from:
            assert position[r.init_from] < position[r.name]
            source_run = runs[position[r.init_from]]
            assert (source_run.strategy, source_run.target, source_run.fraction, source_run.seed) == (
                "scratch", r.source, 1.0, r.seed)
    seed0 = [r for r in runs if r.seed == 0]
    assert Counter(r.strategy for r in seed0) == {"scratch": 4 + 12, "full": 12 + 12, "critic": 24, "encoder": 24,
                                                  "four_contrast": 1, "contrast_dropout": 1}
    assert [r.contrast_dropout for r in seed0 if r.contrast_dropout] == [0.5]
    efficiency = {(r.target, r.source) for r in seed0 if r.fraction < 1 and r.source}
    assert efficiency == {("t1", "flair"), ("t1c", "flair"), ("t2", "flair"), ("flair", "t2")}


def test_a_run_gets_its_contrast_seed_fraction_and_scaled_epochs():
    profile = load_profile("transfer")
    run = next(r for r in plan(profile) if r.fraction == 0.25 and r.strategy == "encoder" and r.seed == 2)
    p = run_profile(profile, run)
    assert p.model.contrasts == (run.target,) and p.train.seed == 2 and p.train.subject_fraction == 0.25
    assert p.train.epochs == 6 * 4 and p.train.patience == 3 * 4  # a quarter of the data, four times the epochs
    four = run_profile(profile, plan(profile)[0])
    assert four.model.contrasts == ("t1", "t1c", "t2", "flair") and four.train.epochs == 6
    # contrast dropout 0.5: each contrast is in half the training slices, so twice the epochs
    dropout = run_profile(profile, next(r for r in plan(profile) if r.strategy == "contrast_dropout"))
    assert dropout.model.contrasts == four.model.contrasts and (dropout.train.epochs, dropout.train.patience) == (12, 6)


def test_transfer_settings_are_checked():
    with pytest.raises(ConfigError, match="transfer.fractions must include 1.0"):
        load_profile("smoke", ["transfer.fractions=[0.5]"])
    with pytest.raises(ConfigError, match="transfer.strategies"):
        load_profile("smoke", ["transfer.strategies=[full, decoder]"])
    with pytest.raises(ConfigError, match="t1c is not in transfer.contrasts"):
        load_profile("smoke", ["transfer.efficiency_sources={t2: t1c}"])
    with pytest.raises(ConfigError, match="transfer.contrast_dropout"):
        load_profile("smoke", ["transfer.contrast_dropout=1.0"])
    assert not any(r.strategy == "contrast_dropout" for r in plan(load_profile("smoke", ["transfer.contrast_dropout=0"])))


def test_fifteen_subsets_fewest_first():
    subsets = contrast_subsets()
    assert len(subsets) == 15 and subsets[0] == ("t1",) and subsets[-1] == ("t1", "t1c", "t2", "flair")
    assert [len(s) for s in subsets] == sorted(len(s) for s in subsets)


def test_absent_contrasts_are_zeroed_or_set_to_the_training_mean_inside_the_brain():
    contrasts = ("t1", "t1c", "t2", "flair")
    images = np.zeros((1, 2, 2, 4), np.float32)
    images[0, 0, 0] = [0.2, 0.4, 0.6, 0.8]  # brain
    images[0, 0, 1] = [0.0, 0.5, 0.0, 0.0]  # brain in t1c only
    means = np.array([0.1, 0.2, 0.3, 0.4])
    zero = fill_absent(images, ("t1", "flair"), contrasts, "zero")
    np.testing.assert_array_equal(zero[0, 0, 0], np.float32([0.2, 0.0, 0.0, 0.8]))
    assert zero[0, 0, 1].sum() == 0  # t1c's voxel is gone with t1c
    mean = fill_absent(images, ("t1", "flair"), contrasts, "mean", means)
    np.testing.assert_allclose(mean[0, 0, 0], [0.2, 0.2, 0.3, 0.8])
    np.testing.assert_array_equal(mean[0, 0, 1], [0, 0, 0, 0])  # not brain for the present contrasts
    np.testing.assert_array_equal(mean[0, 1], 0)  # background stays 0
    assert images[0, 0, 0, 1] == np.float32(0.4)  # the input is not modified
    with pytest.raises(ValueError, match="present"):
        fill_absent(images, (), contrasts, "zero")
