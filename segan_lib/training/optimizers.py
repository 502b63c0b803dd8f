"""RMSprop as TensorFlow 2.0's tf.keras computed it, for Keras 3 on any backend.

The authors trained with ``tf.optimizers.RMSprop(learning_rate=2e-5)`` of TensorFlow 2.0 (rho 0.9,
epsilon 1e-7, no momentum, not centered). Without momentum, its update is
(tensorflow/python/keras/optimizer_v2/rmsprop.py, ``_resource_apply_dense``)::

    v   <- rho * v + (1 - rho) * g**2
    var <- var - lr * g / (sqrt(v) + epsilon)

Keras 3's RMSprop puts epsilon inside the square root, ``lr * g / sqrt(v + epsilon)``: the same
where ``v >> epsilon``, but a gradient whose running RMS is near or below ``sqrt(1e-7) ~ 3.2e-4``
takes a smaller step (damped by ``sqrt(v) / sqrt(v + eps)``, and where ``v << eps`` the step is
``lr * g / sqrt(eps)`` instead of about ``lr * sign(g)``). With momentum, TensorFlow 2.0 used
the fused kernel ``ResourceApplyRMSProp`` (``mom <- momentum * mom + lr * g / sqrt(v + eps)``),
which is what Keras 3 computes, so this class defers to it there. Centered: TF 2.0 divided by
``sqrt(v - mg**2) + eps`` without momentum, and so does this class.

`RMSpropTF2` only overrides ``update_step``: its variables (iteration counter, learning rate, one
``velocity`` per model variable, plus ``average_gradient`` when centered) are Keras 3's, in the same
order and with the same names, so checkpoints (segan_lib.training.segan.state_arrays) keep their layout
and a run resumes exactly whichever variant wrote it. Written with ``keras.ops`` only: it runs on the
TensorFlow and the JAX backend (``stateless_apply``) alike, and serializes by name ("segan>RMSpropTF2").
"""
from __future__ import annotations

import keras
from keras import ops

from segan_lib.constants import RMSPROP_VARIANTS


@keras.saving.register_keras_serializable(package="segan")
class RMSpropTF2(keras.optimizers.RMSprop):
    """Keras 3 RMSprop with TensorFlow 2.0's update: ``var -= lr * g / (sqrt(v) + epsilon)`` (no momentum)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum > 0:  # TF 2.0 used the fused kernel, epsilon inside the root: Keras 3's formula
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        # TF 2.0's coefficients: rho cast to the variable's dtype first, then 1 - rho in that dtype
        rho = ops.cast(self.rho, dtype)
        one_minus_rho = ops.subtract(ops.cast(1.0, dtype), rho)
        epsilon = ops.cast(self.epsilon, dtype)
        new_velocity = ops.add(ops.multiply(rho, velocity), ops.multiply(one_minus_rho, ops.square(gradient)))
        self.assign(velocity, new_velocity)
        denominator = new_velocity
        if self.centered:
            average_grad = self._average_gradients[index]
            new_average = ops.add(ops.multiply(rho, average_grad), ops.multiply(one_minus_rho, gradient))
            self.assign(average_grad, new_average)
            denominator = ops.subtract(new_velocity, ops.square(new_average))
        increment = ops.divide(ops.multiply(lr, gradient), ops.add(ops.sqrt(denominator), epsilon))
        self.assign_sub(variable, increment)


def make_rmsprop(variant: str, learning_rate: float, name: str) -> keras.optimizers.Optimizer:
    """The RMSprop of a variant: "tf2" (the authors', `RMSpropTF2`) or "keras3" (keras.optimizers.RMSprop).

    Both with Keras' (and TF 2.0's) defaults: rho 0.9, epsilon 1e-7, no momentum, not centered.
    """
    if variant == "tf2":
        return RMSpropTF2(learning_rate, name=name)
    if variant == "keras3":
        return keras.optimizers.RMSprop(learning_rate, name=name)
    raise ValueError(f"rmsprop must be one of {RMSPROP_VARIANTS}, got {variant!r}")
