"""Per-sample batch metrics for training monitoring, in keras.ops only.

`dice_per_sample`, `precision_per_sample`, `sensitivity_per_sample` and
`specificity_per_sample` (and `batch_metrics`, all four in one pass) use keras.ops only,
so they run under any Keras 3 backend and inside a compiled test_step; they share the
formulas and the empty-mask convention of `segan_lib.metrics.volume` (the same
`_ratios`). The prediction's foreground is ``y_pred > threshold``, as `binarize`. With
``threshold=None`` they are soft (the probabilities enter the counts directly: TP =
sum(p g), ...). The SegAN soft-Dice *loss* (with squared terms) is not here; it belongs
with the losses. Keras is imported on first call, not with the module.
"""
from __future__ import annotations

from segan_lib.metrics.volume import _ratios


# ---------------------------------------------------------------- batch metrics (keras.ops only)
def _batch_ratios(y_true, y_pred, threshold, eps, per_channel):
    from keras import ops

    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    ndim = len(y_pred.shape)
    if len(y_true.shape) != ndim:
        raise ValueError(f"y_pred shape {tuple(y_pred.shape)} and y_true shape {tuple(y_true.shape)} differ in rank")
    if ndim < 2 or (per_channel and ndim < 3):
        raise ValueError(f"expected (batch, ..., C) tensors, got shape {tuple(y_pred.shape)}")
    if threshold is None:
        p = ops.cast(y_pred, "float32")
        g = ops.cast(y_true, "float32")
    else:
        p = ops.cast(ops.greater(y_pred, threshold), "float32")
        g = ops.cast(ops.not_equal(y_true, 0), "float32")
    axes = tuple(range(1, ndim - 1)) if per_channel else tuple(range(1, ndim))
    tp = ops.sum(p * g, axis=axes)
    fp = ops.sum(p * (1.0 - g), axis=axes)
    fn = ops.sum((1.0 - p) * g, axis=axes)
    tn = ops.sum((1.0 - p) * (1.0 - g), axis=axes)
    return _ratios(tp, fp, fn, tn, ops, eps)


def dice_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Dice of each sample of a (batch, H, W, C) batch: shape (batch,), or (batch, C) if per_channel.

    threshold: prediction foreground is ``y_pred > threshold`` and truth foreground is
    ``y_true != 0``; None gives the soft version (probabilities counted directly).
    A denominator <= eps counts as zero (module's empty convention: both empty -> 1).
    """
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["dice"]


def precision_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Precision of each sample; see `dice_per_sample` for the arguments and shapes."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["precision"]


def sensitivity_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Sensitivity (recall) of each sample; see `dice_per_sample`."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["sensitivity"]


def specificity_per_sample(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False):
    """Specificity of each sample; see `dice_per_sample`."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)["specificity"]


def batch_metrics(y_true, y_pred, threshold: float | None = 0.5, eps: float = 1e-6, per_channel: bool = False) -> dict:
    """All four per-sample ratios at once (one pass over the batch): {name: (batch,) tensor}."""
    return _batch_ratios(y_true, y_pred, threshold, eps, per_channel)
