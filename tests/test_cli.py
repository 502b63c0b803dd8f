"""The `segan` command as a user types it: output, exit codes, one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from segan_lib.cli import main
from tests.layout_trees import make_brats2015_tree, make_brats2018_tree, make_msd_tree


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))


def test_info_names_the_layout_and_counts(tmp_path, capsys):
    make_brats2015_tree(tmp_path / "b15", 2, 1)
    assert main(["info", str(tmp_path / "b15"), "--deep"]) == 0
    out = capsys.readouterr().out
    assert "BRATS 2015" in out and "brats2015" in out
    assert "3" in out and "HGG" in out and "LGG" in out


def test_info_json(tmp_path, capsys):
    make_msd_tree(tmp_path / "msd", 2)
    assert main(["info", str(tmp_path / "msd"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "msd" and summary["n_cases"] == 2


def test_bad_folder_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segan info: error:") and "empty" in err and "Traceback" not in err


def test_split_writes_then_reuses(tmp_path, capsys):
    make_brats2018_tree(tmp_path / "b18", 10)
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke"]) == 0
    assert "wrote" in capsys.readouterr().out
    data = json.loads((tmp_path / "b18" / "splits.json").read_text())
    assert data["counts"] == {"train": 8, "val": 1, "test": 1} and data["stratified_by"] == "grade"
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke"]) == 0
    assert "reusing existing" in capsys.readouterr().out
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke", "--seed", "4"]) == 2
    assert "--force" in capsys.readouterr().err


def test_preprocess_then_skip(tmp_path, capsys):
    make_brats2018_tree(tmp_path / "b18", 3)
    args = ["preprocess", str(tmp_path / "b18"), "--profile", "smoke", "--workers", "1",
            "--set", "preprocess.crop_shape=[8, 8, 6]", "--set", "preprocess.spacing_mm=1"]
    assert main(args) == 0
    assert "3 to do" in capsys.readouterr().out
    assert main(args) == 0
    assert "3 already cached, 0 to do" in capsys.readouterr().out


def test_bad_override_is_named(capsys):
    assert main(["profiles", "--show", "quick", "--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_console_script_help_and_exit_code(tmp_path):
    exe = [sys.executable, "-m", "segan_lib.cli"]
    help_text = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True).stdout
    for command in ("phantom", "info", "preprocess", "split", "study"):
        assert command in help_text
    (tmp_path / "nothing").mkdir()
    res = subprocess.run(exe + ["info", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert res.returncode == 2 and "no BraTS layout recognised" in res.stderr


def test_contradicting_options_are_refused_not_resolved(tmp_path, capsys):
    """Each of these used to be resolved silently; now each is an error naming the options (exit 2)."""
    cases = [
        (["train", "--freeze", "critic"], "--freeze critic needs --init-from"),
        (["train", "--freeze", "encoder"], "--freeze encoder needs --init-from"),
        (["train", "--freeze-critic"], "--freeze-critic needs --init-from"),
        (["train", "--freeze-critic", "--freeze", "encoder", "--init-from", "x"],
         "--freeze-critic (the same as --freeze critic) contradicts --freeze encoder"),
        (["predict", "--model", "m", "--flair", "f.nii.gz", "--output", "o.nii.gz", "--evaluate"],
         "--evaluate has no effect with the files"),
        (["predict", "--model", "m", "--flair", "f.nii.gz", "--output", "o.nii.gz", "--quiet"],
         "--quiet has no effect with the files"),
        (["predict", "--model", "m", "--input", str(tmp_path), "--output", "o.nii.gz", "--evaluate"],
         "--evaluate has no effect with --output o.nii.gz (one mask file)"),
        (["predict", "--model", "m", "--input", str(tmp_path), "--output", "o.nii.gz", "--quiet"],
         "--quiet has no effect with --output o.nii.gz"),
        (["profiles", "--set", "train.epochs=3"], "--set has no effect without --show"),
        (["profiles", "--profile", "smoke"], "--profile smoke has no effect here"),
    ]
    for argv, says in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"segan {argv[0]}: error: ") and says in err, (argv, err)
    assert main(["profiles", "--show", "smoke", "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["train"]["epochs"] == 3  # after the list of profiles


def _card_only_bundle(folder, contrasts=("t1", "t1c", "t2", "flair"), crop_shape=(16, 16, 8)):
    """A bundle folder whose card is complete and whose weights are never read: each error below comes first."""
    from segan_lib import __version__

    folder.mkdir(parents=True)
    (folder / "segmentor.weights.npz").write_bytes(b"not read")
    card = {"format": 1, "contrasts": list(contrasts), "regions": ["wt"], "n_outputs": 1, "width": 2,
            "preprocessing": {"spacing_mm": 1.0, "crop_shape": list(crop_shape), "percentiles": [2.0, 98.0],
                              "percentile_region": "volume", "orientation": ["L", "P", "S"]},
            "threshold": 0.5, "versions": {"segan_lib": __version__},
            "onnx": {"file": None, "absent": "the ONNX export failed (RuntimeError: boom)"}}
    (folder / "card.json").write_text(json.dumps(card))
    return str(folder)


def test_predict_options_are_refused_with_what_is_wrong(tmp_path, capsys, monkeypatch):
    """Engines, ensembles and the inference options: each mistake is one line and exit 2, before any prediction."""
    from segan_lib.apply import engines

    model = _card_only_bundle(tmp_path / "m")
    other = _card_only_bundle(tmp_path / "wider_crop", crop_shape=(32, 32, 8))
    t2_first = _card_only_bundle(tmp_path / "t2_first", contrasts=("t2", "t1", "t1c", "flair"))
    one = ["--flair", "f.nii.gz", "--output", "o.nii.gz"]
    cases = [
        (["--model", model, "--engine", "onnx", *one], f"the model bundle {model} has no ONNX segmentor (the ONNX "
                                                       "export failed (RuntimeError: boom)"),
        (["--model", model, "--model", other, *one], f"differ in preprocessing.crop_shape: {model} has [16, 16, 8], "
                                                     f"{other} has [32, 32, 8]"),
        (["--model", model, "--model", t2_first, *one], "differ in contrasts"),
        (["--model", model, "--min-component-ml", "-1", *one], "--min-component-ml must be 0"),
        (["--model", model, "--probabilities", *one], "--probabilities is for a folder prediction"),
        (["--model", model, "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--probability", "p.nii.gz"],
         "--probabilities writes one map per case"),
    ]
    for argv, says in cases:
        assert main(["predict", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("segan predict: error: ") and says in err, (argv, err)
    monkeypatch.setattr(engines, "onnxruntime_available", lambda: False)
    assert main(["predict", "--model", model, "--engine", "onnx", *one]) == 2
    assert "onnxruntime is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the modes are listed
        main(["predict", "--model", model, "--tta", "rotate", *one])
    assert "invalid choice: 'rotate'" in capsys.readouterr().err


def test_a_saved_split_of_another_stratification_is_not_reused(tmp_path, capsys):
    make_brats2018_tree(tmp_path / "b18", 10)
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke", "--set", "split.stratify=false"]) == 0
    capsys.readouterr()
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "b18" / "splits.json") in err and "not stratified" in err and "stratified by grade" in err
    assert "segan split --force" in err
    assert main(["split", str(tmp_path / "b18"), "--profile", "smoke", "--force"]) == 0
    assert json.loads((tmp_path / "b18" / "splits.json").read_text())["stratified_by"] == "grade"


def _own_profile(root, name, description):
    (root / "params").mkdir(parents=True, exist_ok=True)
    (root / "params" / f"{name}.yaml").write_text(f'description: "{description}"\n')


def test_profiles_lists_the_roots_own_and_marks_an_override(tmp_path, capsys):
    root = tmp_path / "project"  # SEGAN_ROOT of the autouse fixture
    _own_profile(root, "mine", "my own")
    _own_profile(root, "smoke", "my smoke")
    assert main(["profiles"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"mine", "smoke", "quick", "paper"} <= set(lines)
    assert lines["mine"].endswith(f"my own  [{root / 'params' / 'mine.yaml'}]")
    assert lines["smoke"].endswith(f"my smoke  [{root / 'params' / 'smoke.yaml'}, overrides the shipped one]")
    assert "[" not in lines["quick"]  # shipped: no mark


def test_root_option_beats_segan_root_and_must_exist(tmp_path, capsys, monkeypatch):
    _own_profile(tmp_path / "project", "from_env", "SEGAN_ROOT's")
    _own_profile(tmp_path / "given", "from_option", "--root's")
    assert main(["--root", str(tmp_path / "given"), "profiles"]) == 0
    out = capsys.readouterr().out
    assert "from_option" in out and "from_env" not in out
    assert os.environ["SEGAN_ROOT"] == str(tmp_path / "given")  # what the command's children inherit
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))
    assert main(["--root", str(tmp_path / "missing"), "profiles"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segan profiles: error: --root ") and "missing: no such folder" in err


# ---------------------------------------------------------------------------- real data as users have it
def _drop_files(written, contrasts):
    import shutil

    for x in written.values():
        for c in contrasts:
            path = x.files.pop(c)
            shutil.rmtree(path.parent) if path.suffix == ".mha" else path.unlink()


def test_info_on_a_flair_t1c_brats2015_tree_counts_each_contrast(tmp_path, capsys):
    written = make_brats2015_tree(tmp_path / "b15", 2, 1)
    _drop_files(written, ("t1", "t2"))
    assert main(["info", str(tmp_path / "b15"), "--deep"]) == 0
    out = capsys.readouterr().out
    assert "missing t1" not in out
    assert "Contrasts: t1 0 cases (0 with a label); t1c 3 cases (3 with a label); t2 0 cases (0 with a label); " \
           "flair 3 cases (3 with a label)" in out
    assert "no problem found" in out
    assert main(["info", str(tmp_path / "b15"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["contrasts"]["flair"] == {"cases": 3, "with_label": 3} and summary["contrasts"]["t1"]["cases"] == 0


def test_info_on_an_unlabelled_brats2023_release(tmp_path, capsys):
    from tests.layout_trees import make_brats2023_tree

    make_brats2023_tree(tmp_path / "b23", 2, with_label=False)
    assert main(["info", str(tmp_path / "b23"), "--deep"]) == 0
    out = capsys.readouterr().out
    assert "Cases:     2 (0 with a label)" in out and "flair 2 cases (0 with a label)" in out


def test_info_deep_exit_status_is_1_on_a_problem_after_the_full_report(tmp_path, capsys):
    import numpy as np

    from tests.layout_trees import write_nifti

    written = make_brats2018_tree(tmp_path / "b18", 3)
    ids = sorted(written)
    assert main(["info", str(tmp_path / "b18"), "--deep"]) == 0  # clean
    capsys.readouterr()
    label = written[ids[1]].label.copy()
    label[0, 0, 0] = 7  # a value BraTS 2018 does not have
    write_nifti(written[ids[1]].files["label"], label, written[ids[1]].affine, dtype=np.uint8)
    assert main(["info", str(tmp_path / "b18"), "--deep"]) == 1
    out = capsys.readouterr().out
    assert "Unusable cases: 1" in out and "unexpected label values [7]" in out and "Shapes:    12x10x8 (2 cases)" in out
    assert main(["info", str(tmp_path / "b18")]) == 0  # without --deep nothing is read: no verdict
    capsys.readouterr()
    assert main(["info", str(tmp_path / "b18"), "--deep", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["n_problems"] == 1
    write_nifti(written[ids[1]].files["label"], written[ids[1]].label, written[ids[1]].affine, dtype=np.uint8)
    for c in ("t1", "t1c", "t2", "flair"):  # a case dropped at listing (no image at all)
        written[ids[2]].files[c].unlink()
    from segan_lib.data import BadCaseWarning

    with pytest.warns(BadCaseWarning, match=ids[2]):
        assert main(["info", str(tmp_path / "b18"), "--deep", "--on-bad-case", "skip"]) == 1
    out = capsys.readouterr().out
    assert "Skipped when listing: 1" in out and ids[2] in out
    flair = written[ids[0]].files["flair"]
    flair.write_bytes(flair.read_bytes()[:200])  # unreadable
    with pytest.warns(BadCaseWarning):
        assert main(["info", str(tmp_path / "b18"), "--deep", "--on-bad-case", "skip"]) == 1
    assert "truncated or corrupt" in capsys.readouterr().out


def test_preprocess_requires_the_profiles_contrasts_and_takes_others(tmp_path, capsys):
    written = make_brats2018_tree(tmp_path / "b18", 3)
    _drop_files(written, ("t1", "t2"))
    args = ["preprocess", str(tmp_path / "b18"), "--profile", "smoke", "--workers", "1",
            "--set", "preprocess.crop_shape=[8, 8, 6]", "--set", "preprocess.spacing_mm=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    cid = sorted(written)[0]
    assert f"case {cid}: has no t1 or t2 image: preprocessing uses t1, t1c, t2, flair; it has t1c, flair" in err
    assert main(args + ["--contrasts", "flair,t1c"]) == 0
    assert "3 to do" in capsys.readouterr().out


def _brats2023_without_t1_t2(phantom, out):
    """The phantom (BraTS 2018 layout) rewritten as a BraTS 2023 tree holding FLAIR and T1c only."""
    import shutil

    import nibabel as nib
    import numpy as np

    out.mkdir(parents=True)
    shutil.copy(phantom / "grades.csv", out / "grades.csv")
    for case in sorted(p for p in phantom.iterdir() if p.is_dir()):
        (out / case.name).mkdir()
        for old, new in (("flair", "t2f"), ("t1ce", "t1c")):
            shutil.copy(case / f"{case.name}_{old}.nii.gz", out / case.name / f"{case.name}-{new}.nii.gz")
        seg = nib.load(case / f"{case.name}_seg.nii.gz")
        label = np.asarray(seg.dataobj).copy()
        label[label == 4] = 3  # BraTS 2018's enhancing tumour is 2023's 3
        nib.save(nib.Nifti1Image(label, seg.affine, seg.header), out / case.name / f"{case.name}-seg.nii.gz")


def test_flair_models_train_and_evaluate_on_a_tree_without_t1_and_t2(tmp_path, capsys):
    """A BraTS 2023 tree with FLAIR and T1c only: preprocess, split, train a FLAIR-only model, evaluate it;
    a case without a label stops training, naming it, or is left out under --on-bad-case skip."""
    from segan_lib.data.phantom import generate_phantom

    generate_phantom(tmp_path / "phantom", n=10, seed=0, voxel_size=4.0, progress=False)
    data = tmp_path / "b23"
    _brats2023_without_t1_t2(tmp_path / "phantom", data)
    smoke = ["--profile", "smoke", "--set", "preprocess.crop_shape=[48, 48, 16]"]
    assert main(["info", str(data)]) == 0
    assert "t1 0 cases" in capsys.readouterr().out
    assert main(["preprocess", str(data), *smoke, "--contrasts", "flair,t1c", "--workers", "1"]) == 0
    assert main(["split", str(data), *smoke]) == 0
    capsys.readouterr()
    train = ["train", str(data), *smoke, "--epochs", "1"]
    assert main(train + ["--contrasts", "flair", "--name", "flair_only"]) == 0
    assert "flair_only: best validation Dice" in capsys.readouterr().out
    assert main(["evaluate", "flair_only", "--split", "test"]) == 0
    assert "Dice" in capsys.readouterr().out
    assert main(train + ["--contrasts", "t1,flair", "--name", "needs_t1"]) == 2
    assert "has no t1 image: training uses t1, flair; it has t1c, flair" in capsys.readouterr().err
    split = json.loads((data / "splits.json").read_text())
    unlabelled = split["train"][0]
    (data / unlabelled / f"{unlabelled}-seg.nii.gz").unlink()
    assert main(["preprocess", str(data), *smoke, "--contrasts", "flair,t1c", "--workers", "1"]) == 0
    assert main(train + ["--contrasts", "flair,t1c", "--name", "two"]) == 2
    assert f"case {unlabelled}: has no label: training needs one" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=f"{unlabelled}: has no label"):
        assert main(train + ["--contrasts", "flair,t1c", "--name", "two", "--on-bad-case", "skip"]) == 0
    subjects = json.loads((tmp_path / "project" / "runs" / "two" / "train_subjects.json").read_text())
    assert unlabelled not in subjects["case_ids"] and len(subjects["case_ids"]) == len(split["train"]) - 1
