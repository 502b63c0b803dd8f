"""Tests of segan_lib.metrics: hand-computed cases, independent implementations, protocols."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from segan_lib import metrics as M


# ---------------------------------------------------------------- helpers
def _blob(rng, shape, n_seeds=3, radius=2):
    """A random, seeded blob mask: a few seed voxels grown by dilation."""
    m = np.zeros(shape, bool)
    for _ in range(n_seeds):
        m[tuple(rng.integers(0, s) for s in shape)] = True
    return ndimage.binary_dilation(m, iterations=radius) & (rng.random(shape) < 0.9)


def _brute_surface(mask):
    """Surface by explicit 6-neighbour test, outside the array = background (independent of erosion)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return mask & ~inner


def _brute_hd95(a, b, spacing):
    sa = np.argwhere(_brute_surface(a)) * np.asarray(spacing)
    sb = np.argwhere(_brute_surface(b)) * np.asarray(spacing)
    d = cdist(sa, sb)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


# ---------------------------------------------------------------- counts and ratios by hand
def test_hand_computed_4x4():
    truth = np.array([[1, 1, 0, 0],
                      [1, 1, 0, 0],
                      [0, 0, 0, 0],
                      [0, 0, 0, 0]], dtype=np.uint8)[..., None]
    pred = np.array([[1, 0, 0, 0],
                     [1, 1, 1, 0],
                     [0, 0, 1, 0],
                     [0, 0, 0, 0]], dtype=float)[..., None]
    c = M.confusion_counts(pred, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 2, 1, 10)
    m = M.volume_metrics(pred, truth)
    assert m.dice == pytest.approx(6 / 9, abs=1e-15)
    assert m.precision == pytest.approx(3 / 5, abs=1e-15)
    assert m.sensitivity == pytest.approx(3 / 4, abs=1e-15)
    assert m.specificity == pytest.approx(10 / 12, abs=1e-15)
    assert M.dice(pred, truth) == m.dice and M.precision(pred, truth) == m.precision
    assert M.sensitivity(pred, truth) == m.sensitivity and M.specificity(pred, truth) == m.specificity


def test_empty_conventions():
    z = np.zeros((5, 5, 3), bool)
    one = z.copy()
    one[2, 2, 1] = True
    both = M.volume_metrics(z, z)
    assert (both.dice, both.precision, both.sensitivity, both.specificity) == (1, 1, 1, 1)
    assert math.isnan(both.hd95)
    pred_empty = M.volume_metrics(z, one)
    assert (pred_empty.dice, pred_empty.precision, pred_empty.sensitivity) == (0, 0, 0)
    assert pred_empty.specificity == 1 and math.isnan(pred_empty.hd95)
    truth_empty = M.volume_metrics(one, z)
    assert (truth_empty.dice, truth_empty.precision, truth_empty.sensitivity) == (0, 0, 0)
    assert truth_empty.specificity == pytest.approx(74 / 75) and math.isnan(truth_empty.hd95)
    full = np.ones_like(z)
    assert M.specificity(full, full) == 1  # no negatives in the truth, masks identical
    assert M.specificity(one, full) == 0   # no negatives in the truth, masks differ
    assert math.isnan(M.hd95(z, z)) and math.isnan(M.hd95(one, z)) and math.isnan(M.hd95(z, one))


def test_shape_mismatch_and_bad_inputs():
    with pytest.raises(ValueError, match=r"\(4, 4, 2\).*\(4, 4, 3\)"):
        M.dice(np.zeros((4, 4, 2)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="binarize"):
        M.dice(np.full((3, 3, 3), 0.7), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.ones((3, 3, 3)), np.ones((3, 3, 3)), spacing=(1, 1))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.ones((3, 3, 3)), np.ones((3, 3, 3)), spacing=(1, 0, 1))
    labels = np.zeros((3, 3, 3), np.int16)
    labels[1, 1, 1] = 4  # a label map: non-zero is whole tumour
    assert M.dice(labels, labels > 0) == 1
    assert np.array_equal(M.binarize(np.array([0.2, 0.5, 0.51])), [False, False, True])


# ---------------------------------------------------------------- HD95
def test_hd95_two_voxels_anisotropic():
    a = np.zeros((4, 4, 5), bool)
    b = a.copy()
    a[1, 1, 0] = True
    b[1, 1, 2] = True  # 2 voxels apart along axis 2, spacing 3 mm there
    assert M.hd95(a, b, spacing=(1, 2, 3)) == pytest.approx(6.0, abs=1e-12)
    a2, b2 = np.zeros((4, 4, 5), bool), np.zeros((4, 4, 5), bool)
    a2[0, 1, 1], b2[3, 1, 1] = True, True
    assert M.hd95(a2, b2, spacing=(1, 2, 3)) == pytest.approx(3.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hd95_shifted_cubes(k):
    # Cube A of side s=10 and B = A shifted by k voxels along axis 2 (spacing 3 mm there).
    # Every B voxel lies at axis-2 index >= k, so A's face at index 0 (s*s = 100 surface
    # voxels) is exactly 3k mm from B's surface (B's own face at index k lies straight
    # across); no surface voxel is farther (side-face voxels are <= (k - x) * 3 mm away,
    # the far face <= 3k). By symmetry the same holds from B to A. So at least 200 of the
    # 2 * (10^3 - 8^3) = 976 pooled distances equal the maximum 3k: more than 5%, hence
    # the 95th percentile (linear interpolation, index 0.95 * 975 = 926.25 >= 776) is 3k.
    shape = (14, 14, 20)
    a = np.zeros(shape, bool)
    a[2:12, 2:12, 2:12] = True
    b = np.roll(a, k, axis=2)
    assert M.hd95(a, b, spacing=(1, 2, 3)) == pytest.approx(3.0 * k, abs=1e-12)
    assert M.hd95(b, a, spacing=(1, 2, 3)) == pytest.approx(3.0 * k, abs=1e-12)
    assert M.hd95(a, a, spacing=(1, 2, 3)) == 0


@pytest.mark.parametrize("seed", range(6))
def test_hd95_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (18, 16, 12)
    spacing = (0.9, 1.3, 2.5)
    a, b = _blob(rng, shape), _blob(rng, shape)
    if seed == 0:  # also a blob touching the array border
        a[0:3, 0:4, 0:2] = True
    assert a.any() and b.any()
    assert M.hd95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing), abs=1e-6)
    # 2-D too
    a2, b2 = a[..., 6], b[..., 6]
    if a2.any() and b2.any():
        assert M.hd95(a2, b2, spacing[:2]) == pytest.approx(_brute_hd95(a2, b2, spacing[:2]), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_dice_against_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(100 + seed)
    a, b = _blob(rng, (15, 15, 10), radius=3), _blob(rng, (15, 15, 10), radius=3)
    m = M.volume_metrics(a, b, compute_hd95=False)
    assert m.dice == pytest.approx(sk.f1_score(b.ravel(), a.ravel()), abs=1e-12)
    assert m.precision == pytest.approx(sk.precision_score(b.ravel(), a.ravel()), abs=1e-12)
    assert m.sensitivity == pytest.approx(sk.recall_score(b.ravel(), a.ravel()), abs=1e-12)


# ---------------------------------------------------------------- protocols
def _pooled_example():
    # Volume 1: 1000 truth voxels, 900 of them predicted, nothing else -> Dice 1800/1900.
    t1 = np.zeros((20, 20, 10), bool)
    t1[:10, :10, :] = True
    p1 = t1.copy()
    p1[:10, :10, 9] = False  # 100 missed
    # Volume 2: 10 truth voxels, 10 predicted voxels elsewhere -> Dice 0.
    t2 = np.zeros((20, 20, 10), bool)
    t2[0, :10, 0] = True
    p2 = np.zeros_like(t2)
    p2[5, :10, 5] = True
    return [p1, p2], [t1, t2]


def test_pooled_vs_per_volume():
    preds, truths = _pooled_example()
    vol = M.evaluate_set(preds, truths, protocol="per_volume", n_boot=200)
    pooled = M.evaluate_set(preds, truths, protocol="pooled", n_boot=200)
    d_vol = vol.summary.set_index("metric").loc["dice", "mean"]
    d_pool = pooled.summary.set_index("metric").loc["dice", "mean"]
    assert d_vol == pytest.approx((1800 / 1900 + 0) / 2, abs=1e-12)
    # pooled: TP 900, FP 10, FN 110 -> 1800 / 1920
    assert d_pool == pytest.approx(1800 / 1920, abs=1e-12)
    s = pooled.summary.set_index("metric")
    assert s.loc["precision", "mean"] == pytest.approx(900 / 910)
    assert s.loc["sensitivity", "mean"] == pytest.approx(900 / 1010)
    assert s.loc["dice", "n"] == 2 and "hd95" not in s.index
    assert list(pooled.per_subject[["tp", "fp", "fn"]].sum()) == [900, 10, 110]
    assert vol.note == M.PROTOCOL_NOTES["per_volume"] and pooled.note == M.PROTOCOL_NOTES["pooled"]
    assert vol.summary.attrs["protocol"] == "per_volume"
    # volume 2 has both masks non-empty: HD95 is defined for both volumes
    assert vol.summary.set_index("metric").loc["hd95", "n"] == 2


def test_per_volume_streaming_and_subject_ids():
    preds, truths = _pooled_example()
    from_lists = M.evaluate_set(preds, truths, spacing=(1, 1, 2), n_boot=100)
    gen = ((f"s{i}", p, t) for i, (p, t) in enumerate(zip(preds, truths)))
    from_gen = M.evaluate_set(gen, spacing=(1, 1, 2), n_boot=100)
    cols = list(M.METRICS)
    np.testing.assert_array_equal(from_lists.per_subject[cols].to_numpy(), from_gen.per_subject[cols].to_numpy())
    assert list(from_gen.per_subject["subject"]) == ["s0", "s1"]
    pd.testing.assert_frame_equal(from_lists.summary, from_gen.summary)
    with pytest.raises(ValueError):
        M.evaluate_set(preds, truths[:1])
    with pytest.raises(ValueError, match="protocol"):
        M.evaluate_set(preds, truths, protocol="per_batch")


def test_per_volume_hd95_nan_excluded_and_counted():
    preds, truths = _pooled_example()
    empty = np.zeros_like(truths[0])
    ev = M.evaluate_set(preds + [empty], truths + [truths[0]], n_boot=100)
    s = ev.summary.set_index("metric")
    assert s.loc["hd95", "n"] == 2 and s.loc["hd95", "n_excluded"] == 1
    assert s.loc["dice", "n"] == 3 and s.loc["dice", "n_excluded"] == 0
    assert s.loc["dice", "mean"] == pytest.approx((1800 / 1900) / 3)


def test_per_slice_excludes_empty_slices():
    t = np.zeros((4, 4, 4), bool)
    p = np.zeros_like(t)
    # slice 0: both empty; slice 1: perfect; slice 2: prediction empty; slice 3: half found
    t[:2, :2, 1] = p[:2, :2, 1] = True
    t[:2, :2, 2] = True
    t[:2, :2, 3] = True
    p[:1, :2, 3] = True  # TP 2, FN 2 -> Dice 4/6
    ev = M.evaluate_set([p], [t], protocol="per_slice", n_boot=100)
    s = ev.summary.set_index("metric")
    assert s.loc["dice", "n"] == 3 and s.loc["dice", "n_excluded"] == 1
    assert s.loc["dice", "mean"] == pytest.approx((1 + 0 + 4 / 6) / 3)
    assert list(ev.per_subject["both_empty"]) == [True, False, False, False]
    assert ev.note == M.PROTOCOL_NOTES["per_slice"]
    inc = M.evaluate_set([p], [t], protocol="per_slice", empty_slices="one", n_boot=100)
    si = inc.summary.set_index("metric")
    assert si.loc["dice", "n"] == 4 and si.loc["dice", "mean"] == pytest.approx((1 + 1 + 0 + 4 / 6) / 4)
    assert "count as 1" in inc.note
    # HD95 per slice: defined on slices 1 and 3 only
    assert si.loc["hd95", "n"] == 2 and si.loc["hd95", "n_excluded"] == 2
    with pytest.raises(ValueError, match="3-D"):
        M.evaluate_set([p[..., 0]], [t[..., 0]], protocol="per_slice")


# ---------------------------------------------------------------- aggregation
def test_summarize_bootstrap():
    rng = np.random.default_rng(7)
    small = rng.normal(0.8, 0.1, 10)
    big = rng.normal(0.8, 0.1, 400)
    s1, s2 = M.summarize(small, seed=3), M.summarize(small, seed=3)
    assert s1 == s2  # deterministic with the seed
    assert M.summarize(small, seed=4) != s1
    assert s1.ci_low <= s1.mean <= s1.ci_high
    assert s1.mean == pytest.approx(small.mean()) and s1.median == pytest.approx(np.median(small))
    assert s1.std == pytest.approx(small.std(ddof=1)) and s1.n == 10 and s1.n_excluded == 0
    sb = M.summarize(big, seed=3)
    assert sb.ci_low <= sb.mean <= sb.ci_high
    assert (sb.ci_high - sb.ci_low) < 0.5 * (s1.ci_high - s1.ci_low)
    with_nan = M.summarize(np.r_[small, np.nan, np.nan], seed=3)
    assert with_nan.n == 10 and with_nan.n_excluded == 2 and with_nan.mean == pytest.approx(s1.mean)
    none = M.summarize([np.nan])
    assert none.n == 0 and none.n_excluded == 1 and math.isnan(none.mean)
    single = M.summarize([0.5])
    assert single.ci_low == single.ci_high == 0.5 and math.isnan(single.std)


def test_summarize_table_tidy():
    df = pd.DataFrame({"subject": ["a", "b", "c"], "dice": [0.5, 0.7, 0.9], "hd95": [3.0, np.nan, 5.0]})
    out = M.summarize_table(df, n_boot=100)
    assert list(out.columns) == list(M.SUMMARY_COLUMNS)
    assert list(out["metric"]) == ["dice", "hd95"]
    row = out.set_index("metric").loc["hd95"]
    assert row["n"] == 2 and row["n_excluded"] == 1 and row["mean"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="precision"):
        M.summarize_table(df, metrics=["precision"])


# ---------------------------------------------------------------- keras.ops batch metrics
def test_batch_metrics_match_numpy():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(11)
    n = 6
    truth = np.stack([_blob(rng, (24, 24), n_seeds=2, radius=3) for _ in range(n)])
    prob = np.clip(truth * 0.7 + rng.random(truth.shape) * 0.45, 0, 1).astype("float32")
    truth[0] = False
    prob[0] = 0.1            # both empty
    prob[1] = 0.0            # prediction empty (truth not, unless the blob was empty)
    truth[2] = False         # truth empty, prediction not
    y_true = truth[..., None].astype("float32")
    y_pred = prob[..., None]
    got = {k: keras.ops.convert_to_numpy(v) for k, v in M.batch_metrics(y_true, y_pred).items()}
    for i in range(n):
        ref = M.volume_metrics(M.binarize(prob[i]), truth[i], compute_hd95=False)
        for name in M.RATIO_METRICS:
            assert got[name][i] == pytest.approx(getattr(ref, name), abs=1e-6), (name, i)
    assert got["dice"].shape == (n,)
    assert got["dice"][0] == got["precision"][0] == got["sensitivity"][0] == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(M.dice_per_sample(y_true, y_pred)), got["dice"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(M.precision_per_sample(y_true, y_pred)), got["precision"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(M.sensitivity_per_sample(y_true, y_pred)), got["sensitivity"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(M.specificity_per_sample(y_true, y_pred)), got["specificity"])


def test_batch_metrics_per_channel_soft_and_compiled():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(5)
    truth = (rng.random((3, 8, 8, 2)) < 0.3).astype("float32")
    prob = rng.random((3, 8, 8, 2)).astype("float32")
    pc = keras.ops.convert_to_numpy(M.dice_per_sample(truth, prob, per_channel=True))
    assert pc.shape == (3, 2)
    for i in range(3):
        for c in range(2):
            assert pc[i, c] == pytest.approx(M.dice(prob[i, ..., c] > 0.5, truth[i, ..., c]), abs=1e-6)
    # soft: counts are sums of probabilities
    soft = keras.ops.convert_to_numpy(M.dice_per_sample(truth, prob, threshold=None))
    p, g = prob.reshape(3, -1).astype(float), truth.reshape(3, -1).astype(float)
    ref = 2 * (p * g).sum(1) / (2 * (p * g).sum(1) + (p * (1 - g)).sum(1) + ((1 - p) * g).sum(1))
    np.testing.assert_allclose(soft, ref, rtol=1e-5)
    zeros = np.zeros((2, 4, 4, 1), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(M.dice_per_sample(zeros, zeros, threshold=None)), [1, 1])
    # inside a compiled graph (as in a Keras test_step on the TensorFlow backend)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        f = tf.function(lambda t, q: M.dice_per_sample(t, q))
        np.testing.assert_allclose(f(truth, prob).numpy(), keras.ops.convert_to_numpy(M.dice_per_sample(truth, prob)))
        np.testing.assert_array_equal(f(zeros, zeros).numpy(), [1, 1])
