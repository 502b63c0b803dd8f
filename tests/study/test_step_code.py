"""A study step's key holds the code it runs, so a code change is never answered with "already done".

`segan_lib.study.steps.code_hash` hashes every segan_lib/**/*.py (`library_files`) and the step's
notebook; the key of runs/<step>__<key>/ hashes the parameters and that code. Here the library is
a temporary copy (library_files monkeypatched to its files), so editing it touches nothing real.
"""
import json
import re

import pytest

from segan_lib import paths
from segan_lib.config import load_profile
from segan_lib.study import runner
from segan_lib.study import steps as S


@pytest.fixture
def project(tmp_path, monkeypatch):
    """SEGAN_ROOT in tmp_path; the 'library' is two files of a copy, the notebooks folder a copy of one notebook."""
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "root"))
    lib = tmp_path / "lib" / "segan_lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "a.py").write_text("A = 1\n")
    (lib / "sub" / "b.py").write_text("B = 2\n")
    monkeypatch.setattr(S, "library_files", lambda: sorted(lib.rglob("*.py")))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "x.ipynb").write_text('{"cells": []}\n')
    monkeypatch.setattr(paths, "notebooks_dir", lambda: notebooks)
    return lib, notebooks


def _study(monkeypatch, notebook=None):
    """run_study over one fresh step per call (as study_steps makes them), counting its real runs."""
    ran = []

    def make(step, run_dir):
        ran.append(run_dir.name)
        out = run_dir / "out.txt"
        out.write_text("made")
        return [out]

    monkeypatch.setattr(runner, "study_steps", lambda *a, **k: [
        S.Step("make", "make a file", {"n": 1}, make, notebook=notebook),
        S.Step("other", "a step of another notebook", {"n": 2}, make, notebook=None)])

    def run():
        lines = []
        steps = runner.run_study(load_profile("smoke"), "smoke", log=lines.append)
        return steps, [line for line in lines if "already done" in line]

    return run, ran


def test_the_code_hash_covers_every_library_file_and_the_notebook():
    files = S.library_files()
    package = paths.checkout_root() / "segan_lib"
    assert files == sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix())
    assert package / "study" / "steps.py" in files and package / "cli.py" in files
    code = S.code_hash()
    assert re.fullmatch(r"[0-9a-f]{10}", code) and S.code_hash() == code
    assert S.code_hash("02_training.ipynb") not in (code, S.code_hash("05_fine_tuning.ipynb"))


def test_every_study_step_carries_its_code_and_notebook():
    steps = {s.name: s for s in S.study_steps(load_profile("smoke"), "smoke")}
    assert steps["preprocess"].notebook is None and steps["preprocess"].code == S.code_hash()
    assert steps["01_data_exploration"].notebook == "01_data_exploration.ipynb"
    assert steps["train_segan_io_seed0"].notebook == "02_training.ipynb"
    assert steps["finetune_ft_flair_to_t2_seg_seed0"].notebook == "05_fine_tuning.ipynb"
    assert {steps[n].notebook for n in ("03_evaluation", "04_transfer_matrix", "06_results", "07_transfer_study")} == {
        "03_evaluation.ipynb", "04_transfer_matrix.ipynb", "06_results.ipynb", "07_transfer_study.ipynb"}
    assert all(s.code == S.code_hash(s.notebook) for s in steps.values())


def test_the_paper_models_are_trained_once_per_study_seed_and_fine_tuned_from_the_first():
    profile = load_profile("smoke", ["study.seeds=[3, 5]"])
    steps = {s.name: s for s in S.study_steps(profile, "smoke")}
    trained = [n for n in steps if n.startswith("train_") and not n.startswith("train_ablation_")]
    assert len(trained) == 7 * 2 and {"train_segan_io_seed3", "train_segan_io_seed5"} <= set(trained)
    assert steps["train_segan_io_seed5"].params["overrides"]["train.seed"] == 5
    assert steps["train_segan_io_seed3"].key != steps["train_segan_io_seed5"].key
    fine_tuned = [n for n in steps if n.startswith("finetune_")]
    assert len(fine_tuned) == 6 and all(n.endswith("_seed3") for n in fine_tuned)
    assert steps["finetune_ft_flair_to_t2_seg_seed3"].needs[-1] == "train_single_flair_seed3"
    plan = S.planned_runs("smoke", {"study.seeds": [3, 5]})
    assert plan["table1"]["SegAN_IO (concat)"] == [steps["train_segan_io_seed3"].run_dir.name,
                                                   steps["train_segan_io_seed5"].run_dir.name]
    assert plan["table3"]["t2/seg"] == [steps["finetune_ft_flair_to_t2_seg_seed3"].run_dir.name]


def test_a_library_edit_makes_a_finished_step_run_again(project, monkeypatch):
    lib, _ = project
    run, ran = _study(monkeypatch)
    steps, skipped = run()
    first = steps[0].run_dir
    assert ran == [first.name, steps[1].run_dir.name] and not skipped
    record = json.loads((first / "step.json").read_text())
    assert record["code"] == steps[0].code == S.code_hash() and record["params"] == {"n": 1}

    steps, skipped = run()  # nothing changed: both skipped
    assert len(ran) == 2 and len(skipped) == 2

    (lib / "sub" / "b.py").write_text("B = 3\n")  # one library file edited: every step runs again
    steps, skipped = run()
    assert not skipped and len(ran) == 4
    assert steps[0].run_dir != first and steps[0].run_dir.name.startswith("make__")
    assert json.loads((steps[0].run_dir / "step.json").read_text())["code"] != record["code"]

    (lib / "sub" / "b.py").write_text("B = 2\n")  # the same bytes as at first (a newer mtime): the first key again
    steps, skipped = run()
    assert steps[0].run_dir == first and len(skipped) == 2 and len(ran) == 4


def test_a_notebook_edit_reruns_only_the_steps_of_that_notebook(project, monkeypatch):
    _, notebooks = project
    run, ran = _study(monkeypatch, notebook="x.ipynb")
    run()
    assert len(ran) == 2
    (notebooks / "x.ipynb").write_text('{"cells": [{"cell_type": "code"}]}\n')
    steps, skipped = run()
    assert ran[2:] == [steps[0].run_dir.name]  # "make" ran again; "other" has no notebook
    assert len(skipped) == 1 and "other: already done" in skipped[0]


def test_a_record_of_other_code_in_the_folder_is_not_done(project, monkeypatch):
    run, ran = _study(monkeypatch)
    steps, _ = run()
    marker = steps[0].run_dir / "step.json"
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "code": "0000000000"}))
    assert not steps[0].is_done()
    marker.write_text(json.dumps({k: v for k, v in record.items() if k != "code"}))  # older records: the key decides
    assert steps[0].is_done()
