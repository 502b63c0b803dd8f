"""Training-step throughput of SegAN_IO next to this machine's float32 matrix-multiply rate.

    .venv/bin/python benchmarks/bench_train_step.py [--shapes paper,quick] [--steps 5] [--json out.json]

For each shape: slices/s of the full adversarial step (critic update, then
segmentor update) on random data, the model FLOPs per slice counted from the
convolution layers, and the achieved FLOP/s as a fraction of the float32 GEMM
rate measured in the same run (TensorFlow matmul, 2048x2048, best of several).

FLOPs per slice: S = segmentor forward, C = critic forward (2 * output pixels *
k * k * in * out per convolution; batch norm, activations and upsampling not
counted). One step costs about 4 S + 9 C: critic update = S + 2 C forward and
4 C backward (weights and inputs, real and fake); segmentor update = S + 2 C
forward, C backward through the critic's fake branch, 2 S backward.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPES = {
    # name: (crop, batch, width, contrasts)
    "paper-b16-c1": (160, 16, 64, 1),
    "paper-b16-c4": (160, 16, 64, 4),
    "paper-b64-c4": (160, 64, 64, 4),
    "quick-b16-c4": (80, 16, 16, 4),
}


def conv_flops(model, h: int, w: int) -> float:
    """Forward FLOPs of the Conv2D layers of a functional model for one h x w input."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            cin = layer.input.shape[-1]
            total += 2.0 * k * cin * layer.filters * _out_pixels(model, layer, h, w)
    return total


def _out_pixels(model, layer, h, w):
    import keras
    import numpy as np

    sub = keras.Model(model.inputs, layer.output)
    shapes = [(1, h, w, int(i.shape[-1])) for i in model.inputs]
    out = sub([np.zeros(s, "float32") for s in shapes])
    return int(out.shape[1] * out.shape[2])


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    mm = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def numpy_gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """The same GEMM through numpy's BLAS, a second reference (other libraries reach other peaks)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return 2.0 * n ** 3 / best_matmul_seconds(a, b, repeats)


def best_matmul_seconds(a, b, repeats: int) -> float:
    """The fastest of `repeats` timed a @ b (after one untimed warm-up), in seconds."""
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def build_step(crop, batch, width, channels, jit_compile=False, critic_input="concat"):
    """Our SegAN (seeded), compiled, and a fixed random batch: what `time_step` times (bench_torch_peer.py too)."""
    import keras
    import numpy as np

    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN

    keras.utils.set_random_seed(0)
    seg = build_segmentor(channels, width=width, seed=0)
    critic = build_critic(channels, input_mode=critic_input, width=width, seed=0)
    model = SegAN(seg, critic)
    model.compile(learning_rate=2e-5, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.random((batch, crop, crop, channels), dtype=np.float32)
    y = (rng.random((batch, crop, crop, 1)) > 0.9).astype(np.float32)
    return model, x, y


def time_step(step, steps, warmup=2):
    """Mean seconds of `step()` over `steps` calls, after `warmup` untimed ones (the first traces)."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def step_flops_per_slice(seg, critic, crop) -> float:
    """The model FLOPs of one training step per slice, 4 S + 9 C (the module docstring)."""
    return 4 * conv_flops(seg, crop, crop) + 9 * conv_flops(critic, crop, crop)


def bench_shape(name, crop, batch, width, channels, steps, jit_compile=False):
    model, x, y = build_step(crop, batch, width, channels, jit_compile=jit_compile)
    seg, critic = model.segmentor, model.critic
    s_flops = conv_flops(seg, crop, crop)
    c_flops = conv_flops(critic, crop, crop)
    dt = time_step(lambda: model.train_on_batch(x, y), steps)
    per_slice = 4 * s_flops + 9 * c_flops
    return {"shape": name, "crop": crop, "batch": batch, "width": width, "contrasts": channels,
            "segmentor_params": seg.count_params(), "segmentor_gflop": s_flops / 1e9, "critic_gflop": c_flops / 1e9,
            "step_gflop_per_slice": per_slice / 1e9, "seconds_per_step": dt, "slices_per_s": batch / dt,
            "achieved_gflops": per_slice * batch / dt / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="paper-b16-c1,paper-b16-c4,quick-b16-c4",
                    help=f"comma-separated, from {', '.join(SHAPES)}")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    import tensorflow as tf

    rate = gemm_rate()
    np_rate = numpy_gemm_rate()
    print(f"float32 matmul 2048^2 on {os.cpu_count()} cores: TensorFlow {rate / 1e9:.1f} GFLOP/s "
          f"(TF {tf.__version__}), numpy {np_rate / 1e9:.1f} GFLOP/s; ratios below are against the higher")
    rate = max(rate, np_rate)
    rows = []
    for name in args.shapes.split(","):
        r = bench_shape(name, *SHAPES[name], steps=args.steps)
        r["fraction_of_matmul"] = r["achieved_gflops"] * 1e9 / rate
        rows.append(r)
        print(f"{name:14s} {r['crop']}x{r['crop']} batch {r['batch']:3d} width {r['width']:2d} c{r['contrasts']}: "
              f"{r['slices_per_s']:7.1f} slices/s  {r['step_gflop_per_slice']:6.2f} GFLOP/slice  "
              f"{r['achieved_gflops']:6.1f} GFLOP/s = {100 * r['fraction_of_matmul']:.0f}% of matmul")
    if args.json:
        from segan_lib.atomic import atomic_write_json

        atomic_write_json(args.json, {"matmul_gflops": rate / 1e9, "numpy_matmul_gflops": np_rate / 1e9,
                                      "results": rows})


if __name__ == "__main__":
    main()
