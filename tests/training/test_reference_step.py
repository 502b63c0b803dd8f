"""segan_lib's default train step against an independent transcription of the authors' one.

The authors' step (SegAN-CAT, src/DeepMRI.py `train_step`, src/SegAN_IO_arch.py), transcribed here
without segan_lib's training code:

    with tf.GradientTape(persistent=True) as tape:
        g_output = generator(x, training=True)
        d_real = discriminator([x, y], training=True)
        d_fake = discriminator([x, g_output], training=True)
        g_loss = mean|d_real - d_fake| + mean(1 - (eps + 2 sum(p g)) / (eps + sum(p^2) + sum(g^2)))
        d_loss = -mean|d_real - d_fake|
    g_optimizer.apply_gradients(tape.gradient(g_loss, generator.trainable_variables))
    d_optimizer.apply_gradients(tape.gradient(d_loss, discriminator.trainable_variables))
    # the critic's conv kernels only: kernel_constraint=clip_by_value(-0.05, 0.05), after its update

with TensorFlow 2.0's RMSprop (rho 0.9, epsilon 1e-7, no momentum): v = rho v + (1 - rho) g^2,
w -= lr g / (sqrt(v) + eps). The networks are segan_lib.nets' (the architecture is not what is
tested here), built with the same weights but without constraints; the forward passes run in Keras
(so the batch-norm statistics move as in any Keras model: the segmentor's once, the critic's
twice per step), the losses, gradients (tf.GradientTape), RMSprop and the clip are computed here
(numpy for the update and the clip). Their Dice puts epsilon once in the numerator and the
denominator where segan_lib's soft Dice has 2 (sum(p g) + eps) / (... + 2 eps): the two differ by
about eps / sum(p^2 + g^2) ~ 1e-9 here, far below float32 resolution.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

pytestmark = [pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow gradient tape"),
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]

LR = 1e-3  # large enough that the clip bites from the first step (kernels start with sd 0.18 > 0.05)
CLIP = 0.05
STEPS = 3
WIDTH, CHANNELS, SIZE, BATCH = 4, 2, 32, 4
F32 = np.float32

# Tolerance. Both sides run the same Keras layers on the same float32 inputs; they differ only in
# how TensorFlow schedules the arithmetic (segan_lib's step runs inside tf.function, the reference
# eagerly; oneDNN may sum a convolution in another order). Measured at the first step, eager
# against tf.function, the gradients differ by at most 2e-8 (1.3e-6 of a tensor's largest gradient,
# ~20 ulps). TF 2.0's RMSprop maps a gradient g to a step lr g / (sqrt(v) + eps), whose slope in g is
# at most lr / eps = 1e4 (at g ~ 0, where sqrt(v) << eps) and ~0 for |g| >> eps (3.2 lr sign(g) at the
# first step). So:
#  - every weight: |w - w_ref| <= K (lr / eps) dg = 3 * 1e4 * 2e-8 = 6e-4 (ATOL_ALL; the worst case,
#    reached only by a weight whose gradient stays near 0, so that its sign is rounding noise);
#  - a weight whose gradients are well above eps moves by K (3.2 lr dg/|g| + u |w|), below 3e-7 for
#    |g| >= 1e-5 (ATOL_MOST), which all but a few in a thousand weights have (MOST = 99.5%).
# Observed over the 19941 weights of these networks: largest difference 1.2e-6, 99.9% quantile 9e-8,
# 18 above 1e-7, 2 above 3e-7. Each option moves weights by far more (checked below): the clip of a
# bias or gamma (~1), the segmentor's gradient through another critic (~0.8), a step damped by the
# epsilon inside the root (~0.04), and each changes many weights beyond ATOL_MOST.
ATOL_ALL = 6e-4
ATOL_MOST, MOST = 3e-7, 0.995
OPTION_MIN_CHANGE = 10 * ATOL_ALL


def _batches():
    rng = np.random.default_rng(11)
    out = []
    for _ in range(STEPS):
        images = rng.random((BATCH, SIZE, SIZE, CHANNELS), dtype=F32)
        truth = (images[..., :1] > 0.6).astype(F32)
        out.append((images, truth))
    return out


def _networks(clip_scope="kernels", clip_value=CLIP):
    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor

    return (build_segmentor(CHANNELS, width=WIDTH, seed=0),
            build_critic(CHANNELS, width=WIDTH, seed=0, clip_value=clip_value, clip_scope=clip_scope))


def _segan_lib_weights(**options) -> dict:
    """Three train steps of segan_lib's SegAN (defaults, or the given options)."""
    from segan_lib.training.segan import SegAN

    segmentor, critic = _networks(clip_scope=options.pop("clip_scope", "kernels"))
    model = SegAN(segmentor, critic, update_order=options.pop("update_order", "joint"))
    model.compile(learning_rate=LR, rmsprop=options.pop("rmsprop", "tf2"))
    assert not options
    model(np.zeros((1, SIZE, SIZE, CHANNELS), F32))
    for images, truth in _batches():
        model.train_on_batch(images, truth)
    return {**{f"segmentor/{v.path}": keras.ops.convert_to_numpy(v) for v in segmentor.weights},
            **{f"critic/{v.path}": keras.ops.convert_to_numpy(v) for v in critic.weights}}


def _authors_dice_loss(y_true, y_pred, eps=1e-6):
    import tensorflow as tf

    axis = (1, 2)
    return 1.0 - (eps + 2.0 * tf.reduce_sum(y_pred * y_true, axis=axis)) / (
        eps + tf.reduce_sum(tf.pow(y_pred, 2), axis=axis) + tf.reduce_sum(tf.pow(y_true, 2), axis=axis))


def _reference_weights() -> dict:
    """The authors' step, three times, on free (unconstrained) copies of the same networks."""
    import tensorflow as tf

    segmentor, critic = _networks(clip_value=None)  # same seed: the same initial weights; clipped here by hand
    ref_seg, ref_critic = _networks()
    assert all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
               for a, b in zip(segmentor.weights + critic.weights, ref_seg.weights + ref_critic.weights))
    rho, eps, lr = F32(0.9), F32(1e-7), F32(LR)
    velocity = {id(v): np.zeros(v.shape, F32) for v in segmentor.trainable_variables + critic.trainable_variables}

    def rmsprop_tf2(variables, grads):
        for v, g in zip(variables, grads):
            g = np.asarray(g, F32)
            s = velocity[id(v)] = rho * velocity[id(v)] + (F32(1) - rho) * np.square(g)
            v.assign(np.asarray(v.numpy() - lr * g / (np.sqrt(s) + eps), F32))

    for images, truth in _batches():
        x, y = tf.constant(images), tf.constant(truth)
        with tf.GradientTape(persistent=True) as tape:
            g_output = segmentor(x, training=True)
            d_real = tf.concat(critic([x, y], training=True), axis=-1)  # their Concatenate of the flattened scales
            d_fake = tf.concat(critic([x, g_output], training=True), axis=-1)
            l1 = tf.reduce_mean(tf.abs(d_real - d_fake))
            g_loss = l1 + tf.reduce_mean(_authors_dice_loss(y, g_output))
            d_loss = -l1
        g_grads = tape.gradient(g_loss, segmentor.trainable_variables)
        d_grads = tape.gradient(d_loss, critic.trainable_variables)
        del tape
        rmsprop_tf2(segmentor.trainable_variables, g_grads)
        rmsprop_tf2(critic.trainable_variables, d_grads)
        for v in critic.trainable_variables:  # kernel_constraint: the kernels only, after the update
            if v.path.endswith("kernel"):
                v.assign(np.clip(v.numpy(), -CLIP, CLIP))
    return {**{f"segmentor/{v.path}": v.numpy() for v in segmentor.weights},
            **{f"critic/{v.path}": v.numpy() for v in critic.weights}}


@pytest.fixture(scope="module")
def reference():
    return _reference_weights()


def _largest_difference(a: dict, b: dict) -> tuple[float, str]:
    assert a.keys() == b.keys()
    return max((float(np.max(np.abs(a[k] - b[k]))), k) for k in a)


def test_the_default_step_is_the_authors_step(reference):
    ours = _segan_lib_weights()
    initial = dict(zip(reference, (keras.ops.convert_to_numpy(v) for n in _networks() for v in n.weights)))
    assert _largest_difference(reference, initial)[0] > 100 * LR * 0.1  # three steps really moved the weights
    clipped = [k for k in reference if k.startswith("critic/") and k.endswith("kernel")]
    assert all(np.abs(reference[k]).max() <= CLIP for k in clipped)
    assert any(np.abs(reference[k]).max() == pytest.approx(CLIP) for k in clipped)  # the clip was active
    largest = _largest_difference(ours, reference)
    for k in reference:
        np.testing.assert_allclose(ours[k], reference[k], rtol=0, atol=ATOL_ALL, err_msg=f"{k} (largest {largest})")
    assert _fraction_within(ours, reference, ATOL_MOST) >= MOST, largest


def _fraction_within(a: dict, b: dict, atol: float) -> float:
    d = np.concatenate([np.abs(a[k] - b[k]).ravel() for k in a])
    return float((d <= atol).mean())


@pytest.mark.parametrize("option", [{"clip_scope": "all"}, {"update_order": "critic_first"}, {"rmsprop": "keras3"}])
def test_each_option_departs_from_the_authors_step(reference, option):
    weights = _segan_lib_weights(**option)
    difference, where = _largest_difference(weights, reference)
    assert difference > OPTION_MIN_CHANGE, (option, difference, where)
    assert _fraction_within(weights, reference, ATOL_MOST) < MOST, option  # not one weight: many
