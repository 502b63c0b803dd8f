"""The seeded, stratified train/validation/test split, written once and reused.

Counts: n_train = floor(0.8 n), n_val = floor(0.1 n), test = the rest, which
gives the paper's 219 / 27 / 28 for BRATS 2015's 274 subjects. Each subset's
count is shared among the grades in proportion to their sizes (largest
remainder), so 220 HGG + 54 LGG give 176+43 / 22+5 / 22+6. Within a grade the
cases (sorted by id) are shuffled with the seed, so the split depends only on
the case ids, their grades and the seed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segan_lib import paths
from segan_lib.atomic import atomic_write_json
from segan_lib.errors import DataError

SUBSETS = ("train", "val", "test")
SPLITS_FILE = "splits.json"


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    fractions: tuple[float, float, float]
    stratified_by: str | None  # "grade" or None

    def subset(self, name: str) -> tuple[str, ...]:
        if name not in SUBSETS:
            raise ValueError(f"unknown subset {name!r}; one of {', '.join(SUBSETS)}")
        return getattr(self, name)

    @property
    def all_ids(self) -> tuple[str, ...]:
        return self.train + self.val + self.test

    def counts(self) -> dict[str, int]:
        return {s: len(self.subset(s)) for s in SUBSETS}

    def to_json(self, grades: Mapping[str, str | None] | None = None) -> dict:
        d = {
            "seed": self.seed,
            "fractions": list(self.fractions),
            "stratified_by": self.stratified_by,
            "counts": self.counts(),
            "cases_hash": cases_hash(self.all_ids),
        }
        if grades is not None:
            d["grade_counts"] = {s: dict(sorted(Counter(str(grades.get(c)) for c in self.subset(s)).items())) for s in SUBSETS}
        d.update({s: list(self.subset(s)) for s in SUBSETS})
        return d


def cases_hash(case_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(case_ids)).encode()).hexdigest()[:16]


def subset_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    n_train = math.floor(fractions[0] * n + 1e-9)
    n_val = math.floor(fractions[1] * n + 1e-9)
    return n_train, n_val, n - n_train - n_val


def _apportion(total: int, sizes: Sequence[int]) -> list[int]:
    """Share `total` among groups proportionally to `sizes` (largest remainder, ties to the larger group)."""
    n = sum(sizes)
    if n == 0:
        return [0] * len(sizes)
    quotas = [total * s / n for s in sizes]
    shares = [min(math.floor(q), s) for q, s in zip(quotas, sizes)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), -sizes[i], i))
    left = total - sum(shares)
    while left > 0:
        progressed = False
        for i in order:
            if left and shares[i] < sizes[i]:
                shares[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return shares


def nested_subset(case_ids: Sequence[str], grades: Mapping[str, str | None], fraction: float,
                  seed: int) -> tuple[str, ...]:
    """A stratified fraction of case ids, nested across fractions for the same seed.

    The ids of each grade are shuffled once with the seed; a fraction takes the first
    round(fraction * n) of the whole set, shared among the grades by largest remainder,
    so 10% of a set lies inside its 25%, 50% and 100%. At least one case is kept.
    Returned in the order of case_ids.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ids = sorted(case_ids)
    groups: dict[str, list[str]] = {}
    for cid in ids:
        groups.setdefault(str(grades.get(cid)), []).append(cid)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5AB5E7]))  # its own stream, not the split's
    shuffled = {g: [members[i] for i in rng.permutation(len(members))] for g, members in sorted(groups.items())}
    keys = sorted(shuffled)
    total = max(1, round(fraction * len(ids)))
    shares = _apportion(total, [len(shuffled[g]) for g in keys])
    chosen = {cid for g, k in zip(keys, shares) for cid in shuffled[g][:k]}
    return tuple(c for c in case_ids if c in chosen)


def make_split(
    grades: Mapping[str, str | None],
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    stratify: bool = True,
) -> Split:
    """Split case ids (keys of `grades`) stratified by grade when any grade is known."""
    ids = sorted(grades)
    if len(set(ids)) != len(ids):
        raise DataError("duplicate case ids in the data set")
    known = any(g is not None for g in grades.values())
    stratified = stratify and known
    groups: dict[str, list[str]] = {}
    for cid in ids:
        key = str(grades[cid]) if stratified else "all"
        groups.setdefault(key, []).append(cid)
    keys = sorted(groups)
    sizes = [len(groups[k]) for k in keys]
    n_train, n_val, _ = subset_counts(len(ids), fractions)
    train_shares = _apportion(n_train, sizes)
    val_shares = _apportion(n_val, [s - t for s, t in zip(sizes, train_shares)])
    # Correct the val shares toward the proportional target where possible
    target_val = _apportion(n_val, sizes)
    if all(v <= s - t for v, s, t in zip(target_val, sizes, train_shares)):
        val_shares = target_val
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SUBSETS}
    for key, n_tr, n_va in zip(keys, train_shares, val_shares):
        members = list(groups[key])
        order = rng.permutation(len(members))
        shuffled = [members[i] for i in order]
        out["train"] += shuffled[:n_tr]
        out["val"] += shuffled[n_tr:n_tr + n_va]
        out["test"] += shuffled[n_tr + n_va:]
    split = Split(*(tuple(sorted(out[s])) for s in SUBSETS), seed=seed, fractions=tuple(fractions),
                  stratified_by="grade" if stratified else None)
    check_no_leak(split)
    return split


def check_no_leak(split: Split, case_ids: Sequence[str] | None = None, where: str = "split") -> None:
    """No case in two subsets, none twice, and (if given) every case in the data set and vice versa."""
    seen: dict[str, str] = {}
    for s in SUBSETS:
        for cid in split.subset(s):
            if cid in seen:
                raise DataError(f"case {cid} is in both '{seen[cid]}' and '{s}' of the {where}")
            seen[cid] = s
    if case_ids is not None:
        missing = sorted(set(case_ids) - set(seen))
        extra = sorted(set(seen) - set(case_ids))
        if missing or extra:
            raise DataError(
                f"the {where} does not match the data set: "
                + (f"{len(missing)} case(s) of the data set not in it (e.g. {', '.join(missing[:3])})" if missing else "")
                + ("; " if missing and extra else "")
                + (f"{len(extra)} case(s) in it not in the data set (e.g. {', '.join(extra[:3])})" if extra else "")
            )


def default_splits_path(data_root: Path) -> Path:
    """<data>/splits.json beside the data; a project folder when the data folder is read-only."""
    data_root = Path(data_root).resolve()
    beside = data_root / SPLITS_FILE
    if beside.exists() or os.access(data_root, os.W_OK):
        return beside
    key = hashlib.sha256(str(data_root).encode()).hexdigest()[:8]
    return paths.splits_fallback_dir() / f"{data_root.name}-{key}" / SPLITS_FILE


def load_split(path: Path, case_ids: Sequence[str] | None = None) -> Split:
    try:
        d = json.loads(Path(path).read_text())
        split = Split(*(tuple(d[s]) for s in SUBSETS), seed=int(d["seed"]), fractions=tuple(d["fractions"]),
                      stratified_by=d.get("stratified_by"))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"cannot read the split: {exc.__class__.__name__}: {exc}", path=path) from None
    check_no_leak(split, case_ids, where=f"split in {path}")
    return split


def _stratification(stratified_by: str | None) -> str:
    return f"stratified by {stratified_by}" if stratified_by else "not stratified"


def ensure_split(
    path: Path,
    grades: Mapping[str, str | None],
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    stratify: bool = True,
    force: bool = False,
) -> tuple[Split, bool]:
    """Reuse the split at `path`, or create it. Returns (split, created).

    An existing file whose cases, seed, fractions or stratification differ from
    what is asked is an error, never silently overwritten or reused; force=True
    rewrites it (keeping the old one as splits.json.bak).
    """
    path = Path(path)
    if path.exists() and not force:
        split = load_split(path, case_ids=None)
        if set(split.all_ids) != set(grades):
            raise DataError(
                "an existing split was made for other cases than the data set now holds "
                f"({len(split.all_ids)} in the split, {len(grades)} in the data); "
                "pass --force to rewrite it (the old one is kept as splits.json.bak)", path=path)
        if split.seed != seed or tuple(split.fractions) != tuple(fractions):
            raise DataError(
                f"an existing split was made with seed {split.seed} and fractions {list(split.fractions)}, "
                f"not seed {seed} and {list(fractions)}; pass --force to rewrite it", path=path)
        wanted = "grade" if stratify and any(g is not None for g in grades.values()) else None
        if split.stratified_by != wanted:
            raise DataError(
                f"an existing split is {_stratification(split.stratified_by)}, but a split "
                f"{_stratification(wanted)} is asked for (split.stratify={str(stratify).lower()}, grades "
                f"{'known' if any(g is not None for g in grades.values()) else 'unknown'}); run "
                "`segan split --force` to rewrite it (the old one is kept as splits.json.bak)", path=path)
        return split, False
    split = make_split(grades, seed=seed, fractions=fractions, stratify=stratify)
    if path.exists():
        path.with_name(path.name + ".bak").write_bytes(path.read_bytes())
    atomic_write_json(path, split.to_json(grades))
    return split, True
