"""Preprocessing checked against values computed by hand on small arrays."""
import numpy as np
import pytest

from segan_lib.config import PreprocessConfig
from segan_lib.data.preprocess import (
    background_value, brain_centre, brain_region, centre_crop_start, clip_and_scale, clip_range, crop_or_pad,
    off_background, preprocess_arrays, resample, resampled_shape, restore_to_source, uncrop,
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


# ---------------------------------------------------------------- intensity-normalised scans
def zscored_head(shape=(20, 18, 12), centre=(12, 7, 6), radii=(5, 4, 3), seed=0):
    """A seeded z-scored scan as the BRATS 2015 derivatives store them: an ellipsoid brain z-scored inside
    (mean 0, sd 1, so negative values too), the air outside at one value below every brain voxel (the
    image's minimum, not 0). Returns (image float32, brain bool)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    brain = (((grid - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1) <= 1
    raw = rng.normal(100.0, 15.0, shape)
    z = (raw - raw[brain].mean()) / raw[brain].std()
    image = np.full(shape, z[brain].min() - 0.05, np.float32)
    image[brain] = z[brain]
    return image, brain


def test_background_value_of_raw_zscored_and_noisy_scans():
    image, brain = zscored_head()
    assert image.min() < 0 and background_value(image) == float(image.min())  # the air of a z-scored scan
    raw = np.where(brain, 50.0 + image, 0.0).astype(np.float32)
    assert background_value(raw) == 0.0  # raw BraTS: the air is 0
    noise = np.random.default_rng(3).normal(size=(20, 18, 12)).astype(np.float32)
    assert background_value(noise) == 0.0  # no value held by 1% of the voxels: the raw convention, 0
    np.testing.assert_array_equal(off_background(image), brain)


def test_brain_region_and_centre_of_a_zscored_scan():
    image, brain = zscored_head()
    np.testing.assert_array_equal(brain_region({"flair": image}), brain)
    # the ellipsoid spans 7..17, 3..11, 3..9 (centre +- radius): its box's centre is the ellipsoid's
    assert brain_centre({"flair": image}) == [12.0, 7.0, 6.0]
    mask = np.zeros_like(brain)
    mask[2:5, 2:5, 2:5] = True  # a brain mask the layout names wins over the intensities
    assert brain_centre({"flair": image}, mask) == [3.0, 3.0, 3.0]
    # what "non-zero voxels" gave: every voxel of a z-scored scan, so the volume's centre
    assert (image != 0).all() and brain_centre({"flair": image}) != [9.5, 8.5, 5.5]
    zero_filled = np.zeros_like(image)  # a missing contrast filled with zeros adds no brain voxel
    assert brain_centre({"flair": image, "t1": zero_filled}) == [12.0, 7.0, 6.0]


@pytest.mark.parametrize("with_mask", [False, True])
def test_zscored_scan_brain_percentiles_and_background_padding(with_mask):
    image, brain = zscored_head()
    # 20x18x12 -> 16x22x12: cropped on the first axis (start 2), padded by 2 on each side of the second
    cfg = PreprocessConfig(spacing_mm=1.0, crop_shape=(16, 22, 12), percentiles=(2, 98), percentile_region="brain")
    pre = preprocess_arrays({"flair": image}, None, (1, 1, 1), cfg, ("flair",), brain_mask=brain if with_mask else None)
    assert pre.record.crop_start == (2, -2, 0)
    lo, hi = pre.record.clip_range["flair"]
    # the crop keeps every brain voxel (7..17 lies in 2..17), so the percentiles are those of the brain
    want_lo, want_hi = np.percentile(image[brain], (2, 98))
    assert lo == pytest.approx(want_lo, rel=1e-6) and hi == pytest.approx(want_hi, rel=1e-6)
    out = pre.images[0]
    assert (out[:, :2] == 0).all() and (out[:, -2:] == 0).all()  # padding: the background, scaled to 0
    inside = crop_or_pad(brain, (2, -2, 0), cfg.crop_shape, fill=False)
    assert (out[~inside] == 0).all() and out[inside].max() == 1.0


def test_zscored_scan_volume_percentiles_pad_with_the_background():
    """The paper's clip over the whole crop: the 2nd percentile is the air; padded voxels are the air too
    (they were 0, which a z-scored scan puts inside the brain's range: (0 - min) / (max - min) > 0)."""
    image, brain = zscored_head()
    cfg = PreprocessConfig(spacing_mm=1.0, crop_shape=(16, 22, 12), percentiles=(2, 98))
    pre = preprocess_arrays({"flair": image}, None, (1, 1, 1), cfg, ("flair",))
    lo, _ = pre.record.clip_range["flair"]
    assert lo == pytest.approx(float(image.min()))
    assert (pre.images[0][:, :2] == 0).all() and (pre.images[0][:, -2:] == 0).all()


def test_background_rounded_by_a_float32_step_stays_background():
    """Linear resampling can move a flat negative background by a float32 step or two (seen on the real
    z-scored cases: 9.5e-7 off the minimum of 5.34); such voxels are still air, a brain voxel is not."""
    image, brain = zscored_head()
    bg = np.float32(image.min())
    image[0, 0, 0] = np.nextafter(np.nextafter(bg, np.float32(0)), np.float32(0))  # two steps up
    off = off_background(image, float(bg))
    assert not off[0, 0, 0]
    np.testing.assert_array_equal(off, brain)  # every brain voxel, even the darkest (0.05 above the air)
