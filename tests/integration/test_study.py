"""The study driver (run_all.sh): steps in order, skipped when done, recomputed with --force."""
import json
import shutil

import pytest

from segan_lib import paths
from segan_lib.config import load_profile
from segan_lib.study.runner import run_study


@pytest.fixture
def smoke_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    return tmp_path


def test_study_runs_each_step_then_skips_then_forces(smoke_root):
    profile = load_profile("smoke", ["data.phantom_n=10"])
    lines = []
    steps = run_study(profile, "smoke", log=lines.append, with_models=False)
    names = [s.name for s in steps]
    assert names == ["phantom", "preprocess", "split", "01_data_exploration"]
    assert any("[1/4] phantom" in line for line in lines)
    assert (profile.data_root / "splits.json").exists()
    for fig in ("data_tumour_volumes", "data_intensities", "data_subject_HGG", "data_subject_LGG"):
        assert (paths.figures_dir() / f"{fig}.png").exists() and (paths.figures_dir() / f"{fig}.pdf").exists()
    executed = steps[-1].run_dir / "01_data_exploration.ipynb"
    assert executed.exists()
    nb = json.loads(executed.read_text())
    assert any(c.get("metadata", {}).get("tags") == ["injected-parameters"] for c in nb["cells"])

    lines.clear()
    run_study(profile, "smoke", log=lines.append, with_models=False)
    assert sum("already done" in line for line in lines) == 4

    lines.clear()
    marker = steps[2].run_dir / "step.json"
    before = marker.stat().st_mtime_ns
    run_study(profile, "smoke", only=["split", "preprocess"], force=True, log=lines.append, with_models=False)
    assert not any("already done" in line for line in lines)
    assert any("[1/2] preprocess" in line for line in lines)
    assert json.loads(marker.read_text())["params"] == json.loads(json.dumps(steps[2].params))
    assert marker.stat().st_mtime_ns != before  # the step's record was written again


def test_changed_parameters_rerun_the_step(smoke_root):
    profile = load_profile("smoke", ["data.phantom_n=10"])
    run_study(profile, "smoke", only=["phantom", "preprocess", "split"], log=lambda s: None)
    lines = []
    other = load_profile("smoke", ["data.phantom_n=10", "preprocess.percentiles=[1, 99]"])
    run_study(other, "smoke", only=["phantom", "preprocess", "split"], log=lines.append)
    assert any("phantom: already done" in line for line in lines)
    assert any("[2/3] preprocess: crop" in line for line in lines)


def test_unknown_step_is_named(smoke_root):
    from segan_lib.errors import SeganError

    with pytest.raises(SeganError, match="unknown step.*nope"):
        run_study(load_profile("smoke"), "smoke", only=["nope"], log=lambda s: None)


def test_run_all_sh_skips_done_steps_and_force_recomputes(tmp_path):
    """The driver as a user types it: ./run_all.sh, twice, then with --force."""
    import os
    import subprocess

    script = paths.checkout_root() / "run_all.sh"
    env = dict(os.environ, SEGAN_ROOT=str(tmp_path))
    args = [str(script), "--profile", "smoke", "--only", "phantom,preprocess,split", "--set", "data.phantom_n=10"]
    first = subprocess.run(args, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "[1/3] phantom: generate" in first.stdout and "already done" not in first.stdout
    assert "data/phantom-smoke/splits.json" in first.stdout  # says where the outputs are
    second = subprocess.run(args, env=env, capture_output=True, text=True)
    assert second.stdout.count("already done") == 3
    forced = subprocess.run(args + ["--force"], env=env, capture_output=True, text=True)
    assert forced.returncode == 0 and "already done" not in forced.stdout
    failing = subprocess.run([str(script), "--profile", "smoke", "--only", "nope"], env=env, capture_output=True,
                             text=True)
    assert failing.returncode == 2 and "unknown step" in failing.stderr


# ---------------------------------------------------------------- study --jobs: the scheduler
# The first two model steps (a and b) meet at a barrier: each writes its start and waits for the
# other's, so "side by side" is an event, not a race between a sleep and a loaded machine. A
# scheduler that ran them one after the other would leave the first waiting until its time-out.
FAKE_CHILD = r"""
import json, os, sys, time
from pathlib import Path
run_dir, name, fail, barrier = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "fail", Path(sys.argv[4])
start = time.time()
if name in ("a", "b"):
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / name).write_text("started")
    other = barrier / ("b" if name == "a" else "a")
    deadline = time.time() + 120
    while not other.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # both are inside their step now
if fail:
    print("this step broke"); sys.exit(3)
run_dir.mkdir(parents=True, exist_ok=True)
record = {"name": name, "start": start, "end": time.time(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
(run_dir / "record.json").write_text(json.dumps(record))
(run_dir / "step.json").write_text(json.dumps({"step": name, "params": {"n": name}, "outputs": [str(run_dir / "record.json")]}))
"""


def _fake_study(monkeypatch, failing=()):
    import sys
    import time

    from segan_lib.study import runner as study
    from segan_lib.study.steps import Step

    order = []

    def in_process(step, run_dir):
        order.append((step.name, time.time()))
        return []

    steps = [Step("data", "data", {"n": "data"}, in_process)]
    for name, needs in (("a", ["data"]), ("b", ["data"]), ("c", ["data"]), ("d", ["data", "a"])):
        steps.append(Step(name, f"model {name}", {"n": name}, in_process, parallel=True, needs=needs))
    steps.append(Step("report", "report", {"n": "report"}, in_process))
    shutil.rmtree(steps[1].run_dir.parent / "_fake_barrier", ignore_errors=True)  # no meeting left from before
    monkeypatch.setattr(study, "study_steps", lambda *a, **k: steps)
    monkeypatch.setattr(study, "_child_command", lambda step, *a: [
        sys.executable, "-c", FAKE_CHILD, str(step.run_dir), step.name, "fail" if step.name in failing else "ok",
        str(step.run_dir.parent / "_fake_barrier")])
    return steps, order


def test_jobs_run_independent_models_side_by_side_in_dependency_order(smoke_root, monkeypatch):
    steps, order = _fake_study(monkeypatch)
    lines = []
    run_study(load_profile("smoke"), "smoke", jobs=2, gpus=["0", "1"], log=lines.append)
    records = {s.name: json.loads((s.run_dir / "record.json").read_text()) for s in steps if s.parallel}
    (_, data_time), (_, report_time) = order  # the in-process steps, first and last
    events = sorted([(r["start"], 1) for r in records.values()] + [(r["end"], -1) for r in records.values()])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2  # never more than --jobs, and really side by side
    assert records["d"]["start"] >= records["a"]["end"]  # d starts from a's weights
    assert all(r["start"] >= data_time for r in records.values())
    assert all(r["end"] <= report_time for r in records.values())
    assert {r["gpu"] for r in records.values()} == {"0", "1"}  # one GPU per concurrent job
    lines.clear()
    run_study(load_profile("smoke"), "smoke", jobs=2, log=lines.append)
    assert sum("already done" in line for line in lines) == len(steps)  # a rerun skips them all


def test_a_failed_job_stops_new_ones_and_names_its_log(smoke_root, monkeypatch):
    from segan_lib.study.notebook import StepFailed

    steps, order = _fake_study(monkeypatch, failing=("a",))
    with pytest.raises(StepFailed, match=r"step a failed \(exit 3\); its log is .*a\.log"):
        run_study(load_profile("smoke"), "smoke", jobs=2, log=lambda line: None)
    log = paths.runs_dir() / "_logs" / "a.log"
    assert "this step broke" in log.read_text()
    assert [name for name, _ in order] == ["data"]  # the report never ran
    assert not (steps[4].run_dir / "record.json").exists()  # d waits for a, so it never started


def test_a_step_that_does_not_write_an_output_is_not_marked_done(smoke_root, monkeypatch):
    import segan_lib.study.runner as study
    from segan_lib.errors import SeganError

    made, real_steps = [], study.study_steps

    def steps_with_a_lost_output(*args, **kwargs):
        steps = real_steps(*args, **kwargs)
        phantom = steps[0]
        real_run = phantom.run
        phantom.run = lambda step, run_dir: real_run(step, run_dir) + [run_dir / "never_written.txt"]
        made.append(phantom)
        return steps

    monkeypatch.setattr(study, "study_steps", steps_with_a_lost_output)
    with pytest.raises(SeganError, match="phantom finished without writing .*never_written.txt"):
        run_study(load_profile("smoke", ["data.phantom_n=10"]), "smoke", only=["phantom"], log=lambda s: None)
    assert not (made[0].run_dir / "step.json").exists()


def test_a_kernel_that_dies_on_start_is_started_again(smoke_root, monkeypatch):
    import papermill

    import segan_lib.study.notebook as study  # run_notebook, its retry's sleep and StepFailed live there

    calls = []

    def failing(times, message=study.KERNEL_DIED):
        def execute(src, out, **kwargs):
            calls.append(out)
            if len(calls) <= times:
                raise RuntimeError(message)
        return execute

    monkeypatch.setattr(study.time, "sleep", lambda s: None)
    monkeypatch.setattr(papermill, "execute_notebook", failing(study.KERNEL_START_ATTEMPTS - 1))
    out = study.run_notebook("00_viewer_demo.ipynb", smoke_root / "step", {})
    assert out.name == "00_viewer_demo.ipynb" and len(calls) == study.KERNEL_START_ATTEMPTS
    # every start failing: a step failure that says so
    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", failing(99))
    with pytest.raises(study.StepFailed, match="kernel died on start 3 times"):
        study.run_notebook("00_viewer_demo.ipynb", smoke_root / "step", {})
    # any other error is not retried
    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", failing(99, "other"))
    with pytest.raises(RuntimeError, match="other"):
        study.run_notebook("00_viewer_demo.ipynb", smoke_root / "step", {})
    assert len(calls) == 1
