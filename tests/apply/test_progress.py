"""Progress bars of folder prediction, evaluation over a split and preprocessing: on a terminal only, never under --quiet."""
from __future__ import annotations

import io
import shutil
import sys

import numpy as np
import pytest


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (tqdm's disable=None shows the bar only there)."""

    def isatty(self):
        return True


@pytest.fixture
def stderr_as(monkeypatch, capsys):
    """stderr_as(Terminal()) or stderr_as(None) (pytest's capture: not a terminal); returns what was written."""
    captured = []  # the call phase's own stderr (pytest swaps it between setup and call)

    def use(stream):
        captured.append(captured[0] if captured else sys.stderr)
        monkeypatch.setattr(sys, "stderr", stream or captured[0])
        return (lambda: stream.getvalue()) if stream is not None else (lambda: capsys.readouterr().err)

    return use


def test_folder_prediction(env, bundle, tmp_path, stderr_as):
    from segan_lib.cli import main

    src = tmp_path / "scans"
    src.mkdir()
    name = sorted(p.name for p in env["data"].iterdir() if p.is_dir())[0]
    shutil.copytree(env["data"] / name, src / name)
    base = ["predict", "--model", str(bundle.path), "--input", str(src)]
    for out, more, stream, shows in (("a", [], Terminal(), True), ("b", ["--quiet"], Terminal(), False),
                                     ("c", [], None, False)):
        written = stderr_as(stream)
        assert main(base + ["--output", str(tmp_path / out), *more]) == 0
        assert ("predict: 100%" in written()) == shows, (out, written())


def test_evaluation_over_a_split(env, tmp_path, stderr_as):
    """The bar predicts in chunks of whole batches: the same batches, so the same metrics to the bit."""
    from segan_lib.evaluation.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)  # the shared run keeps no eval files of this test
    written = stderr_as(Terminal())
    with_bar, _ = evaluate_run(run, "val", compute_hd95=False, log=None, progress=True)
    assert "evaluate: 100%" in written() and "slice" in written()
    written = stderr_as(None)
    without, _ = evaluate_run(run, "val", compute_hd95=False, log=None, progress=True)
    assert "%|" not in written()
    plain, _ = evaluate_run(run, "val", compute_hd95=False, log=None)
    for table in (with_bar, without):
        np.testing.assert_array_equal(table["dice"].to_numpy(), plain["dice"].to_numpy())


def test_preprocessing_the_cache(tmp_path, monkeypatch, stderr_as):
    from segan_lib.cli import main
    from tests.layout_trees import make_brats2018_tree

    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))
    make_brats2018_tree(tmp_path / "b18", 3)
    args = ["preprocess", str(tmp_path / "b18"), "--profile", "smoke", "--workers", "1",
            "--set", "preprocess.crop_shape=[8, 8, 6]", "--set", "preprocess.spacing_mm=1"]
    written = stderr_as(Terminal())
    assert main(args + ["--set", "preprocess.percentiles=[1, 99]"]) == 0
    assert "preprocess: 100%" in written() and "3/3" in written()
    written = stderr_as(Terminal())
    assert main(args + ["--quiet"]) == 0
    assert written() == ""
