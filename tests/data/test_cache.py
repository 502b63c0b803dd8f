"""The preprocessed cache: keyed by settings, incremental, atomic, invalidated by changed sources."""
import json
import os
import warnings

import numpy as np
import pytest

from segan_lib.data import cache as cache_mod
from segan_lib.data.cache import build_cache, cache_folder, open_cache
from segan_lib.config import PreprocessConfig
from segan_lib.errors import DataError
from segan_lib.data import open_dataset
from segan_lib.data.preprocess import preprocess_arrays
from tests.layout_trees import make_brats2018_tree, write_nifti

CFG = PreprocessConfig(spacing_mm=1.0, crop_shape=(8, 8, 6), percentiles=(2, 98))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))
    root = tmp_path / "brats"
    written = make_brats2018_tree(root, 4)
    return root, written


def test_cache_holds_the_preprocessed_arrays(workspace):
    root, written = workspace
    cache = build_cache(open_dataset(root), CFG, log=None)
    assert sorted(cache.case_ids) == sorted(written)
    cid, wc = next(iter(written.items()))
    expected = preprocess_arrays(wc.images, wc.label, (1, 1, 1), CFG, ("t1", "t1c", "t2", "flair"))
    np.testing.assert_allclose(cache.images(cid), expected.images, atol=1e-3)  # float16 storage
    assert cache.images(cid).dtype == np.float16
    np.testing.assert_array_equal(cache.label(cid), expected.label)
    np.testing.assert_allclose(cache.images(cid, ["flair", "t1"])[0], expected.images[3], atol=1e-3)
    assert cache.record(cid) == expected.record
    assert cache.grade(cid) == wc.grade
    reopened = open_cache(root, CFG)
    assert reopened.case_ids == cache.case_ids
    assert not [p for p in cache.folder.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_other_settings_other_folder_and_no_stale_reuse(workspace):
    root, _ = workspace
    a = build_cache(open_dataset(root), CFG, log=None)
    other = PreprocessConfig(spacing_mm=1.0, crop_shape=(8, 8, 6), percentiles=(1, 99))
    assert cache_folder(root, other) != a.folder
    with pytest.raises(DataError, match="run `segan preprocess`"):
        open_cache(root, other)


def test_second_run_skips_done_cases_and_changed_sources_are_redone(workspace, monkeypatch):
    root, written = workspace
    build_cache(open_dataset(root), CFG, log=None)
    calls = []
    real = cache_mod._write_case
    monkeypatch.setattr(cache_mod, "_write_case", lambda *a, **k: calls.append(a[1].case_id) or real(*a, **k))
    build_cache(open_dataset(root), CFG, log=None)
    assert calls == []
    cid, wc = next(iter(written.items()))
    flair = wc.files["flair"]
    write_nifti(flair, wc.images["flair"] * 2 + 1, wc.affine)
    os.utime(flair, ns=(1, 1))  # a different modification time, whatever the clock did
    build_cache(open_dataset(root), CFG, log=None)
    assert calls == [cid]


def test_interrupted_case_is_not_trusted(workspace, monkeypatch):
    root, written = workspace
    cache = build_cache(open_dataset(root), CFG, log=None)
    cid = cache.case_ids[0]
    (cache.folder / f"{cid}.json").unlink()  # as if killed before the case's record was written
    calls = []
    real = cache_mod._write_case
    monkeypatch.setattr(cache_mod, "_write_case", lambda *a, **k: calls.append(a[1].case_id) or real(*a, **k))
    build_cache(open_dataset(root), CFG, log=None)
    assert calls == [cid]


def test_bad_case_error_or_skip(workspace):
    root, written = workspace
    cid, wc = sorted(written.items())[1]
    write_nifti(wc.files["t2"], np.zeros_like(wc.images["t2"]), wc.affine)  # an all-zero contrast
    with pytest.raises(DataError, match=f"case {cid}.*all-zero"):
        build_cache(open_dataset(root), CFG, log=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = build_cache(open_dataset(root), CFG, on_bad_case="skip", log=None)
    assert cid not in cache.case_ids and len(cache.case_ids) == 3
    assert cache.skipped[0][0] == cid and any(cid in str(w.message) for w in caught)
    index = json.loads((cache.folder / "index.json").read_text())
    assert index["skipped"][0][0] == cid


def test_two_workers_give_the_same_bytes(workspace):
    root, _ = workspace
    one = build_cache(open_dataset(root), CFG, log=None)
    blobs = {c: one.images(c).tobytes() for c in one.case_ids}
    for f in one.folder.glob("*.json"):
        f.unlink()
    two = build_cache(open_dataset(root), CFG, workers=2, log=None)
    assert {c: two.images(c).tobytes() for c in two.case_ids} == blobs


def test_worker_pools_never_fork():
    """Pools started after TensorFlow may be loaded use forkserver (Linux) or spawn: a forked child
    inherits other threads' locks held, and can hang."""
    import sys

    from segan_lib.data.workers import process_pool, start_method

    assert start_method() == ("forkserver" if sys.platform.startswith("linux") else "spawn")
    with process_pool(1) as pool:
        assert pool._mp_context.get_start_method() == start_method()
        assert list(pool.map(abs, [-2, 3])) == [2, 3]
    from pathlib import Path

    import segan_lib

    library = Path(segan_lib.__file__).parent
    direct = [str(p.relative_to(library)) for p in library.rglob("*.py") if p.name != "workers.py"
              and any(s in p.read_text() for s in ("ProcessPoolExecutor(", "multiprocessing.Pool(", '"fork"'))]
    assert direct == [], f"pools made without segan_lib.data.workers.process_pool: {direct}"


# ---------------------------------------------------------------------------- contrasts and labels per case
def _drop(written, contrasts, cases=None):
    for cid in cases or list(written):
        for c in contrasts:
            written[cid].files.pop(c).unlink()


def test_tree_without_t1_and_t2_caches_what_it_has(workspace):
    """A FLAIR + T1c tree: cached with those two; a FLAIR-only run finds its contrast, T1 is named missing."""
    from segan_lib.data import BadCaseWarning

    root, written = workspace
    _drop(written, ("t1", "t2"))
    ds = open_dataset(root)
    with pytest.raises(DataError) as ei:  # the profile's four contrasts: every case lacks two
        build_cache(ds, CFG, contrasts=("t1", "t1c", "t2", "flair"), log=None)
    cid = sorted(written)[0]
    msg = str(ei.value)
    assert msg.startswith(f"case {cid}: has no t1 or t2 image: preprocessing uses t1, t1c, t2, flair; it has t1c, flair")
    assert "3 more cases cannot be used either" in msg and "--contrasts" in msg
    with pytest.warns(BadCaseWarning), pytest.raises(DataError, match="no case left that preprocessing can use"):
        build_cache(ds, CFG, contrasts=("t1", "flair"), on_bad_case="skip", log=None)
    cache = build_cache(ds, CFG, contrasts=("flair",), log=None)
    assert cache.case_ids == sorted(written) and cache.contrasts == ("t1c", "flair")
    wc = written[cid]
    expected = preprocess_arrays(wc.images, wc.label, (1, 1, 1), CFG, ("t1c", "flair"))
    assert cache.case_contrasts(cid) == ("t1c", "flair") and cache.images(cid).shape == (2, 8, 8, 6)
    np.testing.assert_allclose(cache.images(cid, ["flair"])[0], expected.images[1], atol=1e-3)  # float16 storage
    with pytest.raises(DataError, match=f"case {cid}: has no t1 image in the cache"):
        cache.images(cid, ["t1", "flair"])
    assert cache.usable(cache.case_ids, ("flair",), user="training") == cache.case_ids
    with pytest.raises(DataError, match="has no t1 image: training uses t1, flair; it has t1c, flair"):
        cache.usable(cache.case_ids, ("t1", "flair"), user="training")
    # the same cache, reopened, for a FLAIR + T1c run
    again = open_cache(root, CFG)
    assert again.contrasts == ("t1c", "flair") and again.usable(again.case_ids, ("flair", "t1c")) == cache.case_ids


def test_one_case_without_a_contrast_other_runs_still_use_it(workspace):
    root, written = workspace
    cid = sorted(written)[2]
    _drop(written, ("t2",), [cid])
    cache = build_cache(open_dataset(root), CFG, log=None)  # no contrast required: every case, as it is
    assert cache.case_contrasts(cid) == ("t1", "t1c", "flair") and cache.contrasts == ("t1", "t1c", "flair")
    assert cache.usable(cache.case_ids, ("flair",)) == cache.case_ids
    with pytest.warns(UserWarning, match=f"{cid}: has no t2 image"):
        kept = cache.usable(cache.case_ids, ("t2", "flair"), on_bad_case="skip")
    assert kept == [c for c in cache.case_ids if c != cid]


def test_unlabelled_cases_are_cached_without_a_label(workspace):
    """BraTS validation releases: preprocessing needs no label; training and evaluation name the cases."""
    root, written = workspace
    ids = sorted(written)
    for cid in ids[1:3]:
        written[cid].files.pop("label").unlink()
    ds = open_dataset(root, require_label=False)
    cache = build_cache(ds, CFG, contrasts=("flair",), log=None)
    assert cache.case_ids == ids
    assert [cache.has_label(c) for c in ids] == [True, False, False, True]
    assert not (cache.folder / f"{ids[1]}.label.npy").exists() and cache.meta[ids[1]]["tumour_voxels"] is None
    with pytest.raises(DataError, match=f"case {ids[1]}: has no label"):
        cache.label(ids[1])
    with pytest.raises(DataError) as ei:
        cache.usable(ids, ("flair",), need_label=True, user="training")
    assert str(ei.value).startswith(f"case {ids[1]}: has no label: training needs one for every case it uses")
    assert f"1 more case cannot be used either: {ids[2]}" in str(ei.value)
    with pytest.warns(UserWarning):
        assert cache.usable(ids, ("flair",), need_label=True, on_bad_case="skip") == [ids[0], ids[3]]
    assert cache.usable(ids, ("flair",), need_label=False) == ids  # prediction-like use: no label needed
    # unchanged sources: a second build redoes nothing, also for the cases without a label file
    calls = []
    real = cache_mod._write_case
    cache_mod._write_case = lambda *a, **k: calls.append(a[1].case_id) or real(*a, **k)
    try:
        build_cache(open_dataset(root, require_label=False), CFG, log=None)
    finally:
        cache_mod._write_case = real
    assert calls == []


def test_cases_left_out_by_preprocessing_are_named_to_the_run(workspace):
    """A case preprocessing skipped is in the listing (and a split made from it) but not in the cache."""
    root, written = workspace
    cid = sorted(written)[1]
    _drop(written, ("flair",), [cid])
    with pytest.warns(UserWarning):
        cache = build_cache(open_dataset(root), CFG, contrasts=("flair",), on_bad_case="skip", log=None)
    assert cid not in cache.case_ids and cache.listed_ids == sorted(written)
    assert open_cache(root, CFG).listed_ids == sorted(written)
    with pytest.raises(DataError, match=f"case {cid}: was left out when preprocessing: case {cid}: has no flair"):
        cache.usable(cache.listed_ids, ("flair",))
    with pytest.warns(UserWarning, match="left out when preprocessing"):
        assert cache.usable(cache.listed_ids, ("flair",), on_bad_case="skip") == cache.case_ids


def test_zscored_case_with_a_brain_mask_is_cached_with_background_zero(tmp_path, monkeypatch):
    """Intensity-normalised scans: negative values, the air at the minimum; the brain mask the layout names
    gives the 'brain' percentiles."""
    from segan_lib.data import Dataset
    from segan_lib.data.layouts.common import _make_case
    from tests.layout_trees import nifti_affine

    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))
    rng = np.random.default_rng(7)
    shape, affine = (12, 10, 8), nifti_affine()
    brain = np.zeros(shape, bool)
    brain[2:10, 2:8, 1:7] = True
    raw = rng.normal(100.0, 15.0, shape)
    z = (raw - raw[brain].mean()) / raw[brain].std()
    flair = np.full(shape, z[brain].min() - 0.05, np.float32)
    flair[brain] = z[brain]
    label = np.zeros(shape, np.float32)
    label[4:7, 4:6, 3:5] = 4.0
    data = tmp_path / "z"
    files = {"flair": write_nifti(data / "c1" / "flair.nii.gz", flair, affine),
             "label": write_nifti(data / "c1" / "ot.nii.gz", label, affine),
             "mask": write_nifti(data / "c1" / "brainmask.nii.gz", brain.astype(np.float64), affine)}
    case = _make_case("c1", "pattern", files)
    case.scheme = "brats2015"
    cfg = PreprocessConfig(spacing_mm=1.0, crop_shape=(8, 12, 6), percentiles=(2, 98), percentile_region="brain",
                           cache_dtype="float32")
    cache = build_cache(Dataset(data, "pattern", [case]), cfg, contrasts=("flair",), log=None)
    lo, hi = cache.record("c1").clip_range["flair"]
    inside = flair[2:10, :, 1:7][brain[2:10, :, 1:7]]  # crop (2, -1, 1): x 2..9, y padded, z 1..6
    assert (lo, hi) == pytest.approx(tuple(np.percentile(inside, (2, 98))), rel=1e-6)
    images = np.asarray(cache.images("c1"))[0]
    assert (images[:, 0] == 0).all() and (images[:, -1] == 0).all()  # padding: the air, scaled to 0
    assert cache.meta["c1"]["scheme"] == "brats2015" and cache.meta["c1"]["has_mask"]
    assert cache.meta["c1"]["tumour_voxels"] == 3 * 2 * 2
