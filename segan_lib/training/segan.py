"""Adversarial training of SegAN / SegAN_IO as a Keras 3 model.

`SegAN` holds the segmentor and the critic and trains them with its own
`train_step`: two RMSprop optimizers (`compile(rmsprop=...)`: "tf2", the authors'
TensorFlow 2.0 formula, segan_lib.training.optimizers, or "keras3"), one update
each per batch. The critic maximises the multi-scale L1 between its features of
(image, truth) and (image, prediction); the segmentor minimises that L1 plus the
weighted soft Dice loss. `update_order` says how the two updates share a step:

- "joint" (the default; the authors' DeepMRI.train_step): one segmentor forward
  pass and the critic's two passes under one persistent tape, both gradients taken
  at the same weights, then the segmentor's update and the critic's;
- "critic_first" (PyTorch SegAN's order): the critic's update, then a new segmentor
  pass through the updated critic and the segmentor's update (the segmentor's
  batch-norm statistics move twice per step, the critic's four times).

The critic's clipped weights carry a constraint that Keras applies after each of
its updates. `fit`, callbacks and progress bars are Keras'.

The train step here uses tf.GradientTape (the TensorFlow backend); on the JAX
backend `train_step` and `test_step` hand over to segan_lib.training.step_jax, the
same computation written statelessly. The networks and losses are backend-neutral.
"""
from __future__ import annotations

import keras
import numpy as np

from segan_lib.constants import EVALUATION_FIELDS, FREEZE_MODES, UPDATE_ORDERS
from segan_lib.training.distribute import per_replica_logs, replica_share
from segan_lib.nets.losses import dice_loss, multiscale_l1
from segan_lib.metrics.batch import dice_per_sample, precision_per_sample, sensitivity_per_sample
from segan_lib.training.optimizers import make_rmsprop


def _loss_scaled(optimizer):
    """Under float16 compute, a dynamically loss-scaled optimizer, so small gradients do not flush to zero."""
    if keras.config.dtype_policy().compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scaled")
    return optimizer


class SegAN(keras.Model):
    """Segmentor + critic trained adversarially; calling it runs the segmentor.

    update_order: "joint" (the authors') or "critic_first" (see the module docstring).
    validation_field: what the trainer's epoch-end validation scores (segan_lib.training.validation,
    a profile's evaluate.field): "centre160" (the authors') or "crop".
    """

    def __init__(self, segmentor: keras.Model, critic: keras.Model, dice_weight: float = 1.0,
                 l1_weights=None, freeze: str = "none", update_order: str = "joint",
                 validation_field: str = "centre160", **kwargs):
        super().__init__(**kwargs)
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
        if update_order not in UPDATE_ORDERS:
            raise ValueError(f"update_order must be one of {UPDATE_ORDERS}, got {update_order!r}")
        self.update_order = update_order
        if validation_field not in EVALUATION_FIELDS:
            raise ValueError(f"validation_field must be one of {EVALUATION_FIELDS}, got {validation_field!r}")
        self.validation_field = validation_field
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

    def compile(self, seg_optimizer=None, critic_optimizer=None, learning_rate: float = 2e-5, rmsprop: str = "tf2",
                **kwargs):
        """Both optimizers: the ones given, or RMSprop of the `rmsprop` variant ("tf2" or "keras3")."""
        super().compile(**kwargs)
        self.seg_optimizer = seg_optimizer or _loss_scaled(make_rmsprop(rmsprop, learning_rate, name="seg_rmsprop"))
        self.critic_optimizer = critic_optimizer or _loss_scaled(
            make_rmsprop(rmsprop, learning_rate, name="critic_rmsprop"))
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
        if self.update_order == "joint":
            seg_loss, critic_loss, l1, d_loss, prediction = self._joint_step(tf, images, truth, critic_training)
        else:
            seg_loss, critic_loss, l1, d_loss, prediction = self._critic_first_step(tf, images, truth, critic_training)
        values = {"seg_loss": seg_loss, "critic_loss": critic_loss, "l1": l1, "dice_loss": d_loss,
                  "dice": keras.ops.mean(dice_per_sample(truth, prediction))}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return per_replica_logs({name: self.trackers[name].result() for name in values})

    def _joint_step(self, tf, images, truth, critic_training: bool):
        """The authors' step: one tape over one segmentor pass and both critic passes, both gradients at the
        same weights; then the segmentor's update, then the critic's (and its clip)."""
        with tf.GradientTape(persistent=True) as tape:
            prediction = self.segmentor(images, training=True)
            l1 = self._l1(images, truth, prediction, critic_training=critic_training)
            d_loss = dice_loss(truth, prediction)
            seg_loss = l1 + self.dice_weight * d_loss
            critic_loss = -l1
            seg_scaled = self.seg_optimizer.scale_loss(replica_share(seg_loss))
            if critic_training:
                critic_scaled = self.critic_optimizer.scale_loss(replica_share(critic_loss))
        seg_grads = tape.gradient(seg_scaled, self.segmentor.trainable_variables)
        if critic_training:
            critic_grads = tape.gradient(critic_scaled, self.critic.trainable_variables)
        del tape
        self.seg_optimizer.apply(seg_grads, self.segmentor.trainable_variables)
        if critic_training:
            self.critic_optimizer.apply(critic_grads, self.critic.trainable_variables)  # then the clip constraint
        return seg_loss, critic_loss, l1, d_loss, prediction

    def _critic_first_step(self, tf, images, truth, critic_training: bool):
        """PyTorch SegAN's order: the critic's update (and clip), then the segmentor's through the updated critic."""
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
        return seg_loss, critic_loss, l1, d_loss, prediction

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
