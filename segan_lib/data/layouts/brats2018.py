"""The BraTS 2018-2021 NIfTI layout: <case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, optionally under HGG/ and LGG/.

Labels 1 (necrotic / non-enhancing core), 2 (oedema), 4 (enhancing); the phantom is
written in this layout.
"""
from __future__ import annotations

from segan_lib.data.layouts.folder_nifti import _FolderNiftiLayout


class Brats2018Layout(_FolderNiftiLayout):
    key = "brats2018"
    title = "BraTS 2018-2021 NIfTI"
    pattern = "<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, optionally under HGG/ and LGG/"
    sep = "_"
    suffixes = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}
