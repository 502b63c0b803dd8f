"""The whole study on the smoke profile, then every notebook checked by nbval.

One module-scoped project root: the study (phantom, preprocessing, split, the
paper's models, evaluation, transfer matrix, fine-tuning, results, the recipe ablation) runs once through
papermill; a rerun must skip every step; then nbval executes each notebook with
its default parameters (the smoke profile) against that root: lax for the
notebooks with plots and timings, strict (outputs compared, volatile parts
sanitised) for the small viewer demo.
"""
import json
import os
import subprocess
import sys

import numpy as np

import pytest

from segan_lib import paths
from segan_lib.config import load_profile

NOTEBOOKS = paths.checkout_root() / "notebooks"
SANITIZE = paths.checkout_root() / "tests" / "nbval_sanitize.cfg"
# the slow tier: the study trains its models, the ablation's and the transfer study's, and nbval runs every notebook
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    old = os.environ.get("SEGAN_ROOT")
    os.environ["SEGAN_ROOT"] = str(root)
    from segan_lib.study.runner import run_study

    lines = []
    # two jobs: the independent model steps run side by side in child processes, as `run_all.sh --jobs 2`;
    # the rerun below (one job, in this process) must find every step done with the same keys
    steps = run_study(load_profile("smoke"), "smoke", log=lines.append, jobs=2)
    yield root, steps, lines
    if old is None:
        os.environ.pop("SEGAN_ROOT", None)
    else:
        os.environ["SEGAN_ROOT"] = old


@slow
def test_the_smoke_study_regenerates_every_table_and_figure(study_root, monkeypatch):
    root, steps, lines = study_root
    monkeypatch.setenv("SEGAN_ROOT", str(root))
    figures = paths.figures_dir()
    for name in ("table1_four_contrasts", "table2_single_contrast", "table3_fine_tuning", "claims",
                 "fig3_transfer_matrix"):
        assert (figures / f"{name}.csv").exists() and (figures / f"{name}.md").exists(), name
    for name in ("fig2_validation_dice_loss", "fig3_transfer_matrix", "data_subject_HGG"):
        assert (figures / f"{name}.png").exists() and (figures / f"{name}.pdf").exists(), name
    import pandas as pd

    names = [s.name for s in steps]
    # smoke: the 7 models of Tables I and II with each of 2 seeds, the 6 fine-tuned ones once, and the recipe
    # ablation's own 12 (6 variants x 2 models x 1 seed; its seventh, the authors' recipe, is the study's runs)
    assert names.count("06_results") == 1 and sum(n.startswith(("train_", "finetune_")) for n in names) == 7 * 2 + 6 + 12
    ablation = pd.read_csv(figures / "recipe_ablation.csv")
    assert len(ablation) == 7 * 2 and set(ablation["validation field"]) == {"crop", "centre160"}
    assert (figures / "recipe_ablation.png").exists()
    assert names.count("07_transfer_study") == 1
    md = (figures / "table1_four_contrasts.md").read_text()
    assert "per 3-D volume" in md and "SegAN_IO (proposed)" in md and "0.862" in md  # ours beside the paper's
    # the numbers in the table are the ones in the runs' evaluation files
    from segan_lib.study.steps import planned_runs

    runs = planned_runs("smoke")["table1"]["SegAN_IO (concat)"]
    assert len(runs) == 2  # one per seed
    per_seed = [json.loads((paths.runs_dir() / r / "eval_test.json").read_text())["metrics"]["dice"]["mean"]
                for r in runs]
    # the same test subjects in both runs: the seed-averaged mean is the mean of the two runs' means
    assert f"{np.mean(per_seed):.3f} [" in md
    # one executed notebook per model and seed, in its run folder
    assert all((paths.runs_dir() / r / "02_training.ipynb").exists() for r in runs)
    # the transfer study (smoke: t2 and flair, two seeds, 50% and 100% of the subjects)
    from segan_lib.study.transfer_analysis import OUTPUT_NAMES

    for name in OUTPUT_NAMES:
        assert (figures / name).exists(), name

    matrix = pd.read_csv(figures / "transfer_strategy_matrix_values.csv")
    assert len(matrix) == 2 * 3  # two targets x (scratch + two strategies)
    missing = pd.read_csv(figures / "transfer_missing_contrasts.csv")
    assert len(missing) == 15 + 1 and "Dice, zero fill, dropout-trained" in missing.columns  # + the average
    dropout = pd.read_csv(figures / "transfer_missing_contrasts_dropout.csv")
    assert len(dropout) == (15 + 1) * 2  # every subset and the average, zero and mean fill


@slow
def test_a_rerun_skips_every_step(study_root, monkeypatch):
    root, steps, _ = study_root
    monkeypatch.setenv("SEGAN_ROOT", str(root))
    from segan_lib.study.runner import run_study

    lines = []
    run_study(load_profile("smoke"), "smoke", log=lines.append)
    skipped = [line for line in lines if "already done" in line]
    assert len(skipped) == len(steps)


def nbval(root, *args):
    env = dict(os.environ, SEGAN_ROOT=str(root))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          env=env, capture_output=True, text=True, cwd=str(paths.checkout_root()))


@slow
# 08_phantom_vs_real compares with real cases where the machine has them, and says so and does nothing where not
@pytest.mark.parametrize("notebook", ["01_data_exploration", "02_training", "03_evaluation", "04_transfer_matrix",
                                      "05_fine_tuning", "06_results", "07_transfer_study", "08_phantom_vs_real",
                                      "09_recipe_ablation"])
def test_notebook_runs_with_its_defaults(study_root, notebook):
    root, _, _ = study_root
    res = nbval(root, "--nbval-lax", str(NOTEBOOKS / f"{notebook}.ipynb"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


@slow
def test_viewer_demo_outputs_match_strictly(study_root):
    root, _, _ = study_root
    res = nbval(root, "--nbval", "--nbval-sanitize-with", str(SANITIZE), str(NOTEBOOKS / "00_viewer_demo.ipynb"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


@pytest.mark.parametrize("notebook", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
def test_papermill_sees_every_parameter(notebook):
    """Every name the parameters cell assigns is one papermill can list (--help-notebook) and take:
    papermill gives up on a line holding a second '=', in a comment too, and then warns that a
    parameter passed to it is unknown."""
    import ast

    import papermill

    path = NOTEBOOKS / f"{notebook}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    assigned = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert assigned and list(papermill.inspect_notebook(str(path))) == assigned
