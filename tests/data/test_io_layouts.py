"""Every BraTS layout is detected and read into the same `Case` interface, lazily."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

try:
    from tests.layout_trees import (
        CONTRAST_OFFSETS, MSD_OFFSETS, itk_expected_affine, make_brats2015_tree, make_brats2018_tree,
        make_brats2023_tree, make_msd_tree, nifti_affine, write_grades_csv, write_mha, write_nifti,
    )
except ImportError:  # tests/ itself on sys.path
    from layout_trees import (  # type: ignore[no-redef]
        CONTRAST_OFFSETS, MSD_OFFSETS, itk_expected_affine, make_brats2015_tree, make_brats2018_tree,
        make_brats2023_tree, make_msd_tree, nifti_affine, write_grades_csv, write_mha, write_nifti,
    )

from segan_lib.errors import DataError
from segan_lib.data import (
    CONTRASTS, LABEL_SCHEMES, BadCaseWarning, Case, CaseArrays, clear_cache, detect_layout, format_summary, load_case,
    open_dataset, read_volume, summarize_dataset, validate_dataset,
)

MAKERS = {
    "brats2015": lambda root: make_brats2015_tree(root, 2, 1),
    "brats2018": lambda root: make_brats2018_tree(root, 3),
    "brats2023": lambda root: make_brats2023_tree(root, 2),
    "msd": lambda root: make_msd_tree(root, 2),
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("layout", sorted(MAKERS))
def test_layout_detected_and_read_exactly(tmp_path, layout):
    written = MAKERS[layout](tmp_path)
    assert detect_layout(tmp_path) == layout
    ds = open_dataset(tmp_path)
    assert ds.layout == layout
    assert ds.case_ids == sorted(written)
    for case in ds:
        assert isinstance(case, Case)
        want = written[case.case_id]
        assert case.layout == layout and case.has_label
        arrays = load_case(case)
        assert isinstance(arrays, CaseArrays)
        assert list(arrays.images) == list(CONTRASTS)
        for contrast in CONTRASTS:
            got = arrays.images[contrast]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want.images[contrast], err_msg=f"{case.case_id} {contrast}")
        assert np.issubdtype(arrays.label.dtype, np.integer)
        np.testing.assert_array_equal(arrays.label, want.label)
        np.testing.assert_allclose(arrays.affine, want.affine, atol=1e-6)
        assert arrays.grade == want.grade
        assert arrays.spacing == pytest.approx((1.0, 1.0, 1.0))
        assert arrays.shape == (12, 10, 8)
        # the Case's own accessors give the same data
        np.testing.assert_array_equal(case.image("t1c"), want.images["t1c"])
        np.testing.assert_array_equal(case.label(), want.label)


def test_mha_axis_order_and_ras_affine(tmp_path):
    import SimpleITK as sitk

    data = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2) + 1  # (x, y, z), all distinct
    path = write_mha(tmp_path / "v.mha", data, spacing=(1, 2, 3), origin=(10, 20, 30))
    vol = read_volume(path, case_id="c1")
    assert vol.data.shape == (4, 3, 2)
    img = sitk.ReadImage(str(path))
    for x, y, z in [(0, 0, 0), (3, 0, 0), (0, 2, 0), (0, 0, 1), (3, 2, 1), (2, 1, 0)]:
        assert vol.data[x, y, z] == img.GetPixel(x, y, z) == data[x, y, z]
    expected = np.array([[-1, 0, 0, -10], [0, -2, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(vol.affine, expected)
    assert vol.spacing == pytest.approx((1.0, 2.0, 3.0))
    # voxel (x, y, z) -> RAS = LPS point of ITK with x, y negated
    lps = np.array(img.TransformIndexToPhysicalPoint((3, 2, 1)))
    ras = vol.affine @ np.array([3, 2, 1, 1.0])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1])


def test_mha_affine_with_rotation_matches_itk_nifti_writer(tmp_path):
    """Independent check of the LPS -> RAS conversion: ITK's own NIfTI writer, read by nibabel."""
    import nibabel as nib
    import SimpleITK as sitk

    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    data = np.random.default_rng(1).normal(size=(5, 4, 3)).astype(np.float32)
    path = write_mha(tmp_path / "r.mha", data, spacing=(0.9, 1.1, 2.5), origin=(-7, 12, 3), direction=direction)
    vol = read_volume(path, case_id="c1")
    np.testing.assert_allclose(vol.affine, itk_expected_affine((0.9, 1.1, 2.5), (-7, 12, 3), direction), atol=1e-9)
    sitk.WriteImage(sitk.ReadImage(str(path)), str(tmp_path / "r.nii.gz"))
    ref = nib.load(str(tmp_path / "r.nii.gz"))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(vol.data, np.asanyarray(ref.dataobj), atol=1e-6)


def test_grades_from_folders(tmp_path):
    w15 = make_brats2015_tree(tmp_path / "b15", 2, 2)
    ds = open_dataset(tmp_path / "b15")
    assert ds.grades == {cid: w.grade for cid, w in w15.items()}
    assert sorted(ds.grades.values()) == ["HGG", "HGG", "LGG", "LGG"]
    w18 = make_brats2018_tree(tmp_path / "b18", 4, grades_csv=False, grade_folders=True)
    ds18 = open_dataset(tmp_path / "b18")
    assert ds18.layout == "brats2018"
    assert ds18.grades == {cid: w.grade for cid, w in w18.items()}
    assert set(ds18.grades.values()) == {"HGG", "LGG"}


def test_grades_from_csv_explicit_or_absent(tmp_path):
    w = make_brats2018_tree(tmp_path / "a", 4, grades_csv=True)
    assert open_dataset(tmp_path / "a").grades == {cid: x.grade for cid, x in w.items()}
    # no csv: unknown
    make_brats2023_tree(tmp_path / "b", 3)
    ds = open_dataset(tmp_path / "b")
    assert set(ds.grades.values()) == {None}
    s = summarize_dataset(ds)
    assert s["grades"] == {"HGG": 0, "LGG": 0, "unknown": 3}
    # explicit CSV path elsewhere, and an explicit mapping (case-insensitive values, blanks = unknown)
    ids = ds.case_ids
    csv_path = write_grades_csv(tmp_path / "mine.csv", {ids[0]: "HGG", ids[1]: "LGG", ids[2]: ""})
    assert open_dataset(tmp_path / "b", grades=csv_path).grades == {ids[0]: "HGG", ids[1]: "LGG", ids[2]: None}
    assert open_dataset(tmp_path / "b", grades={ids[0]: "lgg"}).grades == {ids[0]: "LGG", ids[1]: None, ids[2]: None}
    # MSD with grades.csv at its root
    wm = make_msd_tree(tmp_path / "m", 2)
    write_grades_csv(tmp_path / "m" / "grades.csv", {cid: "LGG" for cid in wm})
    assert set(open_dataset(tmp_path / "m").grades.values()) == {"LGG"}


def test_folder_grade_wins_over_mapping_with_warning(tmp_path):
    w = make_brats2015_tree(tmp_path, 1, 0)
    (cid,) = w
    with pytest.warns(UserWarning, match="LGG"):
        ds = open_dataset(tmp_path, grades={cid: "LGG"})
    assert ds.grades[cid] == "HGG"


def test_whole_tumour_is_nonzero_label(tmp_path):
    w = make_brats2018_tree(tmp_path, 1)
    case = open_dataset(tmp_path)[0]
    want = w[case.case_id].label
    np.testing.assert_array_equal(case.whole_tumour(), want > 0)
    arrays = load_case(case)
    np.testing.assert_array_equal(arrays.whole_tumour(), want > 0)
    assert arrays.whole_tumour().sum() > 0


@pytest.mark.parametrize(
    "layout, values, tc, et",
    [
        ("brats2015", [0, 1, 2, 3, 4], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]),
        ("brats2018", [0, 1, 2, 4], [0, 1, 0, 1], [0, 0, 0, 1]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 0, 1], [0, 0, 0, 1]),
        ("msd", [0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 0, 1]),
    ],
)
def test_regions_per_scheme(layout, values, tc, et):
    label = np.array(values, np.int16).reshape(-1, 1, 1)
    regions = LABEL_SCHEMES[layout].regions(label)
    np.testing.assert_array_equal(regions["wt"].ravel(), [v > 0 for v in values])
    np.testing.assert_array_equal(regions["tc"].ravel(), np.array(tc, bool))
    np.testing.assert_array_equal(regions["et"].ravel(), np.array(et, bool))
    arrays = CaseArrays("c", None, {}, label, np.eye(4), (1.0, 1.0, 1.0), {}, layout=layout)
    np.testing.assert_array_equal(arrays.regions()["tc"].ravel(), np.array(tc, bool))


@pytest.mark.parametrize("layout", sorted(MAKERS))
def test_listing_reads_no_voxel_data(tmp_path, monkeypatch, layout):
    import nibabel
    import SimpleITK

    MAKERS[layout](tmp_path)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("listing must not read volumes")

    monkeypatch.setattr(nibabel, "load", refuse)
    monkeypatch.setattr(SimpleITK, "ReadImage", refuse)
    ds = open_dataset(tmp_path)
    assert len(ds) >= 2 and ds.case_ids
    summarize_dataset(ds, deep=False)
    assert calls == []
    monkeypatch.undo()
    assert load_case(ds[0]).images["t1"].shape == (12, 10, 8)


def test_listing_500_cases_costs_only_the_directory_listing(tmp_path):
    # empty files: any attempt to decode them would fail, listing must not notice
    for i in range(500):
        folder = tmp_path / f"BraTS20_Training_{i:03d}"
        folder.mkdir()
        for suffix in ("t1", "t1ce", "t2", "flair", "seg"):
            (folder / f"{folder.name}_{suffix}.nii.gz").touch()
    t0 = time.perf_counter()
    ds = open_dataset(tmp_path)
    elapsed = time.perf_counter() - t0
    assert len(ds) == 500 and ds.layout == "brats2018"
    assert elapsed < 5.0
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_case(ds[0])


def test_msd_channel_mapping(tmp_path):
    make_msd_tree(tmp_path, 1)
    arrays = load_case(open_dataset(tmp_path)[0])
    for contrast, offset in MSD_OFFSETS.items():
        # background ~ offset +- noise, tumour offset + 50
        assert abs(float(np.median(arrays.images[contrast])) - offset) < 60, contrast
    assert [round(float(np.median(arrays.images[c])), -3) for c in ("flair", "t1", "t1c", "t2")] == [
        1000, 2000, 3000, 4000]


def test_msd_channel_order_from_dataset_json_and_default(tmp_path):
    import json

    written = make_msd_tree(tmp_path, 1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    # say the file holds T2w first, FLAIR last: the reader must follow dataset.json
    meta["modality"] = {"0": "T2w", "1": "T1w", "2": "T1gd", "3": "FLAIR"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    arrays = load_case(open_dataset(tmp_path)[0])
    (want,) = written.values()
    np.testing.assert_array_equal(arrays.images["t2"], want.images["flair"])
    np.testing.assert_array_equal(arrays.images["flair"], want.images["t2"])
    # without dataset.json: FLAIR, T1w, T1gd, T2w
    (tmp_path / "dataset.json").unlink()
    arrays = load_case(open_dataset(tmp_path)[0])
    for c in CONTRASTS:
        np.testing.assert_array_equal(arrays.images[c], want.images[c])


def test_msd_four_channels_decode_the_file_once(tmp_path, monkeypatch):
    import nibabel

    make_msd_tree(tmp_path, 2)
    ds = open_dataset(tmp_path)
    real_load = nibabel.load
    opened = []

    def counting_load(path, *args, **kwargs):
        opened.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", counting_load)
    load_case(ds[0], with_label=False)
    assert len(opened) == 1
    load_case(ds[0])  # still cached; the label is one more file
    assert len(opened) == 2
    load_case(ds[1], with_label=False)
    assert len(opened) == 3


def test_msd_test_images_without_labels(tmp_path):
    make_msd_tree(tmp_path, 2, n_test=2)
    ds = open_dataset(tmp_path / "imagesTs", require_label=False)
    assert ds.layout == "msd" and ds.case_ids == ["BRATS_003", "BRATS_004"]
    arrays = load_case(ds[0])
    assert arrays.label is None and set(arrays.images) == set(CONTRASTS)
    # the training part is read from the data set root
    assert open_dataset(tmp_path).case_ids == ["BRATS_001", "BRATS_002"]


def test_cases_without_label_with_require_label_false(tmp_path):
    make_brats2018_tree(tmp_path, 2, with_label=False)
    with pytest.raises(DataError, match="missing label"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, require_label=False)
    assert len(ds) == 2 and not ds[0].has_label
    assert load_case(ds[0]).label is None
    make_brats2015_tree(tmp_path / "b15", 1, 1, with_label=False)
    assert len(open_dataset(tmp_path / "b15", require_label=False)) == 2


def test_brats2015_test_set_folder_hgg_lgg(tmp_path):
    make_brats2015_tree(tmp_path / "tmp", 2, 0, with_label=False)
    (tmp_path / "tmp" / "HGG").rename(tmp_path / "HGG_LGG")
    ds = open_dataset(tmp_path, require_label=False)
    assert ds.layout == "brats2015" and len(ds) == 2
    assert set(ds.grades.values()) == {None}


def test_float_label_with_integral_values_is_cast(tmp_path):
    make_brats2018_tree(tmp_path, 1, label_dtype=np.float64)
    arrays = load_case(open_dataset(tmp_path)[0])
    assert np.issubdtype(arrays.label.dtype, np.integer)
    assert set(np.unique(arrays.label)) == {0, 1, 2, 4}


def test_integer_images_become_float32(tmp_path):
    path = write_nifti(tmp_path / "x.nii.gz", np.arange(60, dtype=np.int16).reshape(5, 4, 3), np.eye(4))
    vol = read_volume(path, case_id="c")
    assert vol.data.dtype == np.float32 and vol.data[4, 3, 2] == 59
    assert vol.header["dtype_on_disk"] == "int16"


def test_trailing_singleton_dimension_is_3d(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 4, 3, 1)).astype(np.float32)
    path = write_nifti(tmp_path / "x.nii.gz", data, np.eye(4))
    assert read_volume(path, case_id="c").data.shape == (5, 4, 3)


def test_dataset_sequence_api(tmp_path):
    written = make_brats2018_tree(tmp_path, 4)
    ds = open_dataset(tmp_path)
    ids = sorted(written)
    assert len(ds) == 4 and ds.case_ids == ids
    assert [c.case_id for c in ds] == ids
    assert ds[1].case_id == ids[1] and ds[-1].case_id == ids[-1]
    assert ds.get(ids[2]) is ds[2] and ds[ids[2]] is ds[2]
    assert ids[0] in ds and "nope" not in ds
    sub = ds[1:3]
    assert sub.case_ids == ids[1:3] and sub.layout == "brats2018"
    assert ds.root == tmp_path and ds.skipped == []
    assert ds.label_scheme is LABEL_SCHEMES["brats2018"]
    with pytest.raises(DataError, match="no such case"):
        ds.get(ids[0] + "x")


def test_load_case_subset_of_contrasts(tmp_path):
    w = make_brats2023_tree(tmp_path, 1)
    arrays = load_case(open_dataset(tmp_path)[0], contrasts=("flair", "t1"), with_label=False)
    assert list(arrays.images) == ["flair", "t1"] and arrays.label is None
    (want,) = w.values()
    stacked = arrays.stacked()
    assert stacked.shape == (2, 12, 10, 8)
    np.testing.assert_array_equal(stacked[0], want.images["flair"])
    assert arrays.header["layout"] == "brats2023"
    assert set(arrays.header["files"]) == {"flair", "t1"}


def test_validate_and_summarize_good_set(tmp_path):
    w = make_brats2018_tree(tmp_path, 3)
    ds = open_dataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good, bad = validate_dataset(ds)
    assert good == sorted(w) and bad == []
    s = summarize_dataset(ds, deep=True)
    assert s["layout"] == "brats2018" and s["n_cases"] == 3
    assert s["grades"] == {"HGG": 2, "LGG": 1, "unknown": 0}
    assert s["shapes"] == {"12x10x8": 3}
    assert s["spacings"] == {"1x1x1": 3}
    assert s["label_values"] == [0, 1, 2, 4]
    n = int((next(iter(w.values())).label > 0).sum())
    assert s["tumour_voxels"]["min"] == s["tumour_voxels"]["max"] == n
    assert s["bad"] == []
    text = format_summary(s)
    assert "BraTS 2018-2021 NIfTI (brats2018)" in text
    assert "12x10x8 (3 cases)" in text and "HGG 2, LGG 1, unknown 0" in text
    assert "0, 1, 2, 4" in text
    shallow = format_summary(summarize_dataset(ds))
    assert "Shapes" not in shallow and "3" in shallow


def test_spacing_from_affine(tmp_path):
    make_brats2018_tree(tmp_path, 1, spacing=(0.5, 0.75, 2.0))
    arrays = load_case(open_dataset(tmp_path)[0])
    assert arrays.spacing == pytest.approx((0.5, 0.75, 2.0))
    np.testing.assert_allclose(arrays.affine, nifti_affine((12, 10, 8), (0.5, 0.75, 2.0)))
    assert summarize_dataset(open_dataset(tmp_path), deep=True)["spacings"] == {"0.5x0.75x2": 1}


def test_contrast_offsets_distinguish_contrasts(tmp_path):
    """The NIfTI layouts map each release's file suffix onto the right contrast."""
    for maker, sub in ((lambda r: make_brats2018_tree(r, 1), "a"), (lambda r: make_brats2023_tree(r, 1), "b"),
                       (lambda r: make_brats2015_tree(r, 1, 0), "c")):
        maker(tmp_path / sub)
        arrays = load_case(open_dataset(tmp_path / sub)[0])
        for contrast, offset in CONTRAST_OFFSETS.items():
            assert abs(float(np.median(arrays.images[contrast])) - offset) < 40, (sub, contrast)


def _deny_listing(monkeypatch, *locked):
    """os.scandir / os.listdir raise PermissionError on these folders (simulated: the tests may run as
    root, whom no mode bit stops)."""
    import os
    from pathlib import Path

    locked = {Path(p) for p in locked}
    real_scandir, real_listdir = os.scandir, os.listdir

    def guard(real):
        def call(path=".", *args):
            if Path(path) in locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args)
        return call

    monkeypatch.setattr(os, "scandir", guard(real_scandir))
    monkeypatch.setattr(os, "listdir", guard(real_listdir))


def test_an_unreadable_case_folder_is_reported_not_dropped_silently(tmp_path, monkeypatch):
    from segan_lib.data import UnreadableFolderWarning

    written = make_brats2018_tree(tmp_path / "b18", 3)
    ids = sorted(written)
    locked = tmp_path / "b18" / ids[1]
    _deny_listing(monkeypatch, locked)
    with pytest.warns(UnreadableFolderWarning) as rec:
        ds = open_dataset(tmp_path / "b18")
    assert ds.case_ids == [ids[0], ids[2]]  # the other cases still open
    (message,) = [str(w.message) for w in rec if issubclass(w.category, UnreadableFolderWarning)]
    assert str(locked) in message and "permission denied" in message and "cannot list 1 folder" in message
    # the data set folder itself: a clear error, not "no layout recognised" alone
    _deny_listing(monkeypatch, tmp_path / "b18")
    with pytest.raises(DataError, match="cannot be listed: permission denied"):
        open_dataset(tmp_path / "b18")


def test_an_unreadable_brats2015_contrast_folder_is_named(tmp_path, monkeypatch):
    written = make_brats2015_tree(tmp_path, 1, 0)
    (cid,) = written
    flair_dir = written[cid].files["flair"].parent
    _deny_listing(monkeypatch, flair_dir)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    msg = str(ei.value)
    assert cid in msg and str(flair_dir) in msg and "cannot list the flair image folder (permission denied)" in msg


# ---------------------------------------------------------------------------- subsets of contrasts
def _drop_contrasts(written, contrasts, cases=None):
    """Delete these contrasts' files (a BRATS 2015 contrast: its whole folder) of some cases (default all)."""
    import shutil

    for cid in cases or list(written):
        for c in contrasts:
            path = written[cid].files.pop(c)
            if path.suffix == ".mha":
                shutil.rmtree(path.parent)
            else:
                path.unlink()


@pytest.mark.parametrize("layout", ["brats2015", "brats2018", "brats2023"])
def test_tree_with_flair_and_t1c_only_is_listed_with_what_it_has(tmp_path, layout):
    written = MAKERS[layout](tmp_path)
    _drop_contrasts(written, ("t1", "t2"))
    ds = open_dataset(tmp_path)
    assert ds.layout == layout and ds.case_ids == sorted(written)
    for case in ds:
        assert case.contrasts == ["t1c", "flair"] and set(case.files) == {"t1c", "flair", "label"}
        arrays = load_case(case)
        assert list(arrays.images) == ["t1c", "flair"]
        np.testing.assert_array_equal(arrays.images["flair"], written[case.case_id].images["flair"])
    n = len(written)
    summary = summarize_dataset(ds, deep=True)
    assert summary["contrasts"] == {"t1": {"cases": 0, "with_label": 0}, "t1c": {"cases": n, "with_label": n},
                                    "t2": {"cases": 0, "with_label": 0}, "flair": {"cases": n, "with_label": n}}
    assert summary["bad"] == [] and summary["n_problems"] == 0
    text = format_summary(summary)
    assert f"t1 0 cases (0 with a label); t1c {n} cases ({n} with a label)" in text and "no case has t1, t2" in text
    good, bad = validate_dataset(ds)
    assert good == sorted(written) and bad == []
    with pytest.raises(DataError, match="has no t1 or t2 image: the run uses t1, t1c, t2, flair; it has t1c, flair"):
        validate_dataset(ds, contrasts=CONTRASTS)


def test_contrasts_missing_per_case_are_counted(tmp_path):
    written = make_brats2018_tree(tmp_path, 4)
    ids = sorted(written)
    _drop_contrasts(written, ("t1",), [ids[0], ids[1]])
    _drop_contrasts(written, ("t2",), [ids[1]])
    written[ids[2]].files["label"].unlink()
    ds = open_dataset(tmp_path, require_label=False)
    assert [c.contrasts for c in ds] == [["t1c", "t2", "flair"], ["t1c", "flair"], list(CONTRASTS), list(CONTRASTS)]
    counts = summarize_dataset(ds)["contrasts"]
    # t1: ids 2 and 3 (of which 3 has a label); t2: all but 1 (0 and 3 labelled); t1c, flair: all 4 (3 labelled)
    assert counts == {"t1": {"cases": 2, "with_label": 1}, "t1c": {"cases": 4, "with_label": 3},
                      "t2": {"cases": 3, "with_label": 2}, "flair": {"cases": 4, "with_label": 3}}
    assert ds.usable(("flair",)).case_ids == ids
    with pytest.warns(BadCaseWarning, match=f"(?s)skipped 2 cases.*{ids[0]}: has no t1 image"):
        assert ds.usable(("t1", "flair"), on_bad_case="skip").case_ids == ids[2:]
    with pytest.warns(BadCaseWarning):
        only = ds.usable(("flair", "t1c"), need_label=True, on_bad_case="skip", user="training")
    assert only.case_ids == [ids[0], ids[1], ids[3]]
    assert only.skipped == [(ids[2], f"case {ids[2]}: has no label: training needs one for every case it uses")]
    with pytest.raises(DataError) as ei:
        ds.usable(("t1", "t2"), need_label=True, user="training")
    msg = str(ei.value)
    assert msg.startswith(f"case {ids[0]}: has no t1 image: training uses t1, t2; it has t1c, t2, flair")
    assert f"2 more cases cannot be used either: {ids[1]}, {ids[2]}" in msg


def test_msd_cases_always_have_the_four_contrasts(tmp_path):
    make_msd_tree(tmp_path, 2)
    ds = open_dataset(tmp_path)
    assert all(c.contrasts == list(CONTRASTS) for c in ds)
    assert summarize_dataset(ds)["contrasts"]["t2"] == {"cases": 2, "with_label": 2}


def test_unlabelled_brats2023_release_is_listed_by_the_profile_opener(tmp_path):
    """The BraTS validation/test releases ship no -seg file: the commands' opener lists them."""
    from segan_lib.config import load_profile
    from segan_lib.data.profile_data import open_profile_dataset

    make_brats2023_tree(tmp_path, 2, with_label=False)
    profile = load_profile("smoke", [f'data.root="{tmp_path}"'])
    ds = open_profile_dataset(profile)
    assert len(ds) == 2 and not any(c.has_label for c in ds)
    summary = summarize_dataset(ds, deep=True)
    assert summary["n_with_label"] == 0 and summary["label_values"] == [] and summary["n_problems"] == 0
    with pytest.raises(DataError, match="has no label: training needs one"):
        ds.usable(("flair",), need_label=True, user="training")


# ---------------------------------------------------------------------------- schemes, masks, float labels
def _case(case_id, files, scheme=None, layout="pattern"):
    from segan_lib.data.layouts.common import _make_case

    case = _make_case(case_id, layout, files)
    case.scheme = scheme
    return case


def test_dataset_label_scheme_follows_the_cases(tmp_path):
    from segan_lib.data import Dataset

    w = make_brats2015_tree(tmp_path, 2, 0)
    cases = [_case(cid, x.files, scheme="brats2015") for cid, x in w.items()]
    ds = Dataset(tmp_path, "pattern", cases)
    assert ds.scheme == "brats2015" and ds.label_scheme is LABEL_SCHEMES["brats2015"]
    arrays = load_case(cases[0])
    assert arrays.scheme == "brats2015" and set(arrays.regions()) == {"wt", "tc", "et"}
    summary = summarize_dataset(ds, deep=True)
    assert summary["label_scheme"] == [0, 1, 2, 3, 4] and summary["bad"] == []
    cases[1].scheme = "brats2023"
    with pytest.raises(DataError, match="different label schemes"):
        Dataset(tmp_path, "pattern", cases).label_scheme
    # the label is checked against the case's scheme: BRATS 2015's 4 is no BraTS 2023 label
    with pytest.raises(DataError, match=r"unexpected label values \[4\]: the brats2023 label scheme allows"):
        load_case(cases[1])


def test_brain_mask_named_by_the_layout_is_loaded_and_checked(tmp_path):
    w = make_brats2018_tree(tmp_path, 1)
    (cid, x), = w.items()
    mask = np.zeros((12, 10, 8), np.float64)
    mask[2:10, 2:8, 1:7] = 0.99999997  # as the real BRATS 2015 derivative stores it (float64, just under 1)
    files = dict(x.files, mask=write_nifti(tmp_path / "mask.nii.gz", mask, x.affine))
    case = _case(cid, files, layout="brats2018")
    assert case.has_mask and case.contrasts == list(CONTRASTS)
    arrays = load_case(case)
    np.testing.assert_array_equal(arrays.brain, mask > 0)
    assert arrays.brain.dtype == bool and int(arrays.brain.sum()) == 8 * 6 * 6
    assert load_case(case, with_mask=False).brain is None
    no_brain = -(mask > 0).astype(np.float32)  # values 0 and -1: an image, but no voxel above 0
    empty = _case(cid, dict(files, mask=write_nifti(tmp_path / "empty.nii.gz", no_brain, x.affine)), layout="brats2018")
    with pytest.raises(DataError, match="brain mask is empty") as ei:
        load_case(empty)
    assert "empty.nii.gz" in str(ei.value)
    small = _case(cid, dict(files, mask=write_nifti(tmp_path / "small.nii.gz", mask[:6], x.affine)), layout="brats2018")
    with pytest.raises(DataError, match="different shapes.*small.nii.gz: 6x10x8"):
        load_case(small)


def _zscored(shape, rng):
    """A z-scored scan: a box brain z-scored inside, the air at the minimum (below every brain voxel)."""
    brain = np.zeros(shape, bool)
    brain[2:-2, 2:-2, 1:-1] = True
    raw = rng.normal(100.0, 15.0, shape)
    z = (raw - raw[brain].mean()) / raw[brain].std()
    image = np.full(shape, z[brain].min() - 0.05, np.float32)
    image[brain] = z[brain]
    return image, brain


def test_zscored_images_with_float_labels(tmp_path):
    """Intensity-normalised derivatives: negative images, the air at the minimum, labels stored as 0.0..4.0."""
    rng = np.random.default_rng(5)
    affine = nifti_affine()
    flair, brain = _zscored((12, 10, 8), rng)
    t1c, _ = _zscored((12, 10, 8), rng)
    label = np.zeros((12, 10, 8), np.float32)
    label[4:8, 3:7, 3:5] = [[[1.0, 4.0]]]  # float labels holding exact integers
    label[5, 4, 3] = 3.0
    label[4, 3, 3] = 2.0
    files = {"flair": write_nifti(tmp_path / "Flair_z.nii.gz", flair, affine),
             "t1c": write_nifti(tmp_path / "T1c_z.nii.gz", t1c, affine),
             "label": write_nifti(tmp_path / "OT.nii.gz", label, affine),
             "mask": write_nifti(tmp_path / "brainmask.nii.gz", brain.astype(np.float64), affine)}
    arrays = load_case(_case("z1", files, scheme="brats2015"))
    assert np.issubdtype(arrays.label.dtype, np.integer) and set(np.unique(arrays.label)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(arrays.label, label.astype(int))
    assert arrays.images["flair"].min() < 0 and list(arrays.images) == ["t1c", "flair"]
    half = label.copy()
    half[5, 5, 4] = 2.5
    files["label"] = write_nifti(tmp_path / "OT_bad.nii.gz", half, affine)
    with pytest.raises(DataError) as ei:
        load_case(_case("z1", files, scheme="brats2015"))
    assert "OT_bad.nii.gz" in str(ei.value) and "non-integer values (e.g. 2.5" in str(ei.value)


def test_real_zscored_brats2015_cases(real_brats_root):
    """The two real BRATS 2015 derivatives (FLAIR and T1c only, z-scored, the air at the minimum, float labels,
    a brain mask): read, checked, and preprocessed with the brain found as the mask says."""
    from segan_lib.config import PreprocessConfig
    from segan_lib.data.preprocess import background_value, brain_centre, off_background, preprocess_arrays

    folders = sorted(p for p in real_brats_root.iterdir() if p.is_dir())
    assert len(folders) == 2
    for folder in folders:
        files = {"flair": folder / "Flair_subtrMeanDivStd.nii.gz", "t1c": folder / "T1c_subtrMeanDivStd.nii.gz",
                 "label": folder / "OTMultiClass.nii.gz", "mask": folder / "brainmask.nii.gz"}
        case = _case(folder.name, files, scheme="brats2015")
        arrays = load_case(case)
        assert arrays.shape == (240, 240, 155) and list(arrays.images) == ["t1c", "flair"]
        assert np.issubdtype(arrays.label.dtype, np.integer) and set(np.unique(arrays.label)) == {0, 1, 2, 3, 4}
        flair = arrays.images["flair"]
        bg = background_value(flair)
        assert bg == float(flair.min()) < 0  # measured: -3.16 and -5.34, held by 81% and 86% of the voxels
        # the mask and the air agree exactly on FLAIR (measured: identical voxel sets)
        np.testing.assert_array_equal(off_background(flair), arrays.brain)
        assert brain_centre(arrays.images, arrays.brain) == brain_centre(arrays.images)
        assert brain_centre(arrays.images)[1] > 130  # the brain sits off the volume's centre 119.5 on y
        cfg = PreprocessConfig(crop_shape=(180, 180, 128), percentile_region="brain")
        pre = preprocess_arrays(arrays.images, arrays.label, arrays.spacing, cfg, ["flair", "t1c"],
                                brain_mask=arrays.brain)
        lo, hi = pre.record.clip_range["flair"]
        inside = flair[30:210, 30:210, 13:141][arrays.brain[30:210, 30:210, 13:141]]
        want = np.percentile(inside, (2, 98))
        assert (lo, hi) == pytest.approx(tuple(want), rel=1e-6)
        assert lo > bg  # not the air: the old "non-zero voxels" rule took every voxel, so lo was the minimum
        assert pre.images.min() == 0.0 and pre.images.max() == 1.0
        air = ~arrays.brain[30:210, 30:210, 13:141]
        assert (pre.images[0][air] == 0).all()
