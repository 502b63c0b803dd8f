"""The JAX train step against the TensorFlow one: same batches and weights in, same numbers and files out.

Keras fixes its backend once per process, so each backend runs in a subprocess of this
file (``python -m tests.integration.test_jax_backend``, on the CPU) and the tests compare what the two
wrote. Both start from the same initial weights: Keras' seeded initializers draw different
numbers on each backend, so every convolution kernel is redrawn with numpy (the other
variables start at 0 or 1 anyway). Each subprocess
  - evaluates, then trains two steps on one fixed batch, with the critic trained and frozen, in
    each update order (train.update_order: "joint", the authors', and "critic_first"), and saves the
    state before and after (a tight check of the step's maths and state);
  - trains a tiny 3-epoch run per update order with `segan_lib.training.trainer.train` (loss curves,
    checkpoints, bundle), and predicts with the joint run's bundle.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytestmark = pytest.mark.slow  # two trainings, one per backend, in subprocesses

from tests.tiny_project import tiny_project  # noqa: E402

BACKENDS = ("tensorflow", "jax")
TINY = ["data.phantom_n=10", "model.width=4", "train.batch_size=8", "train.epochs=3", "train.patience=5",
        "preprocess.crop_shape=[48, 48, 16]"]
LEARNING_RATE = 1e-3  # the smoke profile's
RUN = "run_{backend}_{order}"
ORDERS = ("joint", "critic_first")

# Tolerances. Both backends compute in float32 but not identically: XLA (JAX) and oneDNN/Eigen
# (TensorFlow) sum convolutions and reductions in different orders, so values differ by a few
# float32 ulps. Two steps from the same weights stay that close: observed at most 1e-6 on any
# state variable and 1.2e-7 on the logged losses (critic_first order). STEP_* leaves a 10x margin
# and still failed, by 0.2 or more, on a skipped clip, a segmentor step taken before the critic's
# update, or a missing batch-norm update (each tried once by hand, critic_first order); the two
# orders differ from each other by more than that too (test_the_two_orders_differ).
STEP_RTOL, STEP_ATOL = 1e-4, 1e-5
# Over a run (48 steps) those ulps grow: RMSprop divides each gradient by its running RMS, and
# the clip decides at its boundary. The authors' RMSprop (train.rmsprop tf2, the default) grows
# them most: its step lr g / (sqrt(v) + 1e-7) turns rounding noise in a near-zero gradient into
# a step of up to lr * noise / 1e-7 (Keras 3's formula damps it 3000x more), and the critic has
# many such gradients. Observed per-epoch differences, largest over the 3 epochs (joint |
# critic_first): seg_loss 0.25% | 0.42%, dice_loss 0.23% | 0.34%, critic_loss and l1 0.46% |
# 1.34%, train Dice 0.0052 | 0.0014 (thresholded at 0.5: pixels near it flip). Another data
# order (train.seed=1, same weights) moves them by: seg_loss 2.6% | 2.2%, dice_loss 2.9% | 2.4%,
# critic_loss 1.7% | 2.4%, train Dice 0.045 | 0.035. So the segmentor's losses at 1% (2.4x the
# backends' largest difference, 0.42%, and 2.2x below the smallest change of data order, 2.2%)
# check that the two runs are the same run; the critic's at 2.5% (1.9x their largest difference)
# that nothing is grossly off; the train Dice at 0.01 (1.9x | 7x; 3.5x below the data order's).
CURVE_LOSSES = ("seg_loss", "critic_loss", "l1", "dice_loss")
CURVE_LOSS_RTOL = {"seg_loss": 1e-2, "dice_loss": 1e-2, "critic_loss": 2.5e-2, "l1": 2.5e-2}
CURVE_DICE_ATOL = 1e-2
PREDICTION_ATOL = 1e-5  # the same bundle weights, one forward pass (probabilities in [0, 1])


# ---------------------------------------------------------------- the subprocess (one backend)
def _numpy_kernels(build):
    """`build`, then every convolution kernel redrawn with numpy, N(0, sqrt(2 / (k k filters))) as in models."""

    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        for v in model.weights:
            if len(v.shape) == 4:
                k, _, _, filters = v.shape
                rng = np.random.default_rng(zlib.crc32(f"{model.name}/{v.path}".encode()))
                v.assign(rng.normal(0.0, math.sqrt(2.0 / (k * k * filters)), v.shape).astype(np.float32))
        return model

    return built


def _fixed_batch():
    rng = np.random.default_rng(7)
    images = rng.random((8, 32, 32, 4), dtype=np.float32)
    truth = (images[..., :1] > 0.6).astype(np.float32)
    return images, truth


def _two_steps(freeze: str, order: str, out: Path) -> dict:
    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN, state_arrays

    model = SegAN(build_segmentor(4, width=4, seed=0), build_critic(4, width=4, seed=0), freeze=freeze,
                  update_order=order)
    model.compile(learning_rate=LEARNING_RATE)  # the default RMSprop: the authors' TF 2.0 formula
    model(np.zeros((1, 32, 32, 4), np.float32))
    images, truth = _fixed_batch()
    np.savez(out / f"steps_{freeze}_{order}_before.npz", **state_arrays(model))
    evaluation = model.evaluate(images, truth, batch_size=8, verbose=0, return_dict=True)
    steps = [model.train_on_batch(images, truth, return_dict=True) for _ in range(2)]
    np.savez(out / f"steps_{freeze}_{order}_after.npz", **state_arrays(model))
    as_floats = lambda logs: {k: float(v) for k, v in logs.items()}  # noqa: E731
    return {"evaluate": as_floats(evaluation), "train": [as_floats(s) for s in steps]}


def _worker(out: Path) -> None:
    import keras

    from segan_lib import paths
    from segan_lib.apply.bundle import export_bundle, load_bundle
    from segan_lib.nets import critic as critic_module
    from segan_lib.nets import segmentor as segmentor_module
    from segan_lib.config import load_profile
    from segan_lib.nets.inference import predict_array
    from segan_lib.training.trainer import train

    # kernels are redrawn with numpy anyway: skipping Keras' draws spares JAX one compilation per shape
    segmentor_module.kernel_init = lambda *args: keras.initializers.Zeros()
    critic_module.kernel_init = lambda *args: keras.initializers.Zeros()
    segmentor_module.build_segmentor = _numpy_kernels(segmentor_module.build_segmentor)
    critic_module.build_critic = _numpy_kernels(critic_module.build_critic)
    report = {"backend": keras.backend.backend(),
              "steps": {f"{f}_{o}": _two_steps(f, o, out) for f in ("none", "critic") for o in ORDERS}}
    for order in ORDERS:
        train(load_profile("smoke", TINY + [f"train.update_order={order}"]),
              RUN.format(backend=keras.backend.backend(), order=order), log=None)
    bundle = load_bundle(export_bundle(paths.runs_dir() / RUN.format(backend=keras.backend.backend(), order="joint")))
    np.save(out / "bundle_prediction.npy", predict_array(bundle.segmentor, _fixed_batch()[0], batch_size=8))
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    (out / "report.json").write_text(json.dumps(report, indent=1))


# ---------------------------------------------------------------- the tests
def _run_worker(backend: str, root: Path, out: Path) -> subprocess.CompletedProcess:
    # JAX's compilation cache (in the subprocess's own folder) lets the run reuse the train step
    # compiled for the two-step check: the same computation, compiled once instead of twice.
    env = dict(os.environ, KERAS_BACKEND=backend, SEGAN_ROOT=str(root), CUDA_VISIBLE_DEVICES="",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", JAX_COMPILATION_CACHE_DIR=str(out / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    return subprocess.run([sys.executable, "-m", "tests.integration.test_jax_backend", str(out)], env=env,
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Both backends' results: {backend: folder with report.json, step states, bundle prediction}; and the root."""
    root = tmp_path_factory.mktemp("project")
    with tiny_project(root, TINY):
        pass  # phantom, cache and split, shared read-only by the two subprocesses
    outs = {b: tmp_path_factory.mktemp(b) for b in BACKENDS}
    with ThreadPoolExecutor(len(BACKENDS)) as pool:  # the two trainings run side by side
        done = dict(zip(BACKENDS, pool.map(lambda b: _run_worker(b, root, outs[b]), BACKENDS)))
    for backend, proc in done.items():
        assert proc.returncode == 0, f"{backend} subprocess failed:\n{proc.stderr[-4000:]}"
    reports = {b: json.loads((outs[b] / "report.json").read_text()) for b in BACKENDS}
    return {"root": root, "dirs": outs, "reports": reports}


def _load(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _assert_close_state(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def test_each_subprocess_ran_its_backend(outputs):
    assert {b: outputs["reports"][b]["backend"] for b in BACKENDS} == {b: b for b in BACKENDS}


def test_the_jax_path_never_imports_tensorflow(outputs):
    # models, compile, evaluate, train_on_batch, a whole run with checkpoints and bundle, load_bundle
    assert outputs["reports"]["jax"]["tensorflow_imported"] is False


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("freeze", ["none", "critic"])
def test_two_steps_from_the_same_weights_give_the_same_state(outputs, freeze, order):
    tf_dir, jax_dir = outputs["dirs"]["tensorflow"], outputs["dirs"]["jax"]
    tag = f"{freeze}_{order}"
    before = {b: _load(outputs["dirs"][b] / f"steps_{tag}_before.npz") for b in BACKENDS}
    _assert_close_state(before["tensorflow"], before["jax"], rtol=0, atol=0)  # truly the same start
    tf_after, jax_after = _load(tf_dir / f"steps_{tag}_after.npz"), _load(jax_dir / f"steps_{tag}_after.npz")
    # weights, batch-norm statistics, both optimizers' slots and iteration counters
    _assert_close_state(tf_after, jax_after, rtol=STEP_RTOL, atol=STEP_ATOL)
    seg_iterations = [v for k, v in jax_after.items() if k.startswith("seg_optimizer/") and k.endswith("iteration")]
    critic_iterations = [v for k, v in jax_after.items() if k.startswith("critic_optimizer/") and k.endswith("iteration")]
    assert seg_iterations == [2] and critic_iterations == [0 if freeze == "critic" else 2]
    critic_keys = [k for k in jax_after if k.startswith("critic/")]
    moved = [k for k in critic_keys if not np.array_equal(before["jax"][k], jax_after[k])]
    if freeze == "critic":
        assert moved == []  # kernels, batch-norm gamma, beta and statistics untouched
    else:  # trained; the kernels clipped, the rest not (the authors' clip scope; batch-norm gamma starts at 1)
        assert moved
        assert all(np.abs(jax_after[k]).max() <= np.float32(0.05) for k in critic_keys if k.endswith("kernel"))
        assert all(np.abs(jax_after[k]).max() > 0.5 for k in critic_keys if k.endswith("gamma"))
    tf_logs, jax_logs = (outputs["reports"][b]["steps"][tag] for b in BACKENDS)
    for tf_step, jax_step in zip([tf_logs["evaluate"], *tf_logs["train"]], [jax_logs["evaluate"], *jax_logs["train"]]):
        assert tf_step.keys() == jax_step.keys()
        for name in tf_step:
            assert jax_step[name] == pytest.approx(tf_step[name], rel=STEP_RTOL, abs=STEP_ATOL), name


def test_the_two_orders_differ(outputs):
    """With the critic trained the orders are different steps (beyond STEP_*); frozen, the same one."""
    for backend in BACKENDS:
        steps = {tag: _load(outputs["dirs"][backend] / f"steps_{tag}_after.npz")
                 for tag in ("none_joint", "none_critic_first", "critic_joint", "critic_critic_first")}
        worst = max(float(np.max(np.abs(steps["none_joint"][k] - steps["none_critic_first"][k])))
                    for k in steps["none_joint"] if k.startswith("segmentor/"))
        assert worst > 10 * STEP_ATOL, backend
        # one segmentor pass through the frozen critic either way (JAX may compile the two differently)
        _assert_close_state(steps["critic_joint"], steps["critic_critic_first"], rtol=STEP_RTOL, atol=STEP_ATOL)


@pytest.mark.parametrize("order", ORDERS)
def test_loss_curves_agree(outputs, order):
    import pandas as pd

    runs = outputs["root"] / "runs"
    tf_history = pd.read_csv(runs / RUN.format(backend="tensorflow", order=order) / "history.csv")
    jax_history = pd.read_csv(runs / RUN.format(backend="jax", order=order) / "history.csv")
    assert list(jax_history["epoch"]) == list(tf_history["epoch"]) == [1, 2, 3]
    for column in CURVE_LOSSES:
        np.testing.assert_allclose(jax_history[column], tf_history[column], rtol=CURVE_LOSS_RTOL[column], atol=0,
                                   err_msg=column)
    np.testing.assert_allclose(jax_history["dice"], tf_history["dice"], rtol=0, atol=CURVE_DICE_ATOL)


def test_jax_checkpoints_and_bundle_load_on_tensorflow(outputs, monkeypatch):
    from segan_lib.apply.bundle import load_bundle
    from segan_lib.evaluation.evaluate import load_run_models
    from segan_lib.nets.inference import predict_array
    from segan_lib.training.segan import load_state_arrays

    monkeypatch.setenv("SEGAN_ROOT", str(outputs["root"]))
    runs = outputs["root"] / "runs"
    jax_run, tf_run = runs / RUN.format(backend="jax", order="joint"), runs / RUN.format(backend="tensorflow", order="joint")
    for tag in ("last", "best"):
        jax_state, tf_state = _load(jax_run / f"checkpoints/{tag}.npz"), _load(tf_run / f"checkpoints/{tag}.npz")
        assert jax_state.keys() == tf_state.keys()  # group/index/variable path: the same format
        assert all(jax_state[k].shape == tf_state[k].shape and jax_state[k].dtype == tf_state[k].dtype
                   for k in jax_state)
    model, _ = load_run_models(jax_run, "last")  # this process's backend: TensorFlow unless KERAS_BACKEND says
    load_state_arrays(model, _load(jax_run / "checkpoints/last.npz"))  # every group, optimizers included
    bundle = load_bundle(jax_run / "bundle")
    assert "jax" in bundle.card["versions"]
    prediction = predict_array(bundle.segmentor, _fixed_batch()[0], batch_size=8)
    np.testing.assert_allclose(prediction, np.load(outputs["dirs"]["jax"] / "bundle_prediction.npy"), rtol=0,
                               atol=PREDICTION_ATOL)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
