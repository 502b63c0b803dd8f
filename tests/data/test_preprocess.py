"""Preprocessing checked against values computed by hand on small arrays."""
import numpy as np
import pytest

from segan_lib.config import PreprocessConfig
from segan_lib.data.preprocess import (
    centre_crop_start, clip_and_scale, clip_range, crop_or_pad, preprocess_arrays, resample,
    resampled_shape, restore_to_source, uncrop,
)


def test_brats_crop_window_coordinates():
    # 240x240x155 -> 180x180x128: (240-180)//2 = 30, (155-128)//2 = 13
    assert centre_crop_start((240, 240, 155), (180, 180, 128)) == (30, 30, 13)
    # a smaller axis is padded: 150 -> 155 starts at (150-155)//2 = -3
    assert centre_crop_start((150, 10, 4), (155, 10, 2)) == (-3, 0, 1)


def test_crop_and_pad_values():
    vol = np.arange(5 * 4 * 3).reshape(5, 4, 3)
    out = crop_or_pad(vol, (1, -1, 0), (3, 6, 3), fill=-1)
    assert out.shape == (3, 6, 3)
    assert (out[:, 0] == -1).all() and (out[:, 5] == -1).all()  # padded rows
    np.testing.assert_array_equal(out[:, 1:5], vol[1:4, 0:4])


def test_uncrop_inverts_crop_inside_the_window():
    rng = np.random.default_rng(0)
    vol = rng.random((9, 7, 5))
    start, shape = centre_crop_start(vol.shape, (5, 9, 3)), (5, 9, 3)
    back = uncrop(crop_or_pad(vol, start, shape), start, vol.shape)
    window = (slice(2, 7), slice(0, 7), slice(1, 4))
    np.testing.assert_array_equal(back[window], vol[window])
    assert back[:2].sum() == 0 and back[:, :, 0].sum() == 0


def test_percentile_clip_and_scale_by_hand():
    vol = np.arange(101, dtype=np.float32)  # 0..100: the 2nd and 98th percentiles are 2 and 98
    lo, hi = clip_range(vol, (2, 98))
    assert (lo, hi) == (2.0, 98.0)
    out = clip_and_scale(vol, lo, hi)
    assert out[0] == 0 and out[2] == 0 and out[50] == pytest.approx(0.5) and out[98] == 1 and out[100] == 1
    assert out.dtype == np.float32


def test_percentiles_over_brain_ignore_background():
    vol = np.zeros(200, dtype=np.float32)
    vol[100:] = np.arange(1, 101)  # brain voxels 1..100, background 0
    lo_v, _ = clip_range(vol, (2, 98), "volume")
    lo_b, hi_b = clip_range(vol, (2, 98), "brain")
    assert lo_v == 0.0
    assert lo_b == pytest.approx(np.percentile(np.arange(1, 101), 2)) and hi_b == pytest.approx(98.02)


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_constant_volume_scales_to_zeros_without_division_by_zero(value):
    vol = np.full((4, 4, 4), value, dtype=np.float32)
    lo, hi = clip_range(vol, (2, 98))
    with np.errstate(all="raise"):
        out = clip_and_scale(vol, lo, hi)
    assert (out == 0).all()


def test_resampling_keeps_the_field_of_view():
    assert resampled_shape((240, 240, 155), (1, 1, 1), 2.0) == (120, 120, 78)
    assert resampled_shape((100, 100, 30), (1, 1, 3), 1.0) == (100, 100, 90)
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:6, 2:6, 2:6] = 4
    half = resample(label, (4, 4, 4), order=0)
    assert set(np.unique(half)) == {0, 4}  # nearest neighbour: no new label values
    np.testing.assert_array_equal(half[1:3, 1:3, 1:3], 4)
    same = np.ones((3, 3, 3))
    assert resample(same, (3, 3, 3), order=1) is same  # no interpolation at native spacing


def test_preprocess_case_and_restore_prediction_to_source_grid():
    rng = np.random.default_rng(1)
    shape = (12, 10, 7)
    images = {c: rng.random(shape).astype(np.float32) * 100 for c in ("t1", "flair")}
    label = np.zeros(shape, np.uint8)
    label[4:8, 3:7, 2:5] = 2
    cfg = PreprocessConfig(spacing_mm=1.0, crop_shape=(8, 8, 8), percentiles=(2, 98))
    pre = preprocess_arrays(images, label, (1, 1, 1), cfg, ("flair", "t1"))
    assert pre.images.shape == (2, 8, 8, 8)
    assert pre.record.crop_start == (2, 1, -1)
    assert 0 <= pre.images.min() and pre.images.max() <= 1
    # the channel order is the order asked for
    lo, hi = pre.record.clip_range["flair"]
    np.testing.assert_allclose(pre.images[0, :, :, 1:], np.clip((images["flair"][2:10, 1:9, 0:7] - lo) / (hi - lo), 0, 1), rtol=1e-5)
    # a perfect prediction on the crop goes back to the label's own grid exactly
    back = restore_to_source((pre.label > 0).astype(np.uint8), pre.record)
    np.testing.assert_array_equal(back, label > 0)


def test_restore_undoes_resampling():
    label = np.zeros((20, 20, 10), np.uint8)
    label[6:14, 4:12, 2:8] = 1
    cfg = PreprocessConfig(spacing_mm=2.0, crop_shape=(12, 12, 6))
    pre = preprocess_arrays({"t1": label.astype(np.float32) + 1}, label, (1, 1, 1), cfg, ("t1",))
    assert pre.record.resampled_shape == (10, 10, 5)
    back = restore_to_source(pre.label, pre.record)
    assert back.shape == label.shape
    np.testing.assert_array_equal(back, label)  # blocks aligned to 2 mm survive the round trip exactly
