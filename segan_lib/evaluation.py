"""Evaluating a segmentor on whole volumes, per subject.

Volumes are predicted slice by slice on the whole preprocessed crop (each
axial slice zero-padded to a multiple of 16, the segmentor's stride), the
probabilities thresholded at 0.5, and every metric computed per 3-D volume
(protocol "per_volume" of segan_lib.metrics), then averaged over volumes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from segan_lib import paths
from segan_lib.atomic import atomic_write_json, atomic_write_text
from segan_lib.metrics import PROTOCOL_NOTES, summarize_table, volume_metrics
from segan_lib.pipeline import SliceSet, pad_to_multiple

THRESHOLD = 0.5


def predict_slices(segmentor, data: SliceSet, batch_size: int = 32) -> np.ndarray:
    """Probabilities (N, H, W, R) for every slice of a SliceSet."""
    return predict_array(segmentor, data.images, batch_size)


def predict_array(segmentor, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities (N, H, W, R) for slices (N, H, W, C), each zero-padded to a multiple of 16 and cut back."""
    out = None
    for s in range(0, len(images), batch_size):
        x, cut = pad_to_multiple(np.asarray(images[s:s + batch_size], np.float32))
        n = len(x)
        if n < batch_size:  # one batch shape: the predict function is traced once
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
        p = np.asarray(segmentor.predict_on_batch(x))[:n]
        if out is None:
            out = np.empty((len(images), *images.shape[1:3], p.shape[-1]), np.float32)
        out[s:s + n] = p[cut]
    return out if out is not None else np.empty((0, *images.shape[1:3], 1), np.float32)


def soft_dice_np(truth: np.ndarray, prob: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """SegAN's per-sample soft Dice over (H, W), as the loss computes it, for (N, H, W, R) arrays."""
    inter = (prob * truth).sum(axis=(1, 2))
    denom = (prob ** 2).sum(axis=(1, 2)) + (truth ** 2).sum(axis=(1, 2))
    return 2 * (inter + eps) / (denom + 2 * eps)


def volume_metrics_table(probs: np.ndarray, data: SliceSet, spacing_mm: float = 1.0,
                         compute_hd95: bool = False) -> pd.DataFrame:
    """Per-case metrics of thresholded probabilities (first region: whole tumour; others suffixed)."""
    rows = []
    for ci, cid in enumerate(data.case_ids):
        sel = np.flatnonzero(data.case_index == ci)
        sel = sel[np.argsort(data.slice_index[sel])]
        row = {"case_id": cid}
        for r, region in enumerate(data.regions):
            pred = probs[sel, ..., r] > THRESHOLD
            truth = data.masks[sel, ..., r] > 0
            vm = volume_metrics(pred, truth, spacing=spacing_mm, compute_hd95=compute_hd95).as_dict()
            suffix = "" if r == 0 else f"_{region}"
            for k in ("dice", "precision", "sensitivity", "specificity", "hd95"):
                if k != "hd95" or compute_hd95:
                    row[k + suffix] = vm[k]
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["slice_dice_loss"] = float(1.0 - soft_dice_np(data.masks.astype(np.float32), probs).mean())
    return table


def load_run_models(run_dir: Path, tag: str = "best"):
    """The segmentor (and critic) of a saved run, with the weights of its best (or last) checkpoint."""
    from segan_lib.config import profile_from_dict
    from segan_lib.models import build_critic, build_segmentor
    from segan_lib.runs import read_checkpoint
    from segan_lib.training import SegAN, load_state_arrays

    settings = json.loads((Path(run_dir) / "settings.json").read_text())
    profile = profile_from_dict(settings["profile"], where=str(Path(run_dir) / "settings.json"))
    m = profile.model
    n_out = 1 if m.regions == "wt" else 3
    seg = build_segmentor(len(m.contrasts), width=m.width, n_outputs=n_out, seed=profile.train.seed)
    critic = build_critic(len(m.contrasts), n_seg_channels=n_out, input_mode=m.critic_input, width=m.width,
                          clip_value=m.clip_value, seed=profile.train.seed)
    model = SegAN(seg, critic, dice_weight=m.dice_weight, freeze=settings.get("freeze", "none"))
    model.compile(learning_rate=profile.train.learning_rate)
    model(np.zeros((1, 16, 16, len(m.contrasts)), np.float32))
    _, arrays = read_checkpoint(Path(run_dir), tag)
    load_state_arrays(model, arrays, groups=("segmentor", "critic"), where=f"{run_dir} ({tag})")
    return model, profile


def evaluate_run(run: str | Path, subset: str = "test", contrasts: Sequence[str] | None = None,
                 tag: str = "best", compute_hd95: bool = True, log=print) -> tuple[pd.DataFrame, dict]:
    """Per-subject metrics of a run on a subset of its split, optionally on other contrasts.

    Writes runs/<run>/eval_<subset>[_on-<contrasts>].csv (per subject) and .json (summary).
    """
    from segan_lib.cache import open_cache
    from segan_lib.errors import SeganError
    from segan_lib.pipeline import load_slices
    from segan_lib.splits import default_splits_path, load_split

    run_dir = run_folder(run)
    if not (run_dir / "settings.json").exists():
        raise SeganError(f"no run at {run_dir} (expected settings.json there)")
    model, profile = load_run_models(run_dir, tag)
    trained_on = tuple(profile.model.contrasts)
    contrasts = tuple(contrasts) if contrasts else trained_on
    if len(contrasts) != len(trained_on):
        raise SeganError(f"run {run_dir.name} takes {len(trained_on)} contrast(s) ({', '.join(trained_on)}); "
                         f"cannot evaluate it on {len(contrasts)} ({', '.join(contrasts)})")
    cache = open_cache(profile.data_root, profile.preprocess)
    split = load_split(default_splits_path(profile.data_root), case_ids=cache.case_ids)
    data = load_slices(cache, split.subset(subset), contrasts, profile.model.regions, "all")
    probs = predict_slices(model.segmentor, data, batch_size=profile.train.batch_size)
    table = volume_metrics_table(probs, data, spacing_mm=profile.preprocess.spacing_mm, compute_hd95=compute_hd95)
    summary_table = summarize_table(table.drop(columns=["case_id"]), seed=profile.train.seed)
    tag_name = f"eval_{subset}" + ("" if contrasts == trained_on else f"_on-{'-'.join(contrasts)}")
    summary = {
        "run": run_dir.name, "subset": subset, "trained_on": list(trained_on), "evaluated_on": list(contrasts),
        "checkpoint": tag, "n_subjects": len(table), "threshold": THRESHOLD,
        "protocol": "per_volume", "protocol_note": PROTOCOL_NOTES["per_volume"],
        "space": f"preprocessed crop ({'x'.join(map(str, profile.preprocess.crop_shape))} voxels of "
                 f"{profile.preprocess.spacing_mm:g} mm)",
        "metrics": {r["metric"]: {k: (None if pd.isna(v) else float(v)) for k, v in r.items() if k != "metric"}
                    for r in summary_table.to_dict("records")},
    }
    atomic_write_text(run_dir / f"{tag_name}.csv", table.to_csv(index=False))
    atomic_write_json(run_dir / f"{tag_name}.json", summary)
    if tag_name == "eval_test" and tag == "best" and (run_dir / "bundle").is_dir():
        from segan_lib.bundle import export_bundle

        export_bundle(run_dir)  # the bundle's card now carries these test metrics
    if log:
        d = summary["metrics"]["dice"]
        log(f"evaluate: {run_dir.name} on {subset} ({', '.join(contrasts)}): Dice {d['mean']:.3f} "
            f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}] over {len(table)} volumes -> {run_dir / (tag_name + '.csv')}")
    return table, summary


def predict_cases(run: str | Path, case_ids: Sequence[str], contrasts: Sequence[str] | None = None,
                  tag: str = "best") -> dict[str, dict]:
    """Whole preprocessed volumes of some cases with a run's prediction, for viewers.

    Returns case id -> {"images": {contrast: (X, Y, Z)}, "truth": (X, Y, Z) bool, "probability": (X, Y, Z),
    "prediction": (X, Y, Z) bool}; the first region (whole tumour) only.
    """
    from segan_lib.cache import open_cache
    from segan_lib.pipeline import load_slices

    model, profile = load_run_models(run_folder(run), tag)
    contrasts = tuple(contrasts) if contrasts else tuple(profile.model.contrasts)
    cache = open_cache(profile.data_root, profile.preprocess)
    data = load_slices(cache, list(case_ids), contrasts, profile.model.regions, "all")
    probs = predict_slices(model.segmentor, data, batch_size=profile.train.batch_size)
    out = {}
    for ci, cid in enumerate(data.case_ids):
        sel = np.flatnonzero(data.case_index == ci)
        sel = sel[np.argsort(data.slice_index[sel])]
        to_xyz = lambda a: np.moveaxis(a, 0, -1)  # (Z, X, Y) -> (X, Y, Z)
        out[cid] = {
            "images": {c: to_xyz(np.asarray(data.images[sel, ..., i], np.float32)) for i, c in enumerate(contrasts)},
            "truth": to_xyz(data.masks[sel, ..., 0] > 0),
            "probability": to_xyz(probs[sel, ..., 0]),
            "prediction": to_xyz(probs[sel, ..., 0] > THRESHOLD),
        }
    return out


def run_folder(run: str | Path) -> Path:
    """A run given by name (in runs/) or by path."""
    named = paths.runs_dir() / str(run)
    return named if named.exists() else paths.resolve(run)
