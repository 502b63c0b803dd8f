"""The folder layouts of the BraTS releases, each turned into a list of lazy `Case`s.

One reader per layout, each with
  * `matches(root) -> bool`: cheap, looks at file and folder names only;
  * `list_cases(root, grades, require_label) -> list[Case]`: builds the cases
    from the directory listing; every volume is read later, on demand, through
    `read_volume`. A case is listed with the contrasts it has (`Case.contrasts`;
    each step checks those it needs, segan_lib.data.usable). Problems visible from
    the names alone (a case with no image at all, a missing label file when labels
    are required, two files for one contrast, two cases with one id) are raised
    here as `DataError`s.
  * `scan(...)`: as `list_cases` but returns the problems next to the good cases
    instead of raising, which is what `open_dataset(on_bad_case="skip")` uses.

Layouts (key: files of one case):
  brats2015: {HGG,LGG}/<case>/VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/*.mha,
             label VSD.Brain_3more.XX.O.OT.<id>/*.mha (the test set sits under HGG_LGG/)
  brats2018: <case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, optionally under HGG/ and LGG/
  brats2023: <case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz
  msd:       imagesTr/BRATS_NNN.nii.gz (4-D: FLAIR, T1w, T1gd, T2w), labelsTr/BRATS_NNN.nii.gz
  nnunet:    dataset.json (channel_names, labels, file_ending), imagesTr/<case>_0000.nii.gz (one
             file per channel), labelsTr/<case>.nii.gz; the label scheme from dataset.json's labels
  pattern:   any naming, given as templates ("{case}/{contrast}_x.nii.gz", label, brain mask) and
             a label scheme, as options or in a segan_layout.yaml in the data folder

Modules: `common` (contrast names, `Problem`, the `Layout` base and its helpers), one per
release (`brats2015`, `brats2018`, `brats2023`, `msd`; `folder_nifti` is the reader the
2018 and 2023 layouts share), `nnunet`, `pattern` and `registry` (`LAYOUTS`, `detect_layout`,
`resolve_layout`, `layout_title`).
This package re-exports their names; inside the library import from the modules.
"""
from __future__ import annotations

from segan_lib.data.layouts.brats2015 import Brats2015Layout
from segan_lib.data.layouts.brats2018 import Brats2018Layout
from segan_lib.data.layouts.brats2023 import Brats2023Layout
from segan_lib.data.layouts.common import (
    CONTRAST_ALIASES, Layout, Problem, UnreadableFolderWarning, normalize_contrast,
)
from segan_lib.data.layouts.msd import MSD_DEFAULT_CHANNELS, MSDLayout
from segan_lib.data.layouts.nnunet import NnUNetLayout, scheme_from_labels
from segan_lib.data.layouts.pattern import LAYOUT_FILE, PatternLayout
from segan_lib.data.layouts.registry import LAYOUTS, detect_layout, layout_title, resolve_layout

__all__ = [
    "Layout",
    "LAYOUTS",
    "Problem",
    "UnreadableFolderWarning",
    "CONTRAST_ALIASES",
    "normalize_contrast",
    "Brats2015Layout",
    "Brats2018Layout",
    "Brats2023Layout",
    "MSDLayout",
    "MSD_DEFAULT_CHANNELS",
    "NnUNetLayout",
    "PatternLayout",
    "LAYOUT_FILE",
    "scheme_from_labels",
    "detect_layout",
    "layout_title",
    "resolve_layout",
]
