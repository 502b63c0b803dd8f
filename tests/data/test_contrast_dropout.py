"""Random contrast dropout in the training batches: which contrasts are zeroed, and that the rest
of the batch (order, crops, masks) is that of a run without dropout."""
import numpy as np
import pytest

from segan_lib.data.pipeline import SliceSet, batch_iterator, contrast_dropout_masks


def test_no_dropout_keeps_every_contrast_and_a_slice_always_keeps_one():
    assert (contrast_dropout_masks(0, 0, 50, 4, 0.0) == 1).all()
    masks = contrast_dropout_masks(0, 0, 5000, 4, 0.9)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert (masks.sum(axis=1) >= 1).all()
    # with 0.9 most rows lose everything and are rescued with a single contrast
    assert (masks.sum(axis=1) == 1).mean() > 0.5


def test_a_rate_of_one_half_draws_every_subset_about_equally_often():
    masks = contrast_dropout_masks(3, 1, 32000, 4, 0.5)
    kept_per_contrast = masks.mean(axis=0)
    # each contrast: kept with 0.5, plus a quarter of the 1/16 all-dropped rows rescued -> 0.515625
    np.testing.assert_allclose(kept_per_contrast, 0.5 + 1 / 64, atol=0.01)
    codes = (masks * np.array([1, 2, 4, 8])).sum(axis=1).astype(int)
    counts = np.bincount(codes, minlength=16)
    assert counts[0] == 0
    # the 11 subsets of two or more contrasts: 1/16 each
    multi = [c for c in range(16) if bin(c).count("1") >= 2]
    np.testing.assert_allclose(counts[multi] / len(codes), 1 / 16, atol=0.005)


def test_the_masks_are_seeded_by_seed_and_epoch():
    a = contrast_dropout_masks(1, 2, 100, 4, 0.5)
    np.testing.assert_array_equal(a, contrast_dropout_masks(1, 2, 100, 4, 0.5))
    assert not np.array_equal(a, contrast_dropout_masks(1, 3, 100, 4, 0.5))
    assert not np.array_equal(a, contrast_dropout_masks(2, 2, 100, 4, 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        contrast_dropout_masks(0, 0, 10, 4, 1.0)


def _slices(n=24, hw=8, contrasts=4):
    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 1.0, (n, hw, hw, contrasts)).astype(np.float32)  # no zero voxel anywhere
    masks = (rng.random((n, hw, hw, 1)) > 0.5).astype(np.float32)
    return SliceSet(images, masks, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), ["c0"],
                    ("t1", "t1c", "t2", "flair"), ("wt",))


def test_dropout_zeroes_whole_contrasts_and_leaves_the_rest_of_the_batch_alone():
    data = _slices()
    plain = list(batch_iterator(data, 8, 6, seed=5, start_epoch=0, epochs=2))
    dropped = list(batch_iterator(data, 8, 6, seed=5, start_epoch=0, epochs=2, contrast_dropout=0.5))
    assert len(plain) == len(dropped) == 6
    n_zeroed = 0
    for (x0, y0), (x1, y1) in zip(plain, dropped):
        np.testing.assert_array_equal(y0, y1)  # same slices, same crops
        zeroed = (x1 == 0).all(axis=(1, 2))  # (batch, contrasts): a contrast is wholly zeroed or untouched
        kept = (x1 == x0).all(axis=(1, 2))
        assert (zeroed ^ kept).all() and kept.any(axis=1).all()
        n_zeroed += zeroed.sum()
    # the zeroed channels are exactly the masks' zeros, epoch by epoch
    expected = sum(int((contrast_dropout_masks(5, e, 24, 4, 0.5) == 0).sum()) for e in range(2))
    assert n_zeroed == expected > 0
