"""SegAN's train and test steps for Keras' JAX backend (stateless: state in, state out).

Keras' JAX trainer jit-compiles ``train_step(state, data)`` and ``test_step(state, data)``;
``state`` holds the current values of the model's variables as flat lists, in the order of
``model.trainable_variables``, ``model.non_trainable_variables``, ``model.optimizer.variables``
(train step only) and ``model.metrics_variables``; the step returns ``(logs, new_state)``.
`SegAN.train_step` / `test_step` call these on the JAX backend. The computation and its order
are those of the TensorFlow step in segan_lib.training.segan, for either ``model.update_order``:

- "joint" (the authors'): one segmentor pass and the critic's two passes; the segmentor's loss
  (L1 + dice_weight * soft Dice) and the critic's (-L1) pulled back through the same forward
  pass (``jax.vjp``), so both gradients are taken at the same weights; then the segmentor's
  update, then the critic's (skipped when ``freeze="critic"``) and its clip constraint
  (``optimizer.stateless_apply`` applies both, as ``apply`` does under TensorFlow);
- "critic_first": unless ``freeze="critic"``, the critic's update, maximising the multi-scale
  L1 between its features of (image, truth) and (image, prediction), and its clip; then the
  segmentor's update, minimising L1 + dice_weight * soft Dice through the updated critic.

Every forward pass in training mode moves the batch-norm statistics, in the same sequence
as under TensorFlow: the segmentor's on each of its passes (joint: one per step;
critic_first: two, one with the critic frozen), the critic's on each of its calls (joint:
two, critic_first: four; none when frozen: a frozen critic runs in inference mode).

Each gradient is taken of ``optimizer.scale_loss(loss)`` (a LossScaleOptimizer under
float16 scales it; ``stateless_apply`` unscales), as in the TensorFlow step. The trainer
carries only ``model.optimizer.variables`` as optimizer state, so on this backend
`SegAN.compile` sets ``model.optimizer`` to an `OptimizerPair` of the two optimizers.
Single device only (tf.distribute's replica share has no counterpart here).
"""
from __future__ import annotations

import jax
import keras

from segan_lib.nets.losses import dice_loss, multiscale_l1
from segan_lib.metrics.batch import dice_per_sample, precision_per_sample, sensitivity_per_sample


class OptimizerPair:
    """``model.optimizer`` on the JAX backend: exposes the variables of both SegAN optimizers.

    The JAX trainer reads ``model.optimizer.variables`` into the step's state, detaches them
    during an epoch and writes the new values back after it; optimizers it does not see would
    have their slots and iteration counters frozen into the compiled step as constants.
    ``optimizers`` is Keras' name for a group of optimizers (LearningRateScheduler and
    ReduceLROnPlateau update each one).
    """

    built = True  # SegAN.compile built both

    def __init__(self, seg_optimizer, critic_optimizer):
        self.optimizers = [seg_optimizer, critic_optimizer]

    @property
    def variables(self):
        return [v for optimizer in self.optimizers for v in optimizer.variables]


class _Values:
    """The current value of each Keras variable, by identity, while a step runs."""

    def __init__(self, *variables_and_values):
        self._by_id = {}
        for variables, values in variables_and_values:
            self.set(variables, values)

    def get(self, variables) -> list:
        return [self._by_id[id(v)] for v in variables]

    def set(self, variables, values) -> None:
        variables, values = list(variables), list(values)
        if len(variables) != len(values):
            raise ValueError(f"{len(values)} values for {len(variables)} variables")
        for v, value in zip(variables, values):
            self._by_id[id(v)] = value


def _scaled_loss(optimizer, current: _Values, loss):
    """``optimizer.scale_loss(loss)`` with the optimizer's current variables (a loss scale lives in one)."""
    with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, current.get(optimizer.variables)))):
        return optimizer.scale_loss(loss)


def _apply(optimizer, current: _Values, grads, variables) -> None:
    new_values, new_optimizer_values = optimizer.stateless_apply(
        current.get(optimizer.variables), grads, current.get(variables))
    current.set(variables, new_values)
    current.set(optimizer.variables, new_optimizer_values)


def _l1(model, critic_trainable, critic_non_trainable, images, truth, prediction, training: bool):
    """The multi-scale L1 (as SegAN._l1) and the critic's non-trainable values after its two calls."""
    real, critic_non_trainable = model.critic.stateless_call(
        critic_trainable, critic_non_trainable, [images, truth], training=training)
    fake, critic_non_trainable = model.critic.stateless_call(
        critic_trainable, critic_non_trainable, [images, prediction], training=training)
    return multiscale_l1(real, fake, weights=model.l1_weights), critic_non_trainable


def _track(trackers: dict, values: dict, current: _Values) -> dict:
    """Update each tracker with its value; the logs are their results."""
    logs = {}
    for name, value in values.items():
        tracker = trackers[name]
        tracker_values = tracker.stateless_update_state(current.get(tracker.variables), value)
        current.set(tracker.variables, tracker_values)
        logs[name] = tracker.stateless_result(tracker_values)
    return logs


def train_step(model, state, data):
    trainable, non_trainable, optimizer_values, metric_values = state
    current = _Values((model.trainable_variables, trainable), (model.non_trainable_variables, non_trainable),
                      (model.optimizer.variables, optimizer_values), (model.metrics_variables, metric_values))
    images, truth, _ = keras.utils.unpack_x_y_sample_weight(data)
    step = _joint if model.update_order == "joint" else _critic_first
    seg_loss, critic_loss, l1, d_loss, prediction = step(model, current, images, truth, model.freeze != "critic")
    values = {"seg_loss": seg_loss, "critic_loss": critic_loss, "l1": l1, "dice_loss": d_loss,
              "dice": keras.ops.mean(dice_per_sample(truth, prediction))}
    logs = _track(model.trackers, values, current)
    new_state = (current.get(model.trainable_variables), current.get(model.non_trainable_variables),
                 current.get(model.optimizer.variables), current.get(model.metrics_variables))
    return logs, new_state


def _joint(model, current: _Values, images, truth, critic_training: bool):
    """The authors' step: both gradients from one forward pass at the same weights; segmentor's update, then critic's."""
    segmentor, critic = model.segmentor, model.critic

    def losses(segmentor_trainable, critic_trainable):
        prediction, segmentor_non_trainable = segmentor.stateless_call(
            segmentor_trainable, current.get(segmentor.non_trainable_variables), images, training=True)
        l1, critic_non_trainable = _l1(model, critic_trainable, current.get(critic.non_trainable_variables), images,
                                       truth, prediction, training=critic_training)
        d_loss = dice_loss(truth, prediction)
        seg_loss = l1 + model.dice_weight * d_loss
        critic_loss = -l1
        scaled = (_scaled_loss(model.seg_optimizer, current, seg_loss),
                  _scaled_loss(model.critic_optimizer, current, critic_loss))
        return scaled, (seg_loss, critic_loss, l1, d_loss, prediction, segmentor_non_trainable, critic_non_trainable)

    scaled, pull_back, aux = jax.vjp(losses, current.get(segmentor.trainable_variables),
                                     current.get(critic.trainable_variables), has_aux=True)
    seg_scaled, critic_scaled = scaled
    seg_grads, _ = pull_back((jax.numpy.ones_like(seg_scaled), jax.numpy.zeros_like(critic_scaled)))
    seg_loss, critic_loss, l1, d_loss, prediction, segmentor_non_trainable, critic_non_trainable = aux
    current.set(segmentor.non_trainable_variables, segmentor_non_trainable)
    current.set(critic.non_trainable_variables, critic_non_trainable)
    _apply(model.seg_optimizer, current, seg_grads, segmentor.trainable_variables)
    if critic_training:
        _, critic_grads = pull_back((jax.numpy.zeros_like(seg_scaled), jax.numpy.ones_like(critic_scaled)))
        _apply(model.critic_optimizer, current, critic_grads, critic.trainable_variables)  # then the clip constraint
    return seg_loss, critic_loss, l1, d_loss, prediction


def _critic_first(model, current: _Values, images, truth, critic_training: bool):
    """PyTorch SegAN's order: the critic's update (and clip), then the segmentor's through the updated critic."""
    segmentor, critic = model.segmentor, model.critic
    if critic_training:
        prediction, segmentor_non_trainable = segmentor.stateless_call(
            current.get(segmentor.trainable_variables), current.get(segmentor.non_trainable_variables), images,
            training=True)
        current.set(segmentor.non_trainable_variables, segmentor_non_trainable)

        def critic_objective(critic_trainable, critic_non_trainable):
            l1, critic_non_trainable = _l1(model, critic_trainable, critic_non_trainable, images, truth, prediction,
                                           training=True)
            loss = -l1
            return _scaled_loss(model.critic_optimizer, current, loss), (loss, critic_non_trainable)

        (_, (critic_loss, critic_non_trainable)), grads = jax.value_and_grad(critic_objective, has_aux=True)(
            current.get(critic.trainable_variables), current.get(critic.non_trainable_variables))
        current.set(critic.non_trainable_variables, critic_non_trainable)
        _apply(model.critic_optimizer, current, grads, critic.trainable_variables)  # then the clip constraint

    def segmentor_objective(segmentor_trainable, segmentor_non_trainable, critic_non_trainable):
        prediction, segmentor_non_trainable = segmentor.stateless_call(
            segmentor_trainable, segmentor_non_trainable, images, training=True)
        l1, critic_non_trainable = _l1(model, current.get(critic.trainable_variables), critic_non_trainable, images,
                                       truth, prediction, training=critic_training)
        d_loss = dice_loss(truth, prediction)
        seg_loss = l1 + model.dice_weight * d_loss
        aux = (seg_loss, l1, d_loss, prediction, segmentor_non_trainable, critic_non_trainable)
        return _scaled_loss(model.seg_optimizer, current, seg_loss), aux

    (_, aux), grads = jax.value_and_grad(segmentor_objective, has_aux=True)(
        current.get(segmentor.trainable_variables), current.get(segmentor.non_trainable_variables),
        current.get(critic.non_trainable_variables))
    seg_loss, l1, d_loss, prediction, segmentor_non_trainable, critic_non_trainable = aux
    current.set(segmentor.non_trainable_variables, segmentor_non_trainable)
    current.set(critic.non_trainable_variables, critic_non_trainable)
    _apply(model.seg_optimizer, current, grads, segmentor.trainable_variables)
    if not critic_training:
        critic_loss = -l1
    return seg_loss, critic_loss, l1, d_loss, prediction


def test_step(model, state, data):
    trainable, non_trainable, metric_values = state
    current = _Values((model.trainable_variables, trainable), (model.non_trainable_variables, non_trainable),
                      (model.metrics_variables, metric_values))
    images, truth, _ = keras.utils.unpack_x_y_sample_weight(data)
    segmentor, critic = model.segmentor, model.critic
    prediction, _ = segmentor.stateless_call(
        current.get(segmentor.trainable_variables), current.get(segmentor.non_trainable_variables), images,
        training=False)
    l1, _ = _l1(model, current.get(critic.trainable_variables), current.get(critic.non_trainable_variables), images,
                truth, prediction, training=False)
    d_loss = dice_loss(truth, prediction)
    values = {"seg_loss": l1 + model.dice_weight * d_loss, "l1": l1, "dice_loss": d_loss,
              "dice": keras.ops.mean(dice_per_sample(truth, prediction)),
              "precision": keras.ops.mean(precision_per_sample(truth, prediction)),
              "sensitivity": keras.ops.mean(sensitivity_per_sample(truth, prediction))}
    logs = _track(model.eval_trackers, values, current)
    new_state = (current.get(model.trainable_variables), current.get(model.non_trainable_variables),
                 current.get(model.metrics_variables))
    return logs, new_state
