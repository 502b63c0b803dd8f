"""The recipe ablation's plan and steps (segan_lib.study.ablation_plan, step 09_recipe_ablation): our old
settings, each of the authors' put back alone, all four (reusing the study's own runs) and the learning
rates, on the four-contrast and FLAIR SegAN_IO, with the keys of the paper's steps left alone."""
import pytest

from segan_lib.config import load_profile
from segan_lib.study.ablation_plan import (AUTHORS, BASELINE, RECIPE_CHANGES, ablation_models, ablation_variants,
                                           is_profile_default)
from segan_lib.study.steps import planned_runs, study_steps

SETTINGS = ("model.clip_scope", "train.update_order", "train.rmsprop", "evaluate.field")
OURS = {"model.clip_scope": "all", "train.update_order": "critic_first", "train.rmsprop": "keras3",
        "evaluate.field": "crop"}
THEIRS = {"model.clip_scope": "kernels", "train.update_order": "joint", "train.rmsprop": "tf2",
          "evaluate.field": "centre160"}


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    return tmp_path


def test_each_of_the_authors_settings_is_put_back_alone_then_all_four():
    variants = ablation_variants([2e-5, 6e-5])
    assert [v.key for v in variants] == [BASELINE, "ours_clip", "ours_order", "ours_rmsprop", "ours_field", AUTHORS,
                                         "authors_lr2e-05", "authors_lr6e-05"]
    by_key = {v.key: v.overrides for v in variants}
    assert by_key[BASELINE] == OURS and by_key[AUTHORS] == THEIRS
    for change, setting in zip(("clip", "order", "rmsprop", "field"), SETTINGS):
        expected = {**OURS, setting: THEIRS[setting]}
        assert by_key[f"ours_{change}"] == expected, change  # one setting the authors', three ours
    assert by_key["authors_lr2e-05"] == {**THEIRS, "train.learning_rate": 2e-5}
    assert [c.setting for c in RECIPE_CHANGES] == list(SETTINGS)
    assert [m.key for m in ablation_models()] == ["segan_io", "single_flair"]


@pytest.mark.parametrize("name", ["smoke", "quick", "paper", "transfer"])
def test_every_profile_trains_with_the_authors_recipe(name):
    settings = load_profile(name).settings()
    variants = {v.key: v for v in ablation_variants()}
    assert is_profile_default(variants[AUTHORS], settings)
    assert not any(is_profile_default(v, settings) for k, v in variants.items() if k != AUTHORS)


def test_the_smoke_ablation_trains_what_the_study_has_not_and_reuses_the_rest():
    steps = study_steps(load_profile("smoke"), "smoke")
    names = [s.name for s in steps]
    own = [n for n in names if n.startswith("train_ablation_")]
    # 5 variants and 1 learning rate of its own, 2 models, 1 seed (study.ablation_seeds)
    assert len(own) == 6 * 2 and all(n.endswith("_seed0") for n in own)
    result = steps[names.index("09_recipe_ablation")]
    assert result.notebook == "09_recipe_ablation.ipynb" and set(own) <= set(result.needs)
    # the authors' variant is the study's own default-recipe runs
    assert {"train_segan_io_seed0", "train_single_flair_seed0"} <= set(result.needs)
    runs = planned_runs("smoke")["ablation"]
    assert list(runs) == [BASELINE, "ours_clip", "ours_order", "ours_rmsprop", "ours_field", AUTHORS,
                          "authors_lr0.0003"]
    assert runs[AUTHORS]["segan_io"] == [planned_runs("smoke")["table1"]["SegAN_IO (concat)"][0]]
    assert runs[BASELINE]["single_flair"][0].startswith("train_ablation_ours_single_flair_seed0__")
    by_name = {s.name: s for s in steps}
    assert by_name["train_ablation_ours_field_segan_io_seed0"].params["overrides"] == {
        "model.contrasts": ["t1", "t1c", "t2", "flair"], "model.critic_input": "concat", "model.dice_weight": 1.0,
        **OURS, "evaluate.field": "centre160", "train.seed": 0}


def test_the_ablation_leaves_the_study_steps_keys_alone_and_takes_the_study_seeds():
    plain = {s.name: s.key for s in study_steps(load_profile("quick"), "quick")}
    with_ablation = study_steps(load_profile("quick", ["study.ablation=true"]), "quick")
    keys = {s.name: s.key for s in with_ablation}
    assert all(keys[n] == k for n, k in plain.items())
    own = [n for n in keys if n.startswith("train_ablation_")]
    # quick: 7 variants of its own (5, and 2 learning rates) x 2 models x the study's 3 seeds
    assert len(own) == 7 * 2 * 3 and {n[-5:] for n in own} == {"seed0", "seed1", "seed2"}
    assert "09_recipe_ablation" in keys and "09_recipe_ablation" not in plain


def test_ablation_settings_are_checked():
    from segan_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="study.ablation_seeds must name distinct seeds"):
        load_profile("smoke", ["study.ablation_seeds=[1, 1]"])
    with pytest.raises(ConfigError, match="study.ablation_learning_rates must be positive"):
        load_profile("smoke", ["study.ablation_learning_rates=[0.0]"])
