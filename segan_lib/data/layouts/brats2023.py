"""The BraTS 2023 GLI NIfTI layout: <case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz.

The 2023 release names the contrasts t1n (native T1), t1c, t2w and t2f (FLAIR) and
separates them from the case id with a hyphen.
"""
from __future__ import annotations

from segan_lib.data.layouts.folder_nifti import _FolderNiftiLayout


class Brats2023Layout(_FolderNiftiLayout):
    key = "brats2023"
    title = "BraTS 2023 GLI NIfTI"
    pattern = "<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz"
    sep = "-"
    suffixes = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "label": "seg"}
