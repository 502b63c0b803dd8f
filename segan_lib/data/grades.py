"""Grades of a data set's cases (HGG, LGG or unknown) from a CSV file or a mapping.

`read_grades_csv` reads `case_id,grade` files such as the phantom's `grades.csv`;
`_grade_mapping` turns what `open_dataset(grades=...)` was given (a mapping, a CSV path,
or None for `<root>/grades.csv` when it exists) into one mapping and says where it came from.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from segan_lib.constants import GRADES
from segan_lib.errors import DataError

GRADES_FILE = "grades.csv"


def _norm_grade(value, *, where: str, path=None, case_id=None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().upper()
    if text in ("", "NA", "N/A", "NONE", "UNKNOWN", "?"):
        return None
    if text in GRADES:
        return text
    raise DataError(f"{where}: grade {value!r} is not HGG or LGG (or empty for unknown)", case_id=case_id, path=path)


def read_grades_csv(path: str | Path) -> dict[str, str | None]:
    """case_id -> 'HGG' | 'LGG' | None from a CSV with header `case_id,grade` (extra columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("grade mapping file is missing", path=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "case_id" not in fields or "grade" not in fields:
                raise DataError(
                    f"grade mapping needs a header line 'case_id,grade', found {reader.fieldnames}", path=path
                )
            reader.fieldnames = fields
            grades: dict[str, str | None] = {}
            for line_no, row in enumerate(reader, start=2):
                case_id = (row.get("case_id") or "").strip()
                if not case_id:
                    continue
                grade = _norm_grade(row.get("grade"), where=f"line {line_no}", path=path, case_id=case_id)
                if case_id in grades and grades[case_id] != grade:
                    raise DataError(
                        f"line {line_no}: case listed twice with grades {grades[case_id]} and {grade}",
                        case_id=case_id,
                        path=path,
                    )
                grades[case_id] = grade
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read grade mapping ({exc})", path=path) from exc
    return grades


def _grade_mapping(root: Path, grades) -> tuple[dict[str, str | None] | None, str | None]:
    """(mapping or None, where it came from)."""
    if grades is None:
        auto = root / GRADES_FILE
        if auto.is_file():
            return read_grades_csv(auto), str(auto)
        return None, None
    if isinstance(grades, (str, Path)):
        return read_grades_csv(grades), str(grades)
    if isinstance(grades, Mapping):
        return (
            {str(k): _norm_grade(v, where="grades mapping", case_id=str(k)) for k, v in grades.items()},
            "mapping given",
        )
    raise TypeError(f"grades must be a mapping, a CSV path or None, not {type(grades).__name__}")
