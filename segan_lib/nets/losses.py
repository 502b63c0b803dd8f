"""SegAN losses: soft Dice, multi-scale L1, segmentor and critic losses (``keras.ops`` only).

All losses compute in float32 (inputs are cast), so they are safe under a
mixed-precision policy.
"""
from __future__ import annotations

from typing import Sequence

from keras import ops

__all__ = [
    "DICE_EPS",
    "REDUCTIONS",
    "SEGAN_ORIGINAL_SCALE_WEIGHTS",
    "critic_loss",
    "dice_loss",
    "multiscale_l1",
    "segmentor_loss",
    "soft_dice",
]

DICE_EPS = 1e-6
REDUCTIONS = ("concat_mean", "per_scale_sum")
# The original (PyTorch, skin-lesion) SegAN weights its critic's 7 scales
# (input + 6 conv outputs) by these factors; our critic has 4 scales.
SEGAN_ORIGINAL_SCALE_WEIGHTS = (1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 4.0)


def _f32(x):
    return ops.cast(ops.convert_to_tensor(x), "float32")


def soft_dice(y_true, y_pred, eps: float = DICE_EPS):
    """SegAN's per-sample soft Dice.

    ``2 (sum(p*g) + eps) / (sum(p^2) + sum(g^2) + 2 eps)``, sums over H and W.

    Shapes: ``(B, H, W)`` or ``(B, H, W, 1)`` -> ``(B,)``; ``(B, H, W, C)`` with
    C > 1 -> ``(B, C)`` (one value per sample and channel).
    """
    g = _f32(y_true)
    p = _f32(y_pred)
    rank = len(p.shape)
    if rank not in (3, 4):
        raise ValueError(f"expected (B, H, W) or (B, H, W, C) tensors, got rank {rank}")
    axes = (1, 2)
    inter = ops.sum(p * g, axis=axes)
    denom = ops.sum(p * p, axis=axes) + ops.sum(g * g, axis=axes)
    dice = 2.0 * (inter + eps) / (denom + 2.0 * eps)
    if rank == 4 and p.shape[-1] == 1:
        dice = ops.squeeze(dice, axis=-1)
    return dice


def dice_loss(y_true, y_pred, eps: float = DICE_EPS):
    """``1 - mean(soft_dice)``, the mean over the batch (and channels): a scalar."""
    return 1.0 - ops.mean(soft_dice(y_true, y_pred, eps=eps))


def multiscale_l1(
    features_real: Sequence,
    features_fake: Sequence,
    weights: Sequence[float] | None = None,
    reduction: str = "concat_mean",
):
    """Multi-scale L1 between the critic's features of (image, ground truth) and (image, prediction).

    ``features_real`` / ``features_fake``: lists of flattened per-scale tensors
    ``(batch, F_s)`` as returned by the critic (``[input, layer1, layer2, layer3]``).
    ``weights``: one factor per scale, default all 1.

    reduction:
      ``"concat_mean"`` (default): each scale is multiplied by its weight, the
        scales are concatenated and the mean of ``|real - fake|`` is taken over
        batch and all features, i.e. ``sum_s w_s F_s mean_s / sum_s F_s``. With
        the default weights this is exactly the authors' (SegAN-CAT) loss, the mean
        over the concatenated feature vector; with weights it is what the original
        PyTorch SegAN does. It is the default because it is what the reproduced
        code computes; scales with more features (the early, high-resolution ones)
        dominate it.
      ``"per_scale_sum"``: ``sum_s w_s * mean_s |real_s - fake_s|``, every scale's
        mean counted with its own weight regardless of its size (differs from
        ``"concat_mean"`` even with all weights 1).

    The original SegAN weights its seven scales 1, 1, 2, 2, 2, 2, 4
    (``SEGAN_ORIGINAL_SCALE_WEIGHTS``); a user with a critic of that many scales may
    pass them; for our four-scale critic a similar choice would be e.g. (1, 1, 2, 4).
    Returns a float32 scalar.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    real = list(features_real)
    fake = list(features_fake)
    if len(real) != len(fake) or not real:
        raise ValueError(f"need the same non-zero number of scales, got {len(real)} and {len(fake)}")
    if weights is None:
        weights = [1.0] * len(real)
    weights = [float(w) for w in weights]
    if len(weights) != len(real):
        raise ValueError(f"{len(weights)} weights for {len(real)} scales")

    diffs = [ops.abs(_f32(r) - _f32(f)) for r, f in zip(real, fake)]
    if reduction == "concat_mean":
        flat = [ops.reshape(d * w, (ops.shape(d)[0], -1)) for d, w in zip(diffs, weights)]
        return ops.mean(ops.concatenate(flat, axis=-1))
    total = 0.0
    for d, w in zip(diffs, weights):
        total = total + w * ops.mean(d)
    return ops.convert_to_tensor(total, dtype="float32")


def segmentor_loss(l1, dice_l, dice_weight: float = 1.0):
    """Segmentor loss: ``l1 + dice_weight * dice_l``.

    A Python ``dice_weight`` of 0 ("SegAN without Dice") drops the term entirely,
    so even a non-finite Dice value cannot leak into the loss.
    """
    if isinstance(dice_weight, (int, float)) and dice_weight == 0:
        return l1
    return l1 + dice_weight * dice_l


def critic_loss(l1):
    """Critic loss: ``-l1`` (the critic maximises the multi-scale L1)."""
    return -l1
