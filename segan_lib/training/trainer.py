"""One training run from a profile: data, models, fit, checkpoints, exact resume.

The files of a run folder, and how they are written, are segan_lib.run_files's.
Every file is written to a temporary name and renamed. A checkpoint is written
only after the epoch's losses were checked finite, so the last good one survives
a diverging run. `resume=True` restarts after the epoch of last.npz; the data
order and crops of every epoch depend only on (seed, epoch), so a resumed run
ends with the same weights as an uninterrupted one. `train` runs its steps in
this order: options and resume checks, settings.json, seeding and determinism,
data, models, initial or resumed weights, the epochs (segan_lib.training.callbacks
validates and checkpoints each), metrics.json.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from segan_lib import paths
from segan_lib.atomic import atomic_write_json
from segan_lib.config import Profile
from segan_lib.constants import Freeze
from segan_lib import run_files
from segan_lib.run_files import CHECKPOINTS, has_checkpoint, read_checkpoint, write_history
from segan_lib.training.callbacks import TrainingError
from segan_lib.training.callbacks import make_callbacks as _make_callbacks  # looked up here: tests wrap it

if TYPE_CHECKING:
    from segan_lib.data.pipeline import SliceSet
    from segan_lib.training.distribute import Placement


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
    wrote_run_folder: bool = True  # False on a multi-worker run's non-chief workers, which write nothing


@dataclass
class _Run:
    """What every step of one training run shares: its profile, name, folder, placement and log."""
    profile: Profile
    name: str
    dir: Path
    placement: Placement
    writes: bool  # under multi-worker training only the chief writes the run folder
    log: Callable[[str], None] | None


@dataclass
class _RunData:
    """The run's training cases, its validation cases and their slices, and the training crop size."""
    train_ids: list[str]
    val_ids: list[str]
    train: SliceSet
    val: SliceSet
    crop: int


# ---------------------------------------------------------------- the run
def train(profile: Profile, run_name: str | None = None, *, resume: bool = False, init_from: str | Path | None = None,
          freeze: str = "none", max_epochs: int | None = None, tensorboard: bool = False, verbose: int = 0,
          log=print, strategy: str | None = None, xla: bool | None = None,
          contrast_dropout: float = 0.0) -> RunResult:
    """Train one model as the profile says; see the module docstring for what is written.

    strategy: "default", "mirrored" or "multiworker" (segan_lib.training.distribute); None reads $SEGAN_STRATEGY.
    xla: compile the train step with XLA. None: $SEGAN_XLA when set ("1"/"0"), else off (`xla_default`:
    since the upsampling's rewrite the step without XLA is the faster one on the CPU). An XLA run switches
    TensorFlow's op determinism off (Keras drops XLA under it); XLA's own CPU code gives the same
    weights bit for bit for the same seed and thread count (benchmarks/bench_xla_determinism.py).
    xla=False trains with op determinism on; the two give different (equally seeded) numbers.
    contrast_dropout: zero each contrast of a training slice with this probability, keeping at least
    one (pipeline.contrast_dropout_masks), so the model copes with contrasts missing at test time.
    """
    # first: a multi-worker strategy must exist before TensorFlow runs any operation
    from segan_lib.training.distribute import make_placement

    placement = make_placement(strategy)
    _check_options(profile, contrast_dropout)
    run_name = run_name or default_run_name(profile, freeze, init_from, contrast_dropout)
    run = _Run(profile, run_name, paths.runs_dir() / run_name, placement, placement.is_chief, log)
    xla = _run_xla(run, xla, resume)
    settings = {**_run_settings(run, freeze, init_from, contrast_dropout), "xla": xla}
    _check_resume(run, settings, resume)
    _start(run, settings)
    _seed_and_determinism(profile.train.seed, xla)  # seeded before anything is built
    data = _load_data(run)
    model = _build_model(run, data, freeze, xla)
    state, initial_epoch = _restore(run, model, init_from, resume)
    _fit(run, model, data, state, initial_epoch, max_epochs=max_epochs, tensorboard=tensorboard, verbose=verbose,
         contrast_dropout=contrast_dropout)
    return _finish(run, state)


def _check_options(profile: Profile, contrast_dropout: float) -> None:
    if not 0.0 <= contrast_dropout < 1.0:
        raise TrainingError(f"contrast dropout must be in [0, 1), got {contrast_dropout!r}")
    if contrast_dropout > 0 and len(profile.model.contrasts) < 2:
        raise TrainingError(f"contrast dropout needs at least two contrasts, the model has "
                            f"{list(profile.model.contrasts)}")


def _run_settings(run: _Run, freeze: str, init_from, contrast_dropout: float) -> dict:
    """What settings.json records: what a resumed run must have in common with the one it continues."""
    profile = run.profile
    return {"run_name": run.name, "profile": profile.to_dict(), "freeze": freeze,
            "init_from": str(init_from) if init_from else None, "data_root": str(profile.data_root),
            "contrast_dropout": contrast_dropout}


def _check_resume(run: _Run, settings: dict, resume: bool) -> None:
    """A run with checkpoints continues only when asked to, and only with the settings it was started with."""
    run_name, run_dir = run.name, run.dir
    if (run_dir / CHECKPOINTS / "last.json").exists() and not resume:
        raise TrainingError(f"run {run_name} already has checkpoints in {run_dir}: pass resume=True (--resume) to "
                            "continue it, or choose another run name; nothing was changed")
    if not resume:
        return
    old = json.loads((run_dir / "settings.json").read_text()) if (run_dir / "settings.json").exists() else None
    if old is None:
        raise TrainingError(f"cannot resume {run_name}: no settings.json in {run_dir}")

    from segan_lib.config import profile_from_dict

    def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
        out = []
        for k in sorted(set(a) | set(b)):
            x, y = a.get(k), b.get(k)
            if isinstance(x, dict) and isinstance(y, dict):
                out += differences(x, y, f"{prefix}{k}.")
            elif x != y:
                out.append(f"{prefix}{k}: {x!r} in the run, {y!r} now")
        return out

    for key in ("profile", "freeze", "init_from", "contrast_dropout"):
        if key == "profile":  # more epochs or patience may be given to a resumed run
            # through the profile reader, so a run saved before a setting existed counts with the value it used
            a = profile_from_dict(old[key], where=str(run_dir / "settings.json")).to_dict()
            b = dict(settings[key])
            a["train"] = {k: v for k, v in a["train"].items() if k not in ("epochs", "patience")}
            b["train"] = {k: v for k, v in b["train"].items() if k not in ("epochs", "patience")}
        else:
            a, b = old.get(key, 0.0 if key == "contrast_dropout" else None), settings[key]
        if a != b:
            diff = differences(a, b) if key == "profile" else [f"{a!r} in the run, {b!r} now"]
            raise TrainingError(f"cannot resume {run_name}: its {key} settings differ from the ones given now "
                                f"({'; '.join(diff[:5])}; see {run_dir / 'settings.json'}); `segan train --name "
                                f"{run_name} --resume` takes the run's own settings")


def _start(run: _Run, settings: dict) -> None:
    """settings.json (by the chief), and a check that the global batch splits over the replicas."""
    from segan_lib.training.distribute import check_global_batch

    placement, batch_size = run.placement, run.profile.train.batch_size
    if run.writes:
        run.dir.mkdir(parents=True, exist_ok=True)
        run_files.write_settings(run.dir, settings)
    check_global_batch(batch_size, placement.replicas)
    if placement.replicas > 1 and run.log:
        run.log(f"train: {placement.name} strategy, {placement.replicas} replicas of "
                f"{batch_size // placement.replicas} slices{'' if run.writes else '; not the chief: writes nothing'}")


def _run_xla(run: _Run, xla: bool | None, resume: bool) -> bool:
    """XLA or not for this run: as asked, else (a resumed run) as the run was trained, else the default.

    A resumed run continues exactly only with the compilation it started with, so it takes the one
    its settings.json records (a run saved before XLA was recorded trained without it), and an
    explicit choice that differs is an error.
    """
    recorded = None
    if resume and (run.dir / "settings.json").exists():
        recorded = bool(json.loads((run.dir / "settings.json").read_text()).get("xla", False))
    if xla is None:
        return recorded if recorded is not None else _xla_wanted(None)
    wanted = _xla_wanted(xla)
    if recorded is not None and wanted != recorded:
        raise TrainingError(f"cannot resume {run.name}: it was trained {'with' if recorded else 'without'} XLA and "
                            f"would continue {'with' if wanted else 'without'} it, which changes its numbers; "
                            f"resume without --xla / --no-xla to continue as it was trained")
    return wanted


def _seed_and_determinism(seed: int, xla: bool) -> None:
    """Seed every generator, then op determinism on without XLA and off with it (they exclude each other,
    and the switch is process-wide: each run sets it, so a run never depends on what ran before it)."""
    _set_random_seed(seed)
    if xla:
        _nondeterministic_ops()
    else:
        _deterministic_ops()


def _load_data(run: _Run) -> _RunData:
    """The cache, the split, the fraction of training subjects (train_subjects.json) and their slices."""
    from segan_lib.data.cache import open_cache
    from segan_lib.data.pipeline import load_slices
    from segan_lib.data.splits import default_splits_path, load_split

    profile = run.profile
    m, t, seed = profile.model, profile.train, profile.train.seed
    cache = open_cache(profile.data_root, profile.preprocess)
    split = load_split(default_splits_path(profile.data_root), case_ids=cache.listed_ids)
    # the cases with the run's contrasts and a label (the others: a DataError naming them, or left out with a
    # warning under data.on_bad_case=skip)
    usable = dict.fromkeys(cache.usable(split.train + split.val, m.contrasts, need_label=True,
                                        on_bad_case=profile.data.on_bad_case, user="training"))
    train_ids = tuple(c for c in split.train if c in usable)
    val_ids = tuple(c for c in split.val if c in usable)
    if t.subject_fraction < 1.0:
        from segan_lib.data.splits import nested_subset

        train_ids = nested_subset(train_ids, cache.grades, t.subject_fraction, seed=seed)
    if run.writes:
        atomic_write_json(run.dir / "train_subjects.json", {"fraction": t.subject_fraction, "seed": seed,
                                                            "case_ids": list(train_ids),
                                                            # for the bundle, which must not need the cache
                                                            "source_orientation": cache.source_orientation(),
                                                            # in whose values a bundle writes three-region masks
                                                            "label_scheme": _label_scheme(cache, train_ids)})
    train_data = load_slices(cache, train_ids, m.contrasts, m.regions, t.slices)
    val_data = load_slices(cache, val_ids, m.contrasts, m.regions, "all")
    h, w = train_data.images.shape[1:3]
    return _RunData(train_ids, val_ids, train_data, val_data, crop=min(t.crop_size, h, w))


def _label_scheme(cache, case_ids) -> str | None:
    """The label scheme (a key of LABEL_SCHEMES) the training cases' labels are in, as the cache records it."""
    meta = cache.meta.get(case_ids[0], {}) if case_ids else {}
    return meta.get("scheme") or meta.get("layout")


def _build_model(run: _Run, data: _RunData, freeze: str, xla: bool):
    """Segmentor, critic and the compiled SegAN, under the precision's dtype policy and the placement's scope."""
    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN

    m, t, seed = run.profile.model, run.profile.train, run.profile.train.seed
    n_out = data.train.masks.shape[-1]
    sync = run.placement.replicas > 1
    with _dtype_policy(t.precision), run.placement.scope():
        segmentor = build_segmentor(len(m.contrasts), width=m.width, n_outputs=n_out, seed=seed, sync_batchnorm=sync)
        critic = build_critic(len(m.contrasts), n_seg_channels=n_out, input_mode=m.critic_input, width=m.width,
                              clip_value=m.clip_value, clip_scope=m.clip_scope, seed=seed, sync_batchnorm=sync)
        model = SegAN(segmentor, critic, dice_weight=m.dice_weight, freeze=freeze, update_order=t.update_order,
                      validation_field=run.profile.evaluate.field)
        model.compile(learning_rate=t.learning_rate, rmsprop=t.rmsprop, **({"jit_compile": True} if xla else {}))
        if xla and run.log:
            run.log(f"train: train step compiled with XLA: {bool(model.jit_compile)}")
        model(np.zeros((1, data.crop, data.crop, len(m.contrasts)), np.float32))
    return model


def _restore(run: _Run, model, init_from, resume: bool) -> tuple[dict, int]:
    """Initial weights from another run (init_from), then a resumed run's state; the state and first epoch."""
    from segan_lib.training.segan import load_state_arrays

    log = run.log
    state = {"seed": run.profile.train.seed, "history": [], "epoch_now": 0, "stopped": "finished all epochs",
             "early_stopping": {"best": -1.0, "best_epoch": 0, "wait": 0}}
    initial_epoch = 0
    if init_from:
        meta, arrays = read_checkpoint(run_files.run_folder(init_from), "best")
        load_state_arrays(model, arrays, groups=("segmentor", "critic"), where=f"initial weights from {init_from}")
        log and log(f"train: initial segmentor and critic from {init_from} (epoch {meta['epoch']})")
    if resume:
        meta, arrays = read_checkpoint(run.dir, "last")
        load_state_arrays(model, arrays, where=str(run.dir / CHECKPOINTS / "last.npz"))
        initial_epoch = int(meta["epoch"])
        state.update(history=meta["history"], epoch_now=initial_epoch, early_stopping=meta["early_stopping"])
        if run.writes:
            write_history(run.dir, state["history"])  # drop rows of an epoch that had not been checkpointed
        log and log(f"train: resuming {run.name} after epoch {initial_epoch}")
    return state, initial_epoch


def _fit(run: _Run, model, data: _RunData, state: dict, initial_epoch: int, *, max_epochs: int | None,
         tensorboard: bool, verbose: int, contrast_dropout: float) -> None:
    """The epochs left (none when the run is complete or stopped early), with the epoch-end callback."""
    import keras

    from segan_lib.data.pipeline import steps_per_epoch, training_batches
    from segan_lib.training.distribute import shard_by_data

    t, log = run.profile.train, run.log
    epochs = min(t.epochs, max_epochs) if max_epochs else t.epochs
    if state["early_stopping"]["wait"] >= t.patience or initial_epoch >= epochs:
        if state["early_stopping"]["wait"] >= t.patience:
            state["stopped"] = f"early stopping: no better validation Dice for {t.patience} epochs"
        log and log(f"train: {run.name} is already complete")
        return
    steps = steps_per_epoch(len(data.train), t.batch_size)
    ds = training_batches(data.train, t.batch_size, data.crop, t.seed, initial_epoch, epochs, contrast_dropout)
    if run.placement.strategy is not None:
        ds = shard_by_data(ds)
    callbacks = _make_callbacks(run.dir, model, data.val, state, t.patience, t.batch_size, log, run.writes)
    if tensorboard and run.writes:
        callbacks.append(keras.callbacks.TensorBoard(str(run.dir / "tensorboard")))
    log and log(f"train: {run.name}: {len(data.train)} training slices ({len(data.train_ids)} cases), "
                f"{len(data.val_ids)} validation cases, {steps} steps of {t.batch_size} per epoch, "
                f"epochs {initial_epoch + 1}..{epochs}"
                + (f", contrast dropout {contrast_dropout:g}" if contrast_dropout > 0 else ""))
    model.fit(ds, steps_per_epoch=steps, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
              shuffle=False, verbose=verbose)  # the order comes from epoch_plan


def _finish(run: _Run, state: dict) -> RunResult:
    """The run's result, and metrics.json (by the chief)."""
    from segan_lib.training.validation import field_description

    es = state["early_stopping"]
    result = RunResult(run.dir, es["best_epoch"], es["best"], state["epoch_now"], state["stopped"], state["history"],
                       wrote_run_folder=run.writes)
    if not run.writes:
        return result
    run_files.write_metrics(run.dir, {
        "run_name": run.name, "best_epoch": es["best_epoch"], "best_val_dice": es["best"],
        "epochs_run": state["epoch_now"], "stopped": state["stopped"],
        "validation_protocol": "Dice, precision and sensitivity per 3-D volume, mean over volumes, on the "
                               + field_description(run.profile.evaluate.field, run.profile.preprocess.crop_shape,
                                                   run.profile.preprocess.spacing_mm),
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


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def xla_default() -> bool:
    """Whether training compiles with XLA when nothing says otherwise: $SEGAN_XLA when set, else off.

    XLA is reproducible on the CPU (bench_xla_determinism.py) but, since BilinearUpSampling2D's
    rewrite, slower there than the step under op determinism (bench_torch_peer.py, one quiet run:
    quick shape 232.8 against 321.9 slices/s, paper shape 5.3 against 6.6), and on a GPU its
    reductions are not guaranteed deterministic; JAX compiles anyway."""
    import os

    import keras

    given = os.environ.get("SEGAN_XLA", "").strip().lower()
    if given in _TRUE + _FALSE:
        return given in _TRUE and keras.backend.backend() == "tensorflow"
    if given:
        raise TrainingError(f"SEGAN_XLA={given!r}: expected 1 or 0 (or leave it unset for the default)")
    return False


def _xla_wanted(xla: bool | None) -> bool:
    import keras

    if xla is None:
        return xla_default()
    return bool(xla) and keras.backend.backend() == "tensorflow"  # JAX compiles with XLA anyway


def _nondeterministic_ops() -> None:
    """Op determinism off for an XLA run (Keras refuses jit_compile under it): XLA's code is deterministic."""
    from tensorflow.python.framework.config import disable_op_determinism, is_op_determinism_enabled

    if is_op_determinism_enabled():
        disable_op_determinism()


def _deterministic_ops() -> None:
    """TensorFlow's op determinism on; a TrainingError when it cannot be, never a silent fallback."""
    import keras

    if keras.backend.backend() != "tensorflow":  # nothing to switch on; and TensorFlow may be absent
        return
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the run would not be reproducible
        raise TrainingError(
            f"cannot switch on TensorFlow's op determinism ({exc.__class__.__name__}: {exc}), so the same seed "
            "would not give the same weights; nothing was trained (XLA, --xla or SEGAN_XLA=1, trains without it "
            "on purpose)") from exc


def train_or_resume(profile: Profile, run_name: str, **kwargs) -> RunResult:
    """Train a run, or continue it from its last checkpoint when it has one (a finished run returns at once)."""
    return train(profile, run_name, resume=has_checkpoint(run_name), **kwargs)
