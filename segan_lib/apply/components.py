"""Removing connected components smaller than a volume from a predicted mask (`--min-component-ml`).

Components are 26-connected (voxels touching by a face, an edge or a corner: scipy.ndimage.label with
a 3x3x3 structure of ones), on the mask in the scan's own grid, and measured in ml with that grid's
voxel volume. A component of exactly the limit is kept.

A three-region mask (whole tumour ⊇ tumour core ⊇ enhancing tumour, in a label scheme's values) is
cleaned region by region from the outside in, so the regions stay nested:
  1. a whole-tumour component below the limit is removed with everything inside it;
  2. a tumour-core component below the limit (within what is left) becomes oedema: it is still
     tumour, only too small to be called core;
  3. an enhancing component below the limit becomes non-enhancing core.
The probability map is left as the model gave it.
"""
from __future__ import annotations

import numpy as np

from segan_lib.apply.labels import REGION_LABELS, regions_to_labels
from segan_lib.errors import SeganError

CONNECTIVITY = 26


def _keep_large(region: np.ndarray, voxel_ml: float, min_ml: float) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(region, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return region
    sizes_ml = np.bincount(labels.ravel()) * voxel_ml
    keep = sizes_ml >= min_ml * (1 - 1e-9)  # n voxels of v ml make n*v ml up to rounding
    keep[0] = False
    return keep[labels]


def remove_small_components(mask: np.ndarray, voxel_ml: float, min_ml: float,
                            label_scheme: str | None = None) -> np.ndarray:
    """The uint8 mask without components below `min_ml` ml; `label_scheme` None: a 0/1 whole-tumour mask."""
    if not min_ml > 0:
        if min_ml == 0:
            return mask
        raise SeganError(f"the smallest component volume must be positive (ml), got {min_ml:g}")
    if label_scheme is None:
        return _keep_large(mask > 0, voxel_ml, min_ml).astype(np.uint8)
    oedema, core, enhancing = REGION_LABELS[label_scheme]
    wt = _keep_large(mask > 0, voxel_ml, min_ml)
    tc = _keep_large(wt & ((mask == core) | (mask == enhancing)), voxel_ml, min_ml)
    et = _keep_large(tc & (mask == enhancing), voxel_ml, min_ml)
    return regions_to_labels(wt, tc, et, label_scheme)
