"""Our adversarial training step beside the same step written plainly in PyTorch (benchmarks/torch_segan.py).

    .venv/bin/python benchmarks/bench_torch_peer.py [--shapes quick,paper] [--steps 5] [--repeats 2]
                                                     [--threads N] [--no-check] [--breakdown] [--json out.json]

Needs PyTorch's CPU build (the `bench` extra, pinned in requirements-bench.lock; benchmarks/README.md).
Shapes: quick = 64x64 crops, batch 16, 4 contrasts, width 16 (params/quick.yaml); paper = 160x160,
batch 16, 4 contrasts, width 64. Both steps: the "joint" order, critic input "concat", TF 2.0 RMSprop
at 2e-5, critic kernels clipped to 0.05, on one fixed random batch; ours built and timed by
bench_train_step (build_step, time_step: mean seconds per train_on_batch after two untimed steps), once
without and once with XLA (jit_compile, the trainer's default on a CPU); PyTorch with as many threads
as TensorFlow uses. The three are timed in turn, --repeats rounds, and the fastest round of each
counts (other load on the machine slows the rounds unevenly). Rates: slices/s, PyTorch's over ours,
and each as a % of the float32 GEMM rate of bench_train_step (the highest of TensorFlow's and numpy's,
measured before and after the steps) with bench_train_step's model FLOPs per slice (4 S + 9 C); the
process's CPU seconds per step beside.

The check (before the timing; --no-check skips it): the torch modules get our Keras models' initial
weights (kernels transposed from (kh, kw, in, out) to (out, in, kh, kw)); parameter counts and output
shapes must be equal, the segmentor's inference output equal within OUTPUT_TOL, and three steps on the
same batch must give the same losses within LOSS_RTOL, ours with and without XLA. It exits with
status 1 when they differ.

--breakdown (quick shape): milliseconds of the parts of the step, ours (without and with XLA) beside
PyTorch: the segmentor forward, the whole forward, forward and both gradients, the two optimizer updates,
the step as one plain tf.function of SegAN.train_step, the step through train_on_batch (PyTorch: its
step in both rows), the step with one gradient call of seg_loss over both networks' weights instead of
two (the critic's is its negative: the same numbers); and for ours the step with op determinism on (the
trainer's setting without XLA) and through fit with and without the trainer's per-batch check of the logs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train_step as bts  # noqa: E402  (our step's build, timing, FLOPs and the GEMM rate)

SHAPES = {
    # name: (crop, batch, width, contrasts)
    "quick": (64, 16, 16, 4),
    "paper": (160, 16, 64, 4),
}
LR = 2e-5
# Measured on this project's 2-core AVX-512 machine, quick shape, 3 steps: see benchmarks/README.md.
OUTPUT_TOL = 1e-5  # max |ours - torch| of the sigmoid output; measured 4.8e-7
LOSS_RTOL = 1e-5  # each loss, each of the 3 steps, ours with and without XLA; measured at most 4.3e-7
CHECK_STEPS = 3


def _torch():
    try:
        import torch
    except ImportError:
        sys.exit("bench_torch_peer.py needs PyTorch's CPU build: pip install -r requirements-bench.lock "
                 "(benchmarks/README.md)")
    return torch


def tensorflow_threads() -> int:
    """The intra-op threads TensorFlow runs with: its setting, else (0, the default) every core it may use."""
    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    return n or len(os.sched_getaffinity(0))


def torch_gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """The same 2048^2 float32 GEMM through torch (its BLAS), for reference only."""
    torch = _torch()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    return 2.0 * n ** 3 / bts.best_matmul_seconds(a, b, repeats)


# ---------------------------------------------------------------- the two steps
def torch_peer(model, x, y, upsample="interpolate"):
    """The PyTorch step with our Keras models' current weights, and the batch as NCHW tensors."""
    import torch_segan as ts

    seg = ts.segmentor_from_keras(model.segmentor, upsample=upsample)
    critic = ts.critic_from_keras(model.critic)
    return ts.JointStep(seg, critic, learning_rate=LR), ts.to_nchw(x), ts.to_nchw(y)


def _losses(logs: dict) -> dict:
    return {k: float(logs[k]) for k in ("seg_loss", "critic_loss", "l1", "dice_loss")}


def check(crop, batch, width, channels) -> dict:
    """Same initial weights, same batch: counts, shapes, the segmentor's output and 3 steps' losses."""
    import numpy as np
    import torch_segan as ts

    torch = _torch()
    result = {"shape": [crop, batch, width, channels], "ok": True, "rows": []}

    def row(what, value, tol, ok):
        result["rows"].append({"what": what, "value": value, "tolerance": tol, "ok": bool(ok)})
        result["ok"] &= bool(ok)

    model, x, y = bts.build_step(crop, batch, width, channels)
    step, xt, yt = torch_peer(model, x, y)
    counts = (model.segmentor.count_params(), ts.parameter_count(step.segmentor),
              model.critic.count_params(), ts.parameter_count(step.critic))
    row("parameters (segmentor ours/torch, critic ours/torch)", counts, "equal",
        counts[0] == counts[1] and counts[2] == counts[3])
    with torch.no_grad():
        step.segmentor.eval()
        out_t = step.segmentor(xt).numpy().transpose(0, 2, 3, 1)
        feats_t = [f.shape[1] for f in step.critic.eval()(xt, yt)]
        step.segmentor.train(), step.critic.train()
    out_k = np.asarray(model.segmentor(x, training=False))
    feats_k = [int(f.shape[1]) for f in model.critic([x, y], training=False)]
    row("segmentor output shape, critic feature sizes", (out_k.shape, feats_k), "equal",
        out_k.shape == out_t.shape and feats_k == feats_t)
    diff = float(np.abs(out_k - out_t).max())
    row("segmentor output (inference), max |ours - torch|", diff, OUTPUT_TOL, diff <= OUTPUT_TOL)

    xla_model, _, _ = bts.build_step(crop, batch, width, channels, jit_compile=True)  # the same seeds
    for i in range(CHECK_STEPS):
        t = step(xt, yt)
        for name, m in (("ours", model), ("ours XLA", xla_model)):
            k = _losses(m.train_on_batch(x, y, return_dict=True))
            rel = max(abs(k[n] - t[n]) / max(abs(t[n]), 1e-12) for n in k)
            row(f"step {i + 1}: losses, max relative |{name} - torch|", rel, LOSS_RTOL, rel <= LOSS_RTOL)
    result["weights_after"] = _weight_diffs(model, step)
    return result


def _weight_diffs(model, step) -> dict:
    """After the check's steps: max |ours - torch| over the trainable weights, in units of the learning rate
    (RMSprop's first steps move a weight by about 3.2 lr whatever its gradient's size, so a gradient near 0
    whose sign differs between the two shows as up to ~6 lr)."""
    import numpy as np
    import torch_segan as ts

    out = {}
    for name, keras_model, layers in (("segmentor", model.segmentor, ts.segmentor_layers(step.segmentor)),
                                      ("critic", model.critic, ts.critic_layers(step.critic))):
        worst, n_far, total = 0.0, 0, 0
        for layer_name, module in layers:
            layer = keras_model.get_layer(layer_name)
            n_trainable = len(layer.trainable_weights)  # conv: kernel [bias]; batch norm: gamma, beta
            for k, t in zip(layer.get_weights()[:n_trainable], ts.keras_layout(module)[:n_trainable]):
                d = np.abs(np.asarray(k) - t)
                worst, n_far, total = max(worst, float(d.max())), n_far + int((d > LR).sum()), total + d.size
        out[name] = {"max_abs_in_lr": worst / LR, "fraction_beyond_lr": n_far / total}
    return out


def print_check(result) -> None:
    print(f"check at crop {result['shape'][0]}, batch {result['shape'][1]}, width {result['shape'][2]}, "
          f"{result['shape'][3]} contrasts: {'PASS' if result['ok'] else 'FAIL'}")
    for r in result["rows"]:
        value = f"{r['value']:.2e}" if isinstance(r["value"], float) else str(r["value"])
        print(f"  {'ok ' if r['ok'] else 'BAD'} {r['what']}: {value} (tolerance {r['tolerance']})")
    for name, w in result["weights_after"].items():
        print(f"  (info) {name} weights after {CHECK_STEPS} steps: max |ours - torch| = {w['max_abs_in_lr']:.2f} lr, "
              f"{100 * w['fraction_beyond_lr']:.3f}% of them beyond 1 lr")


# ---------------------------------------------------------------- timing
class _CpuSeconds:
    """Wraps a step: the process's CPU seconds (all threads) of each call, beside the wall time that
    bench_train_step.time_step measures; other load on the machine moves CPU seconds less than wall time."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self):
        t0 = time.process_time()
        self.fn()
        self.calls.append(time.process_time() - t0)

    def per_step(self, steps: int) -> float:
        return sum(self.calls[-steps:]) / steps


def bench(name, crop, batch, width, channels, steps, repeats) -> dict:
    """Fastest of `repeats` rounds of each: ours, ours with XLA, the PyTorch step."""
    plain, x, y = bts.build_step(crop, batch, width, channels)
    xla, _, _ = bts.build_step(crop, batch, width, channels, jit_compile=True)
    step, xt, yt = torch_peer(plain, x, y)
    per_slice = bts.step_flops_per_slice(plain.segmentor, plain.critic, crop)
    runs = {"ours": lambda: plain.train_on_batch(x, y), "ours_xla": lambda: xla.train_on_batch(x, y),
            "torch": lambda: step(xt, yt)}
    best = {k: (float("inf"), float("inf")) for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            timed = _CpuSeconds(fn)
            wall = bts.time_step(timed, steps)
            best[k] = min(best[k], (wall, timed.per_step(steps)))
    out = {"shape": name, "crop": crop, "batch": batch, "width": width, "contrasts": channels,
           "step_gflop_per_slice": per_slice / 1e9, "steps": steps, "repeats": repeats}
    for k, (dt, cpu) in best.items():
        out[k] = {"seconds_per_step": dt, "cpu_seconds_per_step": cpu, "slices_per_s": batch / dt}
    out["torch_over_ours"] = out["torch"]["slices_per_s"] / out["ours"]["slices_per_s"]
    out["torch_over_ours_xla"] = out["torch"]["slices_per_s"] / out["ours_xla"]["slices_per_s"]
    return out


def print_bench(r) -> None:
    print(f"{r['shape']:6s} {r['crop']}x{r['crop']} batch {r['batch']} width {r['width']} c{r['contrasts']} "
          f"({r['step_gflop_per_slice']:.2f} GFLOP/slice):")
    for k, label in (("ours", "ours (no XLA)"), ("ours_xla", "ours (XLA)"), ("torch", "PyTorch")):
        print(f"    {label:14s} {r[k]['slices_per_s']:8.1f} slices/s  {1e3 * r[k]['seconds_per_step']:8.1f} ms/step  "
              f"{100 * r[k]['fraction_of_gemm']:5.1f}% of GEMM  ({r[k]['cpu_seconds_per_step']:.2f} CPU s/step)")
    print(f"    PyTorch / ours: {r['torch_over_ours']:.2f}x (no XLA), {r['torch_over_ours_xla']:.2f}x (XLA)")


# ---------------------------------------------------------------- where the time goes
def _our_parts(model, x, y, jit: bool) -> dict:
    """Callables for the parts of our step, each one tf.function (with XLA when `jit`)."""
    import tensorflow as tf

    from segan_lib.nets.losses import dice_loss, multiscale_l1

    seg, critic = model.segmentor, model.critic
    xt, yt = tf.constant(x), tf.constant(y)
    seg_vars, critic_vars = seg.trainable_variables, critic.trainable_variables

    def forward():
        pred = seg(xt, training=True)
        l1 = multiscale_l1(critic([xt, yt], training=True), critic([xt, pred], training=True))
        return l1 + dice_loss(yt, pred), l1

    def grads():
        with tf.GradientTape(persistent=True) as tape:
            seg_loss, l1 = forward()
            critic_loss = -l1
        return tape.gradient(seg_loss, seg_vars), tape.gradient(critic_loss, critic_vars)

    def one_gradient():
        # critic_loss = -l1 and the Dice term does not depend on the critic: d(-l1)/dc = -d(seg_loss)/dc
        with tf.GradientTape() as tape:
            seg_loss, _ = forward()
        g = tape.gradient(seg_loss, seg_vars + critic_vars)
        return g[:len(seg_vars)], [-v for v in g[len(seg_vars):]]

    seg_grads, critic_grads = tf.function(grads)()

    def apply():
        model.seg_optimizer.apply(seg_grads, seg_vars)
        model.critic_optimizer.apply(critic_grads, critic_vars)

    def step_one_gradient():
        s, c = one_gradient()
        model.seg_optimizer.apply(s, seg_vars)
        model.critic_optimizer.apply(c, critic_vars)

    f = lambda fn: tf.function(fn, jit_compile=jit)  # noqa: E731
    parts = {"segmentor forward": f(lambda: seg(xt, training=True)), "forward (segmentor, 2 critics, losses)":
             f(forward), "forward + both gradients": f(grads), "both optimizer updates + clip": f(apply),
             "step as one tf.function": f(lambda: model.train_step((xt, yt))),
             "step, train_on_batch": lambda: model.train_on_batch(x, y),
             "step, one gradient call": f(step_one_gradient)}
    return {k: (lambda fn=fn: _sync(fn())) for k, fn in parts.items()}


def _sync(out):
    import tensorflow as tf

    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def _torch_parts(step, xt, yt) -> dict:
    torch = _torch()
    (_, seg_grads, critic_grads) = step.gradients(xt, yt)

    def forward():
        with torch.no_grad():
            return step.losses(xt, yt)

    def segmentor_forward():
        with torch.no_grad():
            return step.segmentor(xt)

    def step_one_gradient():
        # as ours: the critic's gradient is minus seg_loss's with respect to the critic's weights
        seg_loss = step.losses(xt, yt)[0]
        g = torch.autograd.grad(seg_loss, step.seg_params + step.critic_params)
        n = len(step.seg_params)
        step.apply(g[:n], [-v for v in g[n:]])

    return {"segmentor forward": segmentor_forward, "forward (segmentor, 2 critics, losses)": forward,
            "forward + both gradients": lambda: step.gradients(xt, yt),
            "both optimizer updates + clip": lambda: step.apply(seg_grads, critic_grads),
            "step as one tf.function": lambda: step(xt, yt), "step, train_on_batch": lambda: step(xt, yt),
            "step, one gradient call": step_one_gradient}


def _fit_per_step(model, x, y, steps, with_check: bool) -> float:
    """Seconds per step of model.fit on one constant batch, with or without the trainer's per-batch callback."""
    import keras
    import tensorflow as tf
    from types import SimpleNamespace

    from segan_lib.training.callbacks import make_callbacks

    trainer_cb = make_callbacks(None, SimpleNamespace(validation_field="crop"), None, {"epoch_now": 0},
                                patience=1, batch_size=len(x), log=None, writes=False)[0]

    class PerBatchOnly(keras.callbacks.Callback):
        """The trainer's EpochEnd callback's per-batch check alone (its epoch end needs a validation set)."""

        def on_train_batch_end(self, batch, logs=None):
            trainer_cb.on_train_batch_end(batch, logs)

    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    callbacks = [PerBatchOnly()] if with_check else []

    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)  # trace, warm up
    n = 4 * steps  # fit's own start and end, amortised over them
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=n, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    return (time.perf_counter() - t0) / n


def breakdown(crop, batch, width, channels, steps, repeats) -> dict:
    """Milliseconds of each part, ours without and with XLA and PyTorch, the fastest of `repeats` rounds taken
    in turn; extras for ours."""
    import tensorflow as tf

    plain, x, y = bts.build_step(crop, batch, width, channels)
    xla, _, _ = bts.build_step(crop, batch, width, channels, jit_compile=True)
    step, xt, yt = torch_peer(plain, x, y)
    columns = {"ours": _our_parts(plain, x, y, jit=False), "ours_xla": _our_parts(xla, x, y, jit=True),
               "torch": _torch_parts(step, xt, yt)}
    table = {part: {c: None for c in columns} for part in columns["ours"]}
    extras = {}
    fits = {}
    for label, m in (("ours", plain), ("ours_xla", xla)):
        fits[f"{label}: fit, no callbacks"] = (m, False)
        fits[f"{label}: fit, the trainer's per-batch check"] = (m, True)
    for _ in range(repeats):
        for part, cells in table.items():
            for c, parts in columns.items():
                if part in parts:
                    ms = 1e3 * bts.time_step(parts[part], steps)
                    cells[c] = ms if cells[c] is None else min(cells[c], ms)
        for label, (m, check_logs) in fits.items():
            extras[label] = min(extras.get(label, float("inf")), 1e3 * _fit_per_step(m, x, y, steps, check_logs))
    tf.config.experimental.enable_op_determinism()  # global: last, on a fresh model, then off again
    try:
        det, _, _ = bts.build_step(crop, batch, width, channels)
        label = "ours: train_on_batch, op determinism on"
        extras[label] = min(1e3 * bts.time_step(lambda: det.train_on_batch(x, y), steps) for _ in range(repeats))
    finally:
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    return {"parts_ms": table, "extras_ms": extras}


def print_breakdown(b) -> None:
    print("where the time goes (quick shape), ms per call:")
    print(f"    {'part':42s} {'ours':>8s} {'ours XLA':>9s} {'PyTorch':>8s}")
    for part, cols in b["parts_ms"].items():
        cells = [f"{cols[c]:8.1f}" if cols[c] is not None else f"{'-':>8s}" for c in ("ours", "ours_xla", "torch")]
        print(f"    {part:42s} {cells[0]} {cells[1]:>9s} {cells[2]}")
    for k, v in b["extras_ms"].items():
        print(f"    {k:52s} {v:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="quick,paper", help=f"comma-separated, from {', '.join(SHAPES)}")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--repeats", type=int, default=2, help="rounds; the fastest counts")
    ap.add_argument("--threads", type=int, default=None,
                    help="TensorFlow's intra-op threads, and so torch's (default: TensorFlow's default, every core); "
                         "1 is less sensitive to other load on the machine")
    ap.add_argument("--no-check", action="store_true", help="skip the same-weights check")
    ap.add_argument("--breakdown", action="store_true", help="also time the parts of the step (quick shape)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    unknown = [s for s in args.shapes.split(",") if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}: choose from {', '.join(SHAPES)}")
    torch = _torch()
    import tensorflow as tf

    if args.threads is not None:  # before TensorFlow runs anything
        if args.threads < 1:
            ap.error("--threads must be at least 1")
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    threads = tensorflow_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    gemm = {"tensorflow": [bts.gemm_rate()], "numpy": [bts.numpy_gemm_rate()], "torch": [torch_gemm_rate()]}
    print(f"{threads} threads (TensorFlow {tf.__version__}, torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()})")
    results = {"threads": threads, "shapes": []}
    failed = False
    if not args.no_check:
        results["check"] = check(*SHAPES["quick"])
        print_check(results["check"])
        failed = not results["check"]["ok"]
    for name in args.shapes.split(","):
        results["shapes"].append(bench(name, *SHAPES[name], steps=args.steps, repeats=args.repeats))
    # the GEMM again after the steps: a loaded moment lowers one measurement, so the higher counts
    for lib, fn in (("tensorflow", bts.gemm_rate), ("numpy", bts.numpy_gemm_rate), ("torch", torch_gemm_rate)):
        gemm[lib].append(fn())
    rate = max(gemm["tensorflow"] + gemm["numpy"])
    results["gemm_gflops"] = {lib: [r / 1e9 for r in rates] for lib, rates in gemm.items()}
    results["reference_gemm_gflops"] = rate / 1e9
    print("float32 GEMM 2048^2, GFLOP/s before / after the steps: "
          + ", ".join(f"{lib} {a / 1e9:.1f} / {b / 1e9:.1f}" for lib, (a, b) in gemm.items())
          + f"; % of GEMM below: of {rate / 1e9:.1f} (TensorFlow's or numpy's, the highest)")
    for r in results["shapes"]:
        for k in ("ours", "ours_xla", "torch"):
            r[k]["fraction_of_gemm"] = r["step_gflop_per_slice"] * 1e9 * r["batch"] / r[k]["seconds_per_step"] / rate
        print_bench(r)
    if args.breakdown:
        results["breakdown"] = breakdown(*SHAPES["quick"], steps=args.steps, repeats=args.repeats)
        print_breakdown(results["breakdown"])
    if args.json:
        from segan_lib.atomic import atomic_write_json

        atomic_write_json(args.json, results)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
