"""Test-time augmentation by flips: the probabilities averaged over the identity and mirrored inputs.

The segmentor is 2-D: it sees one axial slice at a time, so only in-plane flips are augmentations
(flipping the order of the slices changes nothing). Two modes:

    lr        identity + the left-right flip (2 passes, the default of `--tta`). A brain is close to
              mirror-symmetric about its mid-sagittal plane and a tumour may lie on either side, so a
              left-right mirrored scan is a scan like those the model was trained on. Training uses no
              flip augmentation, and this is the one flip whose image is still anatomy.
    inplane   identity + both in-plane flips and their combination (4 passes): nnU-Net's mirroring of
              its 2-D configuration. An anterior-posterior flip puts the frontal lobe at the back, an
              image no training scan resembles; nnU-Net can mirror it because it trains with mirroring.

Which voxel axis is left-right comes from the bundle's training orientation (card
`preprocessing.orientation`, e.g. L, P, S: the first axis); the prediction runs on scans reordered
to that orientation, so the flip is the same anatomical one for any input. A card without the
orientation (a hand-made bundle) is taken as BraTS' convention, left-right first.
"""
from __future__ import annotations

import numpy as np

from segan_lib.errors import SeganError

TTA_MODES = ("lr", "inplane")


def tta_flips(card: dict, mode: str | None) -> list[tuple[int, ...]]:
    """The flips to average, as axes of a (Z, X, Y, C) slice stack; [()] (identity only) for mode None."""
    if mode is None:
        return [()]
    if mode not in TTA_MODES:
        raise SeganError(f"unknown test-time augmentation {mode!r}: the modes are {', '.join(TTA_MODES)}")
    if mode == "inplane":
        return [(), (1,), (2,), (1, 2)]
    codes = (card.get("preprocessing") or {}).get("orientation") or ["L", "P", "S"]
    lr_axis = next((i for i, c in enumerate(codes) if str(c).upper() in ("L", "R")), 0)
    if lr_axis == 2:
        raise SeganError(f"--tta lr: the bundle's training orientation {''.join(codes)} has left-right along the "
                         "slice axis, where a flip changes nothing for a 2-D segmentor (use --tta inplane)")
    return [(), (lr_axis + 1,)]  # volume axis 0/1 is slice-stack axis 1/2


def predict_flipped(predict, x: np.ndarray, flips: list[tuple[int, ...]]) -> np.ndarray:
    """The mean over `flips` of predict(flipped x), each flipped back; predict maps (Z, X, Y, C) -> (Z, X, Y, R)."""
    total = None
    for axes in flips:
        p = predict(np.ascontiguousarray(np.flip(x, axes)) if axes else x)
        p = np.flip(p, axes) if axes else p
        total = p.astype(np.float32) if total is None else total + p
    return total / np.float32(len(flips))
