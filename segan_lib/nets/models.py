"""SegAN / SegAN_IO networks: the segmentor and the multi-scale critic.

Written with ``keras.layers`` / ``keras.ops`` only, so the models run under any
Keras 3 backend (TensorFlow, JAX, PyTorch) and round-trip through
``model.save("x.keras")`` / ``keras.models.load_model``.

Architecture (as in the authors' code, without its known defects):

Segmentor (encoder-decoder, fully convolutional, H and W divisible by 16)
    encoder: 4 x [conv 4x4 stride 2 'same'] with width*(1, 2, 4, 8) filters;
        the first conv has a bias and no batch norm, the others batch norm and
        no bias; LeakyReLU(0.2) after each.
    decoder: 3 x [bilinear x2, conv 3x3 (no bias), batch norm, ReLU] with
        width*(4, 2, 1) filters, each followed by the *addition* of the encoder
        feature of the same size (encoder layer 3, 2, 1 respectively);
        then bilinear x2, conv 3x3 to ``n_outputs`` channels (bias, no batch
        norm, no ReLU) and a sigmoid computed in float32.
    With width 64 and one input channel: 4,307,841 parameters (all variables,
    batch-norm moving statistics included; 4,305,153 trainable).

Critic
    input: built from (image, segmentation), either ``"mask"`` (SegAN: the image
        multiplied by the segmentation) or ``"concat"`` (SegAN_IO / SegAN-CAT:
        channel concatenation).
    3 x [conv 4x4 stride 2 'same'] with width*(1, 2, 4) filters, batch norm from
        the second layer on (no bias there), LeakyReLU(0.2).
    output: a list of 4 flattened tensors ``[input, layer1, layer2, layer3]``
        (multi-scale features); ``concat_features`` joins them into the single
        ``(batch, F)`` vector of the paper.
    All trainable weights (conv kernels, the first conv's bias, batch-norm gamma
    and beta) carry a :class:`ClipConstraint`, which Keras applies after every
    optimizer update of those variables (WGAN-style weight clipping).

Batch norm: epsilon 1e-5, momentum 0.9 in Keras' meaning (moving = 0.9 * moving
+ 0.1 * batch; PyTorch's momentum 0.1). Convolution kernels are initialised
N(0, sqrt(2 / (k * k * filters))) with a per-layer seed derived from ``seed``.
"""
from __future__ import annotations

import math
import zlib

import keras
from keras import layers, ops

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "LEAKY_SLOPE",
    "BilinearUpSampling2D",
    "ClipConstraint",
    "CriticInput",
    "build_critic",
    "build_segmentor",
    "concat_features",
    "critic_input_channels",
]

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras meaning; equals PyTorch's momentum=0.1
LEAKY_SLOPE = 0.2

_CUSTOM_PACKAGE = "segan"


@keras.saving.register_keras_serializable(package=_CUSTOM_PACKAGE)
class ClipConstraint(keras.constraints.Constraint):
    """Clip every element of a weight to ``[-clip_value, clip_value]``.

    Attached as a constraint to a variable, Keras (3.x) applies it right after
    each optimizer update of that variable (``optimizer.apply`` assigns
    ``variable.constraint(variable)`` to every trainable variable that has one).
    """

    def __init__(self, clip_value: float = 0.05):
        if clip_value is None or not clip_value > 0:
            raise ValueError(f"clip_value must be positive, got {clip_value!r}")
        self.clip_value = float(clip_value)

    def __call__(self, w):
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package=_CUSTOM_PACKAGE)
class CriticInput(layers.Layer):
    """Build the critic's input from ``[image, segmentation]``.

    ``mode="concat"`` (SegAN_IO / SegAN-CAT): ``concatenate([image, seg], -1)``,
    ``C + S`` channels.

    ``mode="mask"`` (SegAN): the image multiplied by the segmentation. With one
    segmentation channel (S = 1) every image channel is multiplied by it (C
    channels). With S > 1 the output has ``C * S`` channels: channel
    ``c * S + s`` is image channel ``c`` times segmentation channel ``s``
    (image-major order).
    """

    MODES = ("concat", "mask")

    def __init__(self, mode: str = "concat", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        image, seg = inputs
        if self.mode == "concat":
            return ops.concatenate([image, seg], axis=-1)
        n_image = image.shape[-1]
        n_seg = seg.shape[-1]
        if n_seg == 1:
            return image * seg
        # channel c*S + s = image[c] * seg[s]
        return ops.repeat(image, n_seg, axis=-1) * ops.tile(seg, (1, 1, 1, n_image))

    def compute_output_shape(self, input_shape):
        image_shape, seg_shape = input_shape
        c, s = image_shape[-1], seg_shape[-1]
        if self.mode == "concat":
            channels = None if c is None or s is None else c + s
        else:
            channels = None if c is None or s is None else (c if s == 1 else c * s)
        return tuple(image_shape[:-1]) + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package=_CUSTOM_PACKAGE)
class BilinearUpSampling2D(layers.Layer):
    """x2 bilinear upsampling (half-pixel centres, edge clamped), channels-last.

    Numerically the same as ``keras.layers.UpSampling2D(2, interpolation="bilinear")``
    (and PyTorch's ``align_corners=False``), but written as a nearest-neighbour
    repeat followed by a fixed [1/4, 1/2, 1/4] filter along each spatial axis, so it
    needs no static H and W: Keras' own bilinear upsampling calls ``image.resize``
    with the runtime shape, which fails inside a compiled graph of the TensorFlow
    backend when H and W are unknown (a traced function with a shape-generic
    signature, as shape-relaxed retracing produces).
    """

    @staticmethod
    def _smooth(x, axis):
        # replicate the edge once on each side, then a [1/4, 1/2, 1/4] filter
        if axis == 1:
            x = ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
            return 0.25 * x[:, :-2] + 0.5 * x[:, 1:-1] + 0.25 * x[:, 2:]
        x = ops.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)
        return 0.25 * x[:, :, :-2] + 0.5 * x[:, :, 1:-1] + 0.25 * x[:, :, 2:]

    def call(self, inputs):
        x = ops.repeat(inputs, 2, axis=1)
        x = self._smooth(x, 1)
        x = ops.repeat(x, 2, axis=2)
        return self._smooth(x, 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


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


def _layer_seed(seed: int | None, model_tag: str, layer_index: int) -> int | None:
    """A per-layer initialiser seed derived from ``seed``, stable across processes.

    Distinct layers (and the segmentor vs. the critic) get distinct seeds so that
    kernels of equal shape are not identical draws.
    """
    if seed is None:
        return None
    return zlib.crc32(f"segan/{model_tag}/{int(seed)}/{layer_index}".encode()) & 0x7FFFFFFF


def _kernel_init(kernel_size: int, filters: int, seed: int | None):
    """N(0, sqrt(2 / (k * k * filters))): He-style fan-out, as in the authors' code."""
    stddev = math.sqrt(2.0 / (kernel_size * kernel_size * filters))
    return keras.initializers.RandomNormal(mean=0.0, stddev=stddev, seed=seed)


def _batch_norm(name: str, constraint=None, synchronized: bool = False):
    # synchronized: statistics over the global batch when several replicas train together,
    # so N replicas of B/N slices train like one device with B (a no-op on one replica)
    return layers.BatchNormalization(
        axis=-1,
        synchronized=synchronized,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        beta_constraint=constraint,
        gamma_constraint=constraint,
        name=name,
    )


def build_segmentor(
    n_channels: int,
    width: int = 64,
    n_outputs: int = 1,
    name: str = "segmentor",
    seed: int | None = 0,
    sync_batchnorm: bool = False,
) -> keras.Model:
    """The SegAN segmentor: input ``(H, W, n_channels)``, output ``(H, W, n_outputs)`` in (0, 1).

    H and W are left undefined (fully convolutional) and must be divisible by 16.
    ``seed`` fixes the initial weights (same seed -> identical weights; ``None``
    draws them at random). The final sigmoid runs in float32, so the model can be
    built under a mixed-precision policy.
    """
    if n_channels < 1 or width < 1 or n_outputs < 1:
        raise ValueError("n_channels, width and n_outputs must be positive")
    tag = "segmentor"
    k_enc, k_dec = 4, 3
    idx = iter(range(100))

    inputs = keras.Input(shape=(None, None, n_channels), name="image")
    x = inputs
    skips = []
    for i, mult in enumerate((1, 2, 4, 8), start=1):
        filters = width * mult
        use_bn = i > 1
        x = layers.Conv2D(
            filters,
            k_enc,
            strides=2,
            padding="same",
            use_bias=not use_bn,
            kernel_initializer=_kernel_init(k_enc, filters, _layer_seed(seed, tag, next(idx))),
            name=f"enc{i}_conv",
        )(x)
        if use_bn:
            x = _batch_norm(f"enc{i}_bn", synchronized=sync_batchnorm)(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"enc{i}_lrelu")(x)
        skips.append(x)

    # decoder block j adds encoder layer 4 - j (enc3, enc2, enc1)
    for j, mult in enumerate((4, 2, 1), start=1):
        filters = width * mult
        x = BilinearUpSampling2D(name=f"dec{j}_up")(x)
        x = layers.Conv2D(
            filters,
            k_dec,
            padding="same",
            use_bias=False,
            kernel_initializer=_kernel_init(k_dec, filters, _layer_seed(seed, tag, next(idx))),
            name=f"dec{j}_conv",
        )(x)
        x = _batch_norm(f"dec{j}_bn", synchronized=sync_batchnorm)(x)
        x = layers.ReLU(name=f"dec{j}_relu")(x)
        x = layers.Add(name=f"dec{j}_skip")([x, skips[3 - j]])

    x = BilinearUpSampling2D(name="out_up")(x)
    x = layers.Conv2D(
        n_outputs,
        k_dec,
        padding="same",
        use_bias=True,
        kernel_initializer=_kernel_init(k_dec, n_outputs, _layer_seed(seed, tag, next(idx))),
        name="out_conv",
    )(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="out_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def build_critic(
    n_image_channels: int,
    n_seg_channels: int = 1,
    input_mode: str = "concat",
    width: int = 64,
    clip_value: float | None = 0.05,
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

    ``clip_value`` (default 0.05): every trainable weight (conv kernels, the first
    conv's bias, batch-norm gamma and beta) gets a :class:`ClipConstraint`, which
    Keras applies after each optimizer update; ``None`` disables clipping.
    Note that initial values are not clipped (batch-norm gamma starts at 1, as in
    the reference implementations that clip after each update).
    """
    if n_image_channels < 1 or n_seg_channels < 1 or width < 1:
        raise ValueError("n_image_channels, n_seg_channels and width must be positive")
    if input_mode not in CriticInput.MODES:
        raise ValueError(f"input_mode must be one of {CriticInput.MODES}, got {input_mode!r}")
    tag = "critic"
    k = 4
    constraint = ClipConstraint(clip_value) if clip_value is not None else None

    image = keras.Input(shape=(None, None, n_image_channels), name="image")
    seg = keras.Input(shape=(None, None, n_seg_channels), name="segmentation")
    x = CriticInput(mode=input_mode, name="critic_input")([image, seg])
    features = [layers.Flatten(name="flat_input")(x)]
    for i, mult in enumerate((1, 2, 4), start=1):
        filters = width * mult
        use_bn = i > 1
        x = layers.Conv2D(
            filters,
            k,
            strides=2,
            padding="same",
            use_bias=not use_bn,
            kernel_initializer=_kernel_init(k, filters, _layer_seed(seed, tag, i - 1)),
            kernel_constraint=constraint,
            bias_constraint=constraint,
            name=f"conv{i}",
        )(x)
        if use_bn:
            x = _batch_norm(f"bn{i}", constraint=constraint, synchronized=sync_batchnorm)(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"lrelu{i}")(x)
        features.append(layers.Flatten(name=f"flat_layer{i}")(x))
    return keras.Model([image, seg], features, name=name)
