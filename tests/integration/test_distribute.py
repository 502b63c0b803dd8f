"""tf.distribute: one device, two logical CPUs (MirroredStrategy) and two local worker processes
(MultiWorkerMirroredStrategy over loopback) train the same tiny run to the same losses and weights.

Why the three agree: the global batch of 8 is split 4 + 4, batch normalisation is synchronised
over the replicas, and each replica's loss counts 1/2 before the optimizer sums the gradients, so
the only difference left is the order of floating-point sums.

Tolerances, from measured spread:
- the losses (smooth in the weights): 1e-4 relative; measured up to 6e-7 relative;
- the thresholded metrics (train `dice`, `val_dice`: a voxel counts when its probability is above
  0.5): 2e-3 absolute. A different order of sums moves a probability by ~1e-7, and a voxel that sits
  that close to 0.5 flips; one flip moves a volume's Dice by up to 2 / (|truth| + |prediction|),
  ~3e-5 on these volumes. A fresh-clone CI saw 2.9e-5 (one flip, 1.25e-4 relative, which broke an
  earlier 1e-4 relative bound); 2e-3 allows some 60 flips, far above any seen;
- every weight after two epochs: 1e-3 absolute; measured up to 3e-5.
A resumed mirrored run is compared with the same bounds (it matched exactly where measured).

The three placements are compared with the critic clipped whole (`model.clip_scope=all`), not the
default kernel-only clipping. An open finding of the recipe issue: with the authors' joint step and
kernel-only clipping, a mirrored run and a one-device run drift apart (this tiny run, two epochs:
critic_loss 3.1e-4 relative, validation Dice 3.1e-2, segmentor weights 1e-2), while every other
pairing measured stays at rounding: joint + clip all 1.5e-7 (critic_loss), joint + clip all + Keras 3
RMSprop 4.1e-7, critic-first + kernel-only clipping 8.6e-8. Whether that is chaos the unclipped
batch-norm gamma lets grow, or a fault of the joint step under a strategy, is not yet known; the
README's GPU section says so. The default recipe under a strategy is still trained by the resume
test below, whose two runs must match each other.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from segan_lib.training.distribute import _is_chief, check_global_batch, make_placement
from segan_lib.errors import ConfigError
from tests.tiny_project import tiny_project

TINY = ["data.phantom_n=10", "model.width=4", "train.batch_size=8", "train.epochs=2", "train.patience=5",
        "preprocess.crop_shape=[48, 48, 16]"]
SMOOTH_LOGS = ["seg_loss", "critic_loss", "l1", "dice_loss"]
THRESHOLDED_LOGS = ["dice", "val_dice"]
SMOOTH_RTOL, THRESHOLDED_ATOL, WEIGHT_ATOL = 1e-4, 2e-3, 1e-3  # measured spread in the module docstring
DISTRIBUTION_CHECKED = ("--set", "model.clip_scope=all")  # see the module docstring


def test_strategy_names_are_checked_and_the_chief_is_worker_zero(monkeypatch):
    monkeypatch.delenv("SEGAN_STRATEGY", raising=False)
    assert make_placement().name == "default" and make_placement().replicas == 1
    with pytest.raises(ConfigError, match="unknown strategy 'tpu'"):
        make_placement("tpu")
    monkeypatch.setenv("SEGAN_STRATEGY", "mirrors")
    with pytest.raises(ConfigError, match="mirrors"):
        make_placement()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_placement("multiworker")
    with pytest.raises(ConfigError, match="batch_size=6 .* 4 replicas"):
        check_global_batch(6, 4)
    check_global_batch(8, 4)
    workers = {"worker": ["a:1", "b:2"]}
    assert _is_chief({"cluster": workers, "task": {"type": "worker", "index": 0}})
    assert not _is_chief({"cluster": workers, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:3"], **workers}
    assert _is_chief({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    assert not _is_chief({"cluster": with_chief, "task": {"type": "worker", "index": 0}})


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    with tiny_project(root, TINY):
        yield root


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_command(name: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "segan_lib.cli", "train", "--profile", "smoke", "--name", name, *extra]
    for item in TINY:
        cmd += ["--set", item.replace(" ", "")]
    return cmd


def _env(root, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "SEGAN_STRATEGY", "SEGAN_LOGICAL_CPUS")}
    return dict(env, SEGAN_ROOT=str(root), CUDA_VISIBLE_DEVICES="", **extra)


def _run(cmd, env, timeout=300) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _history(root, name) -> pd.DataFrame:
    return pd.read_csv(root / "runs" / name / "history.csv")


def _weights(root, name, tag="last") -> dict:
    with np.load(root / "runs" / name / "checkpoints" / f"{tag}.npz") as z:
        return {k: z[k] for k in z.files if k.startswith(("segmentor/", "critic/"))}


def _assert_same_run(root, a, b):
    ha, hb = _history(root, a), _history(root, b)
    assert list(ha["epoch"]) == list(hb["epoch"]) == [1, 2]
    for col in SMOOTH_LOGS:
        np.testing.assert_allclose(hb[col], ha[col], rtol=SMOOTH_RTOL, atol=1e-6, err_msg=f"{b} vs {a}: {col}")
    for col in THRESHOLDED_LOGS:
        np.testing.assert_allclose(hb[col], ha[col], rtol=0, atol=THRESHOLDED_ATOL, err_msg=f"{b} vs {a}: {col}")
    wa, wb = _weights(root, a), _weights(root, b)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wb[key], wa[key], atol=WEIGHT_ATOL, err_msg=f"{b} vs {a}: {key}")


@pytest.mark.slow  # three trainings, two of them distributed
def test_one_device_two_logical_cpus_and_two_workers_train_alike(tiny_root):
    _run(_train_command("one_device", *DISTRIBUTION_CHECKED), _env(tiny_root))

    out = _run(_train_command("mirrored", "--strategy", "mirrored", *DISTRIBUTION_CHECKED),
               _env(tiny_root, SEGAN_LOGICAL_CPUS="2"))
    assert "mirrored strategy, 2 replicas of 4 slices" in out
    _assert_same_run(tiny_root, "one_device", "mirrored")

    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in (0, 1):
        env = _env(tiny_root, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(_train_command("two_workers", "--strategy", "multiworker", *DISTRIBUTION_CHECKED), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    assert "multiworker strategy, 2 replicas of 4 slices" in outputs[0]
    assert "not the chief: writes nothing" in outputs[1] and "not the chief" not in outputs[0]
    _assert_same_run(tiny_root, "one_device", "two_workers")
    assert (tiny_root / "runs" / "two_workers" / "bundle" / "card.json").exists()  # the chief finished the run


@pytest.mark.slow  # a mirrored training, stopped and resumed
def test_a_mirrored_run_resumes_exactly(tiny_root):
    env = _env(tiny_root, SEGAN_LOGICAL_CPUS="2")
    _run(_train_command("mirrored_resumed", "--strategy", "mirrored", "--epochs", "1"), env)
    assert list(_history(tiny_root, "mirrored_resumed")["epoch"]) == [1]
    out = _run(_train_command("mirrored_resumed", "--strategy", "mirrored", "--resume"), env)
    assert "resuming mirrored_resumed after epoch 1" in out
    _run(_train_command("mirrored_uninterrupted", "--strategy", "mirrored"), env)  # the default optimizer, too
    _assert_same_run(tiny_root, "mirrored_uninterrupted", "mirrored_resumed")
