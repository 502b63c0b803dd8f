"""Validation per 3-D volume: the metrics training selects its best epoch on, also used by evaluation.

Probabilities of a SliceSet's slices are put back together per case, thresholded at
constants.THRESHOLD and scored per volume (segan_lib.metrics, protocol "per_volume").
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from segan_lib.constants import THRESHOLD
from segan_lib.data.pipeline import SliceSet
from segan_lib.metrics.volume import volume_metrics


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
