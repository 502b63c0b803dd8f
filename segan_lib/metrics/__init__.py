"""Segmentation metrics in numpy and Keras ops: per volume, pooled or per slice, summaries with bootstrap intervals, paired statistics."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "COUNT_COLUMNS": "core",
    "Counts": "core",
    "METRICS": "core",
    "PROTOCOLS": "core",
    "PROTOCOL_NOTES": "core",
    "RATIO_METRICS": "core",
    "SUMMARY_COLUMNS": "core",
    "SetEvaluation": "core",
    "Summary": "core",
    "VolumeMetrics": "core",
    "batch_metrics": "core",
    "binarize": "core",
    "confusion_counts": "core",
    "dice": "core",
    "dice_per_sample": "core",
    "evaluate_set": "core",
    "hd95": "core",
    "precision": "core",
    "precision_per_sample": "core",
    "protocol_note": "core",
    "ratios_from_counts": "core",
    "sensitivity": "core",
    "sensitivity_per_sample": "core",
    "specificity": "core",
    "specificity_per_sample": "core",
    "summarize": "core",
    "summarize_table": "core",
    "surface_distances": "core",
    "volume_metrics": "core",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
