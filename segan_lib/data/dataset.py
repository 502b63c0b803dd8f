"""Opening a BraTS data set of any layout, loading and checking cases, summarising a set.

    ds = open_dataset("data/BraTS2018")          # layout detected, nothing decoded yet
    arrays = load_case(ds[0])                     # reads and checks one case
    good, bad = validate_dataset(ds, on_bad_case="skip")
    print(format_summary(summarize_dataset(ds, deep=True)))
"""
from __future__ import annotations

import csv
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from segan_lib.errors import DataError
from segan_lib.constants import CONTRASTS, GRADES
from segan_lib.data.case import LABEL_SCHEMES, Case, LabelScheme
from segan_lib.data.layouts import LAYOUTS, Problem

__all__ = [
    "AFFINE_TOLERANCE_MM",
    "BadCaseWarning",
    "CaseArrays",
    "Dataset",
    "detect_layout",
    "format_summary",
    "layout_title",
    "load_case",
    "open_dataset",
    "read_grades_csv",
    "summarize_dataset",
    "validate_dataset",
]

log = logging.getLogger("segan_lib.data")

from segan_lib.constants import AFFINE_TOLERANCE_MM
GRADES_FILE = "grades.csv"
_ON_BAD = ("error", "skip")


class BadCaseWarning(UserWarning):
    """Cases were dropped because they cannot be used (on_bad_case='skip')."""


def layout_title(key: str) -> str:
    """'BraTS 2018-2021 NIfTI (brats2018)' for 'brats2018'."""
    layout = LAYOUTS.get(key)
    return f"{layout.title} ({key})" if layout is not None else key


def _expected_layouts() -> str:
    return "\n".join(f"  - {key} ({layout.title}): {layout.pattern}" for key, layout in LAYOUTS.items())


def detect_layout(root: str | Path) -> str:
    """The key of the one layout whose files `root` holds ('brats2015', 'brats2018', 'brats2023', 'msd').

    Looks at names only. No match (also an empty or missing folder) or more than one
    match is a DataError.
    """
    root = Path(root)
    reason = ""
    if not root.exists():
        reason = " (the folder does not exist)"
    elif not root.is_dir():
        reason = " (it is a file, not a folder)"
    elif not any(root.iterdir()):
        reason = " (the folder is empty)"
    if reason:
        raise DataError(f"no BraTS layout recognised in {root}{reason}: expected one of\n{_expected_layouts()}")
    found = [key for key, layout in LAYOUTS.items() if layout.matches(root)]
    if not found:
        raise DataError(f"no BraTS layout recognised in {root}: expected one of\n{_expected_layouts()}")
    if len(found) > 1:
        raise DataError(
            f"several BraTS layouts recognised in {root}: {', '.join(layout_title(k) for k in found)}; "
            "keep one release per folder or pass layout= explicitly"
        )
    return found[0]


# ----------------------------------------------------------------------------------------
# grades


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


# ----------------------------------------------------------------------------------------
# the data set


class Dataset(Sequence[Case]):
    """The cases of one data set folder, in case-id order. Nothing is decoded until asked.

    Index by position (or slice, giving a Dataset) or by case id (`ds["BraTS_001"]`,
    `ds.get(case_id)`); `case_id in ds` works with ids.
    """

    def __init__(
        self,
        root: Path,
        layout: str,
        cases: list[Case],
        skipped: list[tuple[str, str]] | None = None,
        grades_source: str | None = None,
    ):
        self.root = Path(root)
        self.layout = layout
        self._cases = list(cases)
        self._index = {c.case_id: i for i, c in enumerate(self._cases)}
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.grades_source = grades_source

    # Sequence
    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, item):
        if isinstance(item, str):
            return self.get(item)
        if isinstance(item, slice):
            return self.subset([c.case_id for c in self._cases[item]])
        return self._cases[item]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def __contains__(self, item) -> bool:
        if isinstance(item, Case):
            item = item.case_id
        return item in self._index

    def __repr__(self) -> str:
        return f"<Dataset {self.layout} {len(self)} cases at {self.root}>"

    # extras
    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self._cases]

    @property
    def grades(self) -> dict[str, str | None]:
        return {c.case_id: c.grade for c in self._cases}

    @property
    def label_scheme(self) -> LabelScheme:
        return LABEL_SCHEMES[self.layout]

    @property
    def title(self) -> str:
        return layout_title(self.layout)

    def get(self, case_id: str) -> Case:
        """The case with this id; DataError (naming near matches) when there is none."""
        if case_id in self._index:
            return self._cases[self._index[case_id]]
        import difflib

        close = difflib.get_close_matches(case_id, self._index, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        skipped = [k for k, _ in self.skipped if k == case_id]
        if skipped:
            hint = "; it was skipped: " + next(r for k, r in self.skipped if k == case_id)
        raise DataError(f"no such case in {self.root} ({len(self)} cases){hint}", case_id=case_id)

    def subset(self, case_ids) -> "Dataset":
        """A Dataset of these cases (in the order given)."""
        cases = [self.get(cid) for cid in case_ids]
        return Dataset(self.root, self.layout, cases, skipped=[], grades_source=self.grades_source)


def _problem_reason(problem: Problem) -> str:
    return str(problem.error)


def open_dataset(
    root: str | Path,
    *,
    layout: str | None = None,
    grades: Mapping[str, str] | str | Path | None = None,
    require_label: bool = True,
    on_bad_case: str = "error",
) -> Dataset:
    """List the cases of a data set folder (no volume is decoded).

    layout: a key of LAYOUTS, or None to detect it.
    grades: case_id -> 'HGG'/'LGG' mapping, or a CSV path with header `case_id,grade`;
        None reads `<root>/grades.csv` when it exists. Grades from HGG/LGG folders win.
    require_label: False for sets without labels (test/validation folders, MSD imagesTs).
    on_bad_case: 'error' raises the first problem found in the names (missing file,
        duplicate id); 'skip' drops such cases with a warning and records them in `.skipped`.
    """
    if on_bad_case not in _ON_BAD:
        raise ValueError(f"on_bad_case must be one of {_ON_BAD}, not {on_bad_case!r}")
    root = Path(root)
    if layout is None:
        key = detect_layout(root)
    else:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}: known layouts are {', '.join(LAYOUTS)}")
        if not root.is_dir():
            raise DataError(f"data set folder {root} does not exist or is not a folder")
        key = layout
    grade_map, grades_source = _grade_mapping(root, grades)
    reader = LAYOUTS[key]
    cases, problems = reader.scan(root, grade_map, require_label)
    skipped: list[tuple[str, str]] = []
    if problems:
        if on_bad_case == "error":
            first = problems[0].error
            more = len(problems) - 1
            if more:
                raise DataError(
                    f"{first.what} (and {more} more problem{'s' if more > 1 else ''} in this data set; "
                    "on_bad_case='skip' drops such cases)",
                    case_id=first.case_id,
                    path=first.path,
                )
            raise first
        skipped = [(p.key, _problem_reason(p)) for p in problems]
        _warn_skipped(skipped, f"listing {root}")
    if not cases:
        if skipped:
            raise DataError(
                f"no usable case in {root}: all {len(skipped)} were skipped, the first because: {skipped[0][1]}"
            )
        raise DataError(f"no {layout_title(key)} cases found in {root}: expected {reader.pattern}")
    return Dataset(root, key, cases, skipped=skipped, grades_source=grades_source)


def _warn_skipped(skipped: list[tuple[str, str]], when: str) -> None:
    lines = "\n".join(f"  - {reason}" for _, reason in skipped[:20])
    if len(skipped) > 20:
        lines += f"\n  ... and {len(skipped) - 20} more"
    message = f"skipped {len(skipped)} case{'s' if len(skipped) != 1 else ''} while {when}:\n{lines}"
    log.warning(message)
    warnings.warn(message, BadCaseWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------
# one case in memory


@dataclass
class CaseArrays:
    """The decoded volumes of one case, checked as a whole."""

    case_id: str
    grade: str | None
    images: dict[str, np.ndarray]  # contrast -> float32 (i, j, k)
    label: np.ndarray | None  # integer (i, j, k), or None
    affine: np.ndarray  # 4x4 voxel -> RAS+ mm, shared by every volume
    spacing: tuple[float, float, float]
    header: dict  # layout, files, and each file's header under "volumes"
    layout: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        first = next(iter(self.images.values()), self.label)
        return tuple(first.shape)

    def stacked(self, contrasts: Sequence[str] | None = None) -> np.ndarray:
        """(C, i, j, k) float32 array of the contrasts, in the order given (default: as loaded)."""
        names = list(contrasts) if contrasts is not None else list(self.images)
        return np.stack([self.images[c] for c in names], axis=0)

    def whole_tumour(self) -> np.ndarray:
        if self.label is None:
            raise DataError("has no label", case_id=self.case_id)
        return self.label > 0

    def regions(self) -> dict[str, np.ndarray]:
        if self.label is None:
            raise DataError("has no label", case_id=self.case_id)
        return LABEL_SCHEMES[self.layout].regions(self.label)


def _label_values(label: np.ndarray) -> list[int]:
    lo = int(label.min())
    hi = int(label.max())
    if lo >= 0 and hi < 1 << 16:
        counts = np.bincount(label.ravel().astype(np.int64, copy=False), minlength=hi + 1)
        return [int(v) for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(label)]


def load_case(case: Case, contrasts: Sequence[str] = CONTRASTS, with_label: bool = True) -> CaseArrays:
    """Read the requested contrasts (and the label when the case has one) and check them together.

    Raises DataError when a file is bad, when shapes or affines of the files differ
    (affines by more than 1e-3 mm), or when the label holds values outside the layout's
    LabelScheme. `label` is None when with_label is False or the case has no label.
    """
    contrasts = list(contrasts)
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown:
        raise DataError(f"unknown contrasts {unknown}: the contrasts are {list(CONTRASTS)}", case_id=case.case_id)
    names = contrasts + (["label"] if with_label and case.has_label else [])
    if not names:
        raise DataError("nothing to load: no contrast asked for and no label", case_id=case.case_id)
    volumes = {name: case.volume(name) for name in names}

    def file_of(name: str) -> str:
        path = case.files.get(name)
        if path is None:
            return name
        if case.layout == "msd" and name != "label":
            return f"{Path(path).name}[{name}]"
        return Path(path).name

    shapes = {name: tuple(v.data.shape) for name, v in volumes.items()}
    if len(set(shapes.values())) > 1:
        listing = "; ".join(f"{file_of(n)}: {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise DataError(f"volumes have different shapes ({listing})", case_id=case.case_id)

    ref_name = names[0]
    ref = volumes[ref_name].affine
    for name in names[1:]:
        diff = float(np.max(np.abs(volumes[name].affine - ref)))
        if diff > AFFINE_TOLERANCE_MM:
            raise DataError(
                f"volumes have different geometry: the affine of {file_of(name)} differs from that of "
                f"{file_of(ref_name)} by up to {diff:.4g} mm (tolerance {AFFINE_TOLERANCE_MM} mm)",
                case_id=case.case_id,
            )

    label = volumes["label"].data if "label" in volumes else None
    if label is not None:
        scheme = case.label_scheme
        values = _label_values(label)
        unexpected = [v for v in values if v not in scheme.values]
        if unexpected:
            raise DataError(
                f"unexpected label values {unexpected}: the {layout_title(case.layout)} layout allows "
                f"{sorted(scheme.values)}",
                case_id=case.case_id,
                path=case.files.get("label"),
            )

    first = volumes[ref_name]
    header = {
        "layout": case.layout,
        "files": {n: str(case.files[n]) for n in names if n in case.files},
        "volumes": {n: v.header for n, v in volumes.items()},
    }
    return CaseArrays(
        case_id=case.case_id,
        grade=case.grade,
        images={c: volumes[c].data for c in contrasts},
        label=label,
        affine=first.affine.copy(),
        spacing=first.spacing,
        header=header,
        layout=case.layout,
    )


# ----------------------------------------------------------------------------------------
# whole-set checks and summary


def validate_dataset(
    ds: Dataset, contrasts: Sequence[str] = CONTRASTS, on_bad_case: str = "error"
) -> tuple[list[str], list[tuple[str, str]]]:
    """Load every case once (one at a time) and check it.

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


def _fmt_spacing(spacing) -> str:
    return "x".join(f"{round(float(s), 3):g}" for s in spacing)


def summarize_dataset(ds: Dataset, deep: bool = False) -> dict:
    """What `segan info DATA` prints: layout, size, grades; with deep=True also what the
    volumes hold (reads every case, one at a time; bad cases are listed, not raised)."""
    grade_counts = Counter(c.grade if c.grade in GRADES else "unknown" for c in ds)
    summary: dict = {
        "layout": ds.layout,
        "layout_title": layout_title(ds.layout),
        "root": str(ds.root),
        "n_cases": len(ds),
        "n_with_label": sum(1 for c in ds if c.has_label),
        "grades": {g: int(grade_counts.get(g, 0)) for g in (*GRADES, "unknown")},
        "grades_source": ds.grades_source,
        "label_scheme": sorted(ds.label_scheme.values),
        "skipped": [list(s) for s in ds.skipped],
        "deep": bool(deep),
    }
    if not deep:
        return summary
    shapes: Counter = Counter()
    spacings: Counter = Counter()
    label_values: set[int] = set()
    tumour: list[int] = []
    bad: list[list[str]] = []
    for case in ds:
        try:
            arrays = load_case(case, with_label=case.has_label)
        except DataError as exc:
            bad.append([case.case_id, str(exc)])
            continue
        shapes["x".join(map(str, arrays.shape))] += 1
        spacings[_fmt_spacing(arrays.spacing)] += 1
        if arrays.label is not None:
            label_values.update(_label_values(arrays.label))
            tumour.append(int(np.count_nonzero(arrays.label)))
        del arrays
    summary.update(
        shapes=dict(shapes.most_common()),
        spacings=dict(spacings.most_common()),
        label_values=sorted(label_values),
        tumour_voxels=(
            {"min": min(tumour), "max": max(tumour), "mean": float(np.mean(tumour)), "n_empty": tumour.count(0)}
            if tumour
            else None
        ),
        bad=bad,
    )
    return summary


def format_summary(summary: dict) -> str:
    """A readable multi-line rendering of `summarize_dataset`'s result."""
    g = summary["grades"]
    lines = [
        f"Data set:  {summary['root']}",
        f"Layout:    {summary.get('layout_title') or layout_title(summary['layout'])}",
        f"Cases:     {summary['n_cases']} ({summary['n_with_label']} with a label)",
        f"Grades:    HGG {g.get('HGG', 0)}, LGG {g.get('LGG', 0)}, unknown {g.get('unknown', 0)}"
        + (f"  (from {summary['grades_source']})" if summary.get("grades_source") else ""),
        f"Labels allowed by the layout: {', '.join(map(str, summary['label_scheme']))}",
    ]
    if summary.get("skipped"):
        lines.append(f"Skipped when listing: {len(summary['skipped'])}")
        lines += [f"  - {reason}" for _, reason in summary["skipped"]]
    if summary.get("deep"):

        def counted(d: dict, unit: str = "") -> str:
            return ", ".join(f"{k}{unit} ({n} case{'s' if n != 1 else ''})" for k, n in d.items()) or "none"

        lines.append(f"Shapes:    {counted(summary['shapes'])}")
        lines.append(f"Spacing:   {counted(summary['spacings'], ' mm')}")
        values = summary.get("label_values") or []
        lines.append(f"Label values seen: {', '.join(map(str, values)) if values else 'none'}")
        tv = summary.get("tumour_voxels")
        if tv:
            lines.append(
                f"Tumour voxels per case: min {tv['min']}, max {tv['max']}, mean {tv['mean']:.0f}"
                + (f"; {tv['n_empty']} case(s) without tumour" if tv["n_empty"] else "")
            )
        bad = summary.get("bad") or []
        if bad:
            lines.append(f"Unusable cases: {len(bad)}")
            lines += [f"  - {reason}" for _, reason in bad]
        else:
            lines.append("Every case read and checked: no problem found.")
    return "\n".join(lines)
