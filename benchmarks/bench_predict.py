"""End-to-end prediction of full-size scans at paper width, per engine (targets: one cold case <= 8 s
with onnx on this project's 2-core machine, peak memory <= 3 GiB).

The network alone sets a floor: about 3.0 GMAC per 192x192 slice at width 64 (180 padded to a
multiple of 16), 0.77 TFLOP for the 128 slices of a case; one core of this machine runs the ONNX
graph at about 34 GFLOP/s, so two idle cores need about 11 s. CPU seconds are printed beside the
wall time, as the machine is often shared.

    .venv/bin/python benchmarks/bench_predict.py [--cases 3] [--bundle DIR] [--engines onnx,tensorflow]

Without --bundle it writes a bundle holding a randomly initialised paper-width (64) four-contrast
segmentor with the paper's preprocessing (1 mm, 180x180x128 crop) and its ONNX graph -- the speed
does not depend on the weights -- and phantom subjects at 1 mm (240x240x155, the BraTS geometry)
into a temporary folder, in a process of its own (a child forked from a process holding TensorFlow
would count that process's memory in its ru_maxrss until it execs). Then, for each engine, every
measurement in a fresh process (what a user waits for: the interpreter, the imports, the bundle
load, reading, preprocessing, prediction and writing), its peak memory being that process's own
ru_maxrss (os.wait4):
1. one case through `segan predict --engine E --input CASE --output FILE`;
2. folder mode over all cases: cases per second from the summary's per-case seconds (the bundle
   loaded, the first case's one-off tracing included) and over the whole command.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


def write_bundle(folder: Path, width: int = 64) -> Path:
    """A paper-preprocessing bundle of random weights, with its ONNX segmentor (as `segan export` writes it)."""
    import numpy as np

    from segan_lib.apply.bundle import BUNDLE_FORMAT, CARD, THRESHOLD, WEIGHTS, _file_sha256, _versions
    from segan_lib.apply.onnx_export import export_onnx
    from segan_lib.nets.segmentor import build_segmentor

    seg = build_segmentor(4, width=width, n_outputs=1, seed=0)
    weights = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(seg.variables)}
    folder.mkdir(parents=True)
    with open(folder / WEIGHTS, "wb") as fh:
        np.savez(fh, **weights)
    card = {
        "format": BUNDLE_FORMAT, "run_name": "benchmark (random weights)", "contrasts": ["t1", "t1c", "t2", "flair"],
        "regions": ["wt"], "n_outputs": 1, "width": width, "critic_input": "concat",
        "preprocessing": {"spacing_mm": 1.0, "crop_shape": [180, 180, 128], "percentiles": [2.0, 98.0],
                          "percentile_region": "volume", "orientation": None},
        "threshold": THRESHOLD, "training_data": {"name": "none", "cases_hash": None},
        "checkpoint": {"tag": "none", "epoch": 0}, "test_metrics": None, "versions": _versions(), "seed": 0,
        "weights": {"file": WEIGHTS, "n_variables": len(weights), "shapes": [list(w.shape) for w in weights.values()],
                    "sha256": _file_sha256(folder / WEIGHTS)},
    }
    card["onnx"] = export_onnx(folder, card, weights)
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return folder


def run_child(args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak memory GiB, CPU seconds) of `segan ARGS` in a fresh process, its own rusage."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # files: no pipe to fill
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "segan_lib.cli", *args], cwd=REPO, env=env, stdout=out,
                                stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it with its own resource usage
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"segan {' '.join(args)} failed:\n{err.read()[-3000:]}")
        return seconds, usage.ru_maxrss / 1024 ** 2, usage.ru_utime + usage.ru_stime  # ru_maxrss: kB on Linux


def prepare(folder: Path, cases: int, with_bundle: bool) -> None:
    """The phantom scans (and the random-weights bundle) in folder."""
    from segan_lib.data.phantom import make_subject, phantom_grades, write_subject

    if with_bundle:
        write_bundle(folder / "bundle")
    data = folder / "scans"
    data.mkdir()
    for i, grade in enumerate(phantom_grades(cases, 0)):
        write_subject(make_subject(0, i, grade, 1.0), data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=3, help="phantom subjects for folder mode")
    ap.add_argument("--bundle", default=None, help="an existing (trained) bundle instead of random weights")
    ap.add_argument("--engines", default="onnx,tensorflow")
    ap.add_argument("--prepare", default=None, metavar="DIR", help=argparse.SUPPRESS)  # the child that writes
    args = ap.parse_args()
    if args.prepare:
        prepare(Path(args.prepare), args.cases, args.bundle is None)
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--prepare", str(tmp), "--cases", str(args.cases)]
                       + (["--bundle", args.bundle] if args.bundle else []), check=True, cwd=REPO)
        bundle_dir = Path(args.bundle) if args.bundle else tmp / "bundle"
        onnx = json.loads((bundle_dir / "card.json").read_text()).get("onnx") or {}
        build_seconds = time.perf_counter() - t0
        data = tmp / "scans"
        case = sorted(p for p in data.iterdir() if p.is_dir())[0]
        for engine in args.engines.split(","):
            one = run_child(["predict", "--model", str(bundle_dir), "--engine", engine, "--input", str(case),
                             "--output", str(tmp / f"cli_{engine}.nii.gz")])
            masks = tmp / f"masks_{engine}"
            folder = run_child(["predict", "--model", str(bundle_dir), "--engine", engine, "--input", str(data),
                                "--output", str(masks), "--quiet"])
            with open(masks / "summary.csv") as fh:
                seconds = [float(r["seconds"]) for r in csv.DictReader(fh) if r["status"] == "ok"]
            results[engine] = {"one": one, "folder": folder, "case_seconds": seconds}
    print(f"scan: 240x240x155 at 1 mm, four contrasts; model: width 64, crop 180x180x128, {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f} at the end); "
          f"bundle {'given' if args.bundle else 'random weights'}, it and the scans written in {build_seconds:.0f} s; "
          f"ONNX export "
          f"{onnx.get('seconds', '-')} s, its check {onnx.get('max_abs_diff', onnx.get('absent'))}")
    print("engine      cold case: wall (s)  CPU (s)  peak (GiB)   folder: cases/s warm  whole  peak (GiB)  per case (s)")
    for engine, r in results.items():
        (one_s, one_gib, one_cpu), (folder_s, folder_gib, _) = r["one"], r["folder"]
        n = len(r["case_seconds"])
        print(f"{engine:<11} {one_s:>17.1f}  {one_cpu:>7.1f}  {one_gib:>10.2f}   {n / sum(r['case_seconds']):>20.3f}  "
              f"{n / folder_s:>5.3f}  {folder_gib:>10.2f}  {', '.join(f'{s:.1f}' for s in r['case_seconds'])}")
    print("targets: cold case <= 8 s with onnx, peak <= 3 GiB")


if __name__ == "__main__":
    main()
