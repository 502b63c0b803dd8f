"""Speed options of training, each measured off and on; keep only what wins.

    .venv/bin/python benchmarks/bench_options.py [--paper] [--steps 20] [--repeats 1] [--batches 100]
                                                 [--slices 2048] [--only xla,prefetch,...] [--json out.json]

Quick shape by default (64 crops of 90x90 slices, batch 16, 4 contrasts, width 16);
--paper: 160 of 180, width 64. Every configuration runs in its own process, so a
global setting (precision policy, op determinism) cannot leak into the next one.
Options (the first value is "off"):
  xla            jit_compile False / True, passed through SegAN.compile to keras.Model.compile
  determinism    tf.config.experimental.enable_op_determinism() off / on (training turns it on)
  xla_determinism  xla off / on with op determinism on, as in training
  mixed_float16  global policy float32 / mixed_float16 (meant for GPUs)
  mixed_bfloat16 global policy float32 / mixed_bfloat16 (meant for GPUs and TPUs)
  prefetch       fit fed by train_dataset without / with its prefetch
  parallel       batches built by one generator / by Dataset.range().map(num_parallel_calls=AUTOTUNE)
  float16        images stored float32 / float16 (the cache's default): memory, numpy and tf.data slices/s
  channels_first channels-last / channels-first. The SegAN models are channels-last by construction,
                 so this times a proxy: the segmentor's layer stack rebuilt with data_format.
Training-step options give the median seconds per step of fit (its first step apart), the
speed-up off/on, and the same ratio of CPU seconds per step (all threads), which other load on
the machine moves less; pipeline options also the pipeline's own slices/s. Verdict: "wins" only
beyond 5%, about the noise of short runs on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NOISE = 0.05


def step_config(**changes) -> dict:
    config = {"kind": "step", "jit": False, "determinism": False, "policy": "float32", "feed": "constant"}
    return {**config, **changes}


OPTIONS = {
    # name: (off, on, note)
    "xla": (step_config(), step_config(jit=True), ""),
    "determinism": (step_config(), step_config(determinism=True), "training enables it"),
    "xla_determinism": (step_config(determinism=True), step_config(determinism=True, jit=True), "as training"),
    "mixed_float16": (step_config(), step_config(policy="mixed_float16"), "GPU-only"),
    "mixed_bfloat16": (step_config(), step_config(policy="mixed_bfloat16"), "GPU-only"),
    "prefetch": (step_config(feed="generator"), step_config(feed="prefetch"), "train_dataset = on"),
    "parallel": (step_config(feed="prefetch"), step_config(feed="parallel"), ""),
    "float16": ({"kind": "storage", "dtype": "float32"}, {"kind": "storage", "dtype": "float16"},
                "the cache's default"),
    "channels_first": ({"kind": "layout", "data_format": "channels_last"},
                       {"kind": "layout", "data_format": "channels_first"}, "proxy model"),
}


# ---------------------------------------------------------------- datasets for the pipeline options
def generator_dataset(data, batch, crop, epochs, prefetch: bool):
    """train_dataset's generator; prefetch=False also stops tf.data from injecting one itself."""
    import tensorflow as tf

    from segan_lib.data.pipeline import train_dataset

    if prefetch:
        return train_dataset(data, batch, crop, 0, 0, epochs)
    from segan_lib.data.pipeline import batch_iterator

    spec = _spec(data, batch, crop)
    ds = tf.data.Dataset.from_generator(lambda: batch_iterator(data, batch, crop, 0, 0, epochs), output_signature=spec)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    return ds.with_options(options)


def parallel_dataset(data, batch, crop, epochs):
    """The same batches as train_dataset, each built by its own call, several at a time, in order."""
    import tensorflow as tf

    from segan_lib.data.pipeline import epoch_plan, gather_batch, steps_per_epoch

    steps = steps_per_epoch(len(data), batch)
    plans = {}  # epoch -> (order, offsets); a race only recomputes the same plan

    def build(i):
        epoch, s = divmod(int(i), steps)
        if epoch not in plans:
            plans[epoch] = epoch_plan(0, epoch, len(data), batch, data.images.shape[1:3], crop)
        order, offsets = plans[epoch]
        return gather_batch(data, order[s * batch:(s + 1) * batch], offsets[s * batch:(s + 1) * batch], crop)

    x_spec, y_spec = _spec(data, batch, crop)

    def load(i):
        x, y = tf.numpy_function(build, [i], (tf.float32, tf.float32), stateful=False)
        return tf.ensure_shape(x, x_spec.shape), tf.ensure_shape(y, y_spec.shape)

    ds = tf.data.Dataset.range(steps * epochs).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _spec(data, batch, crop):
    import tensorflow as tf

    return (tf.TensorSpec((batch, crop, crop, data.images.shape[-1]), tf.float32),
            tf.TensorSpec((batch, crop, crop, data.masks.shape[-1]), tf.float32))


def layout_proxy(contrasts: int, width: int, data_format: str):
    """The segmentor's layers (convs, batch norm, skips; nearest upsampling) in the given layout."""
    import keras
    from keras import layers

    axis = -1 if data_format == "channels_last" else 1
    inputs = keras.Input((None, None, contrasts) if axis == -1 else (contrasts, None, None))
    x, skips = inputs, []
    for i, mult in enumerate((1, 2, 4, 8)):
        x = layers.Conv2D(width * mult, 4, strides=2, padding="same", use_bias=i == 0, data_format=data_format)(x)
        if i:
            x = layers.BatchNormalization(axis=axis)(x)
        skips.append(x := layers.LeakyReLU(0.2)(x))
    for j, mult in enumerate((4, 2, 1)):
        x = layers.UpSampling2D(2, data_format=data_format)(x)
        x = layers.Conv2D(width * mult, 3, padding="same", use_bias=False, data_format=data_format)(x)
        x = layers.ReLU()(layers.BatchNormalization(axis=axis)(x))
        x = layers.Add()([x, skips[2 - j]])
    x = layers.UpSampling2D(2, data_format=data_format)(x)
    model = keras.Model(inputs, layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                                              data_format=data_format)(x))
    model.compile(optimizer=keras.optimizers.RMSprop(2e-5), loss="binary_crossentropy")
    return model


# ---------------------------------------------------------------- one configuration (in a child process)
def measure(config: dict, shape: str, steps: int, n_batches: int, n_slices: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from bench_pipeline import (SHAPES, build_model, constant_dataset, dataset_epochs, epochs_for, synthetic_slices,
                                time_fit, time_iterable, time_numpy_pipeline)

    size, crop, batch, contrasts, width, per_case = SHAPES[shape]
    if config["kind"] == "storage":
        data = synthetic_slices(n_slices, size, contrasts, dtype=config["dtype"], slices_per_case=per_case)
        s = time_iterable(generator_dataset(data, batch, crop, dataset_epochs(n_batches, data, batch), True), n_batches)
        return {"seconds_per_batch": s, "slices_per_s": batch / s, "images_mib": data.images.nbytes / 2 ** 20,
                "numpy_slices_per_s": batch / time_numpy_pipeline(data, batch, crop, n_batches)}
    if config["kind"] == "layout":
        model = layout_proxy(contrasts, width, config["data_format"])
        rng = np.random.default_rng(0)
        x = rng.random((batch, crop, crop, contrasts), dtype=np.float32)
        y = (rng.random((batch, crop, crop, 1)) > 0.9).astype(np.float32)
        if config["data_format"] == "channels_first":
            x, y = x.transpose(0, 3, 1, 2).copy(), y.transpose(0, 3, 1, 2).copy()
        return time_fit(model, lambda: tf.data.Dataset.from_tensors((x, y)).repeat(), steps)

    if config["determinism"]:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(config["policy"])
    model = build_model(contrasts, width, jit_compile=config["jit"])
    result = {"jit_asked": config["jit"], "jit_compile_in_effect": bool(model.jit_compile)}
    feed = config["feed"]
    if feed == "constant":
        return {**result, **time_fit(model, lambda: constant_dataset(batch, crop, contrasts), steps)}
    data = synthetic_slices(n_slices, size, contrasts, slices_per_case=per_case)

    def make(epochs):
        if feed == "parallel":
            return parallel_dataset(data, batch, crop, epochs)
        return generator_dataset(data, batch, crop, epochs, prefetch=feed == "prefetch")

    alone = time_iterable(make(dataset_epochs(n_batches, data, batch)), n_batches)
    return {**result, "pipeline_slices_per_s": batch / alone,
            **time_fit(model, lambda: make(epochs_for(steps, data, batch)), steps)}


def run_child(config: dict, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config), "--steps", str(args.steps),
           "--batches", str(args.batches), "--slices", str(args.slices)] + (["--paper"] if args.paper else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        result = json.loads(lines[-1][len("RESULT "):])
    else:
        result = {"error": f"exit code {proc.returncode}", "message": proc.stderr.strip()[-500:]}
    return {**result, "process_s": time.perf_counter() - t0}


def fastest(results: list[dict]) -> dict:
    """The run with the least seconds per step (most slices/s); every run's figure kept in "runs"."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    key = "seconds_per_step" if "seconds_per_step" in ok[0] else "slices_per_s"
    best = (min if key == "seconds_per_step" else max)(ok, key=lambda r: r[key])
    return {**best, "runs": [r.get(key) for r in results]}


def verdict(name: str, off: dict, on: dict, step: dict, batch: int) -> tuple[float | None, str]:
    """Speed-up (off time / on time) and what to do; step: the baseline step, for the pipeline options."""
    for side in (on, off):
        if "error" in side:
            where = "unsupported on CPU" if name == "channels_first" else "fails on CPU"
            return None, f"{where} ({side['error']})"
    if name == "float16":
        speedup = on["slices_per_s"] / off["slices_per_s"]
        margin = on["slices_per_s"] * step.get("seconds_per_step", float("nan")) / batch
        memory = (f"images {off['images_mib']:.0f} -> {on['images_mib']:.0f} MiB, numpy alone "
                  f"{off['numpy_slices_per_s']:.0f} -> {on['numpy_slices_per_s']:.0f} slices/s")
        keep = speedup > 1 - NOISE or margin >= 10
        return speedup, (f"{'keep' if keep else 'drop'} ({memory}; float16 pipeline = {margin:.0f}x the step)")
    speedup = off["seconds_per_step"] / on["seconds_per_step"]
    text = "wins" if speedup > 1 + NOISE else "loses" if speedup < 1 - NOISE else "no difference"
    headroom = off.get("pipeline_slices_per_s", 0) * off["seconds_per_step"] / batch
    if headroom >= 10 and text != "no difference":  # the step cannot wait on a pipeline 10x faster than it
        text = f"no difference expected: the pipeline is already {headroom:.0f}x the step ({speedup:.2f}x is noise)"
    if on.get("jit_asked") and not on.get("jit_compile_in_effect"):
        text = f"not applied: Keras turned jit_compile off ({speedup:.2f}x is noise)"
    if name.startswith("mixed"):
        text = f"GPU-only ({text} on CPU)"
    if "pipeline_slices_per_s" in on and "pipeline_slices_per_s" in off:
        text += f"; pipeline alone {off['pipeline_slices_per_s']:.0f} -> {on['pipeline_slices_per_s']:.0f} slices/s"
    return speedup, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper", action="store_true", help="paper shape instead of the quick one")
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per configuration (at least 2)")
    ap.add_argument("--batches", type=int, default=100, help="batches timed for a pipeline alone")
    ap.add_argument("--slices", type=int, default=2048, help="synthetic slices held in memory")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of every configuration, round-robin; the fastest counts (use 2-3 on a busy machine)")
    ap.add_argument("--only", default=",".join(OPTIONS), help=f"comma-separated, from {', '.join(OPTIONS)}")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = "paper" if args.paper else "quick"
    if args.child:
        try:
            result = measure(json.loads(args.child), shape, args.steps, args.batches, args.slices)
        except Exception as exc:  # noqa: BLE001 - reported as the option's outcome
            result = {"error": type(exc).__name__, "message": str(exc)[:500]}
        print("RESULT " + json.dumps(result))
        return
    if args.steps < 2:
        ap.error("--steps must be at least 2")

    from bench_pipeline import SHAPES

    batch = SHAPES[shape][2]
    names = args.only.split(",")
    configs = {}  # every configuration once (the baseline serves several options)
    for name in names:
        off_config, on_config, _ = OPTIONS[name]
        for config in (off_config, on_config) + ((step_config(),) if name == "float16" else ()):
            configs[json.dumps(config, sort_keys=True)] = config
    runs = {key: [] for key in configs}
    for _ in range(args.repeats):  # round-robin, so a busy spell on the machine hits all alike
        for key, config in configs.items():
            runs[key].append(run_child(config, args))
            print(f"  ran {key}: {runs[key][-1].get('seconds_per_step', runs[key][-1].get('slices_per_s'))}",
                  file=sys.stderr, flush=True)
    best = {key: fastest(results) for key, results in runs.items()}

    def result_of(config):
        return best[json.dumps(config, sort_keys=True)]

    rows = []
    print(f"{shape} shape, {args.steps} steps per configuration, fastest of {args.repeats} run(s)")
    print(f"{'option':15s} {'off':>9s} {'on':>9s} {'unit':8s} {'speed-up':>8s} {'cpu-time':>8s}  verdict")
    for name in names:
        off_config, on_config, note = OPTIONS[name]
        off, on = result_of(off_config), result_of(on_config)
        speedup, text = verdict(name, off, on, result_of(step_config()) if name == "float16" else {}, batch)
        cpu = off.get("cpu_seconds_per_step", float("nan")) / on.get("cpu_seconds_per_step", float("nan"))
        unit, key = ("slices/s", "slices_per_s") if name == "float16" else ("s/step", "seconds_per_step")
        rows.append({"option": name, "note": note, "unit": unit, "off": off, "on": on, "speedup": speedup,
                     "cpu_time_speedup": None if cpu != cpu else cpu, "verdict": text})
        speed = f"{speedup:7.2f}x" if speedup else f"{'-':>8s}"
        cpu_speed = f"{cpu:7.2f}x" if cpu == cpu else f"{'-':>8s}"
        print(f"{name:15s} {off.get(key, float('nan')):9.3f} {on.get(key, float('nan')):9.3f} {unit:8s} {speed} "
              f"{cpu_speed}  {text}{f' [{note}]' if note else ''}")
    winners = [r["option"] for r in rows if r["verdict"].startswith("wins")]
    print(f"wins: {', '.join(winners) or 'none'}")
    if args.json:
        from segan_lib.atomic import atomic_write_json

        atomic_write_json(args.json, {"shape": shape, "steps": args.steps, "repeats": args.repeats,
                                      "cpu_count": os.cpu_count(),
                                      "wins": winners, "results": rows})


if __name__ == "__main__":
    main()
