"""Opening a BraTS data set of any layout, loading and checking cases.

    ds = open_dataset("data/BraTS2018")          # layout detected, nothing decoded yet
    arrays = load_case(ds[0])                     # reads and checks one case (the contrasts it has)
    flair_runs = ds.usable(["flair"], need_label=True, on_bad_case="skip")   # the cases a step can use
    good, bad = validate_dataset(ds, on_bad_case="skip")
    print(format_summary(summarize_dataset(ds, deep=True)))

`validate_dataset` is in `segan_lib.data.validate`, the text rendering of a summary
(`format_summary`) in `segan_lib.data.summary`, the grade files in `segan_lib.data.grades`
and the layout detection in `segan_lib.data.layouts.registry`; all but `validate_dataset`
(which imports this module) stay importable from here. What a step needs of a case (its
contrasts, a label) is checked in `segan_lib.data.usable`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from segan_lib.errors import DataError
from segan_lib.constants import AFFINE_TOLERANCE_MM, CONTRASTS, GRADES
from segan_lib.data.case import LABEL_SCHEMES, MASK_KEY, Case, LabelScheme
from segan_lib.data.grades import GRADES_FILE, _grade_mapping, read_grades_csv
from segan_lib.data.layouts.common import Layout, Problem
from segan_lib.data.layouts.registry import LAYOUTS, detect_layout, layout_title, resolve_layout  # noqa: F401
# format_summary moved to segan_lib.data.summary; importable from here as before (the command line does)
from segan_lib.data.summary import format_summary  # noqa: F401
# BadCaseWarning moved to segan_lib.data.usable (the checks of what a step needs); importable from here as before
from segan_lib.data.usable import ON_BAD_CASE as _ON_BAD, BadCaseWarning, case_contents, select_usable, why_unusable
from segan_lib.data.usable import warn_skipped as _warn_skipped

__all__ = [
    "AFFINE_TOLERANCE_MM",
    "BadCaseWarning",
    "CaseArrays",
    "Dataset",
    "GRADES_FILE",
    "detect_layout",
    "format_summary",
    "layout_title",
    "load_case",
    "open_dataset",
    "read_grades_csv",
    "require_contrasts",
    "summarize_dataset",
]

log = logging.getLogger("segan_lib.data")

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
    def scheme(self) -> str:
        """The key of LABEL_SCHEMES the cases' labels follow: the cases' `scheme`, else the layout's own.

        Every case of a data set shares one; cases that disagree are a DataError."""
        keys = sorted({c.scheme or c.layout for c in self._cases}) or [self.layout]
        if len(keys) > 1:
            raise DataError(f"the cases of {self.root} follow different label schemes ({', '.join(keys)}); "
                            "a data set holds one release's labels")
        if keys[0] not in LABEL_SCHEMES:
            raise DataError(f"no label scheme for the {layout_title(self.layout)} cases of {self.root}: "
                            f"{keys[0]!r} is none of {', '.join(LABEL_SCHEMES)}")
        return keys[0]

    @property
    def label_scheme(self) -> LabelScheme:
        return LABEL_SCHEMES[self.scheme]

    def contrast_counts(self) -> dict[str, dict[str, int]]:
        """contrast -> {"cases": how many cases have it, "with_label": how many of those have a label}."""
        return {c: {"cases": sum(1 for k in self._cases if c in k.contrasts),
                    "with_label": sum(1 for k in self._cases if c in k.contrasts and k.has_label)}
                for c in CONTRASTS}

    def usable(self, contrasts: Sequence[str], *, need_label: bool = False, on_bad_case: str = "error",
               user: str = "the run", hint: str = "") -> "Dataset":
        """The cases that have every one of `contrasts` (and a label, with need_label), as a Dataset.

        The others are a DataError naming them (on_bad_case='error') or are left out with a
        BadCaseWarning and added to `.skipped` ('skip'); see segan_lib.data.usable.select_usable.
        """
        good, bad = select_usable(case_contents(self._cases), contrasts, need_label=need_label,
                                  on_bad_case=on_bad_case, user=user, hint=hint)
        out = self.subset(good)
        out.skipped = list(self.skipped) + bad
        return out

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


def require_contrasts(case: Case, contrasts: Sequence[str], user: str = "the run") -> None:
    """DataError unless the case has every one of `contrasts`: 'case X: has no t1 image: the run uses
    t1, flair; it has flair, t1c'. What a step that reads one case calls before reading it."""
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown:
        raise DataError(f"unknown contrasts {unknown}: the contrasts are {list(CONTRASTS)}", case_id=case.case_id)
    why = why_unusable(case.contrasts, case.has_label, contrasts, need_label=False, user=user)
    if why is not None:
        raise DataError(why, case_id=case.case_id)


def _problem_reason(problem: Problem) -> str:
    return str(problem.error)


def open_dataset(
    root: str | Path,
    *,
    layout: "str | Layout | None" = None,
    grades: Mapping[str, str] | str | Path | None = None,
    require_label: bool = True,
    on_bad_case: str = "error",
) -> Dataset:
    """List the cases of a data set folder (no volume is decoded).

    layout: a key of LAYOUTS, None to detect it, or a reader set up with layout settings
        (`segan_lib.data.layouts.registry.resolve_layout`: pattern templates, a label scheme).
    grades: case_id -> 'HGG'/'LGG' mapping, or a CSV path with header `case_id,grade`;
        None reads `<root>/grades.csv` when it exists. Grades from HGG/LGG folders win.
    require_label: False for sets without labels (test/validation folders, MSD imagesTs).
    on_bad_case: 'error' raises the first problem found in the names (a case with no image,
        a missing label file with require_label, duplicate id); 'skip' drops such cases with a
        warning and records them in `.skipped`. A case without some contrast is listed with those
        it has (`Case.contrasts`); `Dataset.usable` picks the cases a step can use.
    """
    if on_bad_case not in _ON_BAD:
        raise ValueError(f"on_bad_case must be one of {_ON_BAD}, not {on_bad_case!r}")
    root = Path(root)
    reader = resolve_layout(root, layout)  # detected, by key, or a reader set up with layout settings
    key = reader.key
    grade_map, grades_source = _grade_mapping(root, grades)
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
    scheme: str = ""  # key of LABEL_SCHEMES (the case's scheme, else its layout's)
    brain: np.ndarray | None = None  # bool (i, j, k): the brain mask the layout names, or None

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
        return LABEL_SCHEMES[self.scheme or self.layout].regions(self.label)


def _label_values(label: np.ndarray) -> list[int]:
    lo = int(label.min())
    hi = int(label.max())
    if lo >= 0 and hi < 1 << 16:
        counts = np.bincount(label.ravel().astype(np.int64, copy=False), minlength=hi + 1)
        return [int(v) for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(label)]


def load_case(case: Case, contrasts: Sequence[str] | None = None, with_label: bool = True,
              with_mask: bool = True) -> CaseArrays:
    """Read the requested contrasts (None: every contrast the case has), the label when the case has
    one and its brain mask when the layout names one, and check them together.

    Raises DataError when the case lacks a requested contrast, when a file is bad, when shapes
    or affines of the files differ (affines by more than 1e-3 mm), when the label holds values
    outside the case's LabelScheme, or when the brain mask is empty. `label` is None when
    with_label is False or the case has no label; `brain` None without a mask (or with_mask False).
    """
    contrasts = list(case.contrasts if contrasts is None else contrasts)
    require_contrasts(case, contrasts)
    names = contrasts + (["label"] if with_label and case.has_label else [])
    if not names:
        raise DataError("nothing to load: no contrast asked for and no label", case_id=case.case_id)
    names += [MASK_KEY] if with_mask and case.has_mask else []
    volumes = {name: case.volume(name) for name in names}
    _check_geometry(case, names, volumes)

    label = volumes["label"].data if "label" in volumes else None
    if label is not None:
        _check_label_values(case, label)
    brain = None
    if MASK_KEY in volumes:
        brain = volumes[MASK_KEY].data > 0
        if not brain.any():
            raise DataError("brain mask is empty: no voxel above 0", case_id=case.case_id, path=case.files.get(MASK_KEY))

    first = volumes[names[0]]
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
        scheme=case.scheme or case.layout,
        brain=brain,
    )


def _file_of(case: Case, name: str) -> str:
    """How an error names the file of `name` ('x_t1.nii.gz', or 'x.nii.gz[t1]' for a channel of an MSD file)."""
    path = case.files.get(name)
    if path is None:
        return name
    if case.layout == "msd" and name in CONTRASTS:
        return f"{Path(path).name}[{name}]"
    return Path(path).name


def _check_geometry(case: Case, names: list[str], volumes: dict) -> None:
    """DataError unless every volume has the shape and (within the tolerance) the affine of the first."""
    shapes = {name: tuple(v.data.shape) for name, v in volumes.items()}
    if len(set(shapes.values())) > 1:
        listing = "; ".join(f"{_file_of(case, n)}: {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise DataError(f"volumes have different shapes ({listing})", case_id=case.case_id)

    ref_name = names[0]
    ref = volumes[ref_name].affine
    for name in names[1:]:
        diff = float(np.max(np.abs(volumes[name].affine - ref)))
        if diff > AFFINE_TOLERANCE_MM:
            raise DataError(
                f"volumes have different geometry: the affine of {_file_of(case, name)} differs from that of "
                f"{_file_of(case, ref_name)} by up to {diff:.4g} mm (tolerance {AFFINE_TOLERANCE_MM} mm)",
                case_id=case.case_id,
            )


def _check_label_values(case: Case, label: np.ndarray) -> None:
    """DataError when the label holds values its LabelScheme (the case's, else its layout's) does not allow."""
    scheme = case.label_scheme
    values = _label_values(label)
    unexpected = [v for v in values if v not in scheme.values]
    if unexpected:
        key = case.scheme or case.layout
        whose = (f"the {layout_title(case.layout)} layout" if key == case.layout
                 else f"the {key} label scheme")
        raise DataError(
            f"unexpected label values {unexpected}: {whose} allows {sorted(scheme.values)}",
            case_id=case.case_id,
            path=case.files.get("label"),
        )


# ----------------------------------------------------------------------------------------
# summary of a whole set


def _fmt_spacing(spacing) -> str:
    return "x".join(f"{round(float(s), 3):g}" for s in spacing)


def _scheme_values(ds: Dataset) -> list[int]:
    """The label values the data set's scheme allows; [] for a set without labels whose layout names
    no scheme (nothing to check), a DataError when labelled cases have none."""
    try:
        return sorted(ds.label_scheme.values)
    except DataError:
        if any(c.has_label for c in ds):
            raise
        return []


def summarize_dataset(ds: Dataset, deep: bool = False) -> dict:
    """What `segan info DATA` prints: layout, size, grades, how many cases have each contrast (and a
    label); with deep=True also what the volumes hold (reads every case, one at a time; bad cases are
    listed, not raised). `n_problems`: the cases dropped at listing, plus with deep=True those that
    failed to read or check (what makes `segan info --deep` exit 1)."""
    grade_counts = Counter(c.grade if c.grade in GRADES else "unknown" for c in ds)
    summary: dict = {
        "layout": ds.layout,
        "layout_title": layout_title(ds.layout),
        "root": str(ds.root),
        "n_cases": len(ds),
        "n_with_label": sum(1 for c in ds if c.has_label),
        "n_with_mask": sum(1 for c in ds if c.has_mask),
        "contrasts": ds.contrast_counts(),
        "grades": {g: int(grade_counts.get(g, 0)) for g in (*GRADES, "unknown")},
        "grades_source": ds.grades_source,
        "label_scheme": _scheme_values(ds),
        "skipped": [list(s) for s in ds.skipped],
        "deep": bool(deep),
    }
    summary["n_problems"] = len(summary["skipped"])
    if not deep:
        return summary
    shapes: Counter = Counter()
    spacings: Counter = Counter()
    label_values: set[int] = set()
    tumour: list[int] = []
    bad: list[list[str]] = []
    for case in ds:
        try:
            arrays = load_case(case)  # the contrasts, label and mask it has
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
        n_problems=len(summary["skipped"]) + len(bad),
    )
    return summary
