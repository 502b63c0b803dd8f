"""The label values a three-region mask is written in: those of the training data's own label scheme.

A model trained with `--regions brats` predicts three nested regions, whole tumour (wt) ⊇ tumour
core (tc) ⊇ enhancing tumour (et). Its mask is written as a label of the data set it was trained on,
so a BraTS tool (and `segan evaluate-folder`) reads it like a ground-truth file:

    scheme      oedema only (wt, not tc)   core, not enhancing (tc, not et)   enhancing (et)
    brats2015            2                            3                             4
    brats2018            2                            1                             4
    brats2023            2                            1                             3
    msd                  1                            2                             3

BRATS 2015 has two labels for the core that does not enhance: 1 (necrosis) and 3 (non-enhancing
tumour). The model's region is all of that core, which is what 3 names; it does not separate
necrosis, so it claims none. Both values lie in the 2015 tumour core (TC = 1, 3, 4), so WT, TC and
ET read back from the mask, and every score, are the same either way.

Each file `segan predict` writes names the bundle and what the file holds in its NIfTI `descrip`
(segan_lib.data.mask_descrip, where segan evaluate-folder reads it back).

The scheme comes from the bundle's card (`training_data.label_scheme`, recorded at export); a bundle
exported before that record needs it given (`label_scheme=` / `segan predict --label-scheme`), which
also writes the mask in another scheme's values (a model trained on BraTS 2018 scored on BraTS 2023).
"""
from __future__ import annotations

import numpy as np

from segan_lib.errors import SeganError

#: scheme -> label values of (oedema only, core not enhancing, enhancing)
REGION_LABELS: dict[str, tuple[int, int, int]] = {
    "brats2015": (2, 3, 4),
    "brats2018": (2, 1, 4),
    "brats2023": (2, 1, 3),
    "msd": (1, 2, 3),
}


def bundle_label_scheme(card: dict) -> str | None:
    """The label scheme of a bundle's training data as its card records it (None for an older card)."""
    return (card.get("training_data") or {}).get("label_scheme")


def mask_label_scheme(bundle, label_scheme: str | None = None) -> str | None:
    """The scheme a bundle's masks are written in: None for a whole-tumour bundle (a 0/1 mask).

    `label_scheme` (a key of REGION_LABELS) overrides the card's; SeganError when it is given to a
    whole-tumour bundle (it would change nothing) or when a three-region bundle has none.
    """
    if label_scheme is not None and label_scheme not in REGION_LABELS:
        raise SeganError(f"unknown label scheme {label_scheme!r}: the schemes are {', '.join(REGION_LABELS)}")
    if int(bundle.card.get("n_outputs", 1)) == 1:
        if label_scheme is not None:
            raise SeganError(f"--label-scheme {label_scheme} has no effect with the model bundle {bundle.path}: it "
                             "segments the whole tumour only, written as a 0/1 mask")
        return None
    scheme = label_scheme or bundle_label_scheme(bundle.card)
    if scheme is None:
        raise SeganError(f"the model bundle {bundle.path} predicts the BraTS regions (wt, tc, et) but its card does not "
                         "record the label scheme of its training data (a bundle exported before that record), so "
                         "the label values of its masks are unknown: give --label-scheme "
                         f"({', '.join(REGION_LABELS)}), or export the run again")
    if scheme not in REGION_LABELS:
        raise SeganError(f"the model bundle {bundle.path} records the label scheme {scheme!r}, which has no region "
                         f"labels here (known: {', '.join(REGION_LABELS)}); give --label-scheme")
    return scheme


def regions_to_labels(wt: np.ndarray, tc: np.ndarray, et: np.ndarray, scheme: str) -> np.ndarray:
    """uint8 label map in `scheme`'s values from three region masks, nested first (tc within wt, et within tc)."""
    oedema, core, enhancing = REGION_LABELS[scheme]
    wt = np.asarray(wt, bool)
    tc = wt & np.asarray(tc, bool)
    et = tc & np.asarray(et, bool)
    out = np.zeros(wt.shape, np.uint8)
    out[wt] = oedema
    out[tc] = core
    out[et] = enhancing
    return out

