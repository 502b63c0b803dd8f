"""SegAN_IO's training step on Keras' JAX backend: slices/s, accelerator memory, and whether the
loss goes down, beside the device's matrix-multiply rate measured in the same run.

    KERAS_BACKEND=jax python benchmarks/bench_jax_step.py [--shape paper|quick|tiny] [--batches 16,64]
        [--precisions float32,mixed_bfloat16] [--steps 30] [--train-steps 300] [--json out.json]

This is the GPU check (benchmarks/gpu_check.sh runs it on a machine with JAX but no
TensorFlow); on a CPU it runs too, at --shape tiny, as a test of the script itself.
For each batch size and dtype policy: the median seconds of `--steps` adversarial steps
(critic update, then segmentor update) on one batch already on the device, after two
untimed steps that compile it; the FLOPs per slice counted from the convolutions (4 S + 9 C,
see bench_train_step.py) and their rate as a fraction of the device's matmul rate in that
dtype (8192^2 on a GPU, 1024^2 on a CPU). Then `--train-steps` steps at the first batch size,
float32, on synthetic slices whose tumour is a learnable function of the image (smooth random
fields; tumour where the first contrast is bright), reporting the segmentor loss of the first
and last 20 steps and the peak device memory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # segan_lib from this checkout, not installed

SHAPES = {"paper": (160, 64, 4), "quick": (64, 16, 4), "tiny": (32, 4, 4)}  # crop, width, contrasts


def matmul_rate(dtype: str, n: int) -> float:
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (n, n), dtype=dtype)
    b = jax.random.normal(key, (n, n), dtype=dtype)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def synthetic_slices(n: int, crop: int, channels: int, seed: int = 0):
    """Smooth random images in [0, 1] and a tumour mask where the first contrast is bright."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, crop, crop, channels)), sigma=(0, crop / 16, crop / 16, 0))
    x = (x - x.min(axis=(1, 2), keepdims=True)) / (np.ptp(x, axis=(1, 2), keepdims=True) + 1e-6)
    y = (x[..., :1] > 0.7).astype("float32")
    return x.astype("float32"), y


def build(crop: int, width: int, channels: int, policy: str):
    import keras

    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN

    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    seg = build_segmentor(channels, width=width, seed=0)
    critic = build_critic(channels, input_mode="concat", width=width, seed=0)
    model = SegAN(seg, critic)
    model.compile(learning_rate=2e-4)
    model(__import__("numpy").zeros((1, crop, crop, channels), "float32"))
    keras.config.set_dtype_policy("float32")
    return model, seg, critic


def peak_memory_gib() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2 ** 30 if peak else None


def time_steps(model, x, y, steps: int) -> float:
    model.train_on_batch(x, y)  # compile
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)  # returns host floats: the step has finished
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=list(SHAPES), default="paper")
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--precisions", default="float32,mixed_bfloat16")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import jax
    import keras
    import numpy as np

    from benchmarks.bench_train_step import conv_flops

    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    crop, width, channels = SHAPES[args.shape]
    n = 8192 if on_gpu else 1024
    rates = {p: matmul_rate("bfloat16" if "bfloat16" in p else "float32", n) for p in args.precisions.split(",")}
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, keras {keras.__version__}, "
          f"backend {keras.backend.backend()}")
    for p, r in rates.items():
        print(f"  matmul {n}^2 for {p}: {r / 1e12:.1f} TFLOP/s")
    rows = []
    x_all, y_all = synthetic_slices(max(int(b) for b in args.batches.split(",")) * 4, crop, channels)
    for policy in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            keras.backend.clear_session()
            model, seg, critic = build(crop, width, channels, policy)
            per_slice = 4 * conv_flops(seg, crop, crop) + 9 * conv_flops(critic, crop, crop)
            x, y = jax.device_put(x_all[:batch]), jax.device_put(y_all[:batch])
            dt = time_steps(model, x, y, args.steps)
            row = {"shape": args.shape, "crop": crop, "width": width, "contrasts": channels, "batch": batch,
                   "policy": policy, "seconds_per_step": dt, "slices_per_s": batch / dt,
                   "gflop_per_slice": per_slice / 1e9, "tflops": per_slice * batch / dt / 1e12,
                   "fraction_of_matmul": per_slice * batch / dt / rates[policy], "peak_memory_gib": peak_memory_gib()}
            rows.append(row)
            print(f"{args.shape} {crop}x{crop} width {width} c{channels} batch {batch:3d} {policy:15s}: "
                  f"{row['slices_per_s']:9.1f} slices/s  {row['tflops']:7.2f} TFLOP/s = "
                  f"{100 * row['fraction_of_matmul']:.1f}% of matmul  peak memory {row['peak_memory_gib']}")

    # a short training: does the loss go down?
    batch = int(args.batches.split(",")[0])
    keras.backend.clear_session()
    model, _, _ = build(crop, width, channels, "float32")
    rng = np.random.default_rng(1)
    losses, t0 = [], time.perf_counter()
    for _ in range(args.train_steps):
        idx = rng.choice(len(x_all), batch, replace=False)
        losses.append(model.train_on_batch(x_all[idx], y_all[idx], return_dict=True)["seg_loss"])
    seconds = time.perf_counter() - t0
    k = min(20, max(1, len(losses) // 4))
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    training = {"steps": args.train_steps, "batch": batch, "seconds": seconds,
                "slices_per_s": args.train_steps * batch / seconds, "seg_loss_first": first, "seg_loss_last": last,
                "loss_went_down": last < first, "peak_memory_gib": peak_memory_gib()}
    print(f"training {args.train_steps} steps of {batch}: seg_loss {first:.4f} -> {last:.4f} "
          f"({'down' if last < first else 'NOT down'}), {training['slices_per_s']:.1f} slices/s with host batches")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device.device_kind, "platform": device.platform,
                                               "matmul_flops": rates, "steps": rows, "training": training}, indent=1))


if __name__ == "__main__":
    main()
