"""The options that keep our former departures from the authors' code: the evaluation field, what
settings.json records, old run folders, and resume refusing a run trained another way."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segan_lib import paths
from tests.training.test_training import TINY, arrays, profile, root, tiny_root  # noqa: F401 - fixtures


@pytest.fixture
def project(root):
    """test_training's tiny project (a 10-subject 4 mm phantom, preprocessed and split), as SEGAN_ROOT."""
    return root


# ---------------------------------------------------------------- the evaluation field
@pytest.mark.parametrize("size, window", [(180, slice(10, 170)), (90, slice(5, 85)), (48, slice(2, 45)),
                                          (64, slice(3, 60)), (160, slice(9, 151)), (1, slice(0, 1))])
def test_centre160_is_the_centre_160_of_180_at_any_size(size, window):
    from segan_lib.training.validation import field_window

    assert field_window(size, "centre160") == window
    assert field_window(size, "crop") == slice(0, size)
    with pytest.raises(ValueError, match="field"):
        field_window(size, "middle")


def test_field_slices_cut_images_and_masks_alike():
    from segan_lib.data.pipeline import SliceSet
    from segan_lib.training.validation import field_description, field_slices

    rng = np.random.default_rng(0)
    data = SliceSet(images=rng.random((3, 180, 180, 2), dtype=np.float32),
                    masks=(rng.random((3, 180, 180, 1)) > 0.5).astype(np.uint8),
                    case_index=np.zeros(3, int), slice_index=np.arange(3), case_ids=["a"], contrasts=("t1", "t2"),
                    regions=("wt",))
    cut = field_slices(data, "centre160")
    assert cut.images.shape == (3, 160, 160, 2) and cut.masks.shape == (3, 160, 160, 1)
    np.testing.assert_array_equal(cut.images, data.images[:, 10:170, 10:170])
    np.testing.assert_array_equal(cut.masks, data.masks[:, 10:170, 10:170])
    assert field_slices(data, "crop") is data
    assert field_description("crop", (180, 180, 128), 1.0) == "preprocessed crop (180x180x128 voxels of 1 mm)"
    assert field_description("centre160", (180, 180, 128), 1.0).startswith("centre 160x160 of each 180x180 slice")


def test_validation_and_evaluation_score_the_same_field(project):
    """The epoch-end validation Dice of the best epoch is evaluate_run's on the validation subset."""
    from segan_lib.evaluation.evaluate import evaluate_run
    from segan_lib.training.trainer import train

    for field in ("centre160", "crop"):
        result = train(profile("model.contrasts=[flair]", "train.epochs=1", f"evaluate.field={field}"),
                       f"field_{field}", log=None)
        table, summary = evaluate_run(f"field_{field}", "val", compute_hd95=False, log=None)
        assert summary["field"] == field
        assert summary["space"].startswith("centre 43x43 of each 48x48 slice" if field == "centre160"
                                           else "preprocessed crop (48x48x16")
        assert table["dice"].mean() == pytest.approx(result.history[0]["val_dice"], abs=1e-12)


def test_a_run_is_scored_on_another_field_into_a_file_of_its_own_once(project):
    """evaluation_on_field: a run validated on the crop scored on the centre field (the ablation's common field)
    into eval_test_field-centre160, the same numbers as a run of the same weights scored there by its own field."""
    from segan_lib.evaluation.evaluate import evaluate_run, evaluation_on_field
    from segan_lib.training.trainer import train

    train(profile("model.contrasts=[flair]", "train.epochs=1", "evaluate.field=crop"), "scored_crop", log=None)
    own, _ = evaluate_run("scored_crop", "test", compute_hd95=False, log=None)
    run = paths.runs_dir() / "scored_crop"
    assert evaluation_on_field(run, "crop", log=None) == "eval_test"  # its own field: the usual file
    stem = evaluation_on_field(run, "centre160", log=None)
    assert stem == "eval_test_field-centre160"
    summary = json.loads((run / f"{stem}.json").read_text())
    assert summary["field"] == "centre160" and summary["space"].startswith("centre 43x43 of each 48x48 slice")
    written = (run / f"{stem}.csv").stat().st_mtime_ns
    assert evaluation_on_field(run, "centre160", log=None) == stem
    assert (run / f"{stem}.csv").stat().st_mtime_ns == written  # made once, then read
    # the same checkpoint under a settings.json that says centre160 scores the same numbers as eval_test
    settings = json.loads((run / "settings.json").read_text())
    settings["profile"]["evaluate"]["field"] = "centre160"
    (run / "settings.json").write_text(json.dumps(settings))
    table, _ = evaluate_run(run, "test", compute_hd95=False, log=None)
    import pandas as pd

    np.testing.assert_array_equal(pd.read_csv(run / f"{stem}.csv")["dice"], table["dice"])
    assert not np.array_equal(own["dice"], table["dice"])  # the fields differ, so do the scores
    with pytest.raises(Exception, match="unknown evaluation field 'middle'"):
        evaluate_run(run, "test", field="middle", log=None)


# ---------------------------------------------------------------- settings, old runs, resume
def test_settings_record_the_options_and_an_old_run_folder_still_evaluates(project):
    from segan_lib.evaluation.evaluate import evaluate_run, load_run_models
    from segan_lib.training.trainer import train

    result = train(profile("model.contrasts=[flair]", "train.epochs=1"), "old_style", log=None)
    settings_path = result.run_dir / "settings.json"
    settings = json.loads(settings_path.read_text())
    p = settings["profile"]
    assert (p["model"]["clip_scope"], p["train"]["update_order"], p["train"]["rmsprop"], p["evaluate"]["field"]) == \
        ("kernels", "joint", "tf2", "centre160")
    model, _ = load_run_models(result.run_dir)
    assert model.update_order == "joint" and type(model.seg_optimizer).__name__ == "RMSpropTF2"
    # a settings.json from before these options: loads as what such runs were (clip all, critic first,
    # Keras 3's RMSprop, the whole crop scored)
    del p["model"]["clip_scope"], p["train"]["update_order"], p["train"]["rmsprop"], p["evaluate"]
    settings_path.write_text(json.dumps(settings))
    model, old = load_run_models(result.run_dir)
    assert (old.model.clip_scope, old.train.update_order, old.train.rmsprop, old.evaluate.field) == \
        ("all", "critic_first", "keras3", "crop")
    assert all(v.constraint is not None for v in model.critic.trainable_variables)
    _, summary = evaluate_run("old_style", "test", compute_hd95=False, log=None)
    assert summary["field"] == "crop" and summary["space"].startswith("preprocessed crop")


@pytest.mark.parametrize("option", ["model.clip_scope=all", "train.update_order=critic_first", "train.rmsprop=keras3",
                                    "evaluate.field=crop"])
def test_resume_refuses_a_run_trained_with_another_option(project, option):
    from segan_lib.training.trainer import TrainingError, train

    if not (paths.runs_dir() / "authors_recipe" / "checkpoints" / "last.json").exists():
        train(profile("train.epochs=1"), "authors_recipe", log=None)
    before = arrays("authors_recipe")
    with pytest.raises(TrainingError, match="profile settings differ"):
        train(profile("train.epochs=2", option), "authors_recipe", resume=True, log=None)
    after = arrays("authors_recipe")
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing was changed


@pytest.mark.parametrize("option", ["model.clip_scope=all", "train.update_order=critic_first", "train.rmsprop=keras3"])
def test_each_option_changes_training_and_stays_deterministic(project, option):
    from segan_lib.training.trainer import train

    name = option.split("=")[0].replace(".", "_")
    if not (paths.runs_dir() / "authors_recipe" / "checkpoints" / "last.json").exists():
        train(profile("train.epochs=1"), "authors_recipe", log=None)
    train(profile("train.epochs=1", option), f"{name}_a", log=None)
    train(profile("train.epochs=1", option), f"{name}_b", log=None)
    a, b, authors = arrays(f"{name}_a"), arrays(f"{name}_b"), arrays("authors_recipe")
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same seed, same weights
    assert any(not np.array_equal(a[k], authors[k]) for k in a if k.startswith("segmentor/"))
