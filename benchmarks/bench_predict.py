"""End-to-end prediction of full-size scans at paper width (target: <= 10 s and <= 4 GiB per case).

    .venv/bin/python benchmarks/bench_predict.py [--cases 3]

Writes a bundle holding a randomly initialised paper-width (64) four-contrast segmentor with the
paper's preprocessing (1 mm, 180x180x128 crop) -- the speed does not depend on the weights -- and
phantom subjects at 1 mm (240x240x155, the BraTS geometry) into a temporary folder. Then:
1. one case through the `segan predict` command in a fresh process (read, preprocess, predict,
   write; plus the process start, TensorFlow import and bundle load), with its peak memory;
2. the same case in this process with the bundle already loaded (the per-case cost);
3. folder mode over all cases: cases per minute.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_bundle(folder: Path) -> Path:
    import numpy as np

    from segan_lib.apply.bundle import BUNDLE_FORMAT, CARD, THRESHOLD, WEIGHTS, _versions
    from segan_lib.nets.segmentor import build_segmentor

    seg = build_segmentor(4, width=64, n_outputs=1, seed=0)
    weights = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(seg.variables)}
    folder.mkdir(parents=True)
    with open(folder / WEIGHTS, "wb") as fh:
        np.savez(fh, **weights)
    card = {
        "format": BUNDLE_FORMAT, "run_name": "benchmark (random weights)", "contrasts": ["t1", "t1c", "t2", "flair"],
        "regions": ["wt"], "n_outputs": 1, "width": 64, "critic_input": "concat",
        "preprocessing": {"spacing_mm": 1.0, "crop_shape": [180, 180, 128], "percentiles": [2.0, 98.0],
                          "percentile_region": "volume", "orientation": None},
        "threshold": THRESHOLD, "training_data": {"name": "none", "cases_hash": None},
        "checkpoint": {"tag": "none", "epoch": 0}, "test_metrics": None, "versions": _versions(), "seed": 0,
        "weights": {"file": WEIGHTS, "n_variables": len(weights), "shapes": [list(w.shape) for w in weights.values()]},
    }
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=3, help="phantom subjects for folder mode")
    args = ap.parse_args()
    from segan_lib.data.phantom import make_subject, phantom_grades, write_subject

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_dir = write_bundle(tmp / "bundle")
        data = tmp / "scans"
        data.mkdir()
        for i, grade in enumerate(phantom_grades(args.cases, 0)):
            write_subject(make_subject(0, i, grade, 1.0), data)
        case = sorted(p for p in data.iterdir() if p.is_dir())[0]

        # 1. the command, in a fresh process
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "segan_lib.cli", "predict", "--model", str(bundle_dir), "--input",
                        str(case), "--output", str(tmp / "cli_mask.nii.gz")], check=True, capture_output=True)
        cli_seconds = time.perf_counter() - t0
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # kB on Linux

        # 2. the per-case cost with the bundle loaded
        from segan_lib.apply.bundle import load_bundle
        from segan_lib.data import open_dataset
        from segan_lib.apply.predict import predict_case_to_file, predict_folder

        t0 = time.perf_counter()
        bundle = load_bundle(bundle_dir)
        load_seconds = time.perf_counter() - t0
        ds = open_dataset(data)
        predict_case_to_file(bundle, ds[0], tmp / "warmup.nii.gz")  # trace the predict function once
        t0 = time.perf_counter()
        predict_case_to_file(bundle, ds[0], tmp / "mask.nii.gz")
        case_seconds = time.perf_counter() - t0

        # 3. folder mode
        t0 = time.perf_counter()
        failures = predict_folder(bundle, data, tmp / "masks", progress=False)
        folder_seconds = time.perf_counter() - t0
    n = args.cases
    print(f"scan: 240x240x155 at 1 mm, four contrasts; model: width 64, "
          f"crop 180x180x128, {os.cpu_count()} cores")
    print(f"segan predict, one case, fresh process: {cli_seconds:.1f} s wall, peak memory {peak_gib:.2f} GiB "
          f"(target <= 10 s, <= 4 GiB)")
    print(f"one case with the bundle loaded (read, preprocess, predict, write): {case_seconds:.1f} s; "
          f"bundle load {load_seconds:.1f} s")
    print(f"folder mode: {n} cases in {folder_seconds:.1f} s = {60 * n / folder_seconds:.1f} cases/min"
          f"{'' if not failures else f' ({len(failures)} failed)'}")


if __name__ == "__main__":
    main()
