"""Names and numbers shared across the layers, each defined once."""
from __future__ import annotations

from enum import Enum

CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")  # the model's channel order
GRADES: tuple[str, ...] = ("HGG", "LGG")
THRESHOLD = 0.5  # probability above which a voxel is tumour, in validation, evaluation and prediction
AFFINE_TOLERANCE_MM = 1e-3  # two scans share a grid when their affines differ by no more than this
MISSING_FILLS: tuple[str, ...] = ("zero", "mean")  # an absent contrast at test time: zeros, or its training mean in the brain


class Freeze(str, Enum):
    """What stays fixed when fine-tuning (`segan train --freeze`).

    The value is the CLI's and settings.json's word; `strategy` the transfer study's name for the
    fine-tuning it gives (the paper's Full and Seg., and the encoder-frozen one it names as future
    work); `run_suffix` its mark in run names. ENCODER freezes the segmentor's enc* layers, so the
    decoder and the critic adapt to the new contrast while the features stay the source's.
    """

    NONE = "none"
    CRITIC = "critic"
    ENCODER = "encoder"

    def __str__(self) -> str:
        return self.value

    @property
    def strategy(self) -> str:
        return {"none": "full", "critic": "critic", "encoder": "encoder"}[self.value]

    @property
    def run_suffix(self) -> str:
        return {"none": "full", "critic": "seg", "encoder": "enc"}[self.value]

    @classmethod
    def of_strategy(cls, strategy: str) -> "Freeze":
        """The freeze of a transfer-study strategy; anything trained without freezing (scratch, ...) is NONE."""
        return next((f for f in cls if f.strategy == strategy), cls.NONE)


FREEZE_MODES: tuple[str, ...] = tuple(f.value for f in Freeze)
FINE_TUNING_STRATEGIES: tuple[str, ...] = tuple(f.strategy for f in Freeze)  # full, critic, encoder
TRANSFER_STRATEGIES: tuple[str, ...] = ("scratch",) + FINE_TUNING_STRATEGIES

# Departures from the authors' training recipe (README, "Departures from the authors' code"): the first
# word of each is the authors' behaviour and every profile's default, the second ours before.
CLIP_SCOPES: tuple[str, ...] = ("kernels", "all")  # the critic's weights clipped: conv kernels only, or every one
UPDATE_ORDERS: tuple[str, ...] = ("joint", "critic_first")  # one tape for both gradients, or critic then segmentor
RMSPROP_VARIANTS: tuple[str, ...] = ("tf2", "keras3")  # epsilon outside the square root (TF 2.0), or inside
EVALUATION_FIELDS: tuple[str, ...] = ("centre160", "crop")  # validation and test on the centre 160/180, or all
