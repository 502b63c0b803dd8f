"""Segment new scans with a model bundle; the mask comes back in the scan's own grid.

    from segan_lib.apply.bundle import load_bundle
    from segan_lib.apply.predict import predict_case, predict_file_set, predict_folder
    bundle = load_bundle("runs/my_run/bundle")
    result = predict_case(bundle, {"flair": (array, affine)})      # arrays in memory
    predict_file_set(bundle, {"flair": "scan_flair.nii.gz"}, "mask.nii.gz")
    failures = predict_folder(bundle, "new_scans/", "masks/")      # any layout the data layer reads

Steps for one case: check the contrasts (same shape and geometry, finite values); reorder the
voxel axes to the training scans' orientation (axis permutations and flips only, undone at
the end); resample to the bundle's spacing; crop (padding with the background where smaller)
as in training, but on axes longer than the crop centred on the brain (the case's brain mask,
else the voxels off each scan's background value: 0, or the minimum of a z-scored scan) rather
than on the volume; clip and scale; predict every axial slice; threshold at the bundle's threshold; put the mask
(nearest neighbour) and the probability (linear) back into the input grid.

Options of the prediction (each also of `segan predict`): `tta` averages the probabilities over flips
(segan_lib.apply.tta), `min_component_ml` removes small connected components from the final mask
(segan_lib.apply.components), and an ensemble of bundles (segan_lib.apply.ensemble.make_ensemble)
takes the place of a bundle anywhere. Which engine runs the segmentor is the bundle's
(`load_bundle(path, engine=...)`, segan_lib.apply.engines); nothing here imports TensorFlow or Keras.
"""
from __future__ import annotations

import csv
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from segan_lib.apply.labels import mask_label_scheme, regions_to_labels
from segan_lib.atomic import atomic_path, atomic_write_text
from segan_lib.data.mask_descrip import mask_descrip
from segan_lib.errors import DataError, SeganError

from segan_lib.constants import AFFINE_TOLERANCE_MM


class MissingContrastWarning(UserWarning):
    """A contrast the model needs was absent and replaced by zeros."""


@dataclass
class PredictionResult:
    mask: np.ndarray  # uint8, input grid: 1 = whole tumour; 3 regions: `label_scheme`'s values (apply/labels.py)
    probability: np.ndarray  # float32, input grid: whole-tumour probability
    affine: np.ndarray  # the input's 4x4 voxel -> world affine
    header: dict = field(default_factory=dict)  # what the reader kept of the first contrast's header
    seconds: float = 0.0
    case_id: str | None = None
    label_scheme: str | None = None  # the scheme whose label values the mask holds; None: a 0/1 whole-tumour mask
    bundle_id: str = ""  # Bundle.id of the bundle that made it

    def descrip(self, what: str = "mask") -> str:
        """The NIfTI `descrip` naming the bundle and what a written file holds ("mask" or "probability")."""
        return mask_descrip(self.bundle_id, self.label_scheme, what)

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def tumour_ml(self) -> float:
        return float((self.mask > 0).sum()) * self.voxel_ml


# ---------------------------------------------------------------- one case in memory
def _gather(bundle, images, allow_missing: bool, case_id: str | None):
    """contrast -> (array float32, affine), header of the first present contrast, and the case id."""
    from segan_lib.data.case import Case

    needed = bundle.contrasts
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    header: dict = {}
    if isinstance(images, Case):
        case_id = case_id or images.case_id
        for c in needed:
            if c in images.sources:
                vol = images.volume(c)
                arrays[c] = (vol.data, vol.affine)
                header = header or dict(vol.header)
    elif isinstance(images, Mapping):
        for c in needed:
            if c in images and images[c] is not None:
                item = images[c]
                if hasattr(item, "data") and hasattr(item, "affine"):  # a Volume
                    header = header or dict(getattr(item, "header", {}) or {})
                    item = (item.data, item.affine)
                arr, aff = item
                arrays[c] = (np.asarray(arr), np.asarray(aff, dtype=float))
    else:
        raise TypeError("images must be a Case or a dict contrast -> (array, affine)")
    missing = [c for c in needed if c not in arrays]
    if missing and not allow_missing:
        has = f"; it has {', '.join(images.contrasts) or 'none'}" if isinstance(images, Case) else ""
        raise DataError(f"contrast '{missing[0]}' is missing: the model needs {', '.join(needed)}{has} "
                        f"(allow_missing / --allow-missing fills a missing contrast with zeros)", case_id=case_id)
    if len(missing) == len(needed):
        raise DataError(f"none of the contrasts the model needs ({', '.join(needed)}) is given", case_id=case_id)
    for c, (arr, aff) in arrays.items():
        if arr.ndim != 3:
            raise DataError(f"contrast '{c}' has {arr.ndim} dimensions, expected a 3-D volume", case_id=case_id)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise DataError(f"contrast '{c}' has no valid 4x4 affine", case_id=case_id)
        if not np.all(np.isfinite(arr)):
            raise DataError(f"contrast '{c}' holds NaN or Inf values", case_id=case_id)
    first = next(c for c in needed if c in arrays)
    shape, affine = arrays[first][0].shape, arrays[first][1]
    for c, (arr, aff) in arrays.items():
        if arr.shape != shape:
            raise DataError(f"contrast '{c}' has shape {'x'.join(map(str, arr.shape))}, '{first}' has "
                            f"{'x'.join(map(str, shape))}", case_id=case_id)
        diff = float(np.max(np.abs(aff - affine)))
        if diff > AFFINE_TOLERANCE_MM:
            raise DataError(f"contrast '{c}' has another geometry than '{first}' (affines differ by up to "
                            f"{diff:.4g} mm)", case_id=case_id)
    if missing:
        msg = (f"{'case ' + case_id + ': ' if case_id else ''}contrast(s) {', '.join(missing)} missing: "
               "filled with zeros, the prediction may be poor")
        warnings.warn(msg, MissingContrastWarning, stacklevel=3)
    out = {c: (arrays[c][0].astype(np.float32, copy=False) if c in arrays else np.zeros(shape, np.float32))
           for c in needed}
    return out, affine, header, case_id


def _orientation_transforms(affine: np.ndarray, target_codes, shape):
    """(to training orientation, back) nibabel orientation transforms, or (None, None)."""
    if not target_codes:
        return None, None
    import nibabel.orientations as nio

    here = nio.io_orientation(affine)
    target = nio.axcodes2ornt(tuple(target_codes))
    fwd = nio.ornt_transform(here, target)
    if np.array_equal(fwd, [[0, 1], [1, 1], [2, 1]]):
        return None, None
    return fwd, nio.ornt_transform(target, here)


def predict_case(bundle, images, allow_missing: bool = False, case_id: str | None = None,
                 label_scheme: str | None = None, tta: str | None = None,
                 min_component_ml: float = 0.0) -> PredictionResult:
    """Segment one case: a Case, or a dict contrast -> (array, affine) (or Volume) of the bundle's contrasts.

    A three-region bundle's mask holds the label values of its training data's scheme, or of
    `label_scheme` when given (segan_lib.apply.labels); a whole-tumour bundle's is 0/1.
    `tta`: None, "lr" or "inplane" (segan_lib.apply.tta); `min_component_ml`: components of the mask
    smaller than this are removed (segan_lib.apply.components; 0 keeps all).
    """
    import nibabel.orientations as nio

    from segan_lib.apply.components import remove_small_components
    from segan_lib.apply.tta import predict_flipped, tta_flips
    from segan_lib.nets.inference import predict_array  # numpy only: no TensorFlow
    from segan_lib.data.preprocess import brain_centre, preprocess_arrays, restore_to_source

    t0 = time.perf_counter()
    bundle = _as_bundle(bundle)
    scheme = mask_label_scheme(bundle, label_scheme)
    check_options(bundle, tta, min_component_ml)  # before any work
    flips = tta_flips(bundle.card, tta)
    arrays, affine, header, case_id = _gather(bundle, images, allow_missing, case_id)
    shape = next(iter(arrays.values())).shape
    # the brain: the case's brain mask when its layout names one, else the voxels off each scan's background
    # (0 for raw scans, the minimum of z-scored ones: segan_lib.data.preprocess.brain_region)
    mask = _brain_mask(images, shape)
    cfg = bundle.preprocess_config()
    fwd, back = _orientation_transforms(affine, bundle.card["preprocessing"].get("orientation"), shape)
    work_affine = affine
    if fwd is not None:  # axis permutations and flips only: exact, undone at the end
        arrays = {c: nio.apply_orientation(a, fwd) for c, a in arrays.items()}
        mask = nio.apply_orientation(mask, fwd) if mask is not None else None
        work_affine = affine @ nio.inv_ornt_aff(fwd, shape)
    spacing = tuple(float(s) for s in np.sqrt((work_affine[:3, :3] ** 2).sum(axis=0)))
    vols = arrays
    centre = brain_centre(vols, mask)  # a zero-filled missing contrast adds no voxel
    pre = preprocess_arrays(vols, None, spacing, cfg, bundle.contrasts, case_id or "", crop_center=centre,
                            brain_mask=mask)
    x = np.moveaxis(pre.images, (0, 3), (3, 0))  # (C, X, Y, Z) -> (Z, X, Y, C)
    probs = predict_flipped(lambda a: predict_array(bundle.segmentor, a), x, flips)
    probs = np.moveaxis(probs, 0, 2)  # (Z, X, Y, R) -> (X, Y, Z, R)
    above = probs > bundle.threshold
    mask_crop = above[..., 0].astype(np.uint8)
    if probs.shape[-1] == 3:  # nested BraTS regions (wt, tc, et), in the label values of `scheme`
        mask_crop = regions_to_labels(above[..., 0], above[..., 1], above[..., 2], scheme)
    mask = restore_to_source(mask_crop, pre.record, order=0).astype(np.uint8)
    prob = np.clip(restore_to_source(probs[..., 0].astype(np.float32), pre.record, order=1), 0, 1).astype(np.float32)
    if back is not None:
        mask = np.ascontiguousarray(nio.apply_orientation(mask, back))
        prob = np.ascontiguousarray(nio.apply_orientation(prob, back))
    assert mask.shape == tuple(shape), (mask.shape, shape)
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0
    mask = remove_small_components(mask, voxel_ml, min_component_ml, scheme if probs.shape[-1] == 3 else None)
    return PredictionResult(mask, prob, np.asarray(affine, float).copy(), header,
                            round(time.perf_counter() - t0, 3), case_id, scheme if probs.shape[-1] == 3 else None,
                            getattr(bundle, "id", ""))


def check_options(bundle, tta: str | None = None, min_component_ml: float = 0.0) -> None:
    """SeganError for an unknown TTA mode (or one the bundle's orientation cannot do) or a negative volume.

    bundle None: the volume only (before a bundle is loaded)."""
    from segan_lib.apply.tta import tta_flips

    if bundle is not None:
        tta_flips(bundle.card, tta)
    if not min_component_ml >= 0:
        raise SeganError(f"--min-component-ml must be 0 (keep every component) or more, got {min_component_ml:g}")


def _brain_mask(images, shape) -> np.ndarray | None:
    """The brain mask of a Case whose layout names one (checked against the scans' shape), else None."""
    from segan_lib.data.case import Case

    if not isinstance(images, Case) or not images.has_mask:
        return None
    mask = images.brain_mask()
    if mask.shape != tuple(shape):
        raise DataError(f"brain mask has shape {'x'.join(map(str, mask.shape))}, the scans "
                        f"{'x'.join(map(str, shape))}", case_id=images.case_id, path=images.files.get("mask"))
    return mask


def predict(bundle_or_path, case, allow_missing: bool = False, label_scheme: str | None = None) -> np.ndarray:
    """The uint8 mask of one case (a Case or a dict contrast -> (array, affine)) in its own grid."""
    return predict_case(bundle_or_path, case, allow_missing=allow_missing, label_scheme=label_scheme).mask


def _as_bundle(bundle):
    """A loaded Bundle, from a Bundle or the path of a bundle folder."""
    if isinstance(bundle, (str, os.PathLike)):
        from segan_lib.apply.bundle import load_bundle

        return load_bundle(bundle)
    return bundle


# ---------------------------------------------------------------- files
def _check_output(out_path: Path, overwrite: bool) -> Path:
    out_path = Path(out_path)
    if not (out_path.name.endswith(".nii.gz") or out_path.name.endswith(".nii")):
        raise SeganError(f"output {out_path} must be a NIfTI file name (.nii.gz or .nii)")
    if out_path.exists() and not overwrite:
        raise SeganError(f"output {out_path} already exists (pass overwrite=True / --overwrite to replace it)")
    _writable_folder(out_path.parent)
    return out_path


def _writable_folder(folder: Path) -> Path:
    """Create the folder if needed; a clear error when it cannot be created or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeganError(f"cannot create the output folder {folder} ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SeganError(f"the output folder {folder} is not writable")
    return folder


def _nifti_header(source: Path | None):
    """A copy of the source file's NIfTI header, or None when it is not NIfTI or unreadable."""
    if source is None or not (str(source).endswith(".nii") or str(source).endswith(".nii.gz")):
        return None
    try:
        import nibabel as nib

        from segan_lib.data.volume_io import load_nifti

        img = load_nifti(source)  # by content: also a mislabelled .nii.gz
        return img.header.copy() if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) else None
    except Exception:
        return None


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, header_source: Path | None = None,
                descrip: str | None = None) -> None:
    """Write data (uint8 mask or float32 map) as NIfTI atomically, with the source's header when it has one.

    `descrip` (at most 80 bytes) replaces the header's description: the bundle that made the file.
    """
    import nibabel as nib

    path = Path(path)
    header = _nifti_header(header_source)
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    if descrip is not None:
        img.header["descrip"] = descrip.encode("ascii", "replace")[:80]
    img.set_qform(affine, code=int(header["qform_code"]) if header is not None and int(header["qform_code"]) else 1)
    img.set_sform(affine, code=int(header["sform_code"]) if header is not None and int(header["sform_code"]) else 1)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    try:
        with atomic_path(path, suffix=suffix) as tmp:
            nib.save(img, str(tmp))
    except PermissionError as exc:
        raise SeganError(f"cannot write {path}: the folder {path.parent} is not writable ({exc.strerror})") from None


def predict_file_set(bundle, files: Mapping[str, str | os.PathLike], out_path: str | os.PathLike,
                     overwrite: bool = False, probability_path: str | os.PathLike | None = None,
                     allow_missing: bool = False, label_scheme: str | None = None, **options) -> PredictionResult:
    """Segment one case given as files (contrast -> path); write the mask (uint8 NIfTI) to out_path.

    options: tta, min_component_ml, as predict_case."""
    from segan_lib.constants import CONTRASTS
    from segan_lib.data.volume_io import read_volume

    bundle = _as_bundle(bundle)
    unknown = [c for c in files if c not in CONTRASTS]
    if unknown:
        raise SeganError(f"unknown contrast(s) {', '.join(unknown)}: the contrasts are {', '.join(CONTRASTS)}")
    out_path = _check_output(Path(out_path), overwrite)
    if probability_path is not None:
        probability_path = _check_output(Path(probability_path), overwrite)
    files = {c: Path(p) for c, p in files.items() if p is not None}
    first = next((files[c] for c in bundle.contrasts if c in files), None)
    case_id = _case_name(first) if first is not None else None
    volumes = {c: read_volume(files[c], case_id=case_id, kind="image") for c in bundle.contrasts if c in files}
    return _predict_to_files(bundle, volumes, out_path, probability_path, first, allow_missing, case_id,
                             label_scheme, **options)


def predict_case_to_file(bundle, case, out_path: str | os.PathLike, overwrite: bool = False,
                         probability_path: str | os.PathLike | None = None,
                         allow_missing: bool = False, label_scheme: str | None = None, **options) -> PredictionResult:
    """Segment one Case of any layout (e.g. a single case folder) into one mask file (options: as predict_case)."""
    out_path = _check_output(Path(out_path), overwrite)
    if probability_path is not None:
        probability_path = _check_output(Path(probability_path), overwrite)
    first = next((case.files.get(c) for c in bundle.contrasts if case.files.get(c)), None)
    return _predict_to_files(bundle, case, out_path, probability_path, first, allow_missing, case.case_id,
                             label_scheme, **options)


def _predict_to_files(bundle, images, out_path, probability_path, header_source, allow_missing, case_id,
                      label_scheme=None, **options):
    result = predict_case(bundle, images, allow_missing=allow_missing, case_id=case_id, label_scheme=label_scheme,
                          **options)
    write_nifti(out_path, result.mask, result.affine, header_source, descrip=result.descrip())
    if probability_path is not None:
        write_nifti(probability_path, result.probability, result.affine, header_source,
                    descrip=result.descrip("probability"))
    return result


def _case_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---------------------------------------------------------------- folders
# bundle: the Bundle.id of the bundle that made the masks (each mask's NIfTI descrip names it too)
FOLDER_SUMMARY_COLUMNS = ("case_id", "status", "tumour_ml", "seconds", "dice", "precision", "sensitivity", "hd95_mm",
                   "message", "bundle")


def open_input(input_dir: str | os.PathLike, layout=None):
    """The data set at input_dir; a single case folder is read through its parent's layout.

    layout: None to detect it, a layout key, or a reader already set up (the pattern layout's,
    `segan_lib.data.layouts.registry.resolve_layout`)."""
    from segan_lib.data.dataset import open_dataset

    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DataError(f"input {input_dir} is not a folder")
    first = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = open_dataset(input_dir, layout=layout, require_label=False, on_bad_case="skip")
        except DataError as exc:
            first = exc
    if first is None:
        _pass_on(caught)  # skipped cases, unreadable folders, grade conflicts: the user's to know
        return ds
    with warnings.catch_warnings(record=True) as caught:  # one case folder, read through its parent's layout
        warnings.simplefilter("always")
        try:
            parent = open_dataset(input_dir.parent, layout=layout, require_label=False, on_bad_case="skip")
        except DataError:
            raise first from None
    skipped = [why for key, why in parent.skipped if key == input_dir.name]
    if skipped:
        raise DataError(f"the case in {input_dir} cannot be used: {skipped[0]}")
    inside = [c.case_id for c in parent
              if c.case_id == input_dir.name or any(input_dir in Path(p).parents for p in c.files.values())]
    if not inside:
        raise DataError(f"no case found in {input_dir}")
    _pass_on([w for w in caught if input_dir.name in str(w.message)])  # not those about the other cases there
    return parent.subset(inside)


def _pass_on(caught) -> None:
    """Warn again what opening the input warned (recorded to choose among them, never to hide them)."""
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)


def predict_folder(bundle, input_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
                   evaluate: bool = False, allow_missing: bool = False, progress: bool = True,
                   probabilities: bool = False, label_scheme: str | None = None, layout=None,
                   **options) -> list[tuple[str, str]]:
    """Segment every case of a data set folder into <out>/<case>.nii.gz and write <out>/summary.csv.

    `label_scheme`: the label values of a three-region bundle's masks, as in `predict_case`, and
    options (tta, min_component_ml) too. `probabilities`: also <out>/<case>_probability.nii.gz.
    `progress`: a progress bar on stderr when it is a terminal. `layout`: how the folder is read (`open_input`).

    A case that fails is recorded (status error, with the message) and the next one is done.
    Returns the failures as (case id, message).
    """
    from tqdm.auto import tqdm

    from segan_lib.metrics.volume import volume_metrics

    bundle = _as_bundle(bundle)
    ds = open_input(input_dir, layout)
    if evaluate and not any(c.has_label for c in ds):
        raise SeganError(f"evaluate (--evaluate) has no effect on {input_dir}: none of its {len(ds)} case(s) has "
                         "a label to compare the masks with")
    mask_label_scheme(bundle, label_scheme)  # a scheme that cannot be had fails once, not once per case
    check_options(bundle, **options)  # so do bad options
    out_dir = _writable_folder(Path(out_dir))
    rows, failures = [], []
    for key, reason in getattr(ds, "skipped", []) or []:
        rows.append({"case_id": key, "status": "error", "message": reason})
        failures.append((key, reason))
    for case in tqdm(list(ds), desc="predict", unit="case", disable=None if progress else True):
        row = {"case_id": case.case_id}
        try:
            out = _check_output(out_dir / f"{case.case_id}.nii.gz", overwrite)
            prob_out = _check_output(out_dir / f"{case.case_id}_probability.nii.gz", overwrite) if probabilities else None
            result = predict_case(bundle, case, allow_missing=allow_missing, label_scheme=label_scheme, **options)
            first = next((case.files.get(c) for c in bundle.contrasts if case.files.get(c)), None)
            write_nifti(out, result.mask, result.affine, first, descrip=result.descrip())
            if prob_out is not None:
                write_nifti(prob_out, result.probability, result.affine, first, descrip=result.descrip("probability"))
            row.update(status="ok", tumour_ml=round(result.tumour_ml, 3), seconds=result.seconds)
            if evaluate and case.has_label:
                truth = case.volume("label")
                if truth.data.shape != result.mask.shape:
                    raise DataError(f"label has shape {truth.data.shape}, the images {result.mask.shape}",
                                    case_id=case.case_id)
                spacing = tuple(float(s) for s in np.sqrt((result.affine[:3, :3] ** 2).sum(axis=0)))
                vm = volume_metrics(result.mask > 0, truth.data > 0, spacing=spacing)
                row.update(dice=vm.dice, precision=vm.precision, sensitivity=vm.sensitivity, hd95_mm=vm.hd95)
        except (SeganError, OSError, ValueError) as exc:
            row.update(status="error", message=str(exc))
            failures.append((case.case_id, str(exc)))
        rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FOLDER_SUMMARY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in FOLDER_SUMMARY_COLUMNS} | {"bundle": getattr(bundle, "id", "")})
    atomic_write_text(out_dir / "summary.csv", buf.getvalue())
    return failures
