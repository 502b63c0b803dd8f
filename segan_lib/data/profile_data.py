"""The data set a profile points at, opened as its `data` section says (root, layout, grades file,
bad-case policy): what the commands and the study's data steps read, in one place, so the library
never needs the command line's module for it.
"""
from __future__ import annotations

from segan_lib import paths
from segan_lib.config import Profile


def open_profile_dataset(profile: Profile):
    """The data set a profile points at (its root, layout, grades file and bad-case policy).

    Cases without a label are listed (`info`, `preprocess` and `predict` need none); the steps
    that need labels, training and evaluation, pick their cases with `usable(need_label=True)`."""
    from segan_lib.data.dataset import open_dataset  # on use: `segan --help` imports this module
    from segan_lib.data.layouts.registry import resolve_layout

    grades = paths.resolve(profile.data.grades_file) if profile.data.grades_file else None
    # the pattern layout's templates and an explicit label scheme (data.pattern, ..., data.label_scheme)
    layout = resolve_layout(profile.data_root, profile.data.layout, profile.data.layout_settings())
    return open_dataset(profile.data_root, layout=layout, grades=grades, require_label=False,
                        on_bad_case=profile.data.on_bad_case)
