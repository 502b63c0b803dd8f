"""Validation per 3-D volume: the metrics training selects its best epoch on, also used by evaluation.

Probabilities of a SliceSet's slices are put back together per case, thresholded at
constants.THRESHOLD and scored per volume (segan_lib.metrics, protocol "per_volume").

The field scored (`evaluate.field` of a profile): "centre160", the authors' (their validation
and test sets are the centre 160x160 of each 180x180 slice, tf.image.resize_with_crop_or_pad to
the network's 160x160 input), here a centre window of round(160/180 * n) pixels of each in-plane
side n of the preprocessed crop, so that it is the authors' 160 at 1 mm and the same fraction of
the field of view at any other resolution; or "crop", the whole preprocessed crop. `field_slices`
cuts the window out of the images and the masks alike before prediction, so the network sees
what theirs saw (the window, zero-padded at its border by the convolutions), and what lies
outside it counts neither as tumour found nor as tumour missed.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from segan_lib.constants import EVALUATION_FIELDS, THRESHOLD
from segan_lib.data.pipeline import SliceSet
from segan_lib.metrics.volume import volume_metrics

CENTRE_FRACTION = 160 / 180  # the authors' centre 160x160 of each 180x180 slice


def field_window(size: int, field: str) -> slice:
    """The rows (or columns) of an in-plane side of `size` pixels that the field scores."""
    if field not in EVALUATION_FIELDS:
        raise ValueError(f"field must be one of {EVALUATION_FIELDS}, got {field!r}")
    if field == "crop":
        return slice(0, size)
    n = max(1, min(size, math.floor(size * CENTRE_FRACTION + 0.5)))  # round half up: 180 -> 160, 48 -> 43
    start = (size - n) // 2  # as tf.image.resize_with_crop_or_pad centres it
    return slice(start, start + n)


def field_slices(data: SliceSet, field: str) -> SliceSet:
    """The slices cut to the field's window (images and masks; views, no copy); the same SliceSet for "crop"."""
    if field == "crop":
        field_window(0, field)  # validates the name
        return data
    h, w = data.images.shape[1:3]
    rows, cols = field_window(h, field), field_window(w, field)
    return dataclasses.replace(data, images=data.images[:, rows, cols], masks=data.masks[:, rows, cols])


def field_description(field: str, crop_shape, spacing_mm: float) -> str:
    """The scored space in words (an evaluation summary's "space", which tables print after "on the")."""
    crop = f"preprocessed crop ({'x'.join(map(str, crop_shape))} voxels of {spacing_mm:g} mm)"
    if field == "crop":
        return crop
    h, w = (field_window(n, field) for n in crop_shape[:2])
    return (f"centre {h.stop - h.start}x{w.stop - w.start} of each {crop_shape[0]}x{crop_shape[1]} slice "
            f"(the authors' 160 of 180) of the {crop}")


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
