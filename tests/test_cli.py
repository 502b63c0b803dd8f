"""The `segan` command as a user types it: output, exit codes, one-line errors."""
import json
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
