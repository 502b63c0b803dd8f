"""Networks (segmentor, critic, weight clipping, seeding, serialisation) and losses."""
import math
import pathlib

import keras
import numpy as np
import pytest

from segan_lib.nets import critic as critic_module, layers, losses, segmentor
from segan_lib.nets.critic import build_critic, concat_features, critic_input_channels
from segan_lib.nets.layers import BilinearUpSampling2D, ClipConstraint, CriticInput
from segan_lib.nets.losses import critic_loss, dice_loss, multiscale_l1, segmentor_loss, soft_dice
from segan_lib.nets.segmentor import build_segmentor

# Keras' TensorFlow backend converts tensors with np.array(x), which numpy 2 flags; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

W = 4  # small width for fast tests
RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.random(shape, dtype=np.float32)


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- segmentor


def _expected_segmentor_params(c, w=64, n_out=1):
    """Hand count: conv weights (+ bias on first/last) and 4 BN variables per channel."""
    enc = [(c, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)]
    dec = [(8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w)]
    n = 4 * 4 * c * w + w  # enc1 kernel + bias, no BN
    n += sum(4 * 4 * i * o + 4 * o for i, o in enc[1:])  # no bias, BN gamma/beta/mean/var
    n += sum(3 * 3 * i * o + 4 * o for i, o in dec)
    n += 3 * 3 * w * n_out + n_out  # output conv with bias
    return n


def test_segmentor_param_count_paper_width():
    m1 = build_segmentor(1, 64)
    assert m1.count_params() == 4_307_841 == _expected_segmentor_params(1)
    assert abs(m1.count_params() - 4.3e6) < 0.05e6
    trainable = sum(int(np.prod(v.shape)) for v in m1.trainable_weights)
    assert trainable == 4_305_153  # minus BN moving mean/var: 2 * (128+256+512+256+128+64)
    m4 = build_segmentor(4, 64)
    assert m4.count_params() - m1.count_params() == 3 * 4 * 4 * 64
    assert m4.count_params() == 4_310_913


@pytest.mark.parametrize("size", [32, 48, 160])
@pytest.mark.parametrize("n_out", [1, 3])
def test_segmentor_shapes_and_range(size, n_out):
    m = build_segmentor(2, width=W, n_outputs=n_out)
    y = _np(m(_rand(2, size, size, 2), training=False))
    assert y.shape == (2, size, size, n_out)
    assert y.dtype == np.float32
    assert np.all(y > 0) and np.all(y < 1)


def test_segmentor_structure():
    m = build_segmentor(1, width=W)
    conv = {l.name: l for l in m.layers if isinstance(l, keras.layers.Conv2D)}
    assert conv["enc1_conv"].use_bias and not conv["enc2_conv"].use_bias
    assert conv["out_conv"].use_bias and not conv["dec1_conv"].use_bias
    bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 6
    assert all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)
    lrelu = [l for l in m.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert len(lrelu) == 4 and all(l.negative_slope == pytest.approx(0.2) for l in lrelu)
    # skips add enc3, enc2, enc1 to dec1, dec2, dec3
    for j, enc in ((1, 3), (2, 2), (3, 1)):
        add = m.get_layer(f"dec{j}_skip")
        srcs = {t._keras_history.operation.name for t in add.input}
        assert srcs == {f"dec{j}_relu", f"enc{enc}_lrelu"}
    # init stddev sqrt(2 / (k*k*filters))
    assert conv["enc2_conv"].kernel_initializer.stddev == pytest.approx(math.sqrt(2 / (16 * 2 * W)))
    assert conv["dec1_conv"].kernel_initializer.stddev == pytest.approx(math.sqrt(2 / (9 * 4 * W)))
    assert m.get_layer("out_sigmoid").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 1, 2), (2, 16, 16, 4)])
def test_bilinear_upsampling_matches_keras(shape):
    x = _rand(*shape)
    ours = _np(BilinearUpSampling2D()(x))
    ref = _np(keras.layers.UpSampling2D(2, interpolation="bilinear")(x))
    assert ours.shape == (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph tracing")
def test_models_run_in_graph_with_unknown_spatial_shape():
    import tensorflow as tf

    seg = build_segmentor(1, width=W)
    critic = build_critic(1, 1, "concat", width=W)
    spec = tf.TensorSpec((None, None, None, 1), tf.float32)

    @tf.function(input_signature=[spec, spec])
    def f(x, g):
        p = seg(x, training=False)
        return p, multiscale_l1(critic([x, g], training=False), critic([x, p], training=False))

    for size in (32, 48):
        p, l1 = f(_rand(2, size, size, 1), _rand(2, size, size, 1))
        assert tuple(p.shape) == (2, size, size, 1) and np.isfinite(float(l1))


def test_segmentor_mixed_precision_output_is_float32():
    old = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        m = build_segmentor(1, width=W)
        y = m(_rand(1, 32, 32, 1), training=False)
    finally:
        keras.config.set_dtype_policy(old)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


# ----------------------------------------------------------------------------- critic


@pytest.mark.parametrize("mode,c", [("concat", 1), ("concat", 4), ("mask", 1), ("mask", 4)])
def test_critic_feature_shapes(mode, c):
    critic = build_critic(c, 1, mode, width=W)
    feats = critic([_rand(2, 32, 32, c), _rand(2, 32, 32, 1)], training=False)
    assert isinstance(feats, list) and len(feats) == 4
    c_in = c + 1 if mode == "concat" else c
    assert c_in == critic_input_channels(c, 1, mode)
    expected = [32 * 32 * c_in, 16 * 16 * W, 8 * 8 * 2 * W, 4 * 4 * 4 * W]
    assert [tuple(f.shape) for f in feats] == [(2, n) for n in expected]
    assert tuple(concat_features(feats).shape) == (2, sum(expected))


def test_critic_mask_mode_multiplies():
    critic = build_critic(2, 1, "mask", width=W)
    img = _rand(2, 32, 32, 2)
    feats = critic([img, np.zeros((2, 32, 32, 1), np.float32)], training=False)
    assert np.all(_np(feats[0]) == 0)
    seg = (_rand(2, 32, 32, 1) > 0.5).astype(np.float32)
    feats = critic([img, seg], training=False)
    np.testing.assert_allclose(_np(feats[0]), (img * seg).reshape(2, -1), rtol=1e-6)


def test_critic_concat_mode_keeps_image():
    critic = build_critic(2, 1, "concat", width=W)
    img = _rand(2, 32, 32, 2)
    zero = np.zeros((2, 32, 32, 1), np.float32)
    feats = critic([img, zero], training=False)
    expected = np.concatenate([img, zero], axis=-1).reshape(2, -1)
    np.testing.assert_allclose(_np(feats[0]), expected, rtol=1e-6)
    assert np.any(_np(feats[0]) != 0)


def test_critic_mask_mode_multichannel_segmentation():
    img = _rand(1, 4, 4, 2)
    seg = _rand(1, 4, 4, 3)
    out = _np(CriticInput("mask")([img, seg]))
    assert out.shape == (1, 4, 4, 6)
    for c in range(2):
        for s in range(3):
            np.testing.assert_allclose(out[..., c * 3 + s], img[..., c] * seg[..., s], rtol=1e-6)
    critic = build_critic(2, 3, "mask", width=W)
    feats = critic([_rand(1, 32, 32, 2), _rand(1, 32, 32, 3)], training=False)
    assert tuple(feats[0].shape) == (1, 32 * 32 * 6)


def test_critic_structure():
    critic = build_critic(1, 1, "concat", width=W)
    convs = [l for l in critic.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [W, 2 * W, 4 * W]
    assert [c.use_bias for c in convs] == [True, False, False]
    bns = [l for l in critic.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 2 and all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)
    with pytest.raises(ValueError):
        build_critic(1, 1, "bogus", width=W)


# ----------------------------------------------------------------------------- clipping


def test_clip_constraint_config():
    c = ClipConstraint(0.05)
    assert c.get_config() == {"clip_value": 0.05}
    assert ClipConstraint.from_config(c.get_config()).clip_value == 0.05
    np.testing.assert_allclose(_np(c(np.array([-1.0, 0.01, 2.0], np.float32))), [-0.05, 0.01, 0.05])
    with pytest.raises(ValueError):
        ClipConstraint(0.0)


def _clipped_by_scope(path: str, scope: str) -> bool:
    """Whether a critic weight is clipped under a clip scope: kernels only (the authors'), or every one."""
    return scope == "all" or path.endswith("kernel")


@pytest.mark.parametrize("scope", ["kernels", "all"])
def test_critic_constraints_follow_the_clip_scope_segmentor_none(scope):
    critic = build_critic(1, 1, "concat", width=W, clip_value=0.05, clip_scope=scope)
    paths = [v.path for v in critic.trainable_variables]
    # conv1 has a bias (no batch norm after it); conv2 and conv3 have batch-norm gamma and beta
    assert {"conv1/kernel", "conv1/bias", "conv2/kernel", "bn2/gamma", "bn2/beta", "conv3/kernel"} <= set(paths)
    for v in critic.trainable_variables:
        if _clipped_by_scope(v.path, scope):
            assert isinstance(v.constraint, ClipConstraint), v.path
        else:
            assert v.constraint is None, v.path
    seg = build_segmentor(1, width=W)
    assert all(v.constraint is None for v in seg.trainable_variables)
    unclipped = build_critic(1, 1, "concat", width=W, clip_value=None, clip_scope=scope)
    assert all(v.constraint is None for v in unclipped.trainable_variables)


def test_the_default_clip_scope_is_the_authors_kernels_only():
    critic = build_critic(1, 1, "concat", width=W)
    assert [v.path for v in critic.trainable_variables if v.constraint is not None] == [
        "conv1/kernel", "conv2/kernel", "conv3/kernel"]
    with pytest.raises(ValueError, match="clip_scope"):
        build_critic(1, 1, "concat", width=W, clip_scope="biases")


def _push_all_up(model, lr=1.0):
    """One SGD step with gradient -1 everywhere: every trainable variable moves by +lr."""
    opt = keras.optimizers.SGD(learning_rate=lr)
    for v in model.trainable_variables:
        v.assign(keras.ops.zeros(v.shape, v.dtype))
    grads = [-keras.ops.ones(v.shape, v.dtype) for v in model.trainable_variables]
    opt.apply_gradients(zip(grads, model.trainable_variables))


@pytest.mark.parametrize("scope", ["kernels", "all"])
def test_optimizer_update_is_clipped_after_step(scope):
    clip = 0.05
    critic = build_critic(1, 1, "concat", width=W, clip_value=clip, clip_scope=scope)
    _push_all_up(critic)
    for v in critic.trainable_variables:
        # pushed to +1: a clipped weight came back to the bound, the others stayed at 1
        np.testing.assert_allclose(_np(v), clip if _clipped_by_scope(v.path, scope) else 1.0, err_msg=v.path)
    # the same update without constraints really leaves the range
    free = build_critic(1, 1, "concat", width=W, clip_value=None, clip_scope=scope)
    _push_all_up(free)
    assert all(np.allclose(_np(v), 1.0) for v in free.trainable_variables)
    # the segmentor is never clipped
    seg = build_segmentor(1, width=W)
    _push_all_up(seg)
    assert all(np.allclose(_np(v), 1.0) for v in seg.trainable_variables)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses a TensorFlow gradient tape")
@pytest.mark.parametrize("scope", ["kernels", "all"])
def test_real_critic_step_with_large_lr_stays_clipped(scope):
    import tensorflow as tf

    clip = 0.05
    critic = build_critic(1, 1, "concat", width=W, clip_value=clip, clip_scope=scope)
    opt = keras.optimizers.RMSprop(learning_rate=10.0)
    img, real, fake = _rand(4, 32, 32, 1), (_rand(4, 32, 32, 1) > 0.5).astype("float32"), _rand(4, 32, 32, 1)
    before = [_np(v).copy() for v in critic.trainable_variables]
    with tf.GradientTape() as tape:
        loss = critic_loss(multiscale_l1(critic([img, real], training=True), critic([img, fake], training=True)))
    grads = tape.gradient(loss, critic.trainable_variables)
    opt.apply_gradients(zip(grads, critic.trainable_variables))
    assert any(not np.allclose(b, _np(v)) for b, v in zip(before, critic.trainable_variables))
    for v in critic.trainable_variables:
        if _clipped_by_scope(v.path, scope):
            assert np.all(np.abs(_np(v)) <= clip + 1e-7), v.path
    if scope == "kernels":  # a step of lr 10 takes the unclipped ones (bias, gamma, beta) out of the range
        assert any(np.abs(_np(v)).max() > clip for v in critic.trainable_variables if not v.path.endswith("kernel"))


# ----------------------------------------------------------------------------- seeds


def _weights(model):
    return [_np(v) for v in model.weights]


def test_same_seed_same_weights_different_seed_differs():
    a = _weights(build_segmentor(1, width=W, seed=3))
    b = _weights(build_segmentor(1, width=W, seed=3))
    c = _weights(build_segmentor(1, width=W, seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    ca = _weights(build_critic(1, 1, width=W, seed=3))
    cb = _weights(build_critic(1, 1, width=W, seed=3))
    cc = _weights(build_critic(1, 1, width=W, seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(ca, cb))
    assert any(not np.array_equal(x, y) for x, y in zip(ca, cc))


# ----------------------------------------------------------------------------- losses


def test_soft_dice_identical_and_disjoint():
    g = np.zeros((2, 8, 8, 1), np.float32)
    g[:, 2:5, 2:6] = 1
    np.testing.assert_allclose(_np(soft_dice(g, g)), [1.0, 1.0], rtol=1e-6)
    p = 1.0 - g
    d = _np(soft_dice(g, p))
    assert d.shape == (2,)
    # 2 eps / (52 + 12 + 2 eps)
    np.testing.assert_allclose(d, 2e-6 / (64 + 2e-6), rtol=1e-4)
    assert np.all(d < 1e-7)
    np.testing.assert_allclose(float(_np(dice_loss(g, g))), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(_np(dice_loss(g, p))), 1.0, atol=1e-6)


def test_soft_dice_hand_example():
    p = np.full((1, 4, 4), 0.5, np.float32)
    g = np.zeros((1, 4, 4), np.float32)
    g[0, 0, :] = 1  # four ones
    eps = 1e-6
    # sum(p*g) = 2, sum(p^2) = 16 * 0.25 = 4, sum(g^2) = 4
    expected = 2 * (2 + eps) / (4 + 4 + 2 * eps)
    np.testing.assert_allclose(_np(soft_dice(g, p, eps=eps)), [expected], rtol=1e-6)
    np.testing.assert_allclose(_np(soft_dice(g[..., None], p[..., None])), [expected], rtol=1e-6)
    np.testing.assert_allclose(float(_np(dice_loss(g, p))), 1 - expected, rtol=1e-6)


def test_soft_dice_per_channel():
    g = np.zeros((2, 4, 4, 3), np.float32)
    g[..., 0] = 1
    p = g.copy()
    p[..., 1] = 1  # channel 1: disjoint-ish (g empty, p full) -> ~0
    d = _np(soft_dice(g, p))
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d[:, 0], 1.0, rtol=1e-6)
    assert np.all(d[:, 1] < 1e-6)
    np.testing.assert_allclose(d[:, 2], 1.0, rtol=1e-6)  # both empty: eps / eps
    np.testing.assert_allclose(float(_np(dice_loss(g, p))), 1 - np.mean(d), rtol=1e-6)


def test_multiscale_l1_hand_values():
    real = [np.array([[1.0, 2.0]], np.float32), np.zeros((1, 4), np.float32)]
    fake = [np.zeros((1, 2), np.float32), np.full((1, 4), 0.5, np.float32)]
    # |diff| scale 0: [1, 2] (mean 1.5), scale 1: [.5]*4 (mean 0.5)
    assert float(_np(multiscale_l1(real, real))) == 0.0
    assert float(_np(multiscale_l1(real, real, reduction="per_scale_sum"))) == 0.0
    np.testing.assert_allclose(float(_np(multiscale_l1(real, fake))), (1 + 2 + 4 * 0.5) / 6, rtol=1e-6)
    np.testing.assert_allclose(float(_np(multiscale_l1(real, fake, reduction="per_scale_sum"))), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(_np(multiscale_l1(real, fake, weights=[1, 2]))), (1 + 2 + 2 * 4 * 0.5) / 6, rtol=1e-6)
    np.testing.assert_allclose(
        float(_np(multiscale_l1(real, fake, weights=[1, 2], reduction="per_scale_sum"))), 1.5 + 2 * 0.5, rtol=1e-6
    )
    # a second sample with no difference halves the batch mean
    real2 = [np.concatenate([r, r]) for r in real]
    fake2 = [np.concatenate([f, r]) for f, r in zip(fake, real)]
    np.testing.assert_allclose(float(_np(multiscale_l1(real2, fake2))), (5 / 6) / 2, rtol=1e-6)
    with pytest.raises(ValueError):
        multiscale_l1(real, fake, weights=[1.0])
    with pytest.raises(ValueError):
        multiscale_l1(real, fake, reduction="bogus")
    assert losses.SEGAN_ORIGINAL_SCALE_WEIGHTS == (1, 1, 2, 2, 2, 2, 4)


def test_multiscale_l1_concat_mean_equals_mean_of_concatenation_on_critic():
    critic = build_critic(1, 1, "concat", width=W)
    img, g, p = _rand(2, 32, 32, 1), (_rand(2, 32, 32, 1) > 0.5).astype("float32"), _rand(2, 32, 32, 1)
    fr, ff = critic([img, g], training=False), critic([img, p], training=False)
    expected = np.mean(np.abs(_np(concat_features(fr)) - _np(concat_features(ff))))
    np.testing.assert_allclose(float(_np(multiscale_l1(fr, ff))), expected, rtol=1e-5)


def test_segmentor_and_critic_loss():
    assert float(_np(segmentor_loss(0.3, 0.5, 1.0))) == pytest.approx(0.8)
    assert float(_np(segmentor_loss(0.3, 0.5, 2.0))) == pytest.approx(1.3)
    assert segmentor_loss(0.3, 0.5, 0.0) == 0.3
    assert segmentor_loss(0.3, float("nan"), 0) == 0.3
    assert critic_loss(0.3) == -0.3


# ----------------------------------------------------------------------------- serialisation


def test_save_load_round_trip(tmp_path):
    seg = build_segmentor(2, width=W, n_outputs=1)
    critic = build_critic(2, 1, "mask", width=W)
    x = _rand(2, 32, 32, 2)
    s = _rand(2, 32, 32, 1)
    seg.save(tmp_path / "seg.keras")
    critic.save(tmp_path / "critic.keras")
    seg2 = keras.models.load_model(tmp_path / "seg.keras")
    critic2 = keras.models.load_model(tmp_path / "critic.keras")
    np.testing.assert_allclose(_np(seg2(x, training=False)), _np(seg(x, training=False)), rtol=1e-6, atol=1e-7)
    f1, f2 = critic([x, s], training=False), critic2([x, s], training=False)
    assert len(f2) == 4
    for a, b in zip(f1, f2):
        np.testing.assert_allclose(_np(b), _np(a), rtol=1e-6, atol=1e-7)
    for v in critic2.trainable_variables:  # the default clip scope, kernels only, survives the round trip
        assert isinstance(v.constraint, ClipConstraint) if v.path.endswith("kernel") else v.constraint is None, v.path
    assert critic2.get_layer("critic_input").mode == "mask"


# ----------------------------------------------------------------------------- backend-agnostic source


@pytest.mark.parametrize("module", [layers, segmentor, critic_module, losses])
def test_no_tensorflow_in_source(module):
    text = pathlib.Path(module.__file__).read_text()
    assert "tensorflow" not in text
    assert "tf." not in text
