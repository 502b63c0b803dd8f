"""Adversarial training end to end on a tiny phantom: determinism, exact resume, freezing, failures."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from segan_lib import paths
from segan_lib.config import load_profile
from tests.tiny_project import tiny_project

TINY = ["data.phantom_n=10", "model.width=4", "train.batch_size=8", "train.epochs=3", "train.patience=5",
        "preprocess.crop_shape=[48, 48, 16]"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A project root holding a 10-subject 4 mm phantom, preprocessed and split."""
    root = tmp_path_factory.mktemp("project")
    with tiny_project(root, TINY):
        yield root


@pytest.fixture
def root(tiny_root, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tiny_root))
    return tiny_root


def profile(*extra):
    return load_profile("smoke", TINY + list(extra))


def arrays(run_name, tag="last"):
    with np.load(paths.runs_dir() / run_name / "checkpoints" / f"{tag}.npz") as z:
        return {k: z[k] for k in z.files}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_run_writes_its_outputs_and_same_seed_same_weights(root):
    from segan_lib.training.trainer import train

    r1 = train(profile(), "seeded_a", log=None)
    train(profile(), "seeded_b", log=None)
    assert_same_state(arrays("seeded_a"), arrays("seeded_b"))
    run = r1.run_dir
    for name in ("settings.json", "history.csv", "metrics.json", "checkpoints/best.npz", "checkpoints/last.json"):
        assert (run / name).exists(), name
    import pandas as pd

    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    for col in ("seg_loss", "critic_loss", "l1", "dice_loss", "dice", "val_dice", "val_precision",
                "val_sensitivity", "val_dice_loss", "seconds"):
        assert col in history and history[col].notna().all(), col
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(history["val_dice"].idxmax()) + 1
    keys = arrays("seeded_a").keys()
    assert any(k.startswith("seg_optimizer/") for k in keys) and any(k.startswith("critic_optimizer/") for k in keys)
    train(profile("train.seed=1"), "seeded_c", log=None)
    a, c = arrays("seeded_a"), arrays("seeded_c")
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.startswith("segmentor/"))


def test_resume_after_a_kill_mid_epoch_ends_with_the_same_weights(root, monkeypatch):
    from segan_lib.training import trainer as runs
    
    runs.train(profile(), "uninterrupted", log=None)

    real = runs._make_callbacks

    class Killed(Exception):
        pass

    def with_killer(*args, **kwargs):
        import keras

        class Killer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == 2 and batch == 3:
                    raise Killed()

        return real(*args, **kwargs) + [Killer()]

    monkeypatch.setattr(runs, "_make_callbacks", with_killer)
    with pytest.raises(Killed):
        runs.train(profile(), "interrupted", log=None)
    monkeypatch.setattr(runs, "_make_callbacks", real)
    assert json.loads((paths.runs_dir() / "interrupted/checkpoints/last.json").read_text())["epoch"] == 2
    with pytest.raises(runs.TrainingError, match="--resume"):
        runs.train(profile(), "interrupted", log=None)
    result = runs.train(profile(), "interrupted", resume=True, log=None)
    assert result.epochs_run == 3
    assert_same_state(arrays("uninterrupted"), arrays("interrupted"))
    import pandas as pd

    h1 = pd.read_csv(paths.runs_dir() / "uninterrupted/history.csv").drop(columns="seconds")
    h2 = pd.read_csv(paths.runs_dir() / "interrupted/history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(h1, h2)


def test_non_finite_loss_names_epoch_and_batch_and_keeps_the_checkpoint(root, monkeypatch):
    from segan_lib.training import trainer as runs
    from segan_lib.training import segan as training
    
    runs.train(profile("train.epochs=1"), "diverging", log=None)
    before = (paths.runs_dir() / "diverging/checkpoints/last.npz").read_bytes()
    monkeypatch.setattr(training, "dice_loss", lambda t, p: training.keras.ops.log(p[0, 0, 0, 0] * 0.0 - 1.0))
    with pytest.raises(runs.TrainingError, match=r"non-finite loss at epoch 2, batch 1"):
        runs.train(profile("train.epochs=2"), "diverging", resume=True, log=None)
    assert (paths.runs_dir() / "diverging/checkpoints/last.npz").read_bytes() == before


def test_fine_tuning_with_the_critic_frozen_leaves_it_untouched(root):
    from segan_lib.training.trainer import train

    train(profile("model.contrasts=[flair]", "train.epochs=1"), "source_flair", log=None)
    train(profile("model.contrasts=[t2]", "train.epochs=1"), "tuned_t2", init_from="runs/source_flair",
          freeze="critic", log=None)
    src, tuned = arrays("source_flair", "best"), arrays("tuned_t2", "last")
    critic = [k for k in src if k.startswith("critic/")]
    assert critic
    for k in critic:
        np.testing.assert_array_equal(src[k], tuned[k], err_msg=k)  # BN statistics included
    assert any(not np.array_equal(src[k], tuned[k]) for k in src if k.startswith("segmentor/"))
    critic_opt = {k.rsplit("/", 1)[-1]: v for k, v in tuned.items() if k.startswith("critic_optimizer/")}
    assert set(critic_opt) == {"iteration", "learning_rate"}  # no slot variables: never applied
    assert critic_opt["iteration"] == 0


def test_init_from_a_run_of_another_width_is_a_clear_error(root):
    from segan_lib.errors import SeganError
    from segan_lib.training.trainer import train

    train(profile("model.contrasts=[flair]", "train.epochs=1"), "narrow", log=None)
    with pytest.raises(SeganError, match="shape"):
        train(profile("model.contrasts=[flair]", "model.width=8", "train.epochs=1"), "wide",
              init_from="runs/narrow", log=None)


def test_evaluate_on_the_trained_and_on_another_contrast(root):
    from segan_lib.evaluation.evaluate import evaluate_run
    from segan_lib.training.trainer import train

    train(profile("model.contrasts=[flair]", "train.epochs=1"), "eval_flair", log=None)
    table, summary = evaluate_run("eval_flair", "test", log=None)
    assert len(table) == 1 and set(table.columns) >= {"case_id", "dice", "precision", "sensitivity", "hd95"}
    assert summary["protocol"] == "per_volume" and summary["evaluated_on"] == ["flair"]
    d = summary["metrics"]["dice"]
    assert d["mean"] == pytest.approx(table["dice"].mean())
    _, other = evaluate_run("eval_flair", "test", contrasts=["t2"], compute_hd95=False, log=None)
    assert other["evaluated_on"] == ["t2"]
    assert (paths.runs_dir() / "eval_flair/eval_test_on-t2.csv").exists()
    from segan_lib.errors import SeganError

    with pytest.raises(SeganError, match="takes 1 contrast"):
        evaluate_run("eval_flair", "test", contrasts=["t1", "t2"], log=None)


def test_test_step_reports_validation_metrics(root):
    from segan_lib.evaluation.evaluate import load_run_models
    from segan_lib.training.trainer import train
    from segan_lib.data.cache import open_cache
    from segan_lib.data.pipeline import load_slices
    from segan_lib.nets.inference import pad_to_multiple
    from segan_lib.data.splits import default_splits_path, load_split

    p = profile("model.contrasts=[flair]", "train.epochs=1")
    train(p, "teststep", log=None)
    model, _ = load_run_models(paths.runs_dir() / "teststep")
    cache = open_cache(p.data_root, p.preprocess)
    split = load_split(default_splits_path(p.data_root))
    data = load_slices(cache, split.val, ("flair",))
    x, _ = pad_to_multiple(data.images.astype("float32"))
    y, _ = pad_to_multiple(data.masks.astype("float32"))
    logs = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    assert {"dice", "precision", "sensitivity", "dice_loss", "l1"} <= set(logs)
    assert 0 <= logs["dice"] <= 1


def test_segan_mask_mode_brats_regions_and_no_dice(root):
    from segan_lib.evaluation.evaluate import evaluate_run
    from segan_lib.training.trainer import train

    r = train(profile("model.critic_input=mask", "model.regions=brats", "model.dice_weight=0", "train.epochs=1"),
              "mask_brats", log=None)
    settings = json.loads((r.run_dir / "settings.json").read_text())
    assert settings["profile"]["model"]["critic_input"] == "mask"
    table, summary = evaluate_run("mask_brats", "val", compute_hd95=False, log=None)
    assert {"dice", "dice_tc", "dice_et"} <= set(table.columns)


def test_cli_train_then_evaluate(root, capsys):
    from segan_lib.cli import main

    args = ["train", "--profile", "smoke", "--name", "cli_flair", "--contrasts", "flair", "--critic-input", "concat",
            "--epochs", "1"] + [a for o in TINY for a in ("--set", o)]
    assert main(args) == 0
    assert "best validation Dice" in capsys.readouterr().out
    assert main(["evaluate", "cli_flair", "--split", "test", "--contrasts", "t2", "--no-hd95"]) == 0
    assert "on test (t2)" in capsys.readouterr().out
    assert main(["evaluate", "no_such_run"]) == 2
    assert "no run at" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_outputs_and_weights(root, precision):
    import keras

    from segan_lib.training.trainer import train

    result = train(profile(f"train.precision={precision}", "train.epochs=1"), f"mixed_{precision}", log=None)
    assert keras.config.dtype_policy().name == "float32"  # the policy does not leak out of the run
    row = result.history[0]
    assert all(np.isfinite(row[k]) for k in ("seg_loss", "critic_loss", "dice", "val_dice"))
    state = arrays(f"mixed_{precision}")
    assert all(a.dtype != np.float16 for a in state.values())  # variables stay float32
    if precision == "mixed_float16":  # a dynamically loss-scaled optimizer keeps its scale in the checkpoint
        assert any("loss_scale" in k or "scale" in k.split("/")[-1] for k in state if k.startswith("seg_optimizer/"))
    from segan_lib.apply.bundle import export_bundle, load_bundle

    bundle = load_bundle(export_bundle(result.run_dir))
    assert bundle.segmentor.output.dtype == "float32"


def test_fine_tuning_with_the_encoder_frozen_trains_decoder_and_critic_only(root):
    from segan_lib.training.trainer import train

    train(profile("model.contrasts=[flair]", "train.epochs=1"), "enc_source", log=None)
    train(profile("model.contrasts=[t2]", "train.epochs=1"), "enc_tuned", init_from="enc_source", freeze="encoder",
          log=None)
    src, tuned = arrays("enc_source", "best"), arrays("enc_tuned", "last")
    encoder = [k for k in src if k.startswith("segmentor/") and "/enc" in k]
    decoder = [k for k in src if k.startswith("segmentor/") and ("/dec" in k or "/out" in k)]
    assert encoder and decoder
    for k in encoder:
        np.testing.assert_array_equal(src[k], tuned[k], err_msg=k)  # kernels and BN statistics
    assert any(not np.array_equal(src[k], tuned[k]) for k in decoder)
    assert any(not np.array_equal(src[k], tuned[k]) for k in src if k.startswith("critic/"))


def test_a_fraction_of_the_training_subjects(root):
    from segan_lib.training.trainer import train
    from segan_lib.data.splits import default_splits_path, load_split

    p = profile("train.subject_fraction=0.5", "train.epochs=1")
    result = train(p, "half", log=None)
    chosen = json.loads((result.run_dir / "train_subjects.json").read_text())
    split = load_split(default_splits_path(p.data_root))
    assert len(chosen["case_ids"]) == round(0.5 * len(split.train)) and set(chosen["case_ids"]) <= set(split.train)


def test_xla_compiles_the_train_step_without_op_determinism(root):
    import subprocess
    import sys

    # op determinism is process-wide and the other tests switched it on: a fresh process
    code = ("from segan_lib.config import load_profile; from segan_lib.training.trainer import train; "
            f"r = train(load_profile('smoke', {TINY + ['train.epochs=1']!r}), 'xla_run', xla=True, log=print); "
            "from tensorflow.python.framework.config import is_op_determinism_enabled; "
            "print('determinism', is_op_determinism_enabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SEGAN_ROOT=str(root)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "determinism False" in done.stdout and "compiled with XLA: True" in done.stdout
    history = json.loads((paths.runs_dir() / "xla_run" / "metrics.json").read_text())
    assert np.isfinite(history["best_val_dice"])


def test_an_xla_run_switches_op_determinism_off_and_a_run_without_it_back_on(root):
    from tensorflow.python.framework.config import is_op_determinism_enabled

    from segan_lib.training.trainer import train

    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # as an earlier run without XLA in this process did
    lines = []
    train(profile("train.epochs=1"), "xla_after_det", xla=True, log=lines.append)
    assert "train: train step compiled with XLA: True" in lines and not is_op_determinism_enabled()
    train(profile("train.epochs=1"), "det_after_xla", xla=False, log=None)
    assert is_op_determinism_enabled()
    settings = [json.loads((paths.runs_dir() / n / "settings.json").read_text()) for n in ("xla_after_det",
                                                                                         "det_after_xla")]
    assert [s["xla"] for s in settings] == [True, False]


@pytest.mark.parametrize("env, backend_default", [("1", True), ("0", False), (None, False)])
def test_xla_is_off_by_default_and_segan_xla_overrides_it(monkeypatch, env, backend_default):
    from segan_lib.training.trainer import xla_default

    if env is None:
        monkeypatch.delenv("SEGAN_XLA", raising=False)
    else:
        monkeypatch.setenv("SEGAN_XLA", env)
    assert xla_default() is backend_default


def test_a_bad_segan_xla_is_an_error(monkeypatch):
    from segan_lib.training.trainer import TrainingError, xla_default

    monkeypatch.setenv("SEGAN_XLA", "maybe")
    with pytest.raises(TrainingError, match="SEGAN_XLA='maybe': expected 1 or 0"):
        xla_default()


def test_resume_keeps_the_compilation_the_run_was_trained_with(root):
    from segan_lib.training.trainer import TrainingError, train

    train(profile("train.epochs=1"), "xla_resume", xla=True, log=None)
    with pytest.raises(TrainingError, match="trained with XLA and would continue without it"):
        train(profile("train.epochs=2"), "xla_resume", resume=True, xla=False, log=None)
    lines = []
    train(profile("train.epochs=2"), "xla_resume", resume=True, log=lines.append)  # xla=None: as it was trained
    assert "train: train step compiled with XLA: True" in lines


@pytest.mark.slow
def test_xla_training_gives_the_same_weights_bit_for_bit_in_fresh_processes(root):
    """XLA without op determinism, two fresh processes, the same seed: the same checkpoint, every bit.

    Measured (benchmarks/bench_xla_determinism.py, smoke profile, 3 repeats each, 1 and 2 intra-op
    threads, with other jobs loading the machine and with 2 busy processes beside): one distinct
    weight set per configuration."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "segan_lib.cli", "train", "--profile", "smoke", "--contrasts", "flair", "--xla"]
    base += [a for o in TINY + ["train.epochs=2"] for a in ("--set", o)]
    env = dict(os.environ, SEGAN_ROOT=str(root))
    for name in ("xla_bits_a", "xla_bits_b"):
        subprocess.run(base + ["--name", name], env=env, check=True, capture_output=True)
    assert_same_state(arrays("xla_bits_a"), arrays("xla_bits_b"))


def test_contrast_dropout_changes_training_is_recorded_and_checked(root):
    from segan_lib.training.trainer import TrainingError, train

    p = profile("train.epochs=1")
    train(p, "cdrop_off", log=None)
    result = train(p, "cdrop_on", contrast_dropout=0.5, log=None)
    settings = json.loads((result.run_dir / "settings.json").read_text())
    assert settings["contrast_dropout"] == 0.5
    off, on = arrays("cdrop_off"), arrays("cdrop_on")
    # the same seed, order and crops: only the zeroed contrasts can make the weights differ
    assert any(not np.array_equal(off[k], on[k]) for k in off if k.startswith("segmentor/"))
    with pytest.raises(TrainingError, match="contrast_dropout settings differ"):
        train(profile("train.epochs=2"), "cdrop_on", resume=True, contrast_dropout=0.25, log=None)
    with pytest.raises(TrainingError, match="at least two contrasts"):
        train(profile("model.contrasts=[flair]"), "cdrop_single", contrast_dropout=0.5, log=None)
    with pytest.raises(TrainingError, match=r"\[0, 1\)"):
        train(p, "cdrop_bad", contrast_dropout=1.0, log=None)
