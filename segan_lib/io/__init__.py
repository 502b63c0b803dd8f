"""Reading BraTS data sets of every layout through one interface (`Case`).

    from segan_lib.io import open_dataset, load_case
    ds = open_dataset("path/to/BraTS")        # layout detected from the names, nothing decoded
    case = load_case(ds[0])                    # images (float32) and label, checked together
"""
from segan_lib.io.case import CONTRASTS, GRADES, LABEL_SCHEMES, Case, LabelScheme, Volume
from segan_lib.io.dataset import (
    BadCaseWarning,
    CaseArrays,
    Dataset,
    detect_layout,
    format_summary,
    layout_title,
    load_case,
    open_dataset,
    read_grades_csv,
    summarize_dataset,
    validate_dataset,
)
from segan_lib.io.layouts import LAYOUTS, normalize_contrast
from segan_lib.io.volume_io import clear_cache, read_volume

__all__ = [
    "BadCaseWarning",
    "CONTRASTS",
    "Case",
    "CaseArrays",
    "Dataset",
    "GRADES",
    "LABEL_SCHEMES",
    "LAYOUTS",
    "LabelScheme",
    "Volume",
    "clear_cache",
    "detect_layout",
    "format_summary",
    "layout_title",
    "load_case",
    "normalize_contrast",
    "open_dataset",
    "read_grades_csv",
    "read_volume",
    "summarize_dataset",
    "validate_dataset",
]
