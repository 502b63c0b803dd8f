"""Applying a trained model to new scans: model bundles and prediction in the scan's own grid (never imports training)."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "BUNDLE_FORMAT": "bundle",
    "Bundle": "bundle",
    "BundleError": "bundle",
    "BundleVersionWarning": "bundle",
    "CARD": "bundle",
    "FOLDER_SUMMARY_COLUMNS": "predict",
    "MissingContrastWarning": "predict",
    "PredictionResult": "predict",
    "REQUIRED_CARD_FIELDS": "bundle",
    "WEIGHTS": "bundle",
    "export_bundle": "bundle",
    "load_bundle": "bundle",
    "open_input": "predict",
    "predict": "predict",
    "predict_case": "predict",
    "predict_case_to_file": "predict",
    "predict_file_set": "predict",
    "predict_folder": "predict",
    "read_card": "bundle",
    "write_nifti": "predict",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
