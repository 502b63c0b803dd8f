"""Tables and figures that describe a data set (the data-exploration notebook calls these)."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from segan_lib.constants import GRADES
from segan_lib.data.cache import CachedDataset
from segan_lib.errors import SeganError

#: the group of the cases without a grade (MSD, BraTS 2023, a release without a grades file)
UNKNOWN_GRADE = "unknown"

# What each label value means, per layout (names for tables and legends).
LABEL_NAMES = {
    "brats2015": {1: "necrosis", 2: "oedema", 3: "non-enhancing", 4: "enhancing"},
    "brats2018": {1: "necrotic / non-enhancing core", 2: "oedema", 4: "enhancing"},
    "brats2023": {1: "necrotic core", 2: "oedema", 3: "enhancing"},
    "msd": {1: "oedema", 2: "non-enhancing", 3: "enhancing"},
}


def case_table(cache: CachedDataset, split=None) -> pd.DataFrame:
    """One row per cached case: grade, subset, source shape and spacing, tumour volume per compartment (ml)."""
    rows = []
    subset_of = {}
    if split is not None:
        for name in ("train", "val", "test"):
            subset_of.update({c: name for c in split.subset(name)})
    for cid in cache.case_ids:
        meta = cache.meta[cid]
        rec = meta["record"]
        layout = meta.get("layout", "brats2018")
        names = LABEL_NAMES.get(layout, {})
        # volumes counted on the cached (resampled, cropped) label: voxel volume = spacing^3
        spacing = meta["settings"]["spacing_mm"]
        voxel_ml = spacing ** 3 / 1000.0
        label = np.asarray(cache.label(cid))
        counts = Counter(dict(zip(*np.unique(label, return_counts=True))))
        row = {
            "case_id": cid,
            "grade": meta.get("grade") or "unknown",
            "subset": subset_of.get(cid, ""),
            "source_shape": "x".join(map(str, rec["source_shape"])),
            "source_spacing_mm": "x".join(f"{s:g}" for s in rec["source_spacing"]),
            "whole_tumour_ml": sum(n for v, n in counts.items() if v > 0) * voxel_ml,
        }
        for value, name in names.items():
            row[f"{name}_ml"] = counts.get(value, 0) * voxel_ml
        rows.append(row)
    return pd.DataFrame(rows)


def intensity_samples(cache: CachedDataset, case_ids=None, per_case: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Preprocessed intensities sampled per contrast and tissue class (brain, then each label value).

    'brain' = non-zero voxels of the preprocessed image outside the tumour. Sampling
    keeps the table small enough for histograms of a few hundred cases.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for cid in case_ids or cache.case_ids:
        layout = cache.meta[cid].get("layout", "brats2018")
        names = LABEL_NAMES.get(layout, {})
        images = np.asarray(cache.images(cid), dtype=np.float32)
        label = np.asarray(cache.label(cid))
        brain = (images.max(axis=0) > 0) & (label == 0)
        classes = {"brain": brain, **{names.get(v, str(v)): label == v for v in np.unique(label) if v > 0}}
        for cls, mask in classes.items():
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                continue
            pick = rng.choice(idx, size=min(per_case, idx.size), replace=False)
            for ci, contrast in enumerate(cache.contrasts):
                frames.append(pd.DataFrame({"contrast": contrast, "tissue": cls,
                                            "intensity": images[ci].reshape(-1)[pick],
                                            "grade": cache.meta[cid].get("grade") or "unknown"}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["contrast", "tissue", "intensity", "grade"])


def tumour_slice_fraction(cache: CachedDataset) -> float:
    """Fraction of axial slices of the cached crops that hold any tumour (the rest train on background only)."""
    total = with_tumour = 0
    for cid in cache.case_ids:
        total += cache.meta[cid]["record"]["crop_shape"][2]
        with_tumour += len(cache.meta[cid]["tumour_slices"])
    return with_tumour / total if total else 0.0


def subjects_per_grade(cases: Sequence, among: Iterable[str] | None = None) -> dict:
    """One subject per grade the data set has: {"HGG": case, "LGG": case, "unknown": case}, in that order.

    Each is the first case (in the data set's order) of its grade; the cases without a grade form
    the group UNKNOWN_GRADE, so a data set without grades (MSD, BraTS 2023) gives one subject under
    it, and grades absent from the data give no entry. `among`: only these case ids count (e.g. the
    cache's, which leaves out the cases skipped as bad). A SeganError when no case is left.
    """
    keep = None if among is None else set(among)
    picked: dict = {}
    for case in cases:
        if keep is not None and case.case_id not in keep:
            continue
        picked.setdefault(case.grade if case.grade in GRADES else UNKNOWN_GRADE, case)
    if not picked:
        raise SeganError("no case to show: the data set (or its preprocessed cache) holds none")
    return {g: picked[g] for g in (*GRADES, UNKNOWN_GRADE) if g in picked}


def viewer_subject(cases: Sequence, among: Iterable[str] | None = None):
    """The subject the slice viewer opens on: a high-grade one when there is one, else the first of
    `subjects_per_grade` (a low-grade one, or the first case when grades are unknown)."""
    return next(iter(subjects_per_grade(cases, among).values()))
