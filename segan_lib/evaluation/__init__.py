"""Evaluating a saved run on a subset of its split, on its own or other contrasts, and a folder of predicted masks against a data set's labels (BraTS-style)."""
from segan_lib._exports import lazy_exports

_NAMES = {
    "CASE_COLUMNS": "folder",
    "FolderEvaluation": "folder",
    "SUMMARY_COLUMNS": "folder",
    "definitions_text": "folder",
    "evaluate_folder": "folder",
    "eval_file_stem": "evaluate",
    "evaluate_run": "evaluate",
    "evaluation_on_field": "evaluate",
    "evaluation_stem": "evaluate",
    "load_run_models": "evaluate",
    "match_predictions": "folder",
    "predict_cases": "evaluate",
    "score_case": "folder",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
