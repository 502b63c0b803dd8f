"""Every kind of bad input gives a DataError naming the case and the file and saying what is wrong."""
from __future__ import annotations

import gzip
import json
import shutil
import warnings

import numpy as np
import pytest

try:
    from tests.layout_trees import (
        make_brats2015_tree, make_brats2018_tree, make_brats2023_tree, make_msd_tree, nifti_affine,
        tumour_label, write_mha, write_nifti,
    )
except ImportError:  # tests/ itself on sys.path
    from layout_trees import (  # type: ignore[no-redef]
        make_brats2015_tree, make_brats2018_tree, make_brats2023_tree, make_msd_tree, nifti_affine,
        tumour_label, write_mha, write_nifti,
    )

from segan_lib.errors import DataError, SeganError
from segan_lib.data import (
    BadCaseWarning, clear_cache, detect_layout, load_case, open_dataset, read_grades_csv, read_volume,
    summarize_dataset, validate_dataset,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def check(exc_info, *, case_id=None, file=None, says=()):
    """The error is a DataError whose one-line message names the case, the file and the problem."""
    err = exc_info.value
    assert isinstance(err, DataError) and isinstance(err, SeganError)
    msg = str(err)
    if case_id is not None:
        assert case_id in msg, msg
        assert err.case_id == case_id
    if file is not None:
        assert file in msg, msg
    for word in (says if isinstance(says, (list, tuple)) else [says]):
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return msg


def _one_2018(tmp_path, n=2, **kw):
    written = make_brats2018_tree(tmp_path, n, **kw)
    cid = sorted(written)[0]
    return written, cid, written[cid]


# ---------------------------------------------------------------------------- missing files


def test_missing_contrast_file_brats2018(tmp_path):
    """A case without one contrast is listed with the others; asking for the missing one names it."""
    _, cid, w = _one_2018(tmp_path)
    w.files["t1c"].unlink()
    ds = open_dataset(tmp_path)
    assert ds.get(cid).contrasts == ["t1", "t2", "flair"] and "t1c" not in ds.get(cid).files
    assert load_case(ds.get(cid)).images.keys() == {"t1", "t2", "flair"}  # by default: what the case has
    with pytest.raises(DataError) as ei:
        load_case(ds.get(cid), contrasts=("t1c", "flair"))
    check(ei, case_id=cid, says="has no t1c image: the run uses t1c, flair; it has t1, t2, flair")
    with pytest.raises(DataError) as ei:
        ds.usable(("t1", "t1c"), user="training")
    check(ei, case_id=cid, says=["has no t1c image: training uses t1, t1c; it has t1, t2, flair",
                                 "--on-bad-case skip"])
    with pytest.warns(BadCaseWarning, match=cid):
        kept = ds.usable(("t1", "t1c"), on_bad_case="skip")
    assert cid not in kept and len(kept) == 1 and kept.skipped[0][0] == cid
    assert ds.usable(("flair",)).case_ids == ds.case_ids  # a run that does not need T1c uses every case


def test_missing_contrast_file_brats2023_and_2015(tmp_path):
    w23 = make_brats2023_tree(tmp_path / "b23", 2)
    cid = sorted(w23)[1]
    w23[cid].files["flair"].unlink()
    ds = open_dataset(tmp_path / "b23")
    assert ds.get(cid).contrasts == ["t1", "t1c", "t2"] and ds[0].contrasts == ["t1", "t1c", "t2", "flair"]
    with pytest.raises(DataError) as ei:
        load_case(ds.get(cid), contrasts=("flair",))
    check(ei, case_id=cid, says="has no flair image: the run uses flair; it has t1, t1c, t2")

    w15 = make_brats2015_tree(tmp_path / "b15", 1, 1)
    cid = sorted(w15)[0]
    shutil.rmtree(w15[cid].files["t1c"].parent)
    ds = open_dataset(tmp_path / "b15")
    assert ds.get(cid).contrasts == ["t1", "t2", "flair"]
    with pytest.raises(DataError) as ei:
        load_case(ds.get(cid), contrasts=("t1", "t1c"))
    check(ei, case_id=cid, says="has no t1c image")


def test_case_with_no_image_at_all_is_a_listing_problem(tmp_path):
    """A folder holding only a label is of no use to any step: dropped at listing, named."""
    w = make_brats2023_tree(tmp_path / "b23", 2)
    cid = sorted(w)[0]
    for c in ("t1", "t1c", "t2", "flair"):
        w[cid].files[c].unlink()
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path / "b23")
    check(ei, case_id=cid, says=["no image file of any contrast", f"{cid}-{{t1n,t1c,t2w,t2f}}.nii.gz"])
    w15 = make_brats2015_tree(tmp_path / "b15", 1, 0)
    (cid,) = w15
    for c in ("t1", "t1c", "t2", "flair"):
        shutil.rmtree(w15[cid].files[c].parent)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path / "b15")
    check(ei, case_id=cid, says="no image file of any contrast")


def test_missing_mha_inside_contrast_folder(tmp_path):
    w15 = make_brats2015_tree(tmp_path, 1, 0)
    (cid,) = w15
    w15[cid].files["t2"].unlink()
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id=cid, file=w15[cid].files["t2"].parent.name, says=["missing", ".mha"])


def test_missing_label_file(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    w.files["label"].unlink()
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id=cid, file=f"{cid}_seg.nii.gz", says="missing label")
    # fine without labels
    assert not open_dataset(tmp_path, require_label=False).get(cid).has_label


def test_missing_label_file_msd(tmp_path):
    w = make_msd_tree(tmp_path, 2)
    w["BRATS_002"].files["label"].unlink()
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id="BRATS_002", file="labelsTr/BRATS_002.nii.gz", says="missing label")


def test_file_deleted_after_listing(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    ds = open_dataset(tmp_path)
    w.files["t2"].unlink()
    with pytest.raises(DataError) as ei:
        load_case(ds.get(cid))
    check(ei, case_id=cid, file=w.files["t2"].name, says="missing")


# ---------------------------------------------------------------------------- damaged files


def test_truncated_nii_gz(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    path = w.files["flair"]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    ds = open_dataset(tmp_path)  # listing does not notice
    with pytest.raises(DataError) as ei:
        load_case(ds.get(cid))
    check(ei, case_id=cid, file=path.name, says="truncated or corrupt")


def test_truncated_header_and_garbage_nii_gz(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(gzip.compress(b"\0" * 1000)[:20])
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="c7")
    check(ei, case_id="c7", file="x.nii.gz", says="truncated or corrupt")
    path.write_bytes(b"this is not a gzip stream at all" * 20)
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="c7")
    msg = check(ei, case_id="c7", file="x.nii.gz", says=["not gzip-compressed", "not a NIfTI file either"])
    assert "truncated or corrupt" not in msg


def test_an_uncompressed_nifti_named_nii_gz_is_read_by_its_content(tmp_path):
    import nibabel as nib

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # not constant: a valid image
    plain = tmp_path / "scan.nii"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0])), str(plain))
    assert plain.read_bytes()[:2] != b"\x1f\x8b"
    mislabelled = tmp_path / "scan.nii.gz"
    plain.rename(mislabelled)  # what a converter that forgot to compress leaves behind
    vol = read_volume(mislabelled, case_id="c1")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == (2.0, 3.0, 4.0) and vol.header["format"] == "nifti1"
    # the other way round: a gzip stream named .nii
    named_nii = tmp_path / "other.nii"
    named_nii.write_bytes(gzip.compress(mislabelled.read_bytes()))
    np.testing.assert_array_equal(read_volume(named_nii, case_id="c1").data, data)
    # uncompressed and cut short: says both what the file is and that it is truncated
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(mislabelled.read_bytes()[:400])  # header (352 bytes) and part of the voxels
    with pytest.raises(DataError) as ei:
        read_volume(cut, case_id="c1")
    check(ei, case_id="c1", file="cut.nii.gz", says=["not gzip-compressed", "truncated"])


def test_truncated_msd_4d_file(tmp_path):
    w = make_msd_tree(tmp_path, 1)
    path = w["BRATS_001"].files["t1"]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id="BRATS_001", file="BRATS_001.nii.gz", says="truncated or corrupt")


def test_corrupt_mha(tmp_path):
    w15 = make_brats2015_tree(tmp_path, 1, 0)
    (cid,) = w15
    path = w15[cid].files["flair"]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 200])  # compressed data cut short
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id=cid, file=path.name, says="truncated or corrupt")
    path.write_bytes(b"\x00\x01garbage that is no MetaImage header\n" * 5)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id=cid, file=path.name, says="truncated or corrupt")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"x")
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="c1")
    check(ei, case_id="c1", file="scan.png", says="unsupported file type")


# ---------------------------------------------------------------------------- inconsistent cases


def test_contrasts_of_different_shapes(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    bigger = np.random.default_rng(0).normal(100, 10, (12, 10, 9)).astype(np.float32)
    write_nifti(w.files["flair"], bigger, w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    msg = check(ei, case_id=cid, file=f"{cid}_flair.nii.gz", says=["different shapes", "12x10x9", "12x10x8"])
    assert f"{cid}_t1.nii.gz: 12x10x8" in msg and f"{cid}_flair.nii.gz: 12x10x9" in msg


def test_label_of_different_shape(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    write_nifti(w.files["label"], tumour_label((12, 10, 7)), w.affine, dtype=np.uint8)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_seg.nii.gz", says=["different shapes", "12x10x7"])


def test_different_affines(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    shifted = w.affine.copy()
    shifted[0, 3] += 0.5
    write_nifti(w.files["t2"], w.images["t2"], shifted)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_t2.nii.gz", says=["different geometry", "affine", "0.5"])


def test_affine_difference_below_tolerance_is_fine(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    nudged = w.affine.copy()
    nudged[0, 3] += 1e-4
    write_nifti(w.files["t2"], w.images["t2"], nudged)
    load_case(open_dataset(tmp_path).get(cid))


def test_label_values_outside_the_scheme(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    label = w.label.copy()
    label[label == 4] = 3  # a BraTS 2023 value in a BraTS 2018 set
    write_nifti(w.files["label"], label, w.affine, dtype=np.uint8)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_seg.nii.gz", says=["unexpected label values [3]", "0, 1, 2, 4"])


def test_negative_label_value(tmp_path):
    w = make_brats2023_tree(tmp_path, 1)
    (cid,) = w
    label = w[cid].label.copy()
    label[0, 0, 0] = -1
    write_nifti(w[cid].files["label"], label, w[cid].affine, dtype=np.int16)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id=cid, file=f"{cid}-seg.nii.gz", says="unexpected label values [-1]")


def test_non_integer_label_values(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    label = w.label.astype(np.float32)
    label[label == 2] = 1.5
    write_nifti(w.files["label"], label, w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_seg.nii.gz", says=["non-integer", "1.5"])


# ---------------------------------------------------------------------------- bad voxel values


def test_nan_and_inf_voxels(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    img = w.images["t1"].copy()
    img[0, 0, 0] = np.nan
    img[1, 0, 0] = np.nan
    img[2, 0, 0] = np.inf
    write_nifti(w.files["t1"], img, w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_t1.nii.gz", says=["2 NaN", "1 Inf"])


def test_nan_in_label(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    label = w.label.astype(np.float32)
    label[0, 0, 0] = np.nan
    write_nifti(w.files["label"], label, w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_seg.nii.gz", says=["1 NaN", "integers"])


def test_all_zero_image(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    write_nifti(w.files["t2"], np.zeros((12, 10, 8), np.float32), w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_t2.nii.gz", says=["all-zero", "0"])


def test_constant_image(tmp_path):
    w15 = make_brats2015_tree(tmp_path, 1, 0)
    (cid,) = w15
    write_mha(w15[cid].files["t1"], np.full((12, 10, 8), 7.5, np.float32), origin=(0, -239, 0))
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id=cid, file=w15[cid].files["t1"].name, says=["constant", "7.5"])


def test_all_zero_label_is_not_an_image_error(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    write_nifti(w.files["label"], np.zeros((12, 10, 8), np.uint8), w.affine)
    arrays = load_case(open_dataset(tmp_path).get(cid))
    assert arrays.label.max() == 0


# ---------------------------------------------------------------------------- dimensions


def test_4d_file_where_3d_expected(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    data4 = np.stack([w.images["t1"]] * 2, axis=-1)
    write_nifti(w.files["t1"], data4, w.affine)
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path).get(cid))
    check(ei, case_id=cid, file=f"{cid}_t1.nii.gz", says=["4-D", "12x10x8x2", "expected a 3-D"])


def test_3d_msd_file_and_missing_channel(tmp_path):
    w = make_msd_tree(tmp_path, 1)
    path = w["BRATS_001"].files["t1"]
    write_nifti(path, w["BRATS_001"].images["t1"], np.eye(4))
    with pytest.raises(DataError) as ei:
        load_case(open_dataset(tmp_path)[0])
    check(ei, case_id="BRATS_001", file="BRATS_001.nii.gz", says=["3-D", "4-D"])
    data4 = np.stack([w["BRATS_001"].images[c] for c in ("flair", "t1")], axis=-1)
    write_nifti(path, data4, np.eye(4))
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="BRATS_001", channel=3)
    check(ei, case_id="BRATS_001", file="BRATS_001.nii.gz", says=["2 channels", "channel 3"])


def test_2d_file(tmp_path):
    path = write_nifti(tmp_path / "flat.nii.gz", np.random.default_rng(0).normal(size=(5, 4)), np.eye(4))
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="c2")
    check(ei, case_id="c2", file="flat.nii.gz", says="2-D")


# ---------------------------------------------------------------------------- folders


def _expects_every_layout(msg):
    for key in ("brats2015", "brats2018", "brats2023", "msd"):
        assert key in msg
    assert "t1ce" in msg and "t2f" in msg and "imagesTr" in msg and "VSD.Brain" in msg


def test_empty_folder(tmp_path):
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    msg = check(ei, file=str(tmp_path), says=["no BraTS layout recognised", "empty"])
    _expects_every_layout(msg)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as ei:
        detect_layout(tmp_path / "nowhere")
    check(ei, file="nowhere", says=["no BraTS layout recognised", "does not exist"])
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path / "nowhere", layout="brats2018")
    check(ei, file="nowhere", says="does not exist")


def test_unrecognised_folder(tmp_path):
    (tmp_path / "patient1").mkdir()
    (tmp_path / "patient1" / "scan.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    msg = check(ei, file=str(tmp_path), says="no BraTS layout recognised")
    _expects_every_layout(msg)


def test_two_layouts_in_one_folder(tmp_path):
    make_brats2018_tree(tmp_path, 1)
    make_brats2023_tree(tmp_path, 1)
    with pytest.raises(DataError) as ei:
        detect_layout(tmp_path)
    check(ei, says=["several BraTS layouts", "brats2018", "brats2023"])
    # an explicit layout picks one
    assert open_dataset(tmp_path, layout="brats2023").layout == "brats2023"


def test_explicit_layout_that_does_not_fit(tmp_path):
    make_brats2018_tree(tmp_path, 1)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path, layout="brats2023")
    check(ei, says=["no BraTS 2023", "t2f", "brats2023"])
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path, layout="brats2099")
    check(ei, says=["unknown layout", "brats2018"])


def test_duplicate_case_ids_in_hgg_and_lgg(tmp_path):
    w = make_brats2018_tree(tmp_path, 2, grades_csv=False, grade_folders=True)
    hgg = sorted(c for c, x in w.items() if x.grade == "HGG")[0]
    src = w[hgg].files["t1"].parent
    shutil.copytree(src, tmp_path / "LGG" / hgg)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    msg = check(ei, case_id=hgg, says="duplicate case id")
    assert str(src) in msg and str(tmp_path / "LGG" / hgg) in msg


def test_duplicate_case_ids_two_files_one_id(tmp_path):
    w = make_msd_tree(tmp_path, 2)
    gz = w["BRATS_001"].files["t1"]
    plain = gz.with_name("BRATS_001.nii")
    import nibabel as nib

    nib.save(nib.load(str(gz)), str(plain))
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    msg = check(ei, case_id="BRATS_001", says="duplicate case id")
    assert str(gz) in msg and str(plain) in msg


def test_two_files_for_one_contrast(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    shutil.copy(w.files["t2"], w.files["t2"].parent / "other_t2.nii.gz")
    # the file named after the folder wins
    assert open_dataset(tmp_path).get(cid).files["t2"] == w.files["t2"]
    w.files["t2"].rename(w.files["t2"].parent / "third_t2.nii.gz")
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id=cid, says=["several t2 image files", "other_t2.nii.gz", "third_t2.nii.gz"])


def test_msd_dataset_json_of_another_task(tmp_path):
    make_msd_tree(tmp_path, 1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["modality"] = {"0": "MRI"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, file="dataset.json", says=["modality", "not a brain tumour data set"])


def test_msd_test_folder_needs_require_label_false(tmp_path):
    make_msd_tree(tmp_path, 0, n_test=1)
    shutil.rmtree(tmp_path / "imagesTr", ignore_errors=True)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, file="imagesTs", says="require_label=False")
    assert len(open_dataset(tmp_path, require_label=False)) == 1


# ---------------------------------------------------------------------------- grades


def test_bad_grades_csv(tmp_path):
    w = make_brats2023_tree(tmp_path, 2)
    cid = sorted(w)[0]
    (tmp_path / "grades.csv").write_text(f"case_id,grade\n{cid},GBM\n")
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id=cid, file="grades.csv", says=["line 2", "GBM", "not HGG or LGG"])
    (tmp_path / "grades.csv").write_text(f"id,who\n{cid},HGG\n")
    with pytest.raises(DataError) as ei:
        read_grades_csv(tmp_path / "grades.csv")
    check(ei, file="grades.csv", says="case_id,grade")
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path, grades=tmp_path / "none.csv")
    check(ei, file="none.csv", says="missing")


# ---------------------------------------------------------------------------- skip mode


def test_skip_mode_at_listing_records_and_warns(tmp_path):
    written = make_brats2018_tree(tmp_path, 4)
    ids = sorted(written)
    for c in ("t1", "t1c", "t2", "flair"):  # a missing contrast is no listing problem; no image at all is
        written[ids[1]].files[c].unlink()
    written[ids[3]].files["label"].unlink()
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    check(ei, case_id=ids[1], says=["no image file", "1 more problem"])
    with pytest.warns(BadCaseWarning) as rec:
        ds = open_dataset(tmp_path, on_bad_case="skip")
    assert ds.case_ids == [ids[0], ids[2]]
    assert [k for k, _ in ds.skipped] == [ids[1], ids[3]]
    assert "no image file" in ds.skipped[0][1] and f"{ids[3]}_seg.nii.gz" in ds.skipped[1][1]
    text = str(rec[0].message)
    assert "skipped 2 cases" in text and ids[1] in text and ids[3] in text
    with pytest.raises(DataError, match="skipped"):
        ds.get(ids[1])
    assert summarize_dataset(ds)["skipped"][0][0] == ids[1]


def test_skip_mode_of_duplicates(tmp_path):
    w = make_brats2018_tree(tmp_path, 2, grades_csv=False, grade_folders=True)
    hgg = sorted(c for c, x in w.items() if x.grade == "HGG")[0]
    shutil.copytree(w[hgg].files["t1"].parent, tmp_path / "LGG" / hgg)
    with pytest.warns(BadCaseWarning, match="duplicate case id"):
        ds = open_dataset(tmp_path, on_bad_case="skip")
    assert hgg not in ds and len(ds) == 1 and ds.skipped[0][0] == hgg


def test_skip_mode_when_every_case_is_bad(tmp_path):
    w = make_brats2023_tree(tmp_path, 2)
    for x in w.values():
        x.files["label"].unlink()
    with pytest.warns(BadCaseWarning), pytest.raises(DataError) as ei:
        open_dataset(tmp_path, on_bad_case="skip")
    check(ei, says=["no usable case", "all 2 were skipped"])


def test_validate_dataset_error_and_skip(tmp_path):
    written = make_brats2018_tree(tmp_path, 3)
    ids = sorted(written)
    path = written[ids[1]].files["t2"]
    path.write_bytes(path.read_bytes()[:100])
    label = written[ids[2]].label.copy()
    label[0, 0, 0] = 7
    write_nifti(written[ids[2]].files["label"], label, written[ids[2]].affine, dtype=np.uint8)
    ds = open_dataset(tmp_path)
    with pytest.raises(DataError) as ei:
        validate_dataset(ds)
    check(ei, case_id=ids[1], file=path.name, says="truncated or corrupt")
    with pytest.warns(BadCaseWarning) as rec:
        good, bad = validate_dataset(ds, on_bad_case="skip")
    assert good == [ids[0]]
    assert [b[0] for b in bad] == [ids[1], ids[2]]
    assert "truncated or corrupt" in bad[0][1] and "unexpected label values [7]" in bad[1][1]
    assert ids[1] in str(rec[0].message) and ids[2] in str(rec[0].message)
    # the summary lists bad cases instead of failing
    s = summarize_dataset(ds, deep=True)
    assert [b[0] for b in s["bad"]] == [ids[1], ids[2]] and s["shapes"] == {"12x10x8": 1}


def test_load_case_always_raises_even_in_skip_datasets(tmp_path):
    _, cid, w = _one_2018(tmp_path)
    write_nifti(w.files["t1"], np.zeros((12, 10, 8), np.float32), w.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_dataset(tmp_path, on_bad_case="skip")  # nothing wrong in the names
    with pytest.raises(DataError):
        load_case(ds.get(cid))


def test_bad_on_bad_case_value(tmp_path):
    make_brats2018_tree(tmp_path, 1)
    with pytest.raises(ValueError):
        open_dataset(tmp_path, on_bad_case="ignore")


def test_affine_with_nan(tmp_path):
    aff = nifti_affine()
    aff[0, 3] = np.nan
    import nibabel as nib

    img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(12, 10, 8)).astype(np.float32), None)
    hdr = img.header
    hdr.set_qform(None, code=0)
    hdr.set_sform(aff, code=1)
    path = tmp_path / "nanaff.nii.gz"
    nib.save(img, str(path))
    with pytest.raises(DataError) as ei:
        read_volume(path, case_id="c3")
    check(ei, case_id="c3", file="nanaff.nii.gz", says="NaN/Inf")
