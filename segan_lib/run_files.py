"""The run folder's format: the one module that writes and reads a run's files.

runs/<run name>/
    settings.json          the resolved profile and the run's own options (written first)
    train_subjects.json    the training subjects used (all of the split's, or train.subject_fraction of them)
    history.csv            one row per epoch: losses, train and validation metrics, seconds
    checkpoints/last.npz   segmentor, critic, both optimizers' state, after the last finished epoch
    checkpoints/last.json  its epoch, the early-stopping state, the data-order seed, the history so far
    checkpoints/best.npz   the same at the epoch with the best validation Dice (+ best.json)
    metrics.json           written at the end: best epoch and its validation metrics, stop reason
    eval_<subset>*.csv     per-subject test metrics (segan_lib.evaluation), with a .json summary
    bundle/                the best segmentor and its card, for `segan predict` (segan_lib.apply.bundle)

Training writes these files (segan_lib.training); evaluation and the bundle export read them,
so neither needs the training code. Checkpoint arrays are keyed `<group>/<index>/<variable path>`
with the groups segmentor, critic, seg_optimizer and critic_optimizer, each in the order of the
model's variables. Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segan_lib import paths
from segan_lib.atomic import atomic_path, atomic_write_json, atomic_write_text
from segan_lib.errors import SeganError

CHECKPOINTS = "checkpoints"
SETTINGS = "settings.json"


class RunFilesError(SeganError):
    """A run folder, or one of its files, that is missing or cannot be read."""


def run_folder(run: str | Path) -> Path:
    """A run given by name (in runs/) or by path."""
    named = paths.runs_dir() / str(run)
    return named if named.exists() else paths.resolve(run)


def read_settings(run_dir: Path) -> dict:
    path = Path(run_dir) / SETTINGS
    if not path.is_file():
        raise RunFilesError(f"no run at {run_dir} (expected {SETTINGS} there)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFilesError(f"{path} cannot be read ({exc.__class__.__name__}: {exc})") from None


def write_settings(run_dir: Path, settings: dict) -> None:
    atomic_write_json(Path(run_dir) / SETTINGS, settings)


def save_checkpoint(run_dir: Path, tag: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{tag}.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    atomic_write_json(folder / f"{tag}.json", meta)  # after the arrays: the pair is complete once this exists


def read_checkpoint(run_dir: Path, tag: str) -> tuple[dict, dict]:
    """(meta, arrays) of checkpoint `tag` ("best" or "last")."""
    folder = Path(run_dir) / CHECKPOINTS
    meta_path, arr_path = folder / f"{tag}.json", folder / f"{tag}.npz"
    if not meta_path.is_file() or not arr_path.is_file():
        raise RunFilesError(f"no '{tag}' checkpoint in {run_dir} (expected {arr_path.name} and {meta_path.name})")
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(arr_path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise RunFilesError(f"checkpoint {arr_path} cannot be read ({exc.__class__.__name__}: {exc})") from None
    return meta, arrays


def group_arrays(arrays: dict[str, np.ndarray], group: str) -> list[np.ndarray]:
    """One group's arrays of a checkpoint (e.g. "segmentor"), in the model's variable order."""
    return [arrays[k] for k in sorted(k for k in arrays if k.startswith(group + "/"))]


def has_checkpoint(run_name: str) -> bool:
    return (paths.runs_dir() / run_name / CHECKPOINTS / "last.json").exists()


def write_history(run_dir: Path, history: list[dict]) -> None:
    import pandas as pd

    atomic_write_text(Path(run_dir) / "history.csv", pd.DataFrame(history).to_csv(index=False))


def write_metrics(run_dir: Path, metrics: dict) -> None:
    atomic_write_json(Path(run_dir) / "metrics.json", metrics)
