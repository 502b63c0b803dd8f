"""RMSpropTF2 (the authors' TensorFlow 2.0 RMSprop) step by step against numpy transcriptions of both formulas."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from segan_lib.training.optimizers import RMSpropTF2, make_rmsprop

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

F32 = np.float32
STEPS = 5
LR = 1e-3
SHAPES = [(), (7,), (4, 5), (2, 3, 3, 4)]
# Gradient scales: far above sqrt(epsilon) ~ 3.2e-4 (both formulas agree), near it, and below it (the
# segmentor's and critic's many small gradients, where Keras 3's formula damps the step 10-1000x).
SCALES = [1.0, 3e-4, 1e-6]

# Tolerance. The numpy transcription performs the same float32 operations in the same order
# (square, two products and a sum for v; sqrt, + epsilon, lr * g, the quotient, the subtraction),
# each correctly rounded (IEEE 754: relative error <= u = 2**-24), so one step's increment carries
# at most ~6u relative error and the subtraction u |w|. Errors of v enter the next step's increment
# at half their size (a square root) and do not compound beyond the sum over steps, so after K steps
# |w - w_np| <= K (u |w| + 6u |increment|), with |increment| <= lr / sqrt(1 - rho) ~ 3.2 lr.
# Observed: bitwise equal on TensorFlow's CPU kernels; the bound allows for an XLA or a fused
# kernel that rounds differently.
U = 2.0 ** -24
RTOL = STEPS * U * 2  # |w| term, 2x margin
ATOL = STEPS * 6 * U * 3.2 * LR * 2
V_RTOL = STEPS * 4 * U * 2  # v: four roundings a step


def _grads(shape, scale, steps, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * scale).astype(F32) for _ in range(steps)]


def _numpy_tf2(w, grads, lr=LR, rho=0.9, eps=1e-7, centered=False):
    """TF 2.0 tf.keras RMSprop without momentum (optimizer_v2/rmsprop.py, _resource_apply_dense), in float32."""
    w = np.array(w, F32)
    v = np.zeros_like(w)
    mg = np.zeros_like(w)
    rho, lr, eps = F32(rho), F32(lr), F32(eps)
    one_minus_rho = F32(1.0) - rho  # TF: 1. - rho, rho a float32 tensor
    out = []
    for g in grads:
        v = rho * v + one_minus_rho * np.square(g)
        denom = v
        if centered:
            mg = rho * mg + one_minus_rho * g
            denom = v - np.square(mg)
        w = w - lr * g / (np.sqrt(denom) + eps)
        out.append((w.copy(), v.copy()))
    return out


def _numpy_keras3(w, grads, lr=LR, rho=0.9, eps=1e-7):
    """Keras 3's RMSprop without momentum: epsilon inside the square root."""
    w = np.array(w, F32)
    v = np.zeros_like(w)
    for g in grads:
        v = F32(rho) * v + F32(1 - rho) * np.square(g)
        w = w - F32(lr) * g / np.sqrt(v + F32(eps))
    return w


def _run(optimizer, w0, grads):
    var = keras.Variable(np.array(w0, F32))
    optimizer.build([var])
    out = []
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [var])
        out.append((keras.ops.convert_to_numpy(var).copy(), keras.ops.convert_to_numpy(optimizer._velocities[0]).copy()))
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_tf2_variant_matches_the_tensorflow_2_0_formula_step_by_step(shape, scale):
    w0 = np.random.default_rng(1).standard_normal(shape).astype(F32) * F32(0.05)
    grads = _grads(shape, scale, STEPS, seed=10 * len(shape) + SCALES.index(scale))
    ours = _run(RMSpropTF2(LR), w0, grads)
    for k, ((w, v), (w_np, v_np)) in enumerate(zip(ours, _numpy_tf2(w0, grads)), start=1):
        np.testing.assert_allclose(v, v_np, rtol=V_RTOL, atol=0, err_msg=f"velocity after step {k}")
        np.testing.assert_allclose(w, w_np, rtol=RTOL, atol=ATOL, err_msg=f"weights after step {k}")


@pytest.mark.parametrize("scale", SCALES)
def test_keras3_variant_is_keras_rmsprop_and_differs_below_sqrt_epsilon(scale):
    shape = (4, 5)
    w0 = np.zeros(shape, F32)
    grads = _grads(shape, scale, STEPS, seed=3)
    keras3 = _run(make_rmsprop("keras3", LR, name="k3"), w0, grads)[-1][0]
    assert type(make_rmsprop("keras3", LR, name="k3")) is keras.optimizers.RMSprop
    np.testing.assert_allclose(keras3, _numpy_keras3(w0, grads), rtol=RTOL, atol=ATOL)
    tf2 = _run(make_rmsprop("tf2", LR, name="t2"), w0, grads)[-1][0]
    ratio = np.abs(keras3).sum() / np.abs(tf2).sum()  # the damping Keras 3's formula applies
    if scale == 1.0:
        assert ratio == pytest.approx(1.0, abs=1e-5)  # v >> epsilon: the same optimizer
    else:
        assert ratio < 0.9  # near or below sqrt(epsilon): much smaller steps
    if scale == 1e-6:
        assert ratio < 0.02


def test_centered_and_momentum_follow_tensorflow_2_0():
    shape = (3, 4)
    w0 = np.full(shape, 0.01, F32)
    grads = _grads(shape, 1e-3, STEPS, seed=5)
    centered = _run(RMSpropTF2(LR, centered=True), w0, grads)
    for (w, _), (w_np, _) in zip(centered, _numpy_tf2(w0, grads, centered=True)):
        np.testing.assert_allclose(w, w_np, rtol=RTOL, atol=ATOL)
    # with momentum TF 2.0 used the fused kernel, epsilon inside the root: Keras 3's own update, exactly
    with_momentum = _run(RMSpropTF2(LR, momentum=0.5), w0, grads)[-1][0]
    keras3 = _run(keras.optimizers.RMSprop(LR, momentum=0.5), w0, grads)[-1][0]
    np.testing.assert_array_equal(with_momentum, keras3)


def test_stateless_apply_on_jax_matches_the_formula():
    """The JAX train step applies the optimizers statelessly (stateless_apply, jit-compiled): same formula."""
    pytest.importorskip("jax")
    import json
    import os
    import subprocess
    import sys

    w0 = np.linspace(-0.05, 0.05, 12, dtype=F32).reshape(3, 4)
    grads = _grads((3, 4), 1e-5, 3, seed=9) + _grads((3, 4), 1.0, 2, seed=10)
    code = (
        "import json, sys\n"
        "import jax, numpy as np, keras\n"
        "from segan_lib.training.optimizers import RMSpropTF2\n"
        "w0, grads = json.loads(sys.stdin.read())\n"
        "opt = RMSpropTF2(%r)\n"
        "var = keras.Variable(np.asarray(w0, np.float32))\n"
        "opt.build([var])\n"
        "step = jax.jit(lambda o, g, w: opt.stateless_apply(o, g, w))\n"
        "values, opt_values = [var.value], [v.value for v in opt.variables]\n"
        "for g in grads:\n"
        "    values, opt_values = step(opt_values, [np.asarray(g, np.float32)], values)\n"
        "print(json.dumps(np.asarray(values[0]).astype(float).tolist()))\n" % LR)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps([w0.tolist(), [g.tolist() for g in grads]]),
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    on_jax = np.asarray(json.loads(done.stdout.strip().splitlines()[-1]), F32)
    np.testing.assert_allclose(on_jax, _numpy_tf2(w0, grads)[-1][0], rtol=RTOL, atol=ATOL)


def test_same_variables_as_keras_rmsprop_and_serializable():
    """Checkpoints keep their layout (names, shapes, order) whichever variant wrote them."""
    model_vars = [keras.Variable(np.zeros((2, 3), F32), name="a"), keras.Variable(np.zeros((5,), F32), name="b")]
    ours, theirs = RMSpropTF2(2e-5, name="seg_rmsprop"), keras.optimizers.RMSprop(2e-5, name="seg_rmsprop")
    ours.build(model_vars)
    theirs.build(model_vars)
    assert [(v.path, tuple(v.shape), str(v.dtype)) for v in ours.variables] == \
           [(v.path, tuple(v.shape), str(v.dtype)) for v in theirs.variables]
    config = keras.optimizers.serialize(ours)
    again = keras.optimizers.deserialize(config)
    assert type(again) is RMSpropTF2
    assert again.get_config() == ours.get_config()
    assert (ours.rho, ours.epsilon, ours.momentum, ours.centered) == (0.9, 1e-7, 0.0, False)  # TF 2.0's defaults
    with pytest.raises(ValueError, match="rmsprop"):
        make_rmsprop("adam", 1e-3, name="x")
