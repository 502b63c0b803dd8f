"""Kill and resume end to end: a training process killed with SIGKILL resumes to the same weights."""
from __future__ import annotations

import json
import os

import pytest

from segan_lib import paths
from tests.training.test_training import TINY, arrays, assert_same_state, root, tiny_root  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow  # two trainings in subprocesses, one killed and resumed


@pytest.mark.parametrize("xla", ["1", "0"])
def test_resume_after_a_real_sigkill(root, xla):
    """The process is killed (SIGKILL) in epoch 2; --resume still ends with the uninterrupted weights,
    with XLA (the CPU default; op determinism off) and without it (op determinism on).

    The kill waits on an event, not a clock: the line the run prints once epoch 1's checkpoint is
    written (unbuffered stdout), so on a fast or a loaded machine alike it lands after epoch 1's
    checkpoint and long before epoch 4 ends.
    """
    import signal
    import subprocess
    import sys

    base = [sys.executable, "-m", "segan_lib.cli", "train", "--profile", "smoke", "--contrasts", "flair"]
    base += [a for o in TINY + ["train.epochs=4"] for a in ("--set", o)]
    env = dict(os.environ, SEGAN_ROOT=str(root), PYTHONUNBUFFERED="1", SEGAN_XLA=xla)
    ref, killed = f"sigkill_ref_xla{xla}", f"sigkill_xla{xla}"
    subprocess.run(base + ["--name", ref], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(base + ["--name", killed], env=env, stdout=subprocess.PIPE,
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
    last = paths.runs_dir() / killed / "checkpoints" / "last.json"
    done = json.loads(last.read_text())["epoch"]
    assert 1 <= done < 4, f"killed after epoch {done}"
    subprocess.run(base + ["--name", killed, "--resume"], env=env, check=True, capture_output=True)
    assert json.loads((paths.runs_dir() / killed / "settings.json").read_text())["xla"] is (xla == "1")
    assert_same_state(arrays(ref), arrays(killed))
