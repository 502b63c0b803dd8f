"""The phantom held against real scans: the mixture, the tumour shape statistics, the ventricles, the phantom's
true tissue maps, the comparison's tables on volumes with known answers, and one run on the real cases.

Synthetic data are seeded; each tolerance has the spread measured over seeds beside it.
"""
import numpy as np
import pytest

from segan_lib.config import PreprocessConfig
from segan_lib.data.tissue_classes import (COMPARTMENTS, compartments_of, phantom_tissue_truth, tissue_code,
                                           tissue_map, ventricle_mask)
from segan_lib.errors import DataError, SeganError
from segan_lib.metrics.tissue_mixture import GaussianMixture, bhattacharyya_distance, fit_gaussian_mixture
from segan_lib.metrics.tumour_shape import components, distance_mm, surface_area_mm2, tumour_shape, volume_ml
from segan_lib.reporting import phantom_vs_real as pvr


# ---------------------------------------------------------------- the mixture
def _two_classes(seed, n=20_000):
    rng = np.random.default_rng(seed)
    k = int(0.6 * n)
    return np.concatenate([rng.normal(0.3, 0.05, k), rng.normal(0.7, 0.08, n - k)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_gaussian_classes_are_found(seed):
    m = fit_gaussian_mixture(_two_classes(seed), 2, seed=seed)
    assert m.converged
    # over seeds 0-19 the means were off by at most 0.0019, the SDs by 0.0014, the weights by 0.0006
    np.testing.assert_allclose(m.means[:, 0], [0.3, 0.7], atol=0.005)
    np.testing.assert_allclose(np.sqrt(m.covariances[:, 0, 0]), [0.05, 0.08], atol=0.005)
    np.testing.assert_allclose(m.weights, [0.6, 0.4], atol=0.005)


def test_three_classes_in_two_features_are_ordered_by_the_chosen_feature():
    rng = np.random.default_rng(0)
    # feature 0 rises with the class, feature 1 falls: ordered on feature 1, the classes come out reversed
    means = np.array([[0.2, 0.9], [0.5, 0.6], [0.8, 0.3]])
    x = np.concatenate([rng.normal(mu, 0.04, size=(5000, 2)) for mu in means])
    truth = np.repeat([0, 1, 2], 5000)
    by0 = fit_gaussian_mixture(x, 3, seed=0, order_by=0)
    by1 = fit_gaussian_mixture(x, 3, seed=0, order_by=1)
    # over data seeds 0-9 the means were within 0.0018 of the truth (5000 samples a class, SD 0.04)
    np.testing.assert_allclose(by0.means, means, atol=0.005)
    np.testing.assert_allclose(by1.means, means[::-1], atol=0.005)
    assert np.mean(by0.predict(x) == truth) > 0.999  # classes 7.5 SD apart: none of 15000 misplaced, seeds 0-9
    np.testing.assert_allclose(by0.posteriors(x[:10]).sum(axis=1), 1.0)


def test_the_fit_is_deterministic_and_subsamples_with_its_seed():
    x = _two_classes(0, n=30_000)
    a = fit_gaussian_mixture(x, 2, seed=5, max_samples=5000)
    b = fit_gaussian_mixture(x, 2, seed=5, max_samples=5000)
    c = fit_gaussian_mixture(x, 2, seed=6, max_samples=5000)
    np.testing.assert_array_equal(a.means, b.means)
    assert not np.array_equal(a.means, c.means)
    np.testing.assert_allclose(a.means, c.means, atol=0.01)  # two 5000-sample fits: at most 0.0043 apart, 10 data seeds


def test_bad_mixture_input_is_an_error():
    with pytest.raises(SeganError, match="at least 30 values"):
        fit_gaussian_mixture(np.zeros(10), 3)
    with pytest.raises(SeganError, match="NaN"):
        fit_gaussian_mixture(np.r_[np.zeros(100), np.nan], 2)


def test_bhattacharyya_distance_of_two_equal_sd_gaussians():
    sd = 0.1
    m = GaussianMixture(np.array([0.5, 0.5]), np.array([[0.2], [0.5]]), np.array([[[sd**2]], [[sd**2]]]), 0.0, 1, True)
    assert bhattacharyya_distance(m, 0, 1) == pytest.approx((0.3 / sd) ** 2 / 8)
    assert bhattacharyya_distance(m, 0, 0) == pytest.approx(0.0)


# ---------------------------------------------------------------- tumour shapes
def test_a_cube_tumour_has_its_volume_surface_components_and_distance():
    mask = np.zeros((40, 40, 40), bool)
    mask[10:20, 10:20, 10:20] = True  # 10 voxels a side, 2 mm voxels: 20 mm
    ventricles = np.zeros_like(mask)
    ventricles[25:28, 12:15, 12:15] = True  # nearest centres x = 19 and x = 25: 6 voxels
    stats = tumour_shape(mask, 2.0, structure=ventricles)
    assert stats["volume_ml"] == pytest.approx(8.0)  # 20^3 mm^3
    assert stats["surface_mm2"] == pytest.approx(6 * 20 * 20)
    assert stats["surface_to_volume_per_mm"] == pytest.approx(6 / 20)
    assert stats["sphericity"] == pytest.approx((np.pi / 6) ** (1 / 3))
    assert stats["n_components"] == 1 and stats["largest_component_share"] == 1.0
    assert stats["distance_mm"] == pytest.approx(12.0)


def test_components_distance_and_anisotropic_spacing():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:4, 2:4, 2:4] = True
    mask[4, 4, 4] = True  # touches the first by a corner: one 26-connected component
    assert components(mask)[0] == 1
    mask[10:12, 10:12, 10:12] = True
    n, sizes = components(mask)
    assert n == 2 and list(sizes) == [9, 8]
    other = np.zeros_like(mask)
    other[2:4, 2:4, 8] = True
    # with 2.5 mm slices the corner voxel (4, 4, 4) is nearest (3, 3, 8): sqrt(1 + 1 + 10^2) mm, nearer than
    # the cube's top (3, 3, 3), 5 slices = 12.5 mm below, and the second cube, sqrt(49 + 49 + 25) mm away
    assert distance_mm(mask, other, (1.0, 1.0, 2.5)) == pytest.approx(np.sqrt(102.0))
    assert distance_mm(mask, mask, 1.0) == 0.0
    assert np.isnan(distance_mm(mask, np.zeros_like(mask), 1.0))
    assert volume_ml(mask, (1.0, 1.0, 2.5)) == pytest.approx(17 * 2.5 / 1000)
    # one voxel: 2 faces of 1 x 1 mm and 4 faces of 1 x 2.5 mm
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    assert surface_area_mm2(one, (1.0, 1.0, 2.5)) == pytest.approx(2 * 1.0 + 4 * 2.5)
    with pytest.raises(SeganError, match="spacing"):
        volume_ml(one, (1.0, 2.0))


# ---------------------------------------------------------------- tissue classes and the ventricles
def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_the_ventricles_are_the_large_deep_csf_near_the_centre():
    shape, spacing = (70, 70, 70), 2.0
    brain = _ball(shape, (35, 35, 35), 30)  # a 60 mm radius
    csf = brain & ~_ball(shape, (35, 35, 35), 29)  # sulcal CSF at the surface: the largest, but 0-2 mm deep
    central = np.zeros(shape, bool)
    central[30:40, 33:37, 32:38] = True  # 240 voxels at the centre
    off_centre = _ball(shape, (35, 15, 35), 4)  # 257 voxels, 40 mm from the centre, 20 mm deep
    small_near = np.zeros(shape, bool)
    small_near[35:37, 45:47, 35:37] = True  # deep, 20-24 mm from the centre, 8 voxels
    csf |= central | off_centre | small_near
    found = ventricle_mask(csf, brain, spacing)
    np.testing.assert_array_equal(found, central)
    # without deep CSF near the centre there are no ventricles
    assert not ventricle_mask(csf & ~central & ~small_near, brain, spacing).any()


def test_tissue_maps_and_compartments_per_scheme():
    assert compartments_of("brats2015") == {1: "necrosis", 2: "oedema", 3: "nonenhancing", 4: "enhancing"}
    assert compartments_of("brats2018", phantom_grade="LGG")[1] == "nonenhancing"
    assert compartments_of("brats2018", phantom_grade="HGG")[1] == "necrosis"
    assert set(COMPARTMENTS) == {"brats2015", "brats2018", "brats2023", "msd"}
    with pytest.raises(DataError, match="unknown label scheme"):
        compartments_of("brats2030")
    brain = np.zeros((4, 1, 1), bool)
    brain[:3] = True
    normal = np.array([0, 1, 2, 2], np.uint8).reshape(4, 1, 1)
    label = np.array([0, 0, 4, 1], np.uint8).reshape(4, 1, 1)  # a label voxel outside the mask is still tumour
    tmap = tissue_map(brain, normal, label, compartments_of("brats2015"))
    assert tmap.ravel().tolist() == [tissue_code("csf"), tissue_code("gm"), tissue_code("enhancing"),
                                     tissue_code("necrosis")]


def test_the_phantoms_true_tissues_are_the_rendered_ones():
    from segan_lib.data.phantom import make_subject

    subject = make_subject(0, 0, "HGG", 4.0)
    brain, normal = phantom_tissue_truth(0, 0, 4.0)
    np.testing.assert_array_equal(brain, subject.images["t1"] > 0)  # the renderer writes >= 1 inside, 0 outside
    healthy = brain & (subject.label == 0)
    t1 = subject.images["t1"].astype(float)
    medians = [np.median(t1[healthy & (normal == k)]) for k in range(3)]
    assert medians[0] < medians[1] < medians[2]  # T1: CSF < GM < WM, as INTENSITIES orders them


def test_the_mixture_names_normal_tissue_on_any_contrast():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(30, 30, 30))  # 0 CSF, 1 GM, 2 WM
    levels = {"t1c": np.array([0.2, 0.5, 0.8]), "flair": np.array([0.2, 0.8, 0.5])}  # FLAIR: GM above WM
    images = {c: (v[truth] + rng.normal(0, 0.03, truth.shape)).astype(np.float32) for c, v in levels.items()}
    images["t1c"][(truth == 2) & (rng.random(truth.shape) < 0.1)] = 1.0  # clipped at the top: not fitted, still WM
    normal = np.ones(truth.shape, bool)
    for contrasts in (("t1c",), ("flair",), ("t1c", "flair")):
        _, classify = pvr.fit_normal_tissue(images, normal, contrasts)
        assert np.mean(classify(normal) == truth.ravel()) > 0.99, contrasts  # classes 10 SD apart: none misplaced
    with pytest.raises(DataError, match="lacks t2"):
        pvr.fit_normal_tissue(images, normal, ("t2",))


# ---------------------------------------------------------------- the comparison's tables
def _subject(source, case_id, levels, spacing=2.0):
    """A 20^3 scan with one slab per region at constant T1c intensities `levels` (region -> value)."""
    shape = (20, 20, 20)
    tmap = np.zeros(shape, np.uint8)
    label = np.zeros(shape, np.uint8)
    slabs = {"csf": 2, "gm": 3, "wm": 4, "oedema": 4, "enhancing": 3}  # slices 2-3, 4-6, 7-10, 11-14, 15-17
    start = 2
    for name, width in slabs.items():
        tmap[start:start + width] = tissue_code(name)
        start += width
    label[tmap == tissue_code("oedema")] = 2
    label[tmap == tissue_code("enhancing")] = 4
    image = np.zeros(shape, np.float32)
    for name, value in levels.items():
        image[tmap == tissue_code(name)] = value
    ventricles = np.zeros(shape, bool)
    ventricles[0, :, :] = True  # 2 slices below the CSF slab, 11 below the oedema
    mixture = GaussianMixture(np.ones(3) / 3, np.zeros((3, 1)), np.ones((3, 1, 1)), 0.0, 1, True)
    return pvr.ComparedSubject(source, case_id, "HGG", {"t1c": image}, label, "brats2018", tmap > 0,
                               {"mixture": tmap} if source == "real" else {"truth": tmap, "mixture": tmap}, ventricles,
                               mixture, spacing, {2: "oedema", 4: "enhancing"})


def _known_comparison():
    from pathlib import Path

    real_levels = {"csf": 0.2, "gm": 0.6, "wm": 0.8, "oedema": 0.5, "enhancing": 1.0}
    phantom_levels = {"csf": 0.45, "gm": 0.72, "wm": 0.9, "oedema": 0.9, "enhancing": 1.0}
    subjects = [_subject("real", "r1", real_levels), _subject("real", "r2", real_levels),
                _subject("phantom", "p1", phantom_levels)]
    samples, medians = pvr._intensity_tables(subjects, seed=0, per_tissue=500)
    return pvr.Comparison(subjects, samples, medians, PreprocessConfig(spacing_mm=2.0), ("t1c",), Path("real"))


def test_contrast_ratios_conspicuity_and_distances_of_known_volumes():
    c = _known_comparison()
    ratios = c.contrast_ratios().set_index("tissue")
    assert ratios.loc["grey matter", "real"] == pytest.approx(0.6 / 0.8)
    assert ratios.loc["grey matter", "phantom_truth"] == pytest.approx(0.72 / 0.9)
    assert ratios.loc["oedema", "phantom_mixture"] == pytest.approx(1.0)
    assert ratios.loc["enhancing", "real_at_top"] == 1.0 and ratios.loc["white matter", "real_median"] == pytest.approx(0.8)
    # the rim: normal tissue within 4 mm of the ventricles (slice 0) is the CSF slab only, so no GM/WM rim
    assert "periventricular rim" not in ratios.index
    consp = c.conspicuity().set_index("ratio")
    assert consp.loc["enhancing / oedema", "real"] == pytest.approx(2.0)
    assert consp.loc["enhancing / oedema", "phantom_truth"] == pytest.approx(1.0 / 0.9)
    assert consp.loc["top of scale / white matter", "real"] == pytest.approx(1.25)
    w = c.wasserstein().set_index("tissue")
    assert w.loc["CSF", "phantom_truth"] == pytest.approx(0.25)  # between two constants: their difference
    assert w.loc["oedema", "phantom_truth"] == pytest.approx(0.4)
    assert w.loc["CSF", "real_vs_real"] == 0.0  # the two real subjects are the same
    t = c.tumours().set_index("case_id")
    assert t.loc["r1", "whole_tumour_ml"] == pytest.approx(7 * 20 * 20 * 8 / 1000)
    assert t.loc["r1", "share_enhancing"] == pytest.approx(3 / 7) and t.loc["r1", "share_necrosis"] == 0.0
    assert t.loc["r1", "distance_to_ventricles_mm"] == pytest.approx(11 * 2.0)  # slice 0 to slice 11
    assert t.loc["r1", "n_components"] == 1
    summary = c.tumour_summary().set_index("statistic")
    assert summary.loc["whole_tumour_ml", "real_min"] == summary.loc["whole_tumour_ml", "real_max"]


def test_the_real_data_is_found_or_given(tmp_path, monkeypatch):
    monkeypatch.setenv(pvr.REAL_DATA_ENV, str(tmp_path))
    assert pvr.resolve_real_data(None) == (tmp_path.resolve(), pvr.SHARED_REAL_LAYOUT)
    (tmp_path / "segan_layout.yaml").write_text("pattern: x\n")
    assert pvr.resolve_real_data(None) == (tmp_path.resolve(), {})  # its own description wins
    assert pvr.resolve_real_data(tmp_path, {"label_scheme": "brats2015", "pattern": None}) == (
        tmp_path, {"label_scheme": "brats2015"})
    monkeypatch.setenv(pvr.REAL_DATA_ENV, str(tmp_path / "absent"))
    assert pvr.resolve_real_data(None) == (None, {})
    with pytest.raises(DataError, match="does not exist"):
        pvr.resolve_real_data(tmp_path / "absent")


def test_phantom_subjects_from_a_folder_are_those_made_in_memory(tmp_path):
    import json

    from segan_lib.data.phantom import generate_phantom

    generate_phantom(tmp_path, n=2, seed=3, voxel_size=8.0)
    from_folder = list(pvr.phantom_subjects(2, 0, 1.0, folder=tmp_path))  # seed and size come from phantom.json
    in_memory = list(pvr.phantom_subjects(2, 3, 8.0, phantom_n=2))
    for (a, *pa), (b, *pb) in zip(from_folder, in_memory):
        assert pa == pb and a.grade == b.grade and a.case_id == b.case_id
        np.testing.assert_array_equal(a.images["flair"], b.images["flair"])
        np.testing.assert_array_equal(a.label, b.label)
    meta = json.loads((tmp_path / "phantom.json").read_text())
    (tmp_path / "phantom.json").write_text(json.dumps({**meta, "generator_version": 0}))
    with pytest.raises(DataError, match="generator version 0"):
        list(pvr.phantom_subjects(1, 0, 1.0, folder=tmp_path))


# ---------------------------------------------------------------- the real cases
def test_the_comparison_runs_on_the_real_cases(real_brats_root, tmp_path):
    import pandas as pd

    quick = PreprocessConfig(spacing_mm=2.0, crop_shape=(90, 90, 64))
    comparison = pvr.compare_phantom_to_real(real_brats_root, real_layout=pvr.SHARED_REAL_LAYOUT, preprocess=quick,
                                             n_phantom=1, phantom_voxel_size=2.0, log=None)
    assert [s.source for s in comparison.subjects] == ["real", "real", "phantom"]
    written = pvr.write_comparison(comparison, tmp_path)
    assert sorted(p.name for p in written) == sorted(pvr.OUTPUT_NAMES)
    assert all(p.stat().st_size > 0 for p in written)
    ratios = pd.read_csv(tmp_path / "phantom_vs_real_contrast_ratios.csv")
    core = ratios[ratios.contrast.isin(["FLAIR", "T1c"]) & ratios.tissue.isin(
        ["CSF", "grey matter", "white matter", "oedema", "enhancing", "necrosis"])]
    assert len(core) == 12 and np.isfinite(core[["phantom_truth", "phantom_mixture", "real"]].to_numpy()).all()
    w = pd.read_csv(tmp_path / "phantom_vs_real_wasserstein.csv")
    w = w[w.tissue.isin(["CSF", "grey matter", "white matter", "oedema", "enhancing", "necrosis"])]
    assert len(w) == 12 and np.isfinite(w[["phantom_truth", "phantom_mixture", "real_vs_real"]].to_numpy()).all()
    tumours = pd.read_csv(tmp_path / "phantom_vs_real_tumours.csv")
    numbers = tumours[["whole_tumour_ml", "surface_to_volume_per_mm", "distance_to_ventricles_mm", "ventricles_ml"]]
    assert np.isfinite(numbers.to_numpy()).all() and (tumours.whole_tumour_ml > 0).all()
    assert (tumours.ventricles_ml > 1).all()  # the ventricles were found on every subject (8.7 ml on both real cases)
