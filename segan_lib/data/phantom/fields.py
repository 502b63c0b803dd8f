"""Smooth random fields and the small numeric helpers of the phantom.

Resizing to an exact shape, control grids, smooth unit-variance noise (white noise on a
coarse grid, spline-interpolated), quantile thresholds and a float32 sigmoid: the building
blocks of the deformation, the tumour shapes and their texture.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

def _resize(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """scipy.ndimage.zoom to an exact shape, corners aligned (grid_mode=False)."""
    if tuple(array.shape) == tuple(shape):
        return array
    factors = [n / m for n, m in zip(shape, array.shape)]
    out = ndi.zoom(array, factors, order=order, mode="nearest", grid_mode=False)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def _control_shape(shape: tuple[int, ...], cell: float) -> tuple[int, ...]:
    """Number of control points with spacing ~`cell` voxels covering `shape` (at least 2 per axis)."""
    return tuple(max(2, int(math.ceil((n - 1) / max(cell, 1e-6))) + 1) for n in shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Smooth random field of `shape`, correlation length ~`cell` voxels, zero mean and unit std.

    White noise on a control grid, interpolated by cubic splines (a linear second stage
    when the output is large keeps the cost down; the field is smooth at that scale).
    """
    coarse = rng.standard_normal(_control_shape(shape, cell), dtype=np.float32)
    if np.prod(shape) > 2e5 and cell > 4:
        mid = tuple(min(n, max(2, int(math.ceil((n - 1) / 2.0)) + 1)) for n in shape)
        field = _resize(_resize(coarse, mid, order=3), shape, order=1)
    else:
        field = _resize(coarse, shape, order=3)
    field = field.astype(np.float32, copy=False)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def _quantile_threshold(values: np.ndarray, count: int) -> float:
    """Threshold t such that about `count` of `values` are > t."""
    count = int(np.clip(count, 1, values.size))
    if count >= values.size:
        return float(values.min()) - 1e-3
    kth = values.size - count - 1
    return float(np.partition(values, kth)[kth])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)
