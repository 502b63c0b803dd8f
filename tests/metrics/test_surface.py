"""BraTS HD95, normalised surface Dice and volume difference: hand-computed cases, the empty conventions,
and agreement with MedPy's independent surface distances."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from segan_lib.metrics import surface as S
from segan_lib.metrics import volume as V


def offset_cubes():
    """Two 4x4x4 cubes, the second shifted by 2 voxels along axis 0; spacing (2, 1, 1) mm.

    Both surfaces have 56 voxels (64 minus the 2x2x2 inside). From the first cube's surface to the
    second's, by layer along axis 0: x=2, 16 voxels at 2 x 2 mm = 4 mm; x=3, the 12 side voxels at
    2 mm; x=4, 12 at 0; x=5, 12 side voxels at 0 and the 4 face voxels at 1 mm (the second cube's side,
    one in-plane voxel away, is nearer than its face 2 mm along axis 0). So the 56 sorted distances
    are 24 x 0, 4 x 1, 12 x 2, 16 x 4, the same both ways (the shift is symmetric).
    """
    a = np.zeros((10, 8, 8), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.zeros_like(a)
    b[4:8, 2:6, 2:6] = True
    return a, b, (2.0, 1.0, 1.0)


def test_offset_cubes_by_hand():
    a, b, sp = offset_cubes()
    assert V.dice(a, b) == 0.5  # 32 of 64 voxels shared
    # directed 95th percentile: position 0.95 x 55 = 52.25, among the 4 mm values (sorted 40..55)
    # pooled (112 values): position 105.45, among the 4 mm values (80..111): both 4 mm
    assert V.hd95(a, b, sp) == 4.0 and S.hd95_brats(a, b, sp) == 4.0 and S.hd95_brats(b, a, sp) == 4.0
    assert S.normalized_surface_dice(a, b, sp, tolerance_mm=1.0) == pytest.approx(28 / 56, abs=1e-15)
    assert S.normalized_surface_dice(a, b, sp, tolerance_mm=2.0) == pytest.approx(40 / 56, abs=1e-15)
    assert S.normalized_surface_dice(a, b, sp, tolerance_mm=3.9) == pytest.approx(40 / 56, abs=1e-15)
    assert S.normalized_surface_dice(a, b, sp, tolerance_mm=4.0) == 1.0
    assert S.normalized_surface_dice(a, b, sp, tolerance_mm=0.0) == pytest.approx(24 / 56, abs=1e-15)
    assert S.volume_difference_ml(a, b, sp) == 0.0


def test_one_sided_error_separates_the_two_hd95s():
    """Truth: a 6x2x2 bar; prediction: the same bar 4 voxels longer; spacing (2, 1, 1) mm.

    With a 2x2 cross-section every voxel is surface. Truth -> prediction: 24 zeros (the truth lies in
    the prediction's surface). Prediction -> truth: 24 zeros, then 4 voxels each at 2, 4, 6, 8 mm.
    BraTS: max(P95(truth->pred) = 0, P95(pred->truth) at position 0.95 x 39 = 37.05, among the 8s) = 8 mm.
    MedPy pools the 64 values: 48 zeros, 4 x 2, 4 x 4, 4 x 6 (sorted 56..59), 4 x 8 (60..63); position
    0.95 x 63 = 59.85: 6 + 0.85 x (8 - 6) = 7.7 mm.
    """
    truth = np.zeros((14, 4, 4), bool)
    truth[1:7, 1:3, 1:3] = True
    pred = np.zeros_like(truth)
    pred[1:11, 1:3, 1:3] = True
    sp = (2.0, 1.0, 1.0)
    m = S.surface_metrics(pred, truth, sp, tolerance_mm=2.0)
    assert m.hd95_brats == pytest.approx(8.0, abs=1e-12)
    assert m.hd95 == pytest.approx(7.7, abs=1e-12) == V.hd95(pred, truth, sp)
    assert m.nsd == pytest.approx((24 + 28) / 64, abs=1e-15)  # the truth's 24 and the prediction's 24 + 4 (at 2 mm)
    assert S.volume_difference_ml(pred, truth, sp) == pytest.approx(16 * 2.0 / 1000, abs=1e-15)  # 16 voxels of 2 mm3
    assert S.volume_difference_ml(truth, pred, sp) == pytest.approx(-0.032, abs=1e-15)
    assert V.dice(pred, truth) == 0.75  # 2 x 24 / (24 + 40)


def test_empty_conventions():
    z = np.zeros((6, 6, 6), bool)
    one = z.copy()
    one[2:4, 2:4, 2:4] = True
    assert S.BRATS_EMPTY_HD95_MM == pytest.approx(373.13, abs=0.005)
    assert S.hd95_brats(z, one) == S.BRATS_EMPTY_HD95_MM and S.hd95_brats(one, z) == S.BRATS_EMPTY_HD95_MM
    assert S.hd95_brats(z, z) == 0.0
    assert S.normalized_surface_dice(z, z) == 1.0
    assert S.normalized_surface_dice(z, one) == 0.0 and S.normalized_surface_dice(one, z) == 0.0
    m = S.surface_metrics(z, one, (1.0, 2.0, 3.0))
    assert math.isnan(m.hd95) and m.hd95_brats == S.BRATS_EMPTY_HD95_MM and m.nsd == 0.0
    assert S.volume_difference_ml(z, one, (1.0, 2.0, 3.0)) == pytest.approx(-8 * 6.0 / 1000, abs=1e-15)


def test_bad_inputs():
    a = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match="tolerance"):
        S.normalized_surface_dice(a, a, tolerance_mm=-1)
    with pytest.raises(ValueError, match="tolerance"):
        S.normalized_surface_dice(a, a, tolerance_mm=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        S.hd95_brats(a, np.ones((3, 3, 4), bool))
    with pytest.raises(ValueError, match="spacing"):
        S.volume_difference_ml(a, a, spacing=(1, 0, 1))


def _blob(rng, shape, sigma, quantile):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, quantile)


def test_agrees_with_medpy_on_random_blobs():
    """MedPy's surface (the mask XOR its connectivity-1 erosion) and distances are ours, computed by its own code:
    its public hd95 and dc, and its directed distances (`__surface_distances`, what its hd95 pools) summarised
    by the definitions of hd95_brats and nsd. Measured on these 40 seeded cases (anisotropic spacings 0.8-3 mm,
    tolerances 0.5-3 mm): largest difference 0 for every metric; the 1e-9 allows for float reordering only.

    DeepMind's surface-distance package is not the reference: its surface lies on the voxel-corner grid,
    weighted by face area, so on 40 seeded blobs of this kind its NSD differed from ours by up to 0.23 (mean 0.05) and its
    robust HD95 by up to 2.3 mm (13 %); and version 0.1 fails on numpy 2 with an empty mask (np.Inf)."""
    from medpy.metric import binary as medpy  # a pinned test dependency (pyproject's test extra)

    directed = getattr(medpy, "__surface_distances")
    for seed in range(40):
        rng = np.random.default_rng(seed)
        shape = (32, 28, 20)
        truth = _blob(rng, shape, 3.0, 0.85)
        grown = ndimage.binary_dilation(truth, iterations=int(rng.integers(0, 3)))
        pred = (grown & ~(_blob(rng, shape, 2.0, 0.95) & truth)) | _blob(rng, shape, 2.0, 0.97)
        spacing = tuple(float(s) for s in rng.choice([0.8, 1.0, 1.5, 2.0, 3.0], 3))
        tol = float(rng.choice([0.5, 1.0, 2.0, 3.0]))
        ours = S.surface_metrics(pred, truth, spacing, tol)
        p_to_t, t_to_p = directed(pred, truth, spacing), directed(truth, pred, spacing)
        assert ours.hd95 == pytest.approx(medpy.hd95(pred, truth, voxelspacing=spacing), abs=1e-9)
        assert ours.hd95_brats == pytest.approx(max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95)), abs=1e-9)
        within = np.count_nonzero(p_to_t <= tol) + np.count_nonzero(t_to_p <= tol)
        assert ours.nsd == pytest.approx(within / (p_to_t.size + t_to_p.size), abs=1e-12)
        assert V.dice(pred, truth) == pytest.approx(medpy.dc(pred, truth), abs=1e-12)
