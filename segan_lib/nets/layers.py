"""The networks' building blocks: the custom Keras layers and constraint (`ClipConstraint`,
`CriticInput`, `BilinearUpSampling2D`, registered under the serialization package "segan" so saved
models and bundles load by the same names), and the helpers both networks share. Written with
``keras.layers`` / ``keras.ops`` only, so the models run under any Keras 3 backend (TensorFlow, JAX,
PyTorch) and round-trip through ``model.save("x.keras")`` / ``keras.models.load_model``. Batch norm:
epsilon 1e-5, momentum 0.9 in Keras' meaning (moving = 0.9 * moving + 0.1 * batch; PyTorch's
momentum 0.1). Convolution kernels are initialised N(0, sqrt(2 / (k * k * filters))) with a
per-layer seed derived from the model's ``seed``.
"""
from __future__ import annotations

import math
import zlib

import keras
from keras import layers, ops

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras meaning; equals PyTorch's momentum=0.1
LEAKY_SLOPE = 0.2

_CUSTOM_PACKAGE = "segan"  # the serialization package of the custom objects: saved models name them by it


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
    (and PyTorch's ``align_corners=False``): along each spatial axis, output 2i is
    3/4 x[i] + 1/4 x[i-1] and output 2i+1 is 3/4 x[i] + 1/4 x[i+1], the edge replicated,
    the two interleaved by a stack and a reshape. Written so for two reasons: it needs
    no static H and W (Keras' own bilinear upsampling calls ``image.resize`` with the
    runtime shape, which fails inside a compiled graph of the TensorFlow backend when H
    and W are unknown, as shape-relaxed retracing produces), and the neighbours are taken
    with ``ops.slice`` (TensorFlow's slice op, whose gradient is a pad) rather than Python
    slicing (a strided slice, whose gradient StridedSliceGrad took 77% of the op time of a
    quick-shape train step without XLA: benchmarks/bench_torch_peer.py --breakdown).
    Forward and backward of a 16x32x32x16 batch: 14 ms against 77 ms for the earlier
    repeat-and-filter form without XLA, 5.1 against 5.7 ms with it; outputs within 1.8e-7.
    """

    @staticmethod
    def _up(x, axis):
        shape = ops.shape(x)
        n = shape[axis]
        origin = [0, 0, 0, 0]
        one, rest = list(shape), list(shape)
        one[axis], rest[axis] = 1, n - 1
        second, last = list(origin), list(origin)
        second[axis], last[axis] = 1, n - 1
        before = ops.concatenate([ops.slice(x, origin, one), ops.slice(x, origin, rest)], axis=axis)
        after = ops.concatenate([ops.slice(x, second, rest), ops.slice(x, last, one)], axis=axis)
        pairs = ops.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis=axis + 1)
        return ops.reshape(pairs, [-1] + [2 * d if i == axis else d for i, d in enumerate(shape)][1:])

    def call(self, inputs):
        return self._up(self._up(inputs, 1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


def layer_seed(seed: int | None, model_tag: str, layer_index: int) -> int | None:
    """A per-layer initialiser seed derived from ``seed``, stable across processes.

    Distinct layers (and the segmentor vs. the critic) get distinct seeds so that
    kernels of equal shape are not identical draws.
    """
    if seed is None:
        return None
    return zlib.crc32(f"segan/{model_tag}/{int(seed)}/{layer_index}".encode()) & 0x7FFFFFFF


def kernel_init(kernel_size: int, filters: int, seed: int | None):
    """N(0, sqrt(2 / (k * k * filters))): He-style fan-out, as in the authors' code."""
    stddev = math.sqrt(2.0 / (kernel_size * kernel_size * filters))
    return keras.initializers.RandomNormal(mean=0.0, stddev=stddev, seed=seed)


def batch_norm(name: str, constraint=None, synchronized: bool = False):
    """Batch normalization with the networks' epsilon and momentum (gamma and beta constrained by `constraint`:
    the critic's clip under clip_scope "all")."""
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
