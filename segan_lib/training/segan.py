"""Adversarial training of SegAN / SegAN_IO as a Keras 3 model.

`SegAN` holds the segmentor and the critic and trains them with its own
`train_step` (two RMSprop optimizers, one update each per batch: first the
critic, maximising the multi-scale L1 between its features of (image, truth)
and (image, prediction); then the segmentor, minimising that L1 plus the
weighted soft Dice loss). The critic's weights are clipped by a kernel
constraint that Keras applies after each of its updates. `fit`, callbacks and
progress bars are Keras'.

The train step here uses tf.GradientTape (the TensorFlow backend); on the JAX
backend `train_step` and `test_step` hand over to segan_lib.training.step_jax, the
same computation written statelessly. The networks and losses are backend-neutral.
"""
from __future__ import annotations

import keras
import numpy as np

from segan_lib.constants import FREEZE_MODES
from segan_lib.training.distribute import per_replica_logs, replica_share
from segan_lib.nets.losses import dice_loss, multiscale_l1
from segan_lib.metrics.batch import dice_per_sample, precision_per_sample, sensitivity_per_sample


def _loss_scaled(optimizer):
    """Under float16 compute, a dynamically loss-scaled optimizer, so small gradients do not flush to zero."""
    if keras.config.dtype_policy().compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scaled")
    return optimizer


class SegAN(keras.Model):
    """Segmentor + critic trained adversarially; calling it runs the segmentor."""

    def __init__(self, segmentor: keras.Model, critic: keras.Model, dice_weight: float = 1.0,
                 l1_weights=None, freeze: str = "none", **kwargs):
        super().__init__(**kwargs)
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
        self.segmentor = segmentor
        self.critic = critic
        self.dice_weight = float(dice_weight)
        self.l1_weights = l1_weights
        self.freeze = freeze
        if freeze == "critic":
            # Keras semantics: a frozen BatchNormalization also runs in inference mode,
            # so the critic's moving statistics stay untouched too.
            self.critic.trainable = False
        if freeze == "encoder":
            for layer in self.segmentor.layers:
                if layer.name.startswith("enc"):
                    layer.trainable = False  # a frozen BatchNormalization also keeps its moving statistics
        names = ("seg_loss", "critic_loss", "l1", "dice_loss", "dice")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.eval_trackers = {n: keras.metrics.Mean(name=n) for n in
                              ("seg_loss", "l1", "dice_loss", "dice", "precision", "sensitivity")}

    def call(self, images, training=False):
        return self.segmentor(images, training=training)

    def compile(self, seg_optimizer=None, critic_optimizer=None, learning_rate: float = 2e-5, **kwargs):
        super().compile(**kwargs)
        self.seg_optimizer = seg_optimizer or _loss_scaled(keras.optimizers.RMSprop(learning_rate, name="seg_rmsprop"))
        self.critic_optimizer = critic_optimizer or _loss_scaled(
            keras.optimizers.RMSprop(learning_rate, name="critic_rmsprop"))
        self.seg_optimizer.build(self.segmentor.trainable_variables)
        self.critic_optimizer.build(self.critic.trainable_variables if self.critic.trainable
                                    else self.critic.weights[:0])
        if keras.backend.backend() == "jax":  # its trainer carries only model.optimizer's variables in the state
            from segan_lib.training.step_jax import OptimizerPair

            self.optimizer = OptimizerPair(self.seg_optimizer, self.critic_optimizer)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy Keras (3.15) draws a batch and reduces it across the
        # replicas to learn the input shapes, which fails for MultiWorkerMirroredStrategy (a tuple
        # of PerReplica values). The networks are built before fit (runs.train calls the model),
        # so no batch is needed: build what is left without one.
        if self.built and getattr(self, "_distribute_strategy", None) is not None:
            with self.distribute_strategy.scope():
                self._symbolic_build(data_batch=None)
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return list(self.trackers.values()) + list(self.eval_trackers.values())

    def _l1(self, images, truth, prediction, critic_training: bool):
        real = self.critic([images, truth], training=critic_training)
        fake = self.critic([images, prediction], training=critic_training)
        return multiscale_l1(real, fake, weights=self.l1_weights)

    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # stateless: (state, data) -> (logs, new state)
            from segan_lib.training import step_jax as train_step_jax
            
            return train_step_jax.train_step(self, *args)
        (data,) = args
        import tensorflow as tf

        images, truth, _ = keras.utils.unpack_x_y_sample_weight(data)
        critic_training = self.freeze != "critic"
        if critic_training:
            with tf.GradientTape() as tape:
                prediction = self.segmentor(images, training=True)
                critic_loss = -self._l1(images, truth, prediction, critic_training=True)
                scaled = self.critic_optimizer.scale_loss(replica_share(critic_loss))
            grads = tape.gradient(scaled, self.critic.trainable_variables)
            self.critic_optimizer.apply(grads, self.critic.trainable_variables)  # then the clip constraint
        with tf.GradientTape() as tape:
            prediction = self.segmentor(images, training=True)
            l1 = self._l1(images, truth, prediction, critic_training=critic_training)
            d_loss = dice_loss(truth, prediction)
            seg_loss = l1 + self.dice_weight * d_loss
            scaled = self.seg_optimizer.scale_loss(replica_share(seg_loss))
        grads = tape.gradient(scaled, self.segmentor.trainable_variables)
        self.seg_optimizer.apply(grads, self.segmentor.trainable_variables)
        if not critic_training:
            critic_loss = -l1
        values = {"seg_loss": seg_loss, "critic_loss": critic_loss, "l1": l1, "dice_loss": d_loss,
                  "dice": keras.ops.mean(dice_per_sample(truth, prediction))}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return per_replica_logs({name: self.trackers[name].result() for name in values})

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            from segan_lib.training import step_jax as train_step_jax
            
            return train_step_jax.test_step(self, *args)
        (data,) = args
        images, truth, _ = keras.utils.unpack_x_y_sample_weight(data)
        prediction = self.segmentor(images, training=False)
        l1 = self._l1(images, truth, prediction, critic_training=False)
        d_loss = dice_loss(truth, prediction)
        values = {"seg_loss": l1 + self.dice_weight * d_loss, "l1": l1, "dice_loss": d_loss,
                  "dice": keras.ops.mean(dice_per_sample(truth, prediction)),
                  "precision": keras.ops.mean(precision_per_sample(truth, prediction)),
                  "sensitivity": keras.ops.mean(sensitivity_per_sample(truth, prediction))}
        for name, value in values.items():
            self.eval_trackers[name].update_state(value)
        return per_replica_logs({name: self.eval_trackers[name].result() for name in values})


# ---------------------------------------------------------------- state of a run
def model_state(model: SegAN) -> dict[str, list]:
    """Every variable a resumed run needs, by group, in a fixed order."""
    return {
        "segmentor": list(model.segmentor.variables),
        "critic": list(model.critic.variables),
        "seg_optimizer": list(model.seg_optimizer.variables),
        "critic_optimizer": list(model.critic_optimizer.variables),
    }


def state_arrays(model: SegAN) -> dict[str, np.ndarray]:
    out = {}
    for group, variables in model_state(model).items():
        for i, v in enumerate(variables):
            arr = keras.ops.convert_to_numpy(v)
            if arr.dtype.kind == "i":  # iteration counters: int64 as TensorFlow keeps them (JAX: int32), one format
                arr = arr.astype(np.int64)
            out[f"{group}/{i:04d}/{v.path}"] = arr
    return out


def load_state_arrays(model: SegAN, arrays: dict[str, np.ndarray], groups=None, where: str = "checkpoint") -> None:
    """Assign saved arrays to the model's variables; names and shapes must match exactly."""
    from segan_lib.errors import SeganError

    state = model_state(model)
    for group in groups or state:
        keys = sorted(k for k in arrays if k.startswith(group + "/"))
        variables = state[group]
        if len(keys) != len(variables):
            raise SeganError(f"{where}: {group} has {len(keys)} saved variables, the model has {len(variables)} "
                             "(a different architecture, width or number of contrasts?)")
        for key, v in zip(keys, variables):
            arr = arrays[key]
            if tuple(arr.shape) != tuple(v.shape):
                raise SeganError(f"{where}: {key} has shape {arr.shape}, the model expects {tuple(v.shape)} "
                                 "(a different architecture, width or number of contrasts?)")
            v.assign(arr)
