"""Scoring a folder of predicted masks against a data set's labels, as BraTS does (`segan evaluate-folder`).

    from segan_lib.evaluation.folder import evaluate_folder
    result = evaluate_folder("masks/", "data/BraTS2018")   # writes masks/evaluation/{cases.csv,summary.csv,definitions.txt}
    print(result.report())

Matching. A prediction is a volume file (.nii.gz, .nii, .mha, .mhd, .nrrd) in PREDICTIONS, or in a folder
one level down, named `<case>`, `<case>_seg` or `<case>-seg` (the labels' naming of BraTS 2018-2021
and of BraTS 2023) for a case id of DATA: `<case>.nii.gz` is what `segan predict` writes for a folder
(and MSD's and nnU-Net's naming). `<case>_probability.*` (segan predict's probability maps) are passed
over. A case of DATA without a prediction, or a prediction naming no case of DATA, is an error naming
them; with on_missing="skip" what matches is scored and the others are listed (summary.csv's header,
the report). Two files for one case are an error.

Grid. A prediction is scored on its label's grid, untouched: the same shape and an affine within
AFFINE_TOLERANCE_MM, else a DataError naming both files. The spacing is the label's (its affine).

Kind of a prediction, decided per file (cases.csv, column `kind`, and `read_as` says why):
  - a file `segan predict` wrote says what it holds in its NIfTI descrip (segan_lib.data.mask_descrip):
    "wt 0/1" is binary; "labels <scheme>" multi-class, and the scheme must be the data set's;
  - otherwise by its values: only 0 and 1: binary, a whole-tumour mask (so a multi-class file holding
    nothing but label 1 is read as binary); values of the data set's label scheme: multi-class, in the
    data set's own label values; all zero: as the folder's other files are (multi-class if one is);
    any other value is a DataError naming the file.
A binary prediction is scored for WT only; a multi-class one for WT, TC and ET (those the label
scheme defines), with the regions of `LabelScheme.regions` applied to prediction and label alike.

Metrics per case and region: `definitions_text` (printed under the summary, written to
definitions.txt). Summary per region and metric: mean, SD, median and the 95% percentile-bootstrap CI
of the mean (segan_lib.metrics.summary.summarize: 2000 resamples, seed 0); NaN values (the MedPy HD95
with an empty side) are left out and counted (n_excluded).
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from segan_lib.atomic import atomic_write_text
from segan_lib.constants import AFFINE_TOLERANCE_MM
from segan_lib.errors import DataError, SeganError

MISSING_POLICIES = ("error", "skip")
PREDICTION_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
# the label files' naming of the BraTS layouts, accepted after the case id
_CASE_TAILS = ("", "_seg", "-seg")
_SIDE_OUTPUTS = ("_probability",)  # what segan predict writes beside the masks
REGIONS = ("wt", "tc", "et")
CASE_METRICS = ("dice", "precision", "sensitivity", "specificity", "hd95", "hd95_brats", "nsd", "volume_diff_ml")
CASE_COLUMNS = ("case", "region") + CASE_METRICS + ("truth_ml", "pred_ml", "kind", "read_as", "prediction", "bundle")
SUMMARY_COLUMNS = ("region", "metric", "mean", "std", "median", "n", "n_excluded", "ci_low", "ci_high")
N_BOOT, BOOT_SEED = 2000, 0


def definitions_text(tolerance_mm: float) -> str:
    """What every column of cases.csv and summary.csv means (written to definitions.txt)."""
    from segan_lib.metrics.surface import BRATS_EMPTY_HD95_MM

    return f"""\
Definitions (segan evaluate-folder). Per case and region, on the label's own grid, spacing from its affine.
Regions: WT = every non-zero label; TC and ET = the label scheme's tumour core and enhancing tumour
  (BraTS 2018-2021: TC 1+4, ET 4; 2023: TC 1+3, ET 3; 2015: TC 1+3+4, ET 4; MSD: TC 2+3, ET 3).
  A binary (0/1) prediction is a whole-tumour mask and scores WT only.
dice, precision, sensitivity, specificity: 2TP/(2TP+FP+FN), TP/(TP+FP), TP/(TP+FN), TN/(TN+FP) over voxels;
  a zero denominator gives 1 when prediction and truth agree everywhere, else 0 (both empty: Dice 1).
Surfaces: a mask XOR its 6-connected erosion; distances in mm between surface-voxel centres (MedPy's).
hd95: MedPy's, the 95th percentile of both directed surface-distance sets pooled; NaN when a mask is
  empty (left out of the summary and counted in n_excluded).
hd95_brats: the larger of the two directed 95th percentiles (the BraTS toolkits'); {BRATS_EMPTY_HD95_MM:.2f} mm
  (the diagonal of the 240x240x155 1-mm BraTS grid) when exactly one of prediction and truth is empty,
  0 when both are.
nsd: normalised surface Dice at a tolerance of {tolerance_mm:g} mm, the fraction of both surfaces (surface
  voxels counted) within the tolerance of the other; 1 when both masks are empty, 0 when one is.
volume_diff_ml: prediction volume minus truth volume in ml (voxel count x voxel volume); truth_ml, pred_ml
  the two volumes.
Summary per region and metric: mean, SD (ddof 1), median over cases, and the 95% percentile-bootstrap CI
  of the mean (2000 resamples of the cases, seed {BOOT_SEED}); n = cases with a value, n_excluded = NaN values.
"""


@dataclass
class FolderEvaluation:
    """What `evaluate_folder` scored and wrote."""

    cases: pd.DataFrame  # one row per case and region (CASE_COLUMNS)
    summary: pd.DataFrame  # one row per region and metric (SUMMARY_COLUMNS)
    out_dir: Path
    definitions: str
    header: list[str]  # the comment lines of summary.csv (without '# ')
    missing: list[str] = field(default_factory=list)  # cases of the data set without a prediction (skipped)
    unmatched: list[str] = field(default_factory=list)  # prediction files naming no case (skipped)

    def report(self) -> str:
        """The summary table, then the definitions (what the command prints)."""
        table = self.summary.copy()
        table["region"] = table["region"].str.upper()
        lines = [*self.header, "", table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
                 self.definitions]
        return "\n".join(lines)


# ---------------------------------------------------------------- matching files to cases
def _strip_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in PREDICTION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _candidate_files(folder: Path, out_dir: Path) -> list[Path]:
    """Volume files in the folder and one level down (not in the output folder), side outputs left out."""
    out_dir = out_dir.resolve()
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if path.resolve() == out_dir:
                continue
            files += [p for p in sorted(path.iterdir()) if p.is_file()]
        elif path.is_file():
            files.append(path)
    keep = []
    for path in files:
        stem = _strip_suffix(path.name)
        if stem is not None and not stem.endswith(_SIDE_OUTPUTS):
            keep.append(path)
    return keep


def _case_of(path: Path, case_ids: set[str]) -> str | None:
    stem = _strip_suffix(path.name)
    for tail in _CASE_TAILS:
        if stem.endswith(tail) and stem[: len(stem) - len(tail)] in case_ids:
            return stem[: len(stem) - len(tail)]
    return None


def match_predictions(folder: Path, case_ids, out_dir: Path) -> tuple[dict[str, Path], list[Path]]:
    """(case id -> prediction file, files naming no case). DataError when two files name one case."""
    ids = set(case_ids)
    matched: dict[str, list[Path]] = {}
    unmatched = []
    for path in _candidate_files(folder, out_dir):
        case_id = _case_of(path, ids)
        if case_id is None:
            unmatched.append(path)
        else:
            matched.setdefault(case_id, []).append(path)
    doubles = {c: ps for c, ps in matched.items() if len(ps) > 1}
    if doubles:
        c, ps = next(iter(sorted(doubles.items())))
        more = f" (and {len(doubles) - 1} more case(s) like it)" if len(doubles) > 1 else ""
        raise DataError(f"{len(ps)} predictions in {folder} name this case: {', '.join(p.name for p in ps)}; "
                        f"keep one{more}", case_id=c)
    return {c: ps[0] for c, ps in matched.items()}, unmatched


def _listing(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ---------------------------------------------------------------- one prediction
def _file_descrip(path: Path) -> dict | None:
    """What a NIfTI file's descrip says (segan_lib.data.mask_descrip.parse_mask_descrip), None for other files."""
    from segan_lib.data.mask_descrip import parse_mask_descrip
    from segan_lib.data.volume_io import load_nifti

    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        return parse_mask_descrip(load_nifti(path).header["descrip"][()])
    except Exception:  # noqa: BLE001 - unreadable here: read_volume says why, naming the file
        return None


def _values(data: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(data) if v != 0]


def _kind(path: Path, data: np.ndarray, described: dict | None, scheme_key: str, scheme, case_id: str):
    """('binary' | 'multiclass' | None for all zero, why) of one prediction; DataError for values it cannot hold."""
    values = _values(data)
    allowed = sorted(v for v in scheme.values if v != 0)
    if described is not None and not described["probability"]:
        said = f"descrip: segan bundle {described['bundle']}"
        if described["label_scheme"] is None:
            if set(values) - {1}:
                raise DataError(f"says it is a 0/1 whole-tumour mask (its descrip) but holds the values {values}",
                                case_id=case_id, path=path)
            return "binary", f"{said}, wt 0/1"
        if described["label_scheme"] != scheme_key:
            raise DataError(f"holds labels in the {described['label_scheme']} scheme's values (its descrip), the data "
                            f"set's labels follow {scheme_key}: predict again with --label-scheme {scheme_key}",
                            case_id=case_id, path=path)
        kind = "multiclass"
        why = f"{said}, labels {scheme_key}"
    elif described is not None:
        raise DataError("is a probability map (its descrip), not a mask", case_id=case_id, path=path)
    elif not values:
        return None, "all zero"
    elif set(values) <= {1}:
        return "binary", "values 0/1"
    else:
        kind, why = "multiclass", f"values {','.join(map(str, values))} of {scheme_key}"
    unexpected = [v for v in values if v not in allowed]
    if unexpected:
        raise DataError(f"holds the values {unexpected}, which are neither a 0/1 mask nor labels of the data set's "
                        f"{scheme_key} scheme ({', '.join(map(str, allowed))})", case_id=case_id, path=path)
    return kind, why


def _check_grid(pred, truth, pred_path: Path, label_path, case_id: str) -> None:
    """DataError naming both files unless the prediction (a Volume) has the label's (CaseArrays') grid."""
    label_name = Path(label_path).name if label_path is not None else "its label"
    if tuple(pred.data.shape) != tuple(truth.label.shape):
        raise DataError(f"prediction {pred_path} has shape {'x'.join(map(str, pred.data.shape))}, its label "
                        f"{label_path} {'x'.join(map(str, truth.label.shape))}: a prediction is scored on its "
                        "label's grid", case_id=case_id)
    diff = float(np.max(np.abs(np.asarray(pred.affine) - np.asarray(truth.affine))))
    if diff > AFFINE_TOLERANCE_MM:
        raise DataError(f"prediction {pred_path} is on another grid than its label {label_path} (affines differ by "
                        f"up to {diff:.4g} mm, tolerance {AFFINE_TOLERANCE_MM} mm): resample it onto "
                        f"{label_name}'s grid first", case_id=case_id)


def _region_masks(data: np.ndarray, kind: str, scheme) -> dict[str, np.ndarray]:
    if kind == "binary":
        return {"wt": data > 0}
    out = scheme.regions(data)
    return {r: out[r] for r in REGIONS if r == "wt" or getattr(scheme, r)}


def score_case(pred: np.ndarray, truth: np.ndarray, kind: str, scheme, spacing, tolerance_mm: float) -> list[dict]:
    """The metric rows (one per region) of one prediction against its label, both in the same grid."""
    from segan_lib.metrics.surface import surface_metrics, volume_difference_ml
    from segan_lib.metrics.volume import volume_metrics

    voxel_ml = float(np.prod(spacing)) / 1000.0
    pred_regions, truth_regions = _region_masks(pred, kind, scheme), _region_masks(truth, "multiclass", scheme)
    rows = []
    for region, p in pred_regions.items():
        t = truth_regions[region]
        vm = volume_metrics(p, t, spacing, compute_hd95=False)
        sm = surface_metrics(p, t, spacing, tolerance_mm)
        rows.append({"region": region, "dice": vm.dice, "precision": vm.precision, "sensitivity": vm.sensitivity,
                     "specificity": vm.specificity, "hd95": sm.hd95, "hd95_brats": sm.hd95_brats, "nsd": sm.nsd,
                     "volume_diff_ml": volume_difference_ml(p, t, spacing),
                     "truth_ml": int(np.count_nonzero(t)) * voxel_ml, "pred_ml": int(np.count_nonzero(p)) * voxel_ml})
    return rows


# ---------------------------------------------------------------- the folder
def _open_data(data_dir, layout, on_bad_case):
    from segan_lib.data.dataset import open_dataset

    return open_dataset(Path(data_dir), layout=layout, require_label=True, on_bad_case=on_bad_case)


def _summary(cases: pd.DataFrame) -> pd.DataFrame:
    from segan_lib.metrics.summary import summarize

    rows = []
    for region in [r for r in REGIONS if r in set(cases["region"])]:
        sel = cases[cases["region"] == region]
        for metric in CASE_METRICS:
            s = summarize(sel[metric].to_numpy(dtype=float), n_boot=N_BOOT, seed=BOOT_SEED)
            rows.append({"region": region, "metric": metric, **s.as_dict()})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _region_order(column: pd.Series) -> pd.Series:
    """Sort key: cases by id, regions in the order WT, TC, ET."""
    return column.map(REGIONS.index) if column.name == "region" else column


def _csv(table: pd.DataFrame, header: list[str] = ()) -> str:
    buf = io.StringIO()
    for line in header:
        buf.write(f"# {line}\n")
    table.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.10g")
    return buf.getvalue()


def evaluate_folder(predictions_dir, data_dir, out_dir=None, *, layout: str | None = None,
                    on_bad_case: str = "error", on_missing: str = "error",
                    nsd_tolerance_mm: float = 1.0, progress: bool = False) -> FolderEvaluation:
    """Score every prediction of a folder against the labels of a data set; write cases.csv, summary.csv
    and definitions.txt (each atomically) to `out_dir` (default <predictions_dir>/evaluation)."""
    from tqdm.auto import tqdm

    from segan_lib.data.dataset import load_case
    from segan_lib.data.layouts.registry import layout_title
    from segan_lib.data.volume_io import read_volume
    from segan_lib.metrics.surface import check_tolerance_mm

    if on_missing not in MISSING_POLICIES:
        raise SeganError(f"on_missing must be one of {', '.join(MISSING_POLICIES)}, not {on_missing!r}")
    try:
        tolerance = check_tolerance_mm(nsd_tolerance_mm)
    except ValueError as exc:
        raise SeganError(str(exc)) from None
    predictions_dir = Path(predictions_dir)
    if not predictions_dir.is_dir():
        raise SeganError(f"the predictions folder {predictions_dir} does not exist or is not a folder")
    out_dir = Path(out_dir) if out_dir is not None else predictions_dir / "evaluation"
    ds = _open_data(data_dir, layout, on_bad_case)

    matched, unmatched_files = match_predictions(predictions_dir, ds.case_ids, out_dir)
    missing = [c for c in ds.case_ids if c not in matched]
    left_out = dict(ds.skipped)  # cases the data set could not use (on_bad_case="skip")
    unmatched = []
    for path in unmatched_files:
        key = _case_of(path, set(left_out))
        unmatched.append(f"{path.relative_to(predictions_dir)}" + (f" (its case was left out: {left_out[key]})"
                                                                   if key else ""))
    if not matched:
        raise SeganError(f"no prediction in {predictions_dir} names a case of {data_dir} ({len(ds)} cases, e.g. "
                         f"{ds.case_ids[0]}; expected files <case>.nii.gz, <case>_seg.nii.gz or <case>-seg.nii.gz)"
                         + (f"; files there: {_listing(unmatched)}" if unmatched else ""))
    if (missing or unmatched) and on_missing == "error":
        parts = []
        if missing:
            parts.append(f"{len(missing)} case(s) of {data_dir} have no prediction in {predictions_dir}: "
                         f"{_listing(missing)}")
        if unmatched:
            parts.append(f"{len(unmatched)} prediction(s) name no case of {data_dir}: {_listing(unmatched)}")
        raise SeganError("; ".join(parts) + f" (--on-missing skip scores the {len(matched)} that match)")

    def load(case_id):
        case, path = ds.get(case_id), matched[case_id]
        truth = load_case(case, contrasts=[], with_label=True, with_mask=False)
        pred = read_volume(path, case_id=case_id, kind="label")
        _check_grid(pred, truth, path, case.files.get("label"), case_id)
        return case, path, truth, pred.data

    def score(case, path, truth, pred, kind, why, described):
        bundle = described["bundle"] if described else ""
        if bundle and bundle not in bundles:
            bundles.append(bundle)
        return [{"case": case.case_id, **row, "kind": kind, "read_as": why,
                 "prediction": str(path.relative_to(predictions_dir)), "bundle": bundle}
                for row in score_case(pred, truth.label, kind, case.label_scheme, truth.spacing, tolerance)]

    rows, bundles, all_zero, kinds = [], [], [], set()
    for case_id in tqdm(sorted(matched), desc="evaluate", unit="case", disable=not progress):
        case, path, truth, pred = load(case_id)
        described = _file_descrip(path)
        kind, why = _kind(path, pred, described, case.scheme or case.layout, case.label_scheme, case_id)
        if kind is None:  # read as the others are, once they are all known
            all_zero.append((case_id, described))
            continue
        kinds.add(kind)
        rows += score(case, path, truth, pred, kind, why, described)
    zero_kind = "multiclass" if "multiclass" in kinds else "binary"
    for case_id, described in all_zero:
        rows += score(*load(case_id), zero_kind, f"all zero, read as the folder's other files ({zero_kind})", described)
    cases = pd.DataFrame(rows, columns=list(CASE_COLUMNS)).sort_values(["case", "region"], key=_region_order,
                                                                       kind="stable", ignore_index=True)
    summary = _summary(cases)

    schemes = sorted({(c.scheme or c.layout) for c in (ds.get(i) for i in matched)})
    header = [
        "predictions by segan bundle " + ", ".join(bundles) if bundles else
        "predictions by: no segan bundle named in the files' NIfTI descrip",
        f"{len(matched)} case(s) of {data_dir} ({layout_title(ds.layout)}, label scheme {', '.join(schemes)}) "
        f"scored against {predictions_dir}",
        f"summary: mean, SD, median, 95% CI of the mean = percentile bootstrap, {N_BOOT} resamples, seed {BOOT_SEED}; "
        f"NSD tolerance {tolerance:g} mm; definitions in definitions.txt",
    ]
    if missing:  # all of them here: the error message and the warning only count them
        header.append(f"not scored, no prediction: {', '.join(missing)}")
    if unmatched:
        header.append(f"not scored, no case: {', '.join(unmatched)}")
    definitions = definitions_text(tolerance)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "cases.csv", _csv(cases))
        atomic_write_text(out_dir / "summary.csv", _csv(summary, header))
        atomic_write_text(out_dir / "definitions.txt", definitions)
    except OSError as exc:
        raise SeganError(f"cannot write the evaluation to {out_dir} ({exc.strerror or exc})") from None
    if missing or unmatched:
        warnings.warn(f"evaluate-folder: {len(missing)} case(s) without a prediction and {len(unmatched)} "
                      "prediction(s) without a case were not scored (listed in summary.csv)", stacklevel=2)
    return FolderEvaluation(cases, summary, out_dir, definitions, header, missing, unmatched)
