"""Time preprocessing a phantom into a fresh cache (target: 60 subjects at 1 mm in under a minute).

    .venv/bin/python benchmarks/bench_preprocess.py [--data data/phantom] [--profile quick] [--workers 2]

The data folder must exist (`segan phantom` makes it). The cache is written to a
temporary project root, so the project's own cache is neither used nor touched.
Prints seconds in all, per case, and the single-worker rate measured on a few
cases in the same run as a reference.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from segan_lib import paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/phantom")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reference-cases", type=int, default=4, help="cases timed with one worker as a reference")
    args = ap.parse_args()
    data = paths.resolve(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEGAN_ROOT"] = tmp  # a fresh, throw-away cache
        from segan_lib.data.cache import build_cache
        from segan_lib.config import load_profile
        from segan_lib.data import open_dataset

        cfg = load_profile(args.profile).preprocess
        ds = open_dataset(data)
        ref = ds[: args.reference_cases]
        t0 = time.perf_counter()
        build_cache(ref, cfg, workers=1, log=None)
        t_ref = (time.perf_counter() - t0) / len(ref)
        for f in paths.cache_dir().rglob("*.json"):
            f.unlink()
        t0 = time.perf_counter()
        cache = build_cache(ds, cfg, workers=args.workers, log=None)
        total = time.perf_counter() - t0
    n = len(cache.case_ids)
    print(f"data: {data} ({n} cases, {ds.layout}); profile {args.profile}: spacing {cfg.spacing_mm} mm, crop {cfg.crop_shape}")
    print(f"one worker, {len(ref)} cases: {t_ref:.2f} s per case")
    print(f"{args.workers} workers, {n} cases: {total:.1f} s in all, {total / n:.2f} s per case "
          f"(speed-up {t_ref * n / total:.2f}x over one worker)")
    print(f"target: {n} cases in under 60 s -> {'met' if total < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
