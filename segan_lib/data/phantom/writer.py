"""Writing the phantom: reproducible .nii.gz bytes, one case atomically, the whole folder.

`generate_phantom` writes the BraTS 2018-2021 layout
`<out>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`, `grades.csv` and `phantom.json`
(the parameters that decide the bytes, and provenance), skipping complete cases made
with the same parameters.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from segan_lib.atomic import atomic_write_text
from segan_lib.data.phantom.geometry import _check_voxel_size, case_id_for, grid_shape
from segan_lib.data.phantom.subject import PhantomSubject, make_subject, phantom_grades
from segan_lib.errors import DataError

#: file suffix of each contrast and of the label in the BraTS 2018-2021 layout
FILE_SUFFIX: dict[str, str] = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}
#: bump when the generator's output changes for the same parameters
GENERATOR_VERSION = 2


def _nifti_gz_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii.gz as bytes, reproducible: gzip header without file name and with mtime 0."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=1) as gz:
        gz.write(img.to_bytes())
    return buf.getvalue()


def case_files(case_dir: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """Contrast / 'label' -> file of a case in the BraTS 2018-2021 layout."""
    case_dir = Path(case_dir)
    return {key: case_dir / f"{case_id}_{suffix}.nii.gz" for key, suffix in FILE_SUFFIX.items()}


def write_subject(subject: PhantomSubject, out_dir: str | os.PathLike) -> Path:
    """Write one case atomically: into '<out>/.<case>.tmp-<pid>', then rename to '<out>/<case>'."""
    out_dir = Path(out_dir)
    final = out_dir / subject.case_id
    tmp = out_dir / f".{subject.case_id}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        arrays = {**subject.images, "label": subject.label}
        for key, path in case_files(tmp, subject.case_id).items():
            path.write_bytes(_nifti_gz_bytes(arrays[key], subject.affine))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _case_complete(case_dir: Path, case_id: str) -> bool:
    return case_dir.is_dir() and all(p.is_file() and p.stat().st_size > 0 for p in case_files(case_dir, case_id).values())


def phantom_parameters(n: int, seed: int, voxel_size: float) -> dict:
    """What decides the bytes of a phantom folder (compared on reruns)."""
    s = _check_voxel_size(voxel_size)
    return {"generator": "segan_lib.data.phantom", "generator_version": GENERATOR_VERSION, "n": int(n),
            "seed": int(seed), "voxel_size": s, "shape": list(grid_shape(s))}


def _provenance() -> dict:
    from importlib import metadata

    try:
        from segan_lib import __version__ as lib_version
    except ImportError:
        lib_version = None
    try:
        nilearn_version = metadata.version("nilearn")
    except metadata.PackageNotFoundError:
        nilearn_version = None
    return {"segan_lib_version": lib_version, "nilearn_version": nilearn_version,
            "anatomy": "MNI152 ICBM 2009a symmetric T1, GM and WM maps from the nilearn package data",
            "layout": "brats2018", "labels": {"1": "necrotic / non-enhancing core", "2": "oedema",
                                              "4": "enhancing tumour"}}


def _generate_one(args: tuple) -> str:
    out_dir, seed, index, grade, voxel_size = args
    subject = make_subject(seed, index, grade, voxel_size)
    write_subject(subject, out_dir)
    return subject.case_id


def generate_phantom(out_dir: str | os.PathLike, n: int = 60, seed: int = 0, voxel_size: float = 1.0,
                     overwrite: bool = False, progress: bool = False, workers: int = 1) -> list[str]:
    """Write the phantom in the BraTS 2018-2021 layout; return the case ids (all n).

    Complete cases already there (same parameters) are skipped; a folder holding a phantom
    made with other parameters, or other files, is an error unless `overwrite` (which
    removes only what a phantom consists of: Phantom_* cases, grades.csv, phantom.json).
    """
    out = Path(out_dir)
    params = phantom_parameters(n, seed, voxel_size)
    meta_path, grades_path = out / "phantom.json", out / "grades.csv"
    case_ids = [case_id_for(i) for i in range(int(n))]
    grades = phantom_grades(n, seed)

    _prepare_folder(out, params, overwrite)
    atomic_write_text(meta_path, json.dumps({**params, **_provenance()}, indent=2, sort_keys=True) + "\n")
    todo = [(out, int(seed), i, grades[i], params["voxel_size"]) for i, cid in enumerate(case_ids)
            if not _case_complete(out / cid, cid)]
    _run_jobs(todo, workers, progress)

    lines = ["case_id,grade"] + [f"{cid},{g}" for cid, g in zip(case_ids, grades)]
    atomic_write_text(grades_path, "\n".join(lines) + "\n")
    return case_ids


def _prepare_folder(out: Path, params: dict, overwrite: bool) -> None:
    """Make `out` ready for a phantom with `params`: created, stale temporaries removed, and
    (with `overwrite`) a phantom of other parameters or foreign files cleared, else a DataError."""
    meta_path, grades_path = out / "phantom.json", out / "grades.csv"
    if out.exists() and not out.is_dir():
        raise DataError("phantom output is not a folder", path=out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".Phantom_*.tmp-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    existing = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    foreign = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    if existing is not None and {k: existing.get(k) for k in params} != params or existing is None and foreign:
        if not overwrite:
            what = (f"holds a phantom made with other parameters ({ {k: existing.get(k) for k in params} }, "
                    f"asked for {params})" if existing is not None else f"is not empty and has no phantom.json "
                    f"(found {sorted(foreign)[:5]})")
            raise DataError(f"phantom folder {what}; choose another folder or overwrite", path=out)
        for p in out.iterdir():
            if p.is_dir() and p.name.startswith("Phantom_"):
                shutil.rmtree(p)
        for p in (meta_path, grades_path):
            p.unlink(missing_ok=True)


def _run_jobs(todo: list[tuple], workers: int, progress: bool) -> None:
    """Generate and write the cases of `todo` (arguments of `_generate_one`), in `workers` processes."""
    t0 = time.perf_counter()

    def report(done: int, cid: str) -> None:
        if progress:
            print(f"phantom: {cid} ({done}/{len(todo)} new, {time.perf_counter() - t0:.1f} s)", file=sys.stderr,
                  flush=True)

    if workers > 1 and len(todo) > 1:
        from segan_lib.data.workers import process_pool

        with process_pool(workers) as pool:  # forkserver or spawn, never fork (segan_lib.data.workers)
            for done, cid in enumerate(pool.map(_generate_one, todo), start=1):
                report(done, cid)
    else:
        for done, job in enumerate(todo, start=1):
            report(done, _generate_one(job))
