"""Evaluating a segmentor on whole volumes, per subject.

Volumes are predicted slice by slice on the run's evaluate.field of the preprocessed
crop (the authors' centre 160/180 of each slice, or the whole crop; see
segan_lib.training.validation; each axial slice zero-padded to a multiple of 16, the
segmentor's stride), the probabilities thresholded at 0.5, and every metric computed
per 3-D volume (protocol "per_volume" of segan_lib.metrics.protocols), then averaged
over volumes. The summary's "space" says which field was scored.
"""
from __future__ import annotations


from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from segan_lib.atomic import atomic_write_json, atomic_write_text
from segan_lib.constants import EVALUATION_FIELDS, THRESHOLD
from segan_lib.metrics.protocols import PROTOCOL_NOTES
from segan_lib.metrics.summary import summarize_table
from segan_lib.nets.inference import predict_slices
from segan_lib.run_files import read_checkpoint, read_settings, run_folder
from segan_lib.training.validation import field_description, field_slices, volume_metrics_table


def load_run_models(run_dir: Path, tag: str = "best"):
    """The segmentor (and critic) of a saved run, with the weights of its best (or last) checkpoint."""
    from segan_lib.config import profile_from_dict
    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN, load_state_arrays

    settings = read_settings(run_dir)
    profile = profile_from_dict(settings["profile"], where=str(Path(run_dir) / "settings.json"))
    m = profile.model
    n_out = 1 if m.regions == "wt" else 3
    seg = build_segmentor(len(m.contrasts), width=m.width, n_outputs=n_out, seed=profile.train.seed)
    critic = build_critic(len(m.contrasts), n_seg_channels=n_out, input_mode=m.critic_input, width=m.width,
                          clip_value=m.clip_value, clip_scope=m.clip_scope, seed=profile.train.seed)
    model = SegAN(seg, critic, dice_weight=m.dice_weight, freeze=settings.get("freeze", "none"),
                  update_order=profile.train.update_order, validation_field=profile.evaluate.field)
    model.compile(learning_rate=profile.train.learning_rate, rmsprop=profile.train.rmsprop)
    model(np.zeros((1, 16, 16, len(m.contrasts)), np.float32))
    _, arrays = read_checkpoint(Path(run_dir), tag)
    load_state_arrays(model, arrays, groups=("segmentor", "critic"), where=f"{run_dir} ({tag})")
    return model, profile


def evaluate_run(run: str | Path, subset: str = "test", contrasts: Sequence[str] | None = None,
                 tag: str = "best", compute_hd95: bool = True, log=print,
                 progress: bool = False, field: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-subject metrics of a run on a subset of its split, optionally on other contrasts.

    progress: a bar over the predicted slices on stderr, when it is a terminal.
    field: the field scored (EVALUATION_FIELDS); None: the run's own evaluate.field.

    Writes runs/<run>/eval_<subset>[_on-<contrasts>][_field-<field>].csv (per subject) and .json (summary),
    the field part only when it is not the run's own.
    """
    from segan_lib.data.cache import open_cache
    from segan_lib.errors import SeganError
    from segan_lib.data.pipeline import load_slices
    from segan_lib.data.splits import default_splits_path, load_split

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
    split = load_split(default_splits_path(profile.data_root), case_ids=cache.listed_ids)
    # the cases with these contrasts and a label: the others are a DataError naming them, or are left out
    # with a warning under data.on_bad_case=skip
    case_ids = cache.usable(split.subset(subset), contrasts, need_label=True, on_bad_case=profile.data.on_bad_case,
                            user="evaluation")
    own_field = profile.evaluate.field
    field = own_field if field is None else field
    if field not in EVALUATION_FIELDS:
        raise SeganError(f"unknown evaluation field {field!r}; known: {', '.join(EVALUATION_FIELDS)}")
    data = field_slices(load_slices(cache, case_ids, contrasts, profile.model.regions, "all"), field)
    probs = _predict_with_progress(model.segmentor, data.images, profile.train.batch_size, progress)
    table = volume_metrics_table(probs, data, spacing_mm=profile.preprocess.spacing_mm, compute_hd95=compute_hd95)
    summary_table = summarize_table(table.drop(columns=["case_id"]), seed=profile.train.seed)
    tag_name = eval_file_stem(subset, contrasts, trained_on, field, own_field)
    summary = {
        "run": run_dir.name, "subset": subset, "trained_on": list(trained_on), "evaluated_on": list(contrasts),
        "checkpoint": tag, "n_subjects": len(table), "threshold": THRESHOLD,
        "protocol": "per_volume", "protocol_note": PROTOCOL_NOTES["per_volume"],
        "space": field_description(field, profile.preprocess.crop_shape, profile.preprocess.spacing_mm),
        "field": field,
        "metrics": {r["metric"]: {k: (None if pd.isna(v) else float(v)) for k, v in r.items() if k != "metric"}
                    for r in summary_table.to_dict("records")},
    }
    atomic_write_text(run_dir / f"{tag_name}.csv", table.to_csv(index=False))
    atomic_write_json(run_dir / f"{tag_name}.json", summary)
    if log:
        d = summary["metrics"]["dice"]
        log(f"evaluate: {run_dir.name} on {subset} ({', '.join(contrasts)}): Dice {d['mean']:.3f} "
            f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}] over {len(table)} volumes -> {run_dir / (tag_name + '.csv')}")
    return table, summary


def eval_file_stem(subset: str, contrasts: Sequence[str], trained_on: Sequence[str], field: str,
                   own_field: str) -> str:
    """eval_<subset>[_on-<contrasts>][_field-<field>]: the contrasts when not the run's, the field when not its own."""
    return (f"eval_{subset}" + ("" if tuple(contrasts) == tuple(trained_on) else f"_on-{'-'.join(contrasts)}")
            + ("" if field == own_field else f"_field-{field}"))


def _predict_with_progress(segmentor, images, batch_size: int, progress: bool) -> np.ndarray:
    """predict_array over chunks of whole batches (the same batches, so the same numbers), with a bar."""
    from tqdm.auto import tqdm

    from segan_lib.nets.inference import predict_array

    if not progress:
        return predict_array(segmentor, images, batch_size)
    chunk = batch_size * 4
    parts = []
    with tqdm(total=len(images), desc="evaluate", unit="slice", disable=None) as bar:
        for s in range(0, len(images), chunk):
            parts.append(predict_array(segmentor, images[s:s + chunk], batch_size))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else predict_array(segmentor, images, batch_size)


def predict_cases(run: str | Path, case_ids: Sequence[str], contrasts: Sequence[str] | None = None,
                  tag: str = "best") -> dict[str, dict]:
    """Whole preprocessed volumes of some cases with a run's prediction, for viewers.

    Returns case id -> {"images": {contrast: (X, Y, Z)}, "truth": (X, Y, Z) bool, "probability": (X, Y, Z),
    "prediction": (X, Y, Z) bool}; the first region (whole tumour) only.
    """
    from segan_lib.data.cache import open_cache
    from segan_lib.data.pipeline import load_slices

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


def evaluation_stem(run: str | Path, field: str, subset: str = "test") -> str:
    """The stem of the file in which a run's evaluation of its own contrasts on `field` is (or will be) kept."""
    from segan_lib.config import profile_from_dict

    run_dir = run_folder(run)
    profile = profile_from_dict(read_settings(run_dir)["profile"], where=str(run_dir / "settings.json"))
    contrasts = profile.model.contrasts
    return eval_file_stem(subset, contrasts, contrasts, field, profile.evaluate.field)


def evaluation_on_field(run: str | Path, field: str, subset: str = "test", log=print) -> str:
    """The stem of a run's evaluation of its best checkpoint on `field` (in its folder), made first when absent:
    what a comparison of runs validated on different fields scores them all on."""
    run_dir = run_folder(run)
    stem = evaluation_stem(run_dir, field, subset)
    if not ((run_dir / f"{stem}.csv").is_file() and (run_dir / f"{stem}.json").is_file()):
        evaluate_run(run_dir, subset, field=field, log=log)
    return stem
