"""The SegAN segmentor, as in the authors' code without its known defects: an encoder-decoder, fully
convolutional (H and W divisible by 16). Encoder: 4 x [conv 4x4 stride 2 'same'] with width*(1, 2, 4, 8)
filters; the first conv has a bias and no batch norm, the others batch norm and no bias; LeakyReLU(0.2)
after each. Decoder: 3 x [bilinear x2, conv 3x3 (no bias), batch norm, ReLU] with width*(4, 2, 1)
filters, each followed by the *addition* of the encoder feature of the same size (encoder layer 3, 2, 1
respectively); then bilinear x2, conv 3x3 to ``n_outputs`` channels (bias, no batch norm, no ReLU) and a
sigmoid computed in float32. With width 64 and one input channel: 4,307,841 parameters (all variables,
batch-norm moving statistics included; 4,305,153 trainable).
"""
from __future__ import annotations

import keras
from keras import layers

from segan_lib.nets.layers import LEAKY_SLOPE, BilinearUpSampling2D, batch_norm, kernel_init, layer_seed

_TAG = "segmentor"  # the per-layer seeds' model tag
_K_ENC, _K_DEC = 4, 3  # kernel sizes of the encoder and of the decoder
_ENCODER_LAYERS = 4  # the seed indices: encoder 0-3, decoder 4-6, output 7


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
    inputs = keras.Input(shape=(None, None, n_channels), name="image")
    x, skips = _encoder(inputs, width, seed, sync_batchnorm)
    x = _decoder(x, skips, width, seed, sync_batchnorm)
    x = BilinearUpSampling2D(name="out_up")(x)
    x = layers.Conv2D(
        n_outputs,
        _K_DEC,
        padding="same",
        use_bias=True,
        kernel_initializer=kernel_init(_K_DEC, n_outputs, layer_seed(seed, _TAG, _ENCODER_LAYERS + 3)),
        name="out_conv",
    )(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="out_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def _encoder(x, width: int, seed: int | None, sync_batchnorm: bool):
    """The four strided convolutions; returns the last feature and every layer's (the skips)."""
    skips = []
    for i, mult in enumerate((1, 2, 4, 8), start=1):
        filters = width * mult
        use_bn = i > 1
        x = layers.Conv2D(
            filters,
            _K_ENC,
            strides=2,
            padding="same",
            use_bias=not use_bn,
            kernel_initializer=kernel_init(_K_ENC, filters, layer_seed(seed, _TAG, i - 1)),
            name=f"enc{i}_conv",
        )(x)
        if use_bn:
            x = batch_norm(f"enc{i}_bn", synchronized=sync_batchnorm)(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"enc{i}_lrelu")(x)
        skips.append(x)
    return x, skips


def _decoder(x, skips, width: int, seed: int | None, sync_batchnorm: bool):
    """Three upsampling blocks, each adding the encoder feature of its size."""
    # decoder block j adds encoder layer 4 - j (enc3, enc2, enc1)
    for j, mult in enumerate((4, 2, 1), start=1):
        filters = width * mult
        x = BilinearUpSampling2D(name=f"dec{j}_up")(x)
        x = layers.Conv2D(
            filters,
            _K_DEC,
            padding="same",
            use_bias=False,
            kernel_initializer=kernel_init(_K_DEC, filters, layer_seed(seed, _TAG, _ENCODER_LAYERS + j - 1)),
            name=f"dec{j}_conv",
        )(x)
        x = batch_norm(f"dec{j}_bn", synchronized=sync_batchnorm)(x)
        x = layers.ReLU(name=f"dec{j}_relu")(x)
        x = layers.Add(name=f"dec{j}_skip")([x, skips[3 - j]])
    return x
