"""The networks: the segmentor, the critic, their layers and losses, and slice-wise inference (Keras layers and ops only)."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "BN_EPSILON": "models",
    "BN_MOMENTUM": "models",
    "BilinearUpSampling2D": "models",
    "ClipConstraint": "models",
    "CriticInput": "models",
    "DICE_EPS": "losses",
    "LEAKY_SLOPE": "models",
    "REDUCTIONS": "losses",
    "SEGAN_ORIGINAL_SCALE_WEIGHTS": "losses",
    "build_critic": "models",
    "build_segmentor": "models",
    "concat_features": "models",
    "critic_input_channels": "models",
    "critic_loss": "losses",
    "dice_loss": "losses",
    "multiscale_l1": "losses",
    "pad_to_multiple": "inference",
    "predict_array": "inference",
    "predict_slices": "inference",
    "segmentor_loss": "losses",
    "soft_dice": "losses",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
