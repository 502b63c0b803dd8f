"""Benchmark of the phantom generator: seconds per subject, generation and writing apart.

    python benchmarks/bench_phantom.py [--n 3] [--voxel-size 1.0] [--seed 0]

One process, subjects written into a temporary folder that is removed afterwards.
The one-off preparation of the MNI anatomy (cached per process) is timed separately.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from segan_lib.data import phantom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3, help="subjects to generate (default 3)")
    parser.add_argument("--voxel-size", type=float, default=1.0, help="mm (default 1.0, the BraTS grid)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    phantom._anatomy(args.voxel_size)
    t_anatomy = time.perf_counter() - t0
    print(f"anatomy (once per process): {t_anatomy:.2f} s, grid {phantom.grid_shape(args.voxel_size)}")

    grades = phantom.phantom_grades(max(args.n, 5), args.seed)
    gen, write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.n):
            t = time.perf_counter()
            subject = phantom.make_subject(args.seed, index, grades[index], args.voxel_size)
            t_gen = time.perf_counter() - t
            t = time.perf_counter()
            case_dir = phantom.write_subject(subject, Path(tmp))
            t_write = time.perf_counter() - t
            size = sum(p.stat().st_size for p in case_dir.iterdir()) / 1e6
            gen.append(t_gen)
            write.append(t_write)
            print(f"{subject.case_id} {subject.grade}: generation {t_gen:.2f} s, writing {t_write:.2f} s "
                  f"({size:.1f} MB), total {t_gen + t_write:.2f} s")
    n = max(args.n, 1)
    print(f"mean per subject at {args.voxel_size:g} mm: generation {sum(gen) / n:.2f} s, "
          f"writing {sum(write) / n:.2f} s, total {(sum(gen) + sum(write)) / n:.2f} s")
    print(f"total for {args.n} subjects (without the anatomy): {sum(gen) + sum(write):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
