"""Is XLA-compiled training reproducible on the CPU without TensorFlow's op determinism?

    .venv/bin/python benchmarks/bench_xla_determinism.py [--repeats 4] [--epochs 2] [--threads 1,2]
                                                         [--load 0] [--json out.json]

One throw-away project (the smoke profile's 4 mm phantom), then the same seeded training run
`--repeats` times per configuration, each in a fresh process (`segan train --name ...`):
  det      op determinism on, no XLA (today's default)
  xla      XLA, op determinism off
with TensorFlow's intra-op thread pool set to each count of `--threads` (TF_NUM_INTRAOP_THREADS)
and, with `--load N`, N busy-looping processes beside the runs (a loaded machine). Each run's
final checkpoint (segmentor, critic, both optimizers) is hashed array by array; printed per
configuration: how many distinct weight sets the repeats gave (1 = bit for bit) and the largest
absolute difference of any weight from the first repeat, and between configurations the largest
difference from `det` at the same thread count.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SEGAN = [sys.executable, "-m", "segan_lib.cli"]


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2147483648


def _prepare(root: Path) -> None:
    env = {**os.environ, "SEGAN_ROOT": str(root)}
    for args in (["phantom", "--profile", "smoke", "--quiet"], ["preprocess", "--profile", "smoke", "--workers", "1"],
                 ["split", "--profile", "smoke"]):
        subprocess.run(SEGAN + args, env=env, check=True, cwd=root, stdout=subprocess.DEVNULL)


def _train(root: Path, name: str, xla: bool, threads: int, epochs: int) -> dict[str, np.ndarray]:
    env = {**os.environ, "SEGAN_ROOT": str(root), "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": "1"}
    args = ["train", "--profile", "smoke", "--name", name, "--set", f"train.epochs={epochs}",
            "--set", f"train.patience={epochs}"] + (["--xla"] if xla else [])
    subprocess.run(SEGAN + args, env=env, check=True, cwd=root, stdout=subprocess.DEVNULL)
    with np.load(root / "runs" / name / "checkpoints" / "last.npz") as z:
        return {k: z[k] for k in z.files}


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:16]


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0
               for k in a if np.issubdtype(a[k].dtype, np.floating))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--load", type=int, default=0, help="busy processes beside the runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    stop = multiprocessing.Event()
    busy = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in busy:
        p.start()
    report: dict = {"repeats": args.repeats, "epochs": args.epochs, "load": args.load, "configs": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="segan-xla-") as tmp:
            root = Path(tmp)
            _prepare(root)
            first: dict[tuple[str, int], dict] = {}
            for n_threads in threads:
                for mode in ("det", "xla"):
                    digests, diffs, seconds = [], [], []
                    for r in range(args.repeats):
                        t0 = time.perf_counter()
                        weights = _train(root, f"{mode}_t{n_threads}_r{r}", mode == "xla", n_threads, args.epochs)
                        seconds.append(time.perf_counter() - t0)
                        digests.append(_digest(weights))
                        if r == 0:
                            first[(mode, n_threads)] = weights
                        else:
                            diffs.append(_max_diff(first[(mode, n_threads)], weights))
                    key = f"{mode} threads={n_threads}"
                    vs_det = (_max_diff(first[("det", n_threads)], first[(mode, n_threads)])
                              if mode != "det" else 0.0)
                    report["configs"][key] = {"distinct": len(set(digests)), "digests": digests,
                                              "max_diff_between_repeats": max(diffs, default=0.0),
                                              "max_diff_vs_det": vs_det,
                                              "median_s": float(np.median(seconds))}
                    c = report["configs"][key]
                    print(f"{key:18s} {c['distinct']} distinct of {args.repeats}  max|diff| repeats "
                          f"{c['max_diff_between_repeats']:.3g}  vs det {vs_det:.3g}  median {c['median_s']:.1f} s",
                          flush=True)
            for mode in ("det", "xla"):
                if len(threads) > 1:
                    d = _max_diff(first[(mode, threads[0])], first[(mode, threads[-1])])
                    report[f"{mode}_threads_{threads[0]}_vs_{threads[-1]}"] = d
                    print(f"{mode}: threads {threads[0]} vs {threads[-1]}: max|diff| {d:.3g}")
    finally:
        stop.set()
        for p in busy:
            p.join(timeout=5)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
