"""Input pipeline: cached volumes -> axial slices -> seeded random crops -> batches.

The order of the slices and the position of every crop are a pure function of
(seed, epoch): `epoch_plan` draws them with numpy from SeedSequence([seed, epoch]).
So a run resumed at epoch k sees exactly the batches an uninterrupted run sees
from epoch k on, whatever happened before, and the same plan can feed any Keras
backend (`batch_iterator` is plain numpy; `train_dataset` wraps it in tf.data;
`training_batches` picks one of the two for the running backend).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from segan_lib.data.case import LABEL_SCHEMES

REGION_NAMES = {"wt": ("wt",), "brats": ("wt", "tc", "et")}


@dataclass
class SliceSet:
    """Axial slices of a set of cases, in memory, channels last."""

    images: np.ndarray  # (N, H, W, C) float16/float32 in [0, 1]
    masks: np.ndarray  # (N, H, W, R) uint8 {0, 1}, one channel per region
    case_index: np.ndarray  # (N,) index into case_ids
    slice_index: np.ndarray  # (N,) axial index within the case's crop
    case_ids: list[str]
    contrasts: tuple[str, ...]
    regions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def volume(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(Z, H, W, C) images and (Z, H, W, R) masks of one case, slices in axial order."""
        sel = np.flatnonzero(self.case_index == self.case_ids.index(case_id))
        sel = sel[np.argsort(self.slice_index[sel])]
        return self.images[sel], self.masks[sel]


def region_masks(label: np.ndarray, layout: str, regions: str) -> np.ndarray:
    """(..., R) uint8 masks of the regions ('wt' or 'brats' = wt, tc, et) from a label volume.

    layout: the key of LABEL_SCHEMES the label follows (a case's scheme, else its layout)."""
    scheme = LABEL_SCHEMES[layout]
    all_regions = scheme.regions(np.asarray(label))
    return np.stack([all_regions[r] for r in REGION_NAMES[regions]], axis=-1).astype(np.uint8)


def load_slices(cache, case_ids: Sequence[str], contrasts: Sequence[str], regions: str = "wt",
                slices: str = "all") -> SliceSet:
    """Every axial slice of the cases ('all', the paper) or only those holding tumour ('tumour').

    Each case must have the contrasts and a label (a DataError names it otherwise: pick the cases
    first with `cache.usable`)."""
    images, masks, cidx, sidx = [], [], [], []
    for i, cid in enumerate(case_ids):
        vol = np.asarray(cache.images(cid, list(contrasts)))  # (C, X, Y, Z)
        lab = np.asarray(cache.label(cid))  # (X, Y, Z)
        meta = cache.meta[cid]
        scheme = meta.get("scheme") or meta.get("layout", "brats2018")
        m = region_masks(lab, scheme, regions)  # (X, Y, Z, R)
        keep = np.arange(vol.shape[-1])
        if slices == "tumour":
            keep = keep[m[..., 0].any(axis=(0, 1))]
        images.append(np.moveaxis(vol[..., keep], (0, 3), (3, 0)))  # (Z, X, Y, C)
        masks.append(np.moveaxis(m[:, :, keep, :], 2, 0))  # (Z, X, Y, R)
        cidx.append(np.full(len(keep), i, np.int32))
        sidx.append(keep.astype(np.int32))
    return SliceSet(np.concatenate(images), np.concatenate(masks), np.concatenate(cidx), np.concatenate(sidx),
                    list(case_ids), tuple(contrasts), REGION_NAMES[regions])


def epoch_plan(seed: int, epoch: int, n_slices: int, batch_size: int, image_hw: tuple[int, int],
               crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, offsets) of one epoch: steps*batch slice indices and their crops' top-left corners.

    The last incomplete batch is dropped so every step has the same shape.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    steps = n_slices // batch_size
    order = rng.permutation(n_slices)[: steps * batch_size]
    h, w = image_hw
    ch, cw = min(crop_size, h), min(crop_size, w)
    offsets = np.stack([rng.integers(0, h - ch + 1, size=len(order)), rng.integers(0, w - cw + 1, size=len(order))],
                       axis=1)
    return order, offsets


def steps_per_epoch(n_slices: int, batch_size: int) -> int:
    steps = n_slices // batch_size
    if steps == 0:
        raise ValueError(f"{n_slices} training slices are fewer than one batch of {batch_size}")
    return steps


def contrast_dropout_masks(seed: int, epoch: int, n: int, n_contrasts: int, rate: float) -> np.ndarray:
    """(n, n_contrasts) 0/1 masks of one epoch's slices: each contrast dropped with probability `rate`.

    At least one contrast stays in every slice (an all-dropped row keeps one chosen uniformly), so
    the model learns from every subset it can meet at test time. Drawn from their own stream of
    (seed, epoch), so the crops and the order of the epoch are those of a run without dropout.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"contrast dropout rate must be in [0, 1), got {rate!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 1]))
    keep = rng.random((n, n_contrasts)) >= rate
    rescue = rng.integers(0, n_contrasts, size=n)
    none_kept = ~keep.any(axis=1)
    keep[none_kept, rescue[none_kept]] = True
    return keep.astype(np.float32)


def gather_batch(data: SliceSet, order: np.ndarray, offsets: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = data.images.shape[1:3]
    ch, cw = min(crop_size, h), min(crop_size, w)
    x = np.empty((len(order), ch, cw, data.images.shape[-1]), np.float32)
    y = np.empty((len(order), ch, cw, data.masks.shape[-1]), np.float32)
    for j, (i, (r, c)) in enumerate(zip(order, offsets)):
        x[j] = data.images[i, r:r + ch, c:c + cw]
        y[j] = data.masks[i, r:r + ch, c:c + cw]
    return x, y


def batch_iterator(data: SliceSet, batch_size: int, crop_size: int, seed: int, start_epoch: int,
                   epochs: int, contrast_dropout: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of epochs start_epoch .. epochs-1, in order, as numpy arrays (any backend).

    contrast_dropout: the probability that a contrast of a training slice is zeroed (the
    zero fill of a missing contrast at test time), see contrast_dropout_masks; 0 for none.
    """
    steps = steps_per_epoch(len(data), batch_size)
    n_contrasts = data.images.shape[-1]
    for epoch in range(start_epoch, epochs):
        order, offsets = epoch_plan(seed, epoch, len(data), batch_size, data.images.shape[1:3], crop_size)
        masks = (contrast_dropout_masks(seed, epoch, len(order), n_contrasts, contrast_dropout)
                 if contrast_dropout > 0 else None)
        for s in range(steps):
            sl = slice(s * batch_size, (s + 1) * batch_size)
            x, y = gather_batch(data, order[sl], offsets[sl], crop_size)
            if masks is not None:
                x *= masks[sl, None, None, :]
            yield x, y


def train_dataset(data: SliceSet, batch_size: int, crop_size: int, seed: int, start_epoch: int, epochs: int,
                  contrast_dropout: float = 0.0):
    """The same batches as batch_iterator, as a prefetching tf.data.Dataset for Keras' fit."""
    import tensorflow as tf

    h, w = data.images.shape[1:3]
    ch, cw = min(crop_size, h), min(crop_size, w)
    spec = (tf.TensorSpec((batch_size, ch, cw, data.images.shape[-1]), tf.float32),
            tf.TensorSpec((batch_size, ch, cw, data.masks.shape[-1]), tf.float32))
    ds = tf.data.Dataset.from_generator(
        lambda: batch_iterator(data, batch_size, crop_size, seed, start_epoch, epochs, contrast_dropout),
        output_signature=spec)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_batches(data: SliceSet, batch_size: int, crop_size: int, seed: int, start_epoch: int, epochs: int,
                     contrast_dropout: float = 0.0):
    """The batches of batch_iterator in the form Keras' fit takes on the running backend.

    TensorFlow: train_dataset (prefetching tf.data). Other backends, where TensorFlow may be
    absent: the generator itself. Either way fit(steps_per_epoch=...) keeps one iterator
    across epochs and takes each epoch's steps from it in turn, so both see the same batches.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        return train_dataset(data, batch_size, crop_size, seed, start_epoch, epochs, contrast_dropout)
    return batch_iterator(data, batch_size, crop_size, seed, start_epoch, epochs, contrast_dropout)


def eval_batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for s in range(0, len(images), batch_size):
        yield images[s:s + batch_size]
