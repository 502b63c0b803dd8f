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
