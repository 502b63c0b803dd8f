"""The study driver (run_all.sh): steps in order, skipped when done, recomputed with --force."""
import json

import pytest

from segan_lib import paths
from segan_lib.config import load_profile
from segan_lib.study import run_study


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
