"""`segan train --resume` continues a run with the settings it was started with (its settings.json)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from segan_lib import paths
from tests.training.test_training import TINY, root, tiny_root  # noqa: F401 - the shared tiny project and fixtures

SETS = [a for o in TINY for a in ("--set", o)]


def history(name):
    return pd.read_csv(paths.runs_dir() / name / "history.csv")


def test_resume_needs_only_the_name_and_refuses_conflicting_options(root, capsys):
    from segan_lib.cli import main

    assert main(["train", "--profile", "smoke", "--contrasts", "flair", "--critic-input", "concat",
                 "--name", "flair_io", "--epochs", "1"] + SETS) == 0
    settings = json.loads((paths.runs_dir() / "flair_io" / "settings.json").read_text())
    capsys.readouterr()
    # no --profile (quick by default), no --contrasts, no --set: the run's own settings, one epoch more
    assert main(["train", "--name", "flair_io", "--resume", "--epochs", "2"]) == 0
    assert "best validation Dice" in capsys.readouterr().out
    assert list(history("flair_io")["epoch"]) == [1, 2]
    after = json.loads((paths.runs_dir() / "flair_io" / "settings.json").read_text())
    assert after["profile"]["model"] == settings["profile"]["model"]  # still the flair SegAN_IO
    assert after["profile"]["model"]["contrasts"] == ["flair"] and after["profile"]["train"]["epochs"] == 2
    # options that agree with the run are fine (the run is complete: nothing more to train)
    assert main(["train", "--profile", "smoke", "--contrasts", "flair", "--name", "flair_io", "--resume",
                 "--set", "model.width=4", "--set", "train.patience=9"]) == 0
    capsys.readouterr()
    # each option that conflicts is named, with what the run has
    for extra, named, has in [(["--contrasts", "t2"], "--contrasts t2", 'model.contrasts is ["flair"]'),
                              (["--set", "model.width=8"], "--set model.width=8", "model.width is 4"),
                              (["--critic-input", "mask"], "--critic-input mask", 'model.critic_input is "concat"'),
                              (["--profile", "quick"], "--profile quick", "trained with profile smoke"),
                              (["--freeze-critic", "--init-from", "flair_io"], "--freeze-critic",
                               "freeze none"),
                              (["--contrast-dropout", "0.5"], "--contrast-dropout 0.5", "the run has 0")]:
        assert main(["train", "--name", "flair_io", "--resume"] + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("segan train: error: cannot resume flair_io: ") and "Traceback" not in err
        assert named in err and has in err, err
        assert "settings.json" in err and "give only --name" in err
    assert list(history("flair_io")["epoch"]) == [1, 2]  # nothing was changed
    # a run that does not exist
    assert main(["train", "--name", "no_such_run", "--resume"]) == 2
    assert "cannot resume no_such_run: no run at" in capsys.readouterr().err


def test_the_library_names_the_settings_that_differ(root):
    from segan_lib.config import load_profile
    from segan_lib.training.trainer import TrainingError, train

    train(load_profile("smoke", TINY + ["train.epochs=1", "model.contrasts=[flair]"]), "lib_run", log=None)
    with pytest.raises(TrainingError, match=r"model\.contrasts: \['flair'\] in the run, \['t2'\] now"):
        train(load_profile("smoke", TINY + ["train.epochs=2", "model.contrasts=[t2]"]), "lib_run", resume=True,
              log=None)
