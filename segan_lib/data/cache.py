"""Preprocessed volumes cached once per (data set, preprocessing settings).

Layout of one cache (a folder per settings key, so changed settings never
reuse stale arrays):
    data/cache/<data set name>-<hash of its path>/<settings key>/
        settings.json                 what the key stands for
        <case>.images.npy             (4, X, Y, Z) contrasts t1, t1c, t2, flair, float16 by default
        <case>.label.npy              (X, Y, Z) uint8, the layout's label values
        <case>.json                   grade, preprocessing record, source fingerprint (written last)
        index.json                    the complete list of cases (written when all are done)
Every file is written under a temporary name and renamed, and a case counts
only once its .json exists and its source files still match the fingerprint,
so an interrupted run leaves nothing a later run trusts.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segan_lib import paths
from segan_lib.atomic import atomic_write_json, atomic_save_npy
from segan_lib.config import PreprocessConfig
from segan_lib.errors import DataError
from segan_lib.constants import CONTRASTS
from segan_lib.data.dataset import load_case
from segan_lib.data.case import Case
from segan_lib.data.preprocess import PreprocessRecord, preprocess_arrays
from segan_lib.data.workers import process_pool

CACHE_FORMAT = 1


def settings_key(cfg: PreprocessConfig, contrasts: Sequence[str] = CONTRASTS) -> dict:
    return {
        "format": CACHE_FORMAT,
        "spacing_mm": cfg.spacing_mm,
        "crop_shape": list(cfg.crop_shape),
        "percentiles": list(cfg.percentiles),
        "percentile_region": cfg.percentile_region,
        "dtype": cfg.cache_dtype,
        "contrasts": list(contrasts),
    }


def cache_folder(data_root: Path, cfg: PreprocessConfig, contrasts: Sequence[str] = CONTRASTS) -> Path:
    root = Path(data_root).resolve()
    data_key = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    blob = json.dumps(settings_key(cfg, contrasts), sort_keys=True).encode()
    key = hashlib.sha256(blob).hexdigest()[:12]
    return paths.cache_dir() / f"{root.name}-{data_key}" / key


def source_fingerprint(case: Case) -> str:
    """Names, sizes and modification times of a case's files: changes when the data do."""
    parts = []
    for name in sorted(case.files):
        f = Path(case.files[name])
        st = f.stat()
        parts.append(f"{name}:{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass
class CachedDataset:
    """Read access to a complete cache; arrays are memory-mapped, nothing is loaded up front."""

    folder: Path
    contrasts: tuple[str, ...]
    case_ids: list[str]
    meta: dict[str, dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.case_ids)

    def images(self, case_id: str, contrasts: Sequence[str] | None = None) -> np.ndarray:
        arr = np.load(self.folder / f"{case_id}.images.npy", mmap_mode="r")
        if contrasts is None:
            return arr
        return arr[[self.contrasts.index(c) for c in contrasts]]

    def label(self, case_id: str) -> np.ndarray:
        return np.load(self.folder / f"{case_id}.label.npy", mmap_mode="r")

    def record(self, case_id: str) -> PreprocessRecord:
        return PreprocessRecord.from_json(self.meta[case_id]["record"])

    def grade(self, case_id: str) -> str | None:
        return self.meta[case_id].get("grade")

    @property
    def grades(self) -> dict[str, str | None]:
        return {c: self.grade(c) for c in self.case_ids}

    def source_orientation(self, case_id: str | None = None) -> list[str]:
        """Axis codes (nibabel, e.g. ['L', 'P', 'S']) of a source scan's voxel order (default: the first case's);
        what a bundle needs to reorient new scans like the training ones."""
        import nibabel as nib

        meta = self.meta[case_id or self.case_ids[0]]
        return [str(c) for c in nib.aff2axcodes(np.asarray(meta["source_affine"], float))]


def _case_complete(folder: Path, case: Case, settings: dict) -> bool:
    meta_path = folder / f"{case.case_id}.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        meta.get("fingerprint") == source_fingerprint(case)
        and meta.get("settings") == settings
        and (folder / f"{case.case_id}.images.npy").is_file()
        and (folder / f"{case.case_id}.label.npy").is_file()
    )


def _write_case(folder: Path, case: Case, cfg: PreprocessConfig, settings: dict) -> dict:
    arrays = load_case(case, contrasts=CONTRASTS, with_label=True)
    pre = preprocess_arrays(arrays.images, arrays.label, arrays.spacing, cfg, CONTRASTS, case.case_id)
    atomic_save_npy(folder / f"{case.case_id}.images.npy", pre.images.astype(cfg.cache_dtype))
    atomic_save_npy(folder / f"{case.case_id}.label.npy", pre.label.astype(np.uint8))
    wt = pre.label > 0
    meta = {
        "case_id": case.case_id,
        "grade": case.grade,
        "layout": case.layout,
        "settings": settings,
        "fingerprint": source_fingerprint(case),
        "record": pre.record.to_json(),
        "source_affine": np.asarray(arrays.affine).tolist(),
        "tumour_voxels": int(wt.sum()),
        "tumour_slices": [int(k) for k in np.flatnonzero(wt.any(axis=(0, 1)))],
    }
    atomic_write_json(folder / f"{case.case_id}.json", meta)  # last: marks the case complete
    return meta


def _work(task: tuple):
    """One case into the cache; task = (folder, case, cfg, settings), all picklable (a Case's readers are
    partials of read_volume), so a worker started with forkserver or spawn gets everything it needs."""
    folder, case, cfg, settings = task
    try:
        return case.case_id, _write_case(folder, case, cfg, settings), None
    except DataError as exc:  # sent back as parts: the exception object may not pickle
        return case.case_id, None, (exc.what, exc.case_id, str(exc.path) if exc.path else None)


def build_cache(
    dataset,
    cfg: PreprocessConfig,
    *,
    workers: int = 1,
    on_bad_case: str = "error",
    log: Callable[[str], None] | None = print,
) -> CachedDataset:
    """Preprocess every case of `dataset` (from segan_lib.data.open_dataset) into the cache.

    Cases already cached with the same settings and unchanged sources are skipped.
    on_bad_case="skip" turns a case's DataError into a warning listing it.
    """
    folder = cache_folder(dataset.root, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    settings = settings_key(cfg)
    atomic_write_json(folder / "settings.json", {**settings, "data_root": str(Path(dataset.root).resolve())})
    cases = list(dataset)
    todo = [i for i, c in enumerate(cases) if not _case_complete(folder, c, settings)]
    t0 = time.perf_counter()
    if log:
        log(f"preprocess: {len(cases)} cases, {len(cases) - len(todo)} already cached, {len(todo)} to do -> {folder}")
    metas: dict[str, dict] = {}
    bad: list[tuple[str, str]] = list(getattr(dataset, "skipped", []))
    tasks = [(folder, cases[i], cfg, settings) for i in todo]
    if workers > 1 and len(todo) > 1:
        with process_pool(workers) as pool:  # forkserver or spawn, never fork (segan_lib.data.workers)
            _collect(pool.map(_work, tasks), metas, bad, on_bad_case, log, len(todo))
    else:
        _collect(map(_work, tasks), metas, bad, on_bad_case, log, len(todo))
    for c in cases:
        if c.case_id not in metas and c.case_id not in {b[0] for b in bad}:
            metas[c.case_id] = json.loads((folder / f"{c.case_id}.json").read_text())
    case_ids = [c.case_id for c in cases if c.case_id in metas]
    if bad:
        warnings.warn("skipped bad cases: " + "; ".join(f"{cid}: {why}" for cid, why in bad), stacklevel=2)
    atomic_write_json(
        folder / "index.json",
        {"settings": settings, "data_root": str(Path(dataset.root).resolve()), "layout": dataset.layout,
         "cases": case_ids, "skipped": [list(b) for b in bad]},
    )
    if log:
        log(f"preprocess: done in {time.perf_counter() - t0:.1f} s ({len(case_ids)} cases cached, {len(bad)} skipped)")
    return CachedDataset(folder, tuple(CONTRASTS), case_ids, {c: metas[c] for c in case_ids}, bad)


def _collect(results, metas, bad, on_bad_case, log, total):
    for n, (case_id, meta, error) in enumerate(results, 1):
        if error is not None:
            exc = DataError(error[0], case_id=error[1], path=error[2])
            if on_bad_case != "skip":
                raise exc
            bad.append((case_id, str(exc)))
            continue
        metas[case_id] = meta
        if log and (n == total or n % 10 == 0):
            log(f"preprocess: {n}/{total}")


def open_cache(data_root: Path, cfg: PreprocessConfig) -> CachedDataset:
    """A complete cache for these settings, or a DataError saying to run `segan preprocess`."""
    folder = cache_folder(data_root, cfg)
    index = folder / "index.json"
    if not index.is_file():
        raise DataError(f"no complete preprocessed cache for these settings at {folder}; run `segan preprocess` first",
                        path=data_root)
    idx = json.loads(index.read_text())
    metas = {c: json.loads((folder / f"{c}.json").read_text()) for c in idx["cases"]}
    return CachedDataset(folder, tuple(idx["settings"]["contrasts"]), list(idx["cases"]), metas,
                         [tuple(b) for b in idx.get("skipped", [])])
