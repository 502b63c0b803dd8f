"""The SegAN multi-scale critic. Its input is built from (image, segmentation), either ``"mask"`` (SegAN: the
image multiplied by the segmentation) or ``"concat"`` (SegAN_IO / SegAN-CAT: channel concatenation); then 3 x
[conv 4x4 stride 2 'same'] with width*(1, 2, 4) filters, batch norm from the second layer on (no bias there),
LeakyReLU(0.2). Its output is a list of 4 flattened tensors ``[input, layer1, layer2, layer3]`` (multi-scale
features); ``concat_features`` joins them into the single ``(batch, F)`` vector of the paper. The clipped
weights carry a ``ClipConstraint``, which Keras applies after every optimizer update of those variables
(WGAN-style weight clipping): with ``clip_scope="kernels"`` (the default, the authors' ``kernel_constraint``)
the convolution kernels only; with ``"all"`` (PyTorch SegAN's clamp of every parameter) also the first
conv's bias and batch-norm gamma and beta.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from segan_lib.constants import CLIP_SCOPES
from segan_lib.nets.layers import LEAKY_SLOPE, ClipConstraint, CriticInput, batch_norm, kernel_init, layer_seed


def critic_input_channels(n_image_channels: int, n_seg_channels: int = 1, input_mode: str = "concat") -> int:
    """Number of channels of the critic's input for the given mode."""
    if input_mode == "concat":
        return n_image_channels + n_seg_channels
    if input_mode == "mask":
        return n_image_channels if n_seg_channels == 1 else n_image_channels * n_seg_channels
    raise ValueError(f"input_mode must be 'concat' or 'mask', got {input_mode!r}")


def concat_features(features):
    """Join the critic's list of flattened per-scale features into one ``(batch, F)`` tensor."""
    return ops.concatenate(list(features), axis=-1)


def build_critic(
    n_image_channels: int,
    n_seg_channels: int = 1,
    input_mode: str = "concat",
    width: int = 64,
    clip_value: float | None = 0.05,
    clip_scope: str = "kernels",
    name: str = "critic",
    seed: int | None = 0,
    sync_batchnorm: bool = False,
) -> keras.Model:
    """The multi-scale critic.

    Inputs: ``[image (H, W, n_image_channels), segmentation (H, W, n_seg_channels)]``.
    The critic input is built by :class:`CriticInput` (``input_mode`` "concat" or
    "mask"; see there for S > 1 in mask mode).

    Returns a model whose output is a LIST of four flattened tensors
    ``[input, layer1, layer2, layer3]`` of shapes ``(batch, H*W*C_in)``,
    ``(batch, H/2*W/2*width)``, ``(batch, H/4*W/4*2width)``,
    ``(batch, H/8*W/8*4width)``, so per-scale weights can be applied;
    :func:`concat_features` concatenates them into the paper's ``(batch, F)``
    feature vector.

    ``clip_value`` (default 0.05): the clipped weights get a :class:`ClipConstraint`,
    which Keras applies after each optimizer update; ``None`` disables clipping.
    ``clip_scope``: which weights, ``"kernels"`` (default; the authors' code clips
    only the convolution kernels, ``kernel_constraint``) or ``"all"`` (also the
    first conv's bias and batch-norm gamma and beta, as PyTorch SegAN clamps every
    parameter). Initial values are not clipped (batch-norm gamma starts at 1, as
    in the reference implementations that clip after each update).
    """
    if n_image_channels < 1 or n_seg_channels < 1 or width < 1:
        raise ValueError("n_image_channels, n_seg_channels and width must be positive")
    if input_mode not in CriticInput.MODES:
        raise ValueError(f"input_mode must be one of {CriticInput.MODES}, got {input_mode!r}")
    if clip_scope not in CLIP_SCOPES:
        raise ValueError(f"clip_scope must be one of {CLIP_SCOPES}, got {clip_scope!r}")
    kernel_constraint = ClipConstraint(clip_value) if clip_value is not None else None
    other_constraint = kernel_constraint if clip_scope == "all" else None
    image = keras.Input(shape=(None, None, n_image_channels), name="image")
    seg = keras.Input(shape=(None, None, n_seg_channels), name="segmentation")
    x = CriticInput(mode=input_mode, name="critic_input")([image, seg])
    features = [layers.Flatten(name="flat_input")(x)] + _conv_features(x, width, seed, kernel_constraint,
                                                                       other_constraint, sync_batchnorm)
    return keras.Model([image, seg], features, name=name)


def _conv_features(x, width: int, seed: int | None, kernel_constraint, other_constraint,
                   sync_batchnorm: bool) -> list:
    """The three strided convolutions, each layer's output flattened; kernels and the other weights constrained
    by their own constraint (None: free)."""
    tag = "critic"
    k = 4
    features = []
    for i, mult in enumerate((1, 2, 4), start=1):
        filters = width * mult
        use_bn = i > 1
        x = layers.Conv2D(
            filters,
            k,
            strides=2,
            padding="same",
            use_bias=not use_bn,
            kernel_initializer=kernel_init(k, filters, layer_seed(seed, tag, i - 1)),
            kernel_constraint=kernel_constraint,
            bias_constraint=other_constraint,
            name=f"conv{i}",
        )(x)
        if use_bn:
            x = batch_norm(f"bn{i}", constraint=other_constraint, synchronized=sync_batchnorm)(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"lrelu{i}")(x)
        features.append(layers.Flatten(name=f"flat_layer{i}")(x))
    return features
