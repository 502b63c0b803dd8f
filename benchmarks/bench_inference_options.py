"""Dice on the phantom test set with and without each inference option of `segan predict`.

    .venv/bin/python benchmarks/bench_inference_options.py [--n 60] [--width 8] [--epochs 8] [--root DIR]

Small-model numbers: the smoke profile's 4 mm phantom (here `--n` subjects, split 80/10/10), networks
of width `--width` trained for `--epochs` epochs, two seeds (0 and 1, for the ensemble). The project
root (default: a folder in the system's temporary directory) keeps the phantom, cache and runs, so a
second call reuses the trained models and only predicts. Each test case is predicted from its own
files, in its own grid, as `segan predict` does, and scored against its label (whole tumour, any
label > 0); the table gives the mean and SD of per-case Dice, the change against the baseline
(seed 0, tensorflow engine, no option) and its range over cases, and the seconds per case.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def dice(pred, truth) -> float:
    import numpy as np

    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (pred & truth).sum() / total)


def prepare(root: Path, n: int, width: int, epochs: int) -> tuple[list[Path], list]:
    """The two runs' bundles (trained here when missing) and the test cases."""
    os.environ["SEGAN_ROOT"] = str(root)
    from segan_lib import paths
    from segan_lib.config import load_profile
    from segan_lib.data import open_dataset
    from segan_lib.data.cache import build_cache
    from segan_lib.data.phantom import generate_phantom
    from segan_lib.data.splits import default_splits_path, ensure_split, load_split

    overrides = [f"data.phantom_n={n}", f"model.width={width}", f"train.epochs={epochs}", f"train.patience={epochs}",
                 "data.root=data/phantom-options"]
    profile = load_profile("smoke", overrides)
    if not (profile.data_root / "grades.csv").exists():
        generate_phantom(profile.data_root, n=n, seed=0, voxel_size=4.0, workers=2)
    ds = open_dataset(profile.data_root)
    build_cache(ds, profile.preprocess, log=None, workers=2)
    ensure_split(default_splits_path(profile.data_root), ds.grades, seed=0)
    bundles = []
    for seed in (0, 1):
        name = f"options_n{n}_w{width}_e{epochs}_s{seed}"
        if not (paths.runs_dir() / name / "bundle" / "card.json").exists():
            from segan_lib.study.models import train_model

            t0 = time.perf_counter()
            train_model(load_profile("smoke", overrides + [f"train.seed={seed}"]), name, log=None)
            print(f"trained {name} in {time.perf_counter() - t0:.0f} s")
        bundles.append(paths.runs_dir() / name / "bundle")
    split = load_split(default_splits_path(profile.data_root))
    return bundles, [ds[c] for c in split.subset("test")]


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="phantom subjects (the test set is 10%%)")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "segan_bench_inference_options"))
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    bundle_dirs, cases = prepare(root, args.n, args.width, args.epochs)

    from segan_lib.apply.bundle import load_bundle
    from segan_lib.apply.ensemble import make_ensemble
    from segan_lib.apply.predict import predict_case

    tf = [load_bundle(b) for b in bundle_dirs]
    onnx = load_bundle(bundle_dirs[0], engine="onnx")
    voxel_ml = 4.0 ** 3 / 1000
    configs = [
        ("baseline (seed 0, tensorflow)", tf[0], {}),
        ("--engine onnx", onnx, {}),
        ("--tta lr", tf[0], {"tta": "lr"}),
        ("--tta inplane", tf[0], {"tta": "inplane"}),
        (f"--min-component-ml {2 * voxel_ml:.3f} (2 voxels)", tf[0], {"min_component_ml": 2 * voxel_ml}),
        ("--min-component-ml 0.5", tf[0], {"min_component_ml": 0.5}),
        ("--min-component-ml 2", tf[0], {"min_component_ml": 2.0}),
        ("seed 1 alone", tf[1], {}),
        ("--model seed0 --model seed1", make_ensemble(tf), {}),
        ("ensemble + --tta lr", make_ensemble(tf), {"tta": "lr"}),
        ("--engine onnx --tta lr", onnx, {"tta": "lr"}),
    ]
    truths = {c.case_id: c.volume("label").data for c in cases}
    for model in (*tf, onnx):  # trace the predict functions and start the session before timing
        predict_case(model, cases[0])
    rows = []
    for name, model, options in configs:
        t0 = time.perf_counter()
        scores = [dice(predict_case(model, c, **options).mask, truths[c.case_id]) for c in cases]
        rows.append((name, np.array(scores), (time.perf_counter() - t0) / len(cases)))
    base = rows[0][1]
    print(f"phantom 4 mm, {args.n} subjects, {len(cases)} test cases; width {args.width}, {args.epochs} epochs, "
          f"smoke profile otherwise (small-model numbers)")
    print(f"{'option':<38} {'Dice mean':>9} {'SD':>6} {'vs baseline':>11} {'range over cases':>22} {'s/case':>7}")
    for name, scores, seconds in rows:
        d = scores - base
        print(f"{name:<38} {scores.mean():>9.4f} {scores.std(ddof=1):>6.3f} {d.mean():>+11.4f} "
              f"{f'[{d.min():+.4f}, {d.max():+.4f}]':>22} {seconds:>7.2f}")


if __name__ == "__main__":
    main()
