"""The networks: the segmentor, the critic, their layers and losses, and slice-wise inference (Keras layers and ops only)."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "BN_EPSILON": "layers",
    "BN_MOMENTUM": "layers",
    "BilinearUpSampling2D": "layers",
    "ClipConstraint": "layers",
    "CriticInput": "layers",
    "DICE_EPS": "losses",
    "LEAKY_SLOPE": "layers",
    "REDUCTIONS": "losses",
    "SEGAN_ORIGINAL_SCALE_WEIGHTS": "losses",
    "batch_norm": "layers",
    "build_critic": "critic",
    "build_segmentor": "segmentor",
    "concat_features": "critic",
    "critic_input_channels": "critic",
    "critic_loss": "losses",
    "dice_loss": "losses",
    "kernel_init": "layers",
    "layer_seed": "layers",
    "multiscale_l1": "losses",
    "pad_to_multiple": "inference",
    "predict_array": "inference",
    "predict_slices": "inference",
    "segmentor_loss": "losses",
    "soft_dice": "losses",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
