"""Preprocessed volumes cached once per (data set, preprocessing settings).

Layout of one cache (a folder per settings key, so changed settings never
reuse stale arrays):
    data/cache/<data set name>-<hash of its path>/<settings key>/
        settings.json                 what the key stands for
        <case>.images.npy             (C, X, Y, Z) the contrasts the case has, in the order t1, t1c,
                                      t2, flair (listed in <case>.json), float16 by default
        <case>.label.npy              (X, Y, Z) uint8, the label values (only for a case with a label)
        <case>.json                   grade, contrasts, label or not, preprocessing record, source
                                      fingerprint (written last)
        index.json                    the complete list of cases (written when all are done)
Every file is written under a temporary name and renamed, and a case counts
only once its .json exists and its source files still match the fingerprint,
so an interrupted run leaves nothing a later run trusts.

Each case is cached with the contrasts it has (a tree without T1 gives caches without T1), so
one cache serves every run whatever its contrasts; `build_cache(contrasts=...)` first requires
the contrasts the profile uses, and a run picks its cases with `CachedDataset.usable`. Unlabelled
cases are cached without a label (training and evaluation refuse them, prediction needs none).
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
from segan_lib.data.usable import select_usable, warn_skipped
from segan_lib.data.workers import process_pool

# 2: each case holds the contrasts it has (listed in its .json), a label only when it has one,
# the background-valued padding and the brain mask of the 'brain' percentiles
CACHE_FORMAT = 2


def settings_key(cfg: PreprocessConfig) -> dict:
    """What the cache folder's key stands for: the preprocessing settings (not the contrasts: each
    case is cached with those it has)."""
    return {
        "format": CACHE_FORMAT,
        "spacing_mm": cfg.spacing_mm,
        "crop_shape": list(cfg.crop_shape),
        "percentiles": list(cfg.percentiles),
        "percentile_region": cfg.percentile_region,
        "dtype": cfg.cache_dtype,
    }


def cache_folder(data_root: Path, cfg: PreprocessConfig) -> Path:
    root = Path(data_root).resolve()
    data_key = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    blob = json.dumps(settings_key(cfg), sort_keys=True).encode()
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
    """Read access to a complete cache; arrays are memory-mapped, nothing is loaded up front.

    `contrasts`: those every cached case has (what `images(case_id)` gives by default); a case's
    own are `case_contrasts(case_id)`.
    """

    folder: Path
    contrasts: tuple[str, ...]
    case_ids: list[str]
    meta: dict[str, dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # every case the data set listed (what `segan split` splits), cached or left out when preprocessing
    listed: list[str] | None = None

    @property
    def listed_ids(self) -> list[str]:
        """The case ids the data set listed: the cached ones and those preprocessing left out, which a split
        made from the listing holds (pass them to load_split, then pick the cases with `usable`)."""
        return list(self.listed) if self.listed is not None else list(self.case_ids)

    def __len__(self) -> int:
        return len(self.case_ids)

    def case_contrasts(self, case_id: str) -> tuple[str, ...]:
        return tuple(self.meta[case_id]["contrasts"])

    def has_label(self, case_id: str) -> bool:
        return bool(self.meta[case_id]["has_label"])

    def images(self, case_id: str, contrasts: Sequence[str] | None = None) -> np.ndarray:
        """(C, X, Y, Z) of `contrasts` (default: self.contrasts); DataError when the case lacks one."""
        own = self.case_contrasts(case_id)
        contrasts = self.contrasts if contrasts is None else tuple(contrasts)
        lacking = [c for c in contrasts if c not in own]
        if lacking:
            raise DataError(f"has no {' or '.join(lacking)} image in the cache (it has {', '.join(own)}; "
                            f"asked for {', '.join(contrasts)})", case_id=case_id)
        arr = np.load(self.folder / f"{case_id}.images.npy", mmap_mode="r")
        if contrasts == own:
            return arr
        return arr[[own.index(c) for c in contrasts]]

    def label(self, case_id: str) -> np.ndarray:
        if not self.has_label(case_id):
            raise DataError("has no label (the data set holds none for it): training and evaluation need one",
                            case_id=case_id)
        return np.load(self.folder / f"{case_id}.label.npy", mmap_mode="r")

    def usable(self, case_ids: Sequence[str], contrasts: Sequence[str], *, need_label: bool = True,
               on_bad_case: str = "error", user: str = "the run") -> list[str]:
        """The ids among `case_ids` whose cases have `contrasts` (and a label, with need_label), in order.

        The others, and the cases preprocessing left out, are a DataError naming them (on_bad_case='error')
        or left out with a BadCaseWarning ('skip'); see segan_lib.data.usable.select_usable."""
        why_skipped = dict(self.skipped)
        uncached = [(c, f"was left out when preprocessing: {why_skipped.get(c, 'not in the cache')}")
                    for c in case_ids if c not in self.meta]
        if uncached and on_bad_case == "error":
            cid, why = uncached[0]
            more = f"; {len(uncached) - 1} more case(s) are not in the cache either: " + ", ".join(
                c for c, _ in uncached[1:11]) if len(uncached) > 1 else ""
            raise DataError(f"{why}{more} (--on-bad-case skip (data.on_bad_case=skip) leaves such cases out with "
                            "a warning)", case_id=cid)
        if uncached:
            warn_skipped([(c, str(DataError(why, case_id=c))) for c, why in uncached],
                         f"choosing the cases {user} can use", stacklevel=3)
        good, _ = select_usable([(c, self.case_contrasts(c), self.has_label(c)) for c in case_ids if c in self.meta],
                                contrasts, need_label=need_label, on_bad_case=on_bad_case, user=user)
        return good

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
        and meta.get("contrasts") == list(case.contrasts)
        and (folder / f"{case.case_id}.images.npy").is_file()
        and (not meta.get("has_label") or (folder / f"{case.case_id}.label.npy").is_file())
    )


def _write_case(folder: Path, case: Case, cfg: PreprocessConfig, settings: dict) -> dict:
    arrays = load_case(case)  # every contrast it has, its label and brain mask when it has them
    contrasts = list(arrays.images)
    pre = preprocess_arrays(arrays.images, arrays.label, arrays.spacing, cfg, contrasts, case.case_id,
                            brain_mask=arrays.brain)
    atomic_save_npy(folder / f"{case.case_id}.images.npy", pre.images.astype(cfg.cache_dtype))
    wt = None
    if pre.label is not None:
        atomic_save_npy(folder / f"{case.case_id}.label.npy", pre.label.astype(np.uint8))
        wt = pre.label > 0
    meta = {
        "case_id": case.case_id,
        "grade": case.grade,
        "layout": case.layout,
        "scheme": arrays.scheme,
        "contrasts": contrasts,
        "has_label": pre.label is not None,
        "has_mask": arrays.brain is not None,
        "settings": settings,
        "fingerprint": source_fingerprint(case),
        "record": pre.record.to_json(),
        "source_affine": np.asarray(arrays.affine).tolist(),
        "tumour_voxels": int(wt.sum()) if wt is not None else None,
        "tumour_slices": [int(k) for k in np.flatnonzero(wt.any(axis=(0, 1)))] if wt is not None else [],
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
    contrasts: Sequence[str] | None = None,
    workers: int = 1,
    on_bad_case: str = "error",
    log: Callable[[str], None] | None = print,
    progress: bool = False,
) -> CachedDataset:
    """Preprocess every case of `dataset` (from segan_lib.data.open_dataset) into the cache.

    Each case is cached with every contrast it has (and its label when it has one).
    contrasts: those the profile uses (`model.contrasts`): a case lacking one is a DataError
    naming it, or (on_bad_case="skip") is left out with a warning; None requires none.
    Cases already cached with the same settings and unchanged sources are skipped.
    on_bad_case="skip" turns a case's DataError into a warning listing it.
    progress: a bar over the cases to do on stderr, when it is a terminal (and no "n/total" log lines).
    """
    listed = list(dataset.case_ids)
    if contrasts is not None:
        dataset = dataset.usable(contrasts, need_label=False, on_bad_case=on_bad_case, user="preprocessing",
                                 hint="--contrasts (model.contrasts) names the contrasts to require")
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
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="preprocess", unit="case", disable=None if progress and todo else True)
    counted = log if bar.disable else None  # the bar says how far it is; without one, the log lines do
    with bar:
        if workers > 1 and len(todo) > 1:
            with process_pool(workers) as pool:  # forkserver or spawn, never fork (segan_lib.data.workers)
                _collect(_ticking(pool.map(_work, tasks), bar), metas, bad, on_bad_case, counted, len(todo))
        else:
            _collect(_ticking(map(_work, tasks), bar), metas, bad, on_bad_case, counted, len(todo))
    for c in cases:
        if c.case_id not in metas and c.case_id not in {b[0] for b in bad}:
            metas[c.case_id] = json.loads((folder / f"{c.case_id}.json").read_text())
    case_ids = [c.case_id for c in cases if c.case_id in metas]
    if bad:
        warnings.warn("skipped bad cases: " + "; ".join(f"{cid}: {why}" for cid, why in bad), stacklevel=2)
    atomic_write_json(
        folder / "index.json",
        {"settings": settings, "data_root": str(Path(dataset.root).resolve()), "layout": dataset.layout,
         "cases": case_ids, "listed": listed, "skipped": [list(b) for b in bad]},
    )
    if log:
        log(f"preprocess: done in {time.perf_counter() - t0:.1f} s ({len(case_ids)} cases cached, {len(bad)} skipped)")
    metas = {c: metas[c] for c in case_ids}
    return CachedDataset(folder, _shared_contrasts(metas), case_ids, metas, bad, listed)


def _shared_contrasts(metas: dict[str, dict]) -> tuple[str, ...]:
    """The contrasts every cached case has, in the project's order."""
    return tuple(c for c in CONTRASTS if all(c in m["contrasts"] for m in metas.values()))


def _ticking(results, bar):
    """The results as they come, one step of the bar each."""
    for r in results:
        bar.update(1)
        yield r


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
    return CachedDataset(folder, _shared_contrasts(metas), list(idx["cases"]), metas,
                         [tuple(b) for b in idx.get("skipped", [])], idx.get("listed"))
