"""Kill and resume end to end: a training process killed with SIGKILL resumes to the same weights."""
from __future__ import annotations

import json
import os

import pytest

from segan_lib import paths
from tests.training.test_training import TINY, arrays, assert_same_state, root, tiny_root  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow  # two trainings in subprocesses, one killed and resumed


def test_resume_after_a_real_sigkill(root):
    """The process is killed (SIGKILL) in epoch 2; --resume still ends with the uninterrupted weights.

    The kill waits on an event, not a clock: the line the run prints once epoch 1's checkpoint is
    written (unbuffered stdout), so on a fast or a loaded machine alike it lands after epoch 1's
    checkpoint and long before epoch 4 ends.
    """
    import signal
    import subprocess
    import sys

    base = [sys.executable, "-m", "segan_lib.cli", "train", "--profile", "smoke", "--contrasts", "flair"]
    base += [a for o in TINY + ["train.epochs=4"] for a in ("--set", o)]
    env = dict(os.environ, SEGAN_ROOT=str(root), PYTHONUNBUFFERED="1")
    subprocess.run(base + ["--name", "sigkill_ref"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(base + ["--name", "sigkill"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seen = []
    for line in proc.stdout:  # blocks until the run prints; ends if the run exits
        seen.append(line)
        if line.startswith("epoch 1:"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    last = paths.runs_dir() / "sigkill/checkpoints/last.json"
    done = json.loads(last.read_text())["epoch"]
    assert 1 <= done < 4, f"killed after epoch {done}"
    subprocess.run(base + ["--name", "sigkill", "--resume"], env=env, check=True, capture_output=True)
    assert_same_state(arrays("sigkill_ref"), arrays("sigkill"))
