"""A throw-away project root with a tiny phantom, its cache and split (shared by the training tests)."""
from __future__ import annotations

import os
from contextlib import contextmanager

from segan_lib.config import load_profile


@contextmanager
def tiny_project(root, overrides):
    """SEGAN_ROOT=root while inside; a 10-subject 4 mm phantom preprocessed and split. Yields the profile."""
    old = os.environ.get("SEGAN_ROOT")
    os.environ["SEGAN_ROOT"] = str(root)
    try:
        from segan_lib.data.cache import build_cache
        from segan_lib.data import open_dataset
        from segan_lib.data.phantom import generate_phantom
        from segan_lib.data.splits import default_splits_path, ensure_split

        profile = load_profile("smoke", overrides)
        generate_phantom(profile.data_root, n=profile.data.phantom_n, seed=0, voxel_size=4.0)
        ds = open_dataset(profile.data_root)
        build_cache(ds, profile.preprocess, log=None)
        ensure_split(default_splits_path(profile.data_root), ds.grades, seed=0)
        yield profile
    finally:
        if old is None:
            os.environ.pop("SEGAN_ROOT", None)
        else:
            os.environ["SEGAN_ROOT"] = old
