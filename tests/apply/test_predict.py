"""Model bundles and prediction on new scans, with a tiny 1-epoch run on a 4 mm phantom (tests/apply/conftest.py)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def case_files(env, i=0):
    from segan_lib.data import open_dataset

    case = open_dataset(env["data"])[i]
    return {c: case.files[c] for c in ("t1", "t1c", "t2", "flair")}, case


def case_arrays(env, i=0):
    files, _ = case_files(env, i)
    out = {}
    for c, p in files.items():
        img = nib.load(str(p))
        out[c] = (np.asarray(img.dataobj, np.float32), img.affine.copy())
    return out


# ---------------------------------------------------------------- bundles
def test_training_writes_a_bundle_that_predicts_like_the_run(env, bundle):
    from segan_lib.evaluation.evaluate import load_run_models

    model, _ = load_run_models(env["run"])
    x = np.random.default_rng(0).random((2, 48, 32, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(bundle.segmentor.predict_on_batch(x)),
                                  np.asarray(model.segmentor.predict_on_batch(x)))
    card = bundle.card
    assert card["contrasts"] == ["t1", "t1c", "t2", "flair"] and card["regions"] == ["wt"]
    assert card["n_outputs"] == 1 and card["width"] == 4 and card["critic_input"] == "concat"
    assert card["preprocessing"]["spacing_mm"] == 4.0 and card["preprocessing"]["crop_shape"] == [48, 48, 16]
    assert card["preprocessing"]["percentiles"] == [2.0, 98.0] and card["threshold"] == 0.5
    assert card["training_data"]["name"] == env["data"].name
    splits = json.loads((env["data"] / "splits.json").read_text())
    assert card["training_data"]["cases_hash"] == splits["cases_hash"]
    assert card["training_data"]["label_scheme"] == "brats2018"  # the phantom's: what a 3-region mask is written in
    assert card["weights"]["sha256"] == bundle.sha256 and bundle.id == bundle.sha256[:12] and len(bundle.sha256) == 64
    assert set(card["versions"]) == {"segan_lib", "keras", "tensorflow", "numpy"} and card["seed"] == 0


def test_export_is_atomic_and_replaces_an_old_bundle(env, tmp_path):
    from segan_lib.cli import main

    out = tmp_path / "exported"
    assert main(["export", str(env["run"]), "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from an older export")
    (env["run"] / "eval_test.json").write_text(json.dumps({"metrics": {"dice": {"mean": 0.5}}, "n_subjects": 1}))
    try:
        assert main(["export", str(env["run"]), "--out", str(out)]) == 0
    finally:
        (env["run"] / "eval_test.json").unlink()
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "segmentor.onnx", "segmentor.weights.npz"]
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # no temporary folder left beside
    assert json.loads((out / "card.json").read_text())["test_metrics"]["metrics"]["dice"]["mean"] == 0.5


def test_damaged_bundle_is_a_clear_error_and_another_version_warns(bundle, tmp_path):
    from segan_lib.apply.bundle import BundleVersionWarning, load_bundle
    from segan_lib.errors import SeganError

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(bundle.path, dst)
        return dst

    b = copy("truncated")
    data = (b / "segmentor.weights.npz").read_bytes()
    (b / "segmentor.weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SeganError, match="segmentor.weights.npz"):
        load_bundle(b)
    b = copy("nocard")
    (b / "card.json").unlink()
    with pytest.raises(SeganError, match="card.json"):
        load_bundle(b)
    b = copy("badcard")
    (b / "card.json").write_text("{not json")
    with pytest.raises(SeganError, match="card.json"):
        load_bundle(b)
    b = copy("wider")
    card = json.loads((b / "card.json").read_text())
    card["width"] = 8
    (b / "card.json").write_text(json.dumps(card))
    with pytest.raises(SeganError, match="shape"):
        load_bundle(b)
    b = copy("older")
    card = json.loads((b / "card.json").read_text())
    card["versions"]["segan_lib"] = "0.0.1"
    (b / "card.json").write_text(json.dumps(card))
    with pytest.warns(BundleVersionWarning, match=r"0\.0\.1.*0\.1"):
        load_bundle(b)


# ---------------------------------------------------------------- one case
def test_predict_a_file_set_writes_the_mask_in_the_input_grid(env, bundle, tmp_path):
    from segan_lib.cli import main

    files, _ = case_files(env)
    ref = nib.load(str(files["t1"]))
    out, prob = tmp_path / "mask.nii.gz", tmp_path / "prob.nii.gz"
    args = ["predict", "--model", str(bundle.path), "--output", str(out), "--probability", str(prob)]
    for c, p in files.items():
        args += [f"--{c}", str(p)]
    assert main(args) == 0
    img = nib.load(str(out))
    assert img.shape == ref.shape and img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1}
    p = np.asarray(nib.load(str(prob)).dataobj)
    assert p.shape == ref.shape and p.min() >= 0 and p.max() <= 1
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []


def test_a_flipped_scan_gets_the_same_mask_flipped(env, bundle):
    from segan_lib.apply.predict import predict_case

    arrays = case_arrays(env)
    base = predict_case(bundle, arrays)
    flipped = {}
    for c, (a, aff) in arrays.items():
        f = aff.copy()
        f[:3, 3] = aff[:3, :3] @ [a.shape[0] - 1, 0, 0] + aff[:3, 3]  # the last voxel becomes the first
        f[:3, 0] = -aff[:3, 0]
        flipped[c] = (np.flip(a, axis=0).copy(), f)
    res = predict_case(bundle, flipped)
    np.testing.assert_array_equal(res.affine, flipped["t1"][1])
    np.testing.assert_array_equal(np.flip(res.mask, axis=0), base.mask)
    np.testing.assert_allclose(np.flip(res.probability, axis=0), base.probability, atol=1e-6)


def test_smaller_larger_and_finer_scans_come_back_in_their_own_grid(env, bundle):
    from segan_lib.apply.predict import predict_case

    arrays = case_arrays(env)
    base = predict_case(bundle, arrays)
    shape = arrays["t1"][0].shape
    # smaller than the crop on every axis: padded
    small = {c: (a[10:50, 12:50, 10:24].copy(), aff) for c, (a, aff) in arrays.items()}
    res = predict_case(bundle, small)
    assert res.mask.shape == (40, 38, 14) and res.probability.shape == (40, 38, 14)
    # larger, the brain off-centre: the crop follows the brain, so the mask is the same one moved
    pad = ((30, 5), (0, 20), (12, 3))
    large = {c: (np.pad(a, pad), aff) for c, (a, aff) in arrays.items()}
    res = predict_case(bundle, large)
    assert res.mask.shape == tuple(n + lo + hi for n, (lo, hi) in zip(shape, pad))
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(shape, pad))
    np.testing.assert_array_equal(res.mask[inner], base.mask)
    assert res.mask.sum() == base.mask.sum()
    # twice finer along the axial axis: resampled to the bundle's 4 mm and back
    fine = {}
    for c, (a, aff) in arrays.items():
        f = aff.copy()
        f[:3, 2] = aff[:3, 2] / 2
        f[:3, 3] = aff[:3, 3] - aff[:3, 2] / 4  # voxel centres of the halves
        fine[c] = (np.repeat(a, 2, axis=2), f)
    res = predict_case(bundle, fine)
    assert res.mask.shape == (shape[0], shape[1], 2 * shape[2])
    np.testing.assert_array_equal(res.affine, fine["t1"][1])
    agree = (res.mask == np.repeat(base.mask, 2, axis=2)).mean()
    assert agree > 0.99, agree


def test_a_missing_contrast_is_named_or_zero_filled_with_a_warning(env, bundle):
    from segan_lib.errors import DataError
    from segan_lib.apply.predict import MissingContrastWarning, predict, predict_case

    arrays = case_arrays(env)
    del arrays["t1c"]
    with pytest.raises(DataError, match="'t1c'"):
        predict_case(bundle, arrays)
    with pytest.warns(MissingContrastWarning, match="t1c"):
        mask = predict(bundle, arrays, allow_missing=True)
    assert mask.shape == arrays["t1"][0].shape and mask.dtype == np.uint8
    bad = case_arrays(env)
    a, aff = bad["t2"]
    a[3, 3, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        predict_case(bundle, bad)


def test_corrupt_file_and_existing_output(env, bundle, tmp_path):
    from segan_lib.errors import DataError, SeganError
    from segan_lib.apply.predict import predict_file_set

    files, _ = case_files(env)
    broken = dict(files)
    broken["t2"] = tmp_path / "broken_t2.nii.gz"
    broken["t2"].write_bytes(b"not a nifti file at all")
    with pytest.raises(DataError, match="broken_t2"):
        predict_file_set(bundle, broken, tmp_path / "a.nii.gz")
    out = tmp_path / "exists.nii.gz"
    out.write_bytes(b"keep me")
    with pytest.raises(SeganError, match="already exists"):
        predict_file_set(bundle, files, out)
    assert out.read_bytes() == b"keep me"
    predict_file_set(bundle, files, out, overwrite=True)
    assert nib.load(str(out)).shape == nib.load(str(files["t1"])).shape


def test_folder_mode_goes_on_past_a_bad_case_and_reports_it(env, bundle, tmp_path, capsys):
    import pandas as pd

    from segan_lib.cli import main

    src = tmp_path / "new_scans"
    src.mkdir()
    for name in sorted(p.name for p in env["data"].iterdir() if p.is_dir())[:3]:
        shutil.copytree(env["data"] / name, src / name)
    bad = sorted(p.name for p in src.iterdir())[1]
    (src / bad / f"{bad}_t2.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "masks"
    rc = main(["predict", "--model", str(bundle.path), "--input", str(src), "--output", str(out), "--evaluate",
               "--quiet"])
    assert rc == 1
    assert bad in capsys.readouterr().err
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 3 and set(table["status"]) == {"ok", "error"}
    row = table.set_index("case_id").loc[bad]
    assert row["status"] == "error" and "t2" in row["message"]
    ok = table[table["status"] == "ok"]
    assert ok["dice"].notna().all() and (ok["tumour_ml"] >= 0).all()
    assert ((ok["hd95_mm"] >= 0) | ok["hd95_mm"].isna()).all()  # NaN only where a mask is empty
    for cid in ok["case_id"]:
        mask = nib.load(str(out / f"{cid}.nii.gz"))
        assert mask.shape == nib.load(str(src / cid / f"{cid}_t1.nii.gz")).shape
        assert mask.header["descrip"][()].decode() == f"segan bundle {bundle.id} wt 0/1"  # who made it, what it holds
    assert set(table["bundle"]) == {bundle.id}
    assert not (out / f"{bad}.nii.gz").exists()


def test_one_case_folder_as_input(env, bundle, tmp_path):
    import pandas as pd

    from segan_lib.cli import main

    _, case = case_files(env, 1)
    out = tmp_path / "one"
    assert main(["predict", "--model", str(bundle.path), "--input", str(env["data"] / case.case_id),
                 "--output", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "summary.csv")
    assert list(table["case_id"]) == [case.case_id] and list(table["status"]) == ["ok"]
    assert (out / f"{case.case_id}.nii.gz").exists()


def test_a_folder_in_any_naming_is_predicted_through_the_pattern_options(env, bundle, tmp_path, capsys):
    """The same scans renamed <case>/<Name>_scan.nii.gz: --pattern and --contrast-names read them, and the
    masks equal those of the release's own naming; the layout options with files are refused."""
    import pandas as pd

    from segan_lib.cli import main

    names = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "Flair"}
    src = tmp_path / "renamed"
    ids = []
    for i in range(2):
        files, case = case_files(env, i)
        ids.append(case.case_id)
        (src / case.case_id).mkdir(parents=True)
        for contrast, path in files.items():
            shutil.copy(path, src / case.case_id / f"{names[contrast]}_scan.nii.gz")
    pattern = ["--pattern", "{case}/{contrast}_scan.nii.gz", "--contrast-names",
               ",".join(f"{c}={n}" for c, n in names.items())]
    out = tmp_path / "masks"
    assert main(["predict", "--model", str(bundle.path), "--input", str(src), "--output", str(out), "--quiet",
                 *pattern]) == 0
    assert sorted(pd.read_csv(out / "summary.csv")["case_id"]) == ids
    ref = tmp_path / "ref"
    for cid in ids:
        assert main(["predict", "--model", str(bundle.path), "--input", str(env["data"] / cid), "--output",
                     str(ref / f"{cid}.nii.gz")]) == 0
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"{cid}.nii.gz").dataobj),
                                      np.asarray(nib.load(ref / f"{cid}.nii.gz").dataobj))
    capsys.readouterr()
    files, _ = case_files(env, 0)
    assert main(["predict", "--model", str(bundle.path), "--flair", str(files["flair"]), "--t1", str(files["t1"]),
                 "--t1c", str(files["t1c"]), "--t2", str(files["t2"]), "--output", str(tmp_path / "x.nii.gz"),
                 *pattern]) == 2
    assert "--pattern, --contrast-names describe how a folder is read" in capsys.readouterr().err


def test_one_case_folder_into_one_mask_file(env, bundle, tmp_path, capsys):
    import nibabel as nib

    from segan_lib.cli import main

    _, case = case_files(env, 1)
    out = tmp_path / "mask.nii.gz"
    args = ["predict", "--model", str(bundle.path), "--input", str(env["data"] / case.case_id), "--output", str(out)]
    assert main(args) == 0
    image, source = nib.load(out), nib.load(case.files["flair"])
    assert image.shape == source.shape and np.allclose(image.affine, source.affine)
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # never overwritten silently
    assert main(["predict", "--model", str(bundle.path), "--input", str(env["data"]),
                 "--output", str(tmp_path / "many.nii.gz")]) == 2
    assert "holds" in capsys.readouterr().err


def test_evaluating_on_test_puts_the_metrics_on_the_bundle_card(env, tmp_path):
    from segan_lib.study.models import evaluate_model

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)  # leave the shared run as it was
    shutil.rmtree(run / "bundle")
    from segan_lib.apply.bundle import export_bundle

    export_bundle(run)
    assert json.loads((run / "bundle" / "card.json").read_text())["test_metrics"] is None
    _, summary = evaluate_model(run, "test", compute_hd95=False, log=None)
    card = json.loads((run / "bundle" / "card.json").read_text())
    assert card["test_metrics"]["metrics"]["dice"]["mean"] == pytest.approx(summary["metrics"]["dice"]["mean"])


def test_an_unwritable_output_folder_is_a_clear_error(env, bundle, tmp_path, monkeypatch, capsys):
    from segan_lib.apply import predict as predict_module
    from segan_lib.cli import main
    from segan_lib.errors import SeganError
    from segan_lib.apply.predict import predict_file_set

    files, case = case_files(env, 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SeganError, match="cannot create the output folder"):
        predict_file_set(bundle, files, blocker / "sub" / "mask.nii.gz")
    rc = main(["predict", "--model", str(bundle.path), "--input", str(env["data"]), "--output", str(blocker / "masks"),
               "--quiet"])
    assert rc == 2 and "a_file" in capsys.readouterr().err
    # a folder without write permission (simulated: the tests may run as root, whom no mode bit stops)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(predict_module.os, "access",
                        lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    with pytest.raises(SeganError, match="not writable"):
        predict_file_set(bundle, files, locked / "mask.nii.gz")
    assert list(locked.iterdir()) == []


def test_warnings_of_opening_the_input_reach_the_user(tmp_path):
    """A case the input folder's listing leaves out is warned about, not swallowed (no model needed)."""
    from segan_lib.apply.predict import open_input
    from segan_lib.data import BadCaseWarning
    from tests.layout_trees import make_brats2018_tree

    written = make_brats2018_tree(tmp_path / "scans", 3)
    ids = sorted(written)
    written[ids[2]].files["t1"].unlink()  # a case without one contrast is listed with the others
    for c in ("t1", "t1c", "t2", "flair"):  # one without any image is left out
        written[ids[1]].files[c].unlink()
    with pytest.warns(BadCaseWarning, match=ids[1]):
        ds = open_input(tmp_path / "scans")
    assert ds.case_ids == [ids[0], ids[2]] and ds[ids[2]].contrasts == ["t1c", "t2", "flair"]
    # one case folder, read through its parent: the warnings about the other cases there are not its own ...
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one = open_input(tmp_path / "scans" / ids[0])
    assert one.case_ids == [ids[0]] and not [w for w in caught if ids[1] in str(w.message)]
    # ... and a bad one says why it cannot be used, rather than "no case found"
    from segan_lib.errors import DataError

    with pytest.raises(DataError, match=f"cannot be used: .*{ids[1]}.*no image file of any contrast"):
        open_input(tmp_path / "scans" / ids[1])


def test_evaluate_without_any_label_is_refused(tmp_path):
    from segan_lib.apply.predict import predict_folder
    from segan_lib.errors import SeganError
    from tests.layout_trees import make_brats2018_tree

    make_brats2018_tree(tmp_path / "scans", 2, with_label=False)
    with pytest.raises(SeganError, match="--evaluate.*none of its 2 case"):
        predict_folder(object(), tmp_path / "scans", tmp_path / "masks", evaluate=True)  # refused before predicting
    assert not (tmp_path / "masks").exists()


def test_a_bundle_knows_the_training_orientation_without_the_cache(env, tmp_path, monkeypatch):
    """Training records the scans' orientation; export needs no cache, and refuses to guess without both."""
    import segan_lib.data.cache as cache_module
    from segan_lib.apply.bundle import BundleError, export_bundle, read_card
    from segan_lib.data.cache import open_cache

    profile = env["profile"]
    expected = open_cache(profile.data_root, profile.preprocess).source_orientation()
    recorded = json.loads((env["run"] / "train_subjects.json").read_text())["source_orientation"]
    assert recorded == expected and len(expected) == 3
    run = tmp_path / "run"
    shutil.copytree(env["run"], run)

    def no_cache(*args, **kwargs):
        raise FileNotFoundError("the cache was deleted")

    monkeypatch.setattr(cache_module, "open_cache", no_cache)
    assert read_card(export_bundle(run))["preprocessing"]["orientation"] == expected  # from the run's record
    subjects = json.loads((run / "train_subjects.json").read_text())
    del subjects["source_orientation"]  # a run from before the record
    (run / "train_subjects.json").write_text(json.dumps(subjects))
    with pytest.raises(BundleError, match="orientation.*segan preprocess"):
        export_bundle(run)
    monkeypatch.undo()  # with the cache back, the old run exports as before
    assert read_card(export_bundle(run))["preprocessing"]["orientation"] == expected
