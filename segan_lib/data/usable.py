"""Which cases a step can use: the contrasts and the labels it needs, checked from the listing alone.

A case has the contrasts its files give (`Case.contrasts`; the cache keeps them per case), and a
label or not. A step needs some contrasts (training and evaluation: the run's `model.contrasts`;
preprocessing: the profile's; prediction: the bundle's) and, for training and evaluation, labels.
`why_unusable` says what one case lacks; `select_usable` sorts a step's cases into those it can
use and those it cannot, and either raises a DataError naming the latter (on_bad_case='error')
or leaves them out with a `BadCaseWarning` ('skip').

    usable, dropped = select_usable(case_contents(ds), ("flair",), need_label=True,
                                    on_bad_case="error", user="training")
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence

from segan_lib.constants import CONTRASTS
from segan_lib.errors import DataError

log = logging.getLogger("segan_lib.data")

ON_BAD_CASE = ("error", "skip")
_SKIP_HINT = "--on-bad-case skip (data.on_bad_case=skip) leaves such cases out with a warning"


class BadCaseWarning(UserWarning):
    """Cases were dropped because they cannot be used (on_bad_case='skip')."""


def warn_skipped(skipped: Sequence[tuple[str, str]], when: str, stacklevel: int = 3) -> None:
    """One BadCaseWarning (and a log line) listing the dropped cases and why."""
    lines = "\n".join(f"  - {reason}" for _, reason in skipped[:20])
    if len(skipped) > 20:
        lines += f"\n  ... and {len(skipped) - 20} more"
    message = f"skipped {len(skipped)} case{'s' if len(skipped) != 1 else ''} while {when}:\n{lines}"
    log.warning(message)
    warnings.warn(message, BadCaseWarning, stacklevel=stacklevel)


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def why_unusable(has: Sequence[str], has_label: bool, contrasts: Sequence[str], need_label: bool,
                 user: str = "the run") -> str | None:
    """What a case lacks for a step, or None when it has everything.

    'has no t1 image: the run uses t1, flair; it has flair, t1c', or 'has no label: training needs
    one for every case it uses'. `has`: the contrasts the case has; `user`: who needs them.
    """
    lacking = [c for c in contrasts if c not in has]
    if lacking:
        have = [c for c in CONTRASTS if c in has] + [c for c in has if c not in CONTRASTS]
        return (f"has no {' or '.join(lacking)} image: {user} uses {', '.join(contrasts)}; "
                f"it has {_names(have)}")
    if need_label and not has_label:
        return f"has no label: {user} needs one for every case it uses"
    return None


def case_contents(cases: Iterable) -> list[tuple[str, tuple[str, ...], bool]]:
    """(case id, contrasts, has a label) of each Case, what `select_usable` takes."""
    return [(c.case_id, tuple(c.contrasts), bool(c.has_label)) for c in cases]


def select_usable(
    contents: Iterable[tuple[str, Sequence[str], bool]],
    contrasts: Sequence[str],
    *,
    need_label: bool,
    on_bad_case: str = "error",
    user: str = "the run",
    hint: str = "",
) -> tuple[list[str], list[tuple[str, str]]]:
    """(ids of the usable cases in the order given, [(case id, reason)] of the others).

    contents: (case id, contrasts it has, has a label) per case, e.g. from `case_contents`.
    on_bad_case 'error': a DataError naming every unusable case (the first one's reason in full);
    'skip': a BadCaseWarning listing them, and a DataError when that leaves no case.
    hint: a sentence added to the error (e.g. how to choose other contrasts).
    """
    if on_bad_case not in ON_BAD_CASE:
        raise ValueError(f"on_bad_case must be one of {ON_BAD_CASE}, not {on_bad_case!r}")
    contrasts = list(contrasts)
    good: list[str] = []
    lacking: list[tuple[str, str]] = []  # (case id, what it lacks)
    for case_id, has, has_label in contents:
        why = why_unusable(has, has_label, contrasts, need_label, user)
        if why is None:
            good.append(case_id)
        else:
            lacking.append((case_id, why))
    bad = [(case_id, str(DataError(why, case_id=case_id))) for case_id, why in lacking]
    extra = f"; {hint}" if hint else ""
    if lacking and on_bad_case == "error":
        first_id, first = lacking[0]
        if len(lacking) == 1:
            raise DataError(f"{first} ({_SKIP_HINT}{extra})", case_id=first_id)
        rest = [cid for cid, _ in lacking[1:]]
        others = ", ".join(rest[:10]) + (f" and {len(rest) - 10} more" if len(rest) > 10 else "")
        raise DataError(f"{first}; {len(rest)} more case{'s' if len(rest) > 1 else ''} cannot be used either: "
                        f"{others} ({_SKIP_HINT}{extra})", case_id=first_id)
    if bad:
        warn_skipped(bad, f"choosing the cases {user} can use", stacklevel=3)
        if not good:
            raise DataError(f"no case left that {user} can use: all {len(bad)} were left out, the first because "
                            f"{bad[0][1]}")
    return good, bad
