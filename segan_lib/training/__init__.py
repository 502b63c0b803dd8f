"""Training: the SegAN Keras model and its train steps (TensorFlow, JAX), the trainer, validation, distribution."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "CENTRE_FRACTION": "validation",
    "DEVICE_STRATEGIES": "distribute",
    "ENV_LOGICAL_CPUS": "distribute",
    "ENV_STRATEGY": "distribute",
    "OptimizerPair": "step_jax",
    "Placement": "distribute",
    "RMSpropTF2": "optimizers",
    "RunResult": "trainer",
    "SegAN": "segan",
    "TrainingError": "callbacks",
    "check_global_batch": "distribute",
    "default_run_name": "trainer",
    "field_description": "validation",
    "field_slices": "validation",
    "field_window": "validation",
    "load_state_arrays": "segan",
    "make_callbacks": "callbacks",
    "make_placement": "distribute",
    "make_rmsprop": "optimizers",
    "model_state": "segan",
    "per_replica_logs": "distribute",
    "replica_share": "distribute",
    "shard_by_data": "distribute",
    "soft_dice_np": "validation",
    "state_arrays": "segan",
    "test_step": "step_jax",
    "train": "trainer",
    "train_or_resume": "trainer",
    "train_step": "step_jax",
    "volume_metrics_table": "validation",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
