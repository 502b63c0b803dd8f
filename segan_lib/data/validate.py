"""Checking a whole data set: `validate_dataset` loads every case once and sorts good from bad.

Listing a set (`open_dataset`) only sees the file names; this reads and checks every
volume, one case at a time, and either raises on the first bad case or reports them all
with a `BadCaseWarning`.
"""
from __future__ import annotations

from collections.abc import Sequence

from segan_lib.data.dataset import _ON_BAD, Dataset, _warn_skipped, load_case
from segan_lib.errors import DataError


def validate_dataset(
    ds: Dataset, contrasts: Sequence[str] | None = None, on_bad_case: str = "error"
) -> tuple[list[str], list[tuple[str, str]]]:
    """Load every case once (one at a time) and check it: `contrasts` (None: each case's own, which
    a case lacking one of the given contrasts fails), its label and brain mask when it has them.

    Returns (ids of good cases, [(case id, reason)] of bad ones). With on_bad_case='error'
    the first bad case raises its DataError; with 'skip' a BadCaseWarning lists the bad
    cases. Cases dropped when the set was opened are in `ds.skipped`, not repeated here.
    """
    if on_bad_case not in _ON_BAD:
        raise ValueError(f"on_bad_case must be one of {_ON_BAD}, not {on_bad_case!r}")
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    for case in ds:
        try:
            load_case(case, contrasts=contrasts, with_label=case.has_label)
        except DataError as exc:
            if on_bad_case == "error":
                raise
            bad.append((case.case_id, str(exc)))
        else:
            good.append(case.case_id)
    if bad:
        _warn_skipped(bad, f"validating {ds.root}")
    return good, bad
