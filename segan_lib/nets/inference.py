"""Slice-wise inference: a segmentor's probabilities for a stack of axial slices.

Each slice is zero-padded to a multiple of 16 (the segmentor's stride) and the output cut back;
every batch has one shape, so the predict function is traced once.
"""
from __future__ import annotations

import numpy as np


def pad_to_multiple(x: np.ndarray, multiple: int = 16, axes: tuple[int, int] = (1, 2)) -> tuple[np.ndarray, tuple]:
    """Zero-pad the in-plane axes to a multiple (the segmentor halves the size four times).

    Returns the padded array and the slices that cut the original back out.
    """
    pads = [(0, 0)] * x.ndim
    cut = [slice(None)] * x.ndim
    for ax in axes:
        n = x.shape[ax]
        total = (-n) % multiple
        pads[ax] = (total // 2, total - total // 2)
        cut[ax] = slice(total // 2, total // 2 + n)
    return np.pad(x, pads), tuple(cut)


def predict_slices(segmentor, data, batch_size: int = 32) -> np.ndarray:
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
