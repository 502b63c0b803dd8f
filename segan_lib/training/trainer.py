"""One training run from a profile: data, models, fit, checkpoints, exact resume.

The files of a run folder, and how they are written, are segan_lib.run_files's.
Every file is written to a temporary name and renamed. A checkpoint is written
only after the epoch's losses were checked finite, so the last good one survives
a diverging run. `resume=True` restarts after the epoch of last.npz; the data
order and crops of every epoch depend only on (seed, epoch), so a resumed run
ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segan_lib import paths
from segan_lib.atomic import atomic_write_json
from segan_lib.config import Profile
from segan_lib.constants import Freeze
from segan_lib.errors import SeganError
from segan_lib import run_files
from segan_lib.run_files import CHECKPOINTS, has_checkpoint, read_checkpoint, write_history



class TrainingError(SeganError):
    pass


def default_run_name(profile: Profile, freeze: str = "none", init_from: str | None = None,
                     contrast_dropout: float = 0.0) -> str:
    m = profile.model
    name = f"{profile.name}_{'segan-io' if m.critic_input == 'concat' else 'segan'}_{'-'.join(m.contrasts)}"
    if m.dice_weight != 1.0:
        name += f"_dice{m.dice_weight:g}"
    if m.regions != "wt":
        name += f"_{m.regions}"
    if init_from:
        name += f"_from-{Path(init_from).name}_{Freeze(freeze).run_suffix}"
    if contrast_dropout > 0:
        name += f"_cdrop{contrast_dropout:g}"
    return name + f"_seed{profile.train.seed}"


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_val_dice: float
    epochs_run: int
    stopped: str
    history: list[dict]


def _save_model_checkpoint(run_dir: Path, tag: str, model, meta: dict) -> None:
    from segan_lib.training.segan import state_arrays

    run_files.save_checkpoint(run_dir, tag, state_arrays(model), meta)


# ---------------------------------------------------------------- callbacks
def _make_callbacks(run_dir, model_ref, val_data, state, patience, batch_size, log, writes: bool = True):
    import keras

    from segan_lib.nets.inference import predict_slices
    from segan_lib.training.validation import volume_metrics_table

    class EpochEnd(keras.callbacks.Callback):
        """Validation per volume, non-finite check, checkpoints, early stopping, history: in that order."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            bad = {k: v for k, v in (logs or {}).items() if not np.isfinite(np.asarray(v, np.float64)).all()}
            if bad:
                state["stopped"] = "non-finite loss"
                self.model.stop_training = True
                raise TrainingError(
                    f"non-finite loss at epoch {state['epoch_now'] + 1}, batch {batch + 1}: "
                    + ", ".join(f"{k}={np.asarray(v).ravel()[0]}" for k, v in bad.items())
                    + f"; the last good checkpoint ({run_dir / CHECKPOINTS / 'last.npz'}) is left as it was")

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            val = volume_metrics_table(predict_slices(model_ref.segmentor, val_data, batch_size), val_data)
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                   "val_dice": float(val["dice"].mean()), "val_precision": float(val["precision"].mean()),
                   "val_sensitivity": float(val["sensitivity"].mean()),
                   "val_dice_loss": float(val.attrs["slice_dice_loss"]),
                   "seconds": round(time.perf_counter() - self._t0, 2)}
            logs.update({k: row[k] for k in ("val_dice", "val_precision", "val_sensitivity", "val_dice_loss")})
            state["history"].append(row)
            es = state["early_stopping"]
            improved = row["val_dice"] > es["best"]
            if improved:
                es.update(best=row["val_dice"], best_epoch=epoch + 1, wait=0)
            else:
                es["wait"] += 1
            meta = {"epoch": epoch + 1, "seed": state["seed"], "rng": {"data_order": [state["seed"], epoch + 1]},
                    "early_stopping": dict(es), "history": state["history"]}
            if writes:  # under multi-worker training only the chief writes the run folder
                if improved:
                    _save_model_checkpoint(run_dir, "best", model_ref, meta)
                _save_model_checkpoint(run_dir, "last", model_ref, meta)
                write_history(run_dir, state["history"])
            state["epoch_now"] = epoch + 1
            if log:
                log(f"epoch {epoch + 1}: seg_loss {row.get('seg_loss', float('nan')):.4f}  "
                    f"train dice {row.get('dice', float('nan')):.3f}  val dice (per volume) {row['val_dice']:.3f}"
                    f"{'  *best*' if improved else ''}  ({row['seconds']:.0f} s)")
            if es["wait"] >= patience:
                state["stopped"] = f"early stopping: no better validation Dice for {patience} epochs"
                self.model.stop_training = True

    return [EpochEnd()]


# ---------------------------------------------------------------- the run
def train(profile: Profile, run_name: str | None = None, *, resume: bool = False, init_from: str | Path | None = None,
          freeze: str = "none", max_epochs: int | None = None, tensorboard: bool = False, verbose: int = 0,
          log=print, strategy: str | None = None, xla: bool | None = None,
          contrast_dropout: float = 0.0) -> RunResult:
    """Train one model as the profile says; see the module docstring for what is written.

    strategy: "default", "mirrored" or "multiworker" (segan_lib.training.distribute); None reads $SEGAN_STRATEGY.
    xla: compile the train step with XLA (None reads $SEGAN_XLA). Faster (1.2-2.4x on this CPU, see
    benchmarks/bench_options.py) but TensorFlow's op determinism must then stay off, so the same seed
    is no longer guaranteed to give the same numbers; off by default.
    contrast_dropout: zero each contrast of a training slice with this probability, keeping at least
    one (pipeline.contrast_dropout_masks), so the model copes with contrasts missing at test time.
    """
    # first: a multi-worker strategy must exist before TensorFlow runs any operation
    from segan_lib.training.distribute import check_global_batch, make_placement

    placement = make_placement(strategy)
    import keras

    from segan_lib.data.cache import open_cache
    from segan_lib.nets.models import build_critic, build_segmentor
    from segan_lib.training.distribute import shard_by_data
    from segan_lib.data.pipeline import load_slices, steps_per_epoch, training_batches
    from segan_lib.data.splits import default_splits_path, load_split
    from segan_lib.training.segan import SegAN, load_state_arrays

    if not 0.0 <= contrast_dropout < 1.0:
        raise TrainingError(f"contrast dropout must be in [0, 1), got {contrast_dropout!r}")
    if contrast_dropout > 0 and len(profile.model.contrasts) < 2:
        raise TrainingError(f"contrast dropout needs at least two contrasts, the model has "
                            f"{list(profile.model.contrasts)}")
    run_name = run_name or default_run_name(profile, freeze, init_from, contrast_dropout)
    run_dir = paths.runs_dir() / run_name
    settings = {"run_name": run_name, "profile": profile.to_dict(), "freeze": freeze,
                "init_from": str(init_from) if init_from else None, "data_root": str(profile.data_root),
                "contrast_dropout": contrast_dropout}
    if (run_dir / CHECKPOINTS / "last.json").exists() and not resume:
        raise TrainingError(f"run {run_name} already has checkpoints in {run_dir}: pass resume=True (--resume) to "
                            "continue it, or choose another run name; nothing was changed")
    if resume:
        old = json.loads((run_dir / "settings.json").read_text()) if (run_dir / "settings.json").exists() else None
        if old is None:
            raise TrainingError(f"cannot resume {run_name}: no settings.json in {run_dir}")
        for key in ("profile", "freeze", "init_from", "contrast_dropout"):
            if key == "profile":
                a, b = dict(old[key]), dict(settings[key])
                a["train"] = {k: v for k, v in a["train"].items() if k not in ("epochs", "patience")}
                b["train"] = {k: v for k, v in b["train"].items() if k not in ("epochs", "patience")}
            else:
                a, b = old.get(key, 0.0 if key == "contrast_dropout" else None), settings[key]
            if a != b:
                raise TrainingError(f"cannot resume {run_name}: its {key} settings differ from the ones given now "
                                    f"(see {run_dir / 'settings.json'})")
    writes = placement.is_chief
    if writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "settings.json", settings)
    check_global_batch(profile.train.batch_size, placement.replicas)
    if placement.replicas > 1 and log:
        log(f"train: {placement.name} strategy, {placement.replicas} replicas of {profile.train.batch_size // placement.replicas} "
            f"slices{'' if writes else '; not the chief: writes nothing'}")

    seed = profile.train.seed
    _set_random_seed(seed)
    xla = _xla_wanted(xla)
    if not xla:
        _deterministic_ops()
    elif _op_determinism_enabled():
        xla = False
        log and log("train: XLA asked for, but this process already enabled op determinism (an earlier run "
                    "without XLA); training without XLA")
    cache = open_cache(profile.data_root, profile.preprocess)
    split = load_split(default_splits_path(profile.data_root), case_ids=cache.case_ids)
    m, t = profile.model, profile.train
    train_ids = split.train
    if t.subject_fraction < 1.0:
        from segan_lib.data.splits import nested_subset

        train_ids = nested_subset(split.train, cache.grades, t.subject_fraction, seed=seed)
    if writes:
        atomic_write_json(run_dir / "train_subjects.json", {"fraction": t.subject_fraction, "seed": seed,
                                                            "case_ids": list(train_ids)})
    train_data = load_slices(cache, train_ids, m.contrasts, m.regions, t.slices)
    val_data = load_slices(cache, split.val, m.contrasts, m.regions, "all")
    n_out = train_data.masks.shape[-1]
    h, w = train_data.images.shape[1:3]
    crop = min(t.crop_size, h, w)
    sync = placement.replicas > 1
    with _dtype_policy(t.precision), placement.scope():
        segmentor = build_segmentor(len(m.contrasts), width=m.width, n_outputs=n_out, seed=seed, sync_batchnorm=sync)
        critic = build_critic(len(m.contrasts), n_seg_channels=n_out, input_mode=m.critic_input, width=m.width,
                              clip_value=m.clip_value, seed=seed, sync_batchnorm=sync)
        model = SegAN(segmentor, critic, dice_weight=m.dice_weight, freeze=freeze)
        model.compile(learning_rate=t.learning_rate, **({"jit_compile": True} if xla else {}))
        if xla and log:
            log(f"train: train step compiled with XLA: {bool(model.jit_compile)}")
        model(np.zeros((1, crop, crop, len(m.contrasts)), np.float32))

    state = {"seed": seed, "history": [], "epoch_now": 0, "stopped": "finished all epochs",
             "early_stopping": {"best": -1.0, "best_epoch": 0, "wait": 0}}
    initial_epoch = 0
    if init_from:
        meta, arrays = read_checkpoint(run_files.run_folder(init_from), "best")
        load_state_arrays(model, arrays, groups=("segmentor", "critic"), where=f"initial weights from {init_from}")
        log and log(f"train: initial segmentor and critic from {init_from} (epoch {meta['epoch']})")
    if resume:
        meta, arrays = read_checkpoint(run_dir, "last")
        load_state_arrays(model, arrays, where=str(run_dir / CHECKPOINTS / "last.npz"))
        initial_epoch = int(meta["epoch"])
        state.update(history=meta["history"], epoch_now=initial_epoch, early_stopping=meta["early_stopping"])
        if writes:
            write_history(run_dir, state["history"])  # drop rows of an epoch that had not been checkpointed
        log and log(f"train: resuming {run_name} after epoch {initial_epoch}")

    epochs = min(t.epochs, max_epochs) if max_epochs else t.epochs
    if state["early_stopping"]["wait"] >= t.patience or initial_epoch >= epochs:
        if state["early_stopping"]["wait"] >= t.patience:
            state["stopped"] = f"early stopping: no better validation Dice for {t.patience} epochs"
        log and log(f"train: {run_name} is already complete")
    else:
        steps = steps_per_epoch(len(train_data), t.batch_size)
        ds = training_batches(train_data, t.batch_size, crop, seed, initial_epoch, epochs, contrast_dropout)
        if placement.strategy is not None:
            ds = shard_by_data(ds)
        callbacks = _make_callbacks(run_dir, model, val_data, state, t.patience, t.batch_size, log, writes)
        if tensorboard and writes:
            callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
        log and log(f"train: {run_name}: {len(train_data)} training slices ({len(train_ids)} cases), "
                    f"{len(split.val)} validation cases, {steps} steps of {t.batch_size} per epoch, "
                    f"epochs {initial_epoch + 1}..{epochs}"
                    + (f", contrast dropout {contrast_dropout:g}" if contrast_dropout > 0 else ""))
        model.fit(ds, steps_per_epoch=steps, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  shuffle=False, verbose=verbose)  # the order comes from epoch_plan
    es = state["early_stopping"]
    result = RunResult(run_dir, es["best_epoch"], es["best"], state["epoch_now"], state["stopped"], state["history"])
    if not writes:
        return result
    run_files.write_metrics(run_dir, {
        "run_name": run_name, "best_epoch": es["best_epoch"], "best_val_dice": es["best"],
        "epochs_run": state["epoch_now"], "stopped": state["stopped"],
        "validation_protocol": "Dice, precision and sensitivity per 3-D volume (preprocessed crop), mean over volumes",
        "best_validation": next((r for r in state["history"] if r["epoch"] == es["best_epoch"]), None),
    })
    return result


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Build under a Keras dtype policy ('mixed_float16' ...), then restore the previous one."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _set_random_seed(seed: int) -> None:
    """keras.utils.set_random_seed on TensorFlow; on other backends Python's and NumPy's seeds only.

    Keras' function imports TensorFlow whenever it is installed, to seed it too, which on the
    JAX backend loads a second framework for nothing. The one other thing it seeds, Keras'
    global seed, serves only unseeded keras.random draws: the models here seed every
    initializer, and nothing else in a run draws.
    """
    import random

    import keras

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)


def _xla_wanted(xla: bool | None) -> bool:
    import os

    import keras

    if xla is None:
        xla = os.environ.get("SEGAN_XLA", "").strip().lower() in ("1", "true", "yes")
    return bool(xla) and keras.backend.backend() == "tensorflow"  # JAX compiles with XLA anyway


def _op_determinism_enabled() -> bool:
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return is_op_determinism_enabled()


def _deterministic_ops() -> None:
    import keras

    if keras.backend.backend() != "tensorflow":  # nothing to switch on; and TensorFlow may be absent
        return
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception:
        pass


def train_or_resume(profile: Profile, run_name: str, **kwargs) -> RunResult:
    """Train a run, or continue it from its last checkpoint when it has one (a finished run returns at once)."""
    return train(profile, run_name, resume=has_checkpoint(run_name), **kwargs)
