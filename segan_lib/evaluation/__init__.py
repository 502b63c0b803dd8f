"""Evaluating a saved run on a subset of its split, on its own or other contrasts."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "evaluate_run": "evaluate",
    "load_run_models": "evaluate",
    "predict_cases": "evaluate",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
