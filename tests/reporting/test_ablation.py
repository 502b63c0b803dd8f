"""The recipe ablation's table (segan_lib.reporting.ablation) from hand-made run folders: each run has the
settings.json training writes (its recipe) and the test evaluation on the authors' field that the table
reads, under the name a run validated on another field gets (eval_test_field-centre160)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segan_lib.config import load_profile
from segan_lib.metrics.statistics import ZERO_METHOD
from segan_lib.reporting.ablation import ABLATION_COLUMNS, ablation_table, field_effect_table
from segan_lib.reporting.tables import UNDECIDED

OURS = ["model.clip_scope=all", "train.update_order=critic_first", "train.rmsprop=keras3", "evaluate.field=crop"]
N = 24


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    return tmp_path


def write_run(root, name, overrides, seed, dice, crop_dice=None):
    """A run with its recipe in settings.json and per-subject test Dice on the centre field (and the crop)."""
    profile = load_profile("smoke", [*overrides, f"train.seed={seed}"])
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps({"profile": profile.to_dict()}))
    own = profile.evaluate.field
    for field, values in (("centre160", dice), ("crop", crop_dice)):
        if values is None:
            continue
        stem = "eval_test" + ("" if field == own else f"_field-{field}")
        pd.DataFrame({"case_id": [f"c{i:02d}" for i in range(N)], "dice": values}).to_csv(run / f"{stem}.csv",
                                                                                          index=False)
        (run / f"{stem}.json").write_text(json.dumps({"field": field}))
    return run.name


def test_each_variant_is_compared_with_ours_on_the_same_subjects_and_decided_with_holm(root):
    # dyadic values (k / 1024), so that every mean and difference below is exact in binary floating point
    base = 0.25 + np.arange(N) / 64
    noise = np.tile([1.0, -1.0], N // 2) * np.arange(1, N + 1) / 1024  # alternating signs: no direction
    runs = {
        "ours": {"m": [write_run(root, f"ours_s{s}", OURS, s, base + s / 64) for s in (0, 1)]},
        # 0.125 better on every subject in both seeds
        "authors": {"m": [write_run(root, f"authors_s{s}", [], s, base + s / 64 + 0.125) for s in (0, 1)]},
        "ours_clip": {"m": [write_run(root, f"clip_s{s}", OURS[1:] + ["model.clip_scope=kernels"], s,
                                      base + s / 64 + noise) for s in (0, 1)]},
    }
    table = ablation_table(runs, {"ours": "ours (old)", "authors": "authors"})
    assert list(table.columns) == list(ABLATION_COLUMNS) and len(table) == 3
    rows = table.set_index("variant")
    # seed-averaged mean: base mean + 1/128 (+ 0.125); the seeds' means 1/64 apart, SD (1/64) / sqrt(2)
    assert rows.loc["ours (old)", "test Dice"].startswith(f"{base.mean() + 1 / 128:.3f} [")
    assert rows.loc["ours (old)", "test Dice"].endswith(f"±{1 / 64 / np.sqrt(2):.3f}")
    assert rows.loc["authors", "test Dice"].startswith(f"{base.mean() + 1 / 128 + 0.125:.3f} [")
    assert (rows.loc["authors", "clip"], rows.loc["authors", "update"], rows.loc["authors", "RMSprop"],
            rows.loc["authors", "validation field"]) == ("kernels", "joint", "tf2", "centre160")
    assert (rows.loc["ours (old)", "clip"], rows.loc["ours (old)", "validation field"]) == ("all", "crop")
    assert rows.loc["authors", "difference to baseline"] == "+0.125 [+0.125, +0.125]"
    assert rows.loc["ours (old)", "p"] == "" and rows.loc["ours (old)", "difference to baseline"] == "(baseline)"
    p_authors = stats.wilcoxon(np.full(N, 0.125), zero_method=ZERO_METHOD).pvalue
    p_clip = stats.wilcoxon(noise, zero_method=ZERO_METHOD).pvalue
    # printed to 3 significant digits
    assert float(rows.loc["authors", "p"]) == pytest.approx(p_authors, rel=5e-3)
    assert float(rows.loc["ours_clip", "p"]) == pytest.approx(p_clip, rel=5e-3)
    # Holm over the two comparisons: the smaller p doubled, the larger at least that and times one
    assert float(rows.loc["authors", "p (Holm)"]) == pytest.approx(2 * p_authors, rel=5e-3)
    assert float(rows.loc["ours_clip", "p (Holm)"]) == pytest.approx(max(2 * p_authors, p_clip), rel=5e-3)
    assert rows.loc["authors", "effect r"] == "+1.00"
    assert rows.loc["authors", "verdict"] == "higher" and rows.loc["ours_clip", "verdict"] == UNDECIDED
    assert rows.loc["authors", "n_test"] == N and rows.loc["authors", "n_seeds"] == 2


def test_a_variant_worse_on_every_subject_is_lower(root):
    base = 0.25 + np.arange(N) / 64
    runs = {"ours": {"m": write_run(root, "ours", OURS, 0, base)},
            "authors": {"m": write_run(root, "authors", [], 0, base - 0.0625)}}
    rows = ablation_table(runs).set_index("variant")
    assert rows.loc["authors", "verdict"] == "lower"
    assert rows.loc["authors", "difference to baseline"] == "-0.062 [-0.062, -0.062]"


def test_the_field_effect_scores_the_same_runs_on_both_fields(root):
    runs = [write_run(root, f"a{s}", [], s, np.full(N, 0.8), crop_dice=np.full(N, 0.7)) for s in (0, 1)]
    table = field_effect_table(runs).set_index("scored on")
    assert table.loc["centre160", "test Dice"] == "0.800 [0.800, 0.800] ±0.000"
    assert table.loc["crop", "test Dice"] == "0.700 [0.700, 0.700] ±0.000"


def test_seeds_of_one_model_with_different_recipes_are_refused(root):
    from segan_lib.errors import SeganError

    runs = {"ours": {"m": [write_run(root, "o0", OURS, 0, np.full(N, 0.5)),
                           write_run(root, "o1", OURS[:3], 1, np.full(N, 0.5))]}}
    with pytest.raises((SeganError, ValueError), match="differ|different fields"):
        ablation_table(runs)
