"""Input-pipeline throughput next to the training step it feeds (target: pipeline >= 10x the step).

    .venv/bin/python benchmarks/bench_pipeline.py [--shapes paper,quick] [--steps 10] [--repeats 1]
                                                  [--batches 100] [--slices 2048] [--json out.json]

Synthetic in-memory slices shaped like the cache (float16, seeded) go through
the pipeline training uses: seeded shuffled order and random crops
(`epoch_plan`), batches gathered in numpy (`batch_iterator`), wrapped in tf.data
(`train_dataset`). For each shape:
  (a) `batch_iterator` alone, pure numpy;
  (b) `train_dataset` iterated alone (tf.data + prefetch);
      both the best of 3 rounds of --batches batches;
  (c) the SegAN training step through `model.fit` for the same number of steps,
      fed once from one constant in-memory batch and once by `train_dataset`
      (median seconds per step, the first step of the fit excluded);
      and, as a cross-check, bench_train_step's `train_on_batch` rate.
Printed: pipe/step = (b) slices/s over the constant-fed step's slices/s; slowdown = the
pipeline-fed step time over the constant-fed one; cpu ratio = the same for CPU seconds per step
(all threads: the work the pipeline adds, which on a CPU competes with the step for the cores).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPES = {
    # name: (slice size, crop, batch, contrasts, width, slices per case)
    "paper": (180, 160, 16, 4, 64, 128),  # 1 mm, 180x180x128 cache, 160 crops, paper width
    "quick": (90, 64, 16, 4, 16, 64),  # 2 mm, 90x90x64 cache, 64 crops, width 16 (params/quick.yaml)
}
ROUNDS = 3  # the pipeline alone is timed as the best of this many rounds: other processes only slow it


def synthetic_slices(n_slices: int, size: int, contrasts: int, dtype: str = "float16", seed: int = 0,
                     slices_per_case: int = 128):
    """A SliceSet of random images in [0, 1] and ~10% foreground masks, laid out as load_slices builds it."""
    import numpy as np

    from segan_lib.data.pipeline import SliceSet

    rng = np.random.default_rng(seed)
    images = np.empty((n_slices, size, size, contrasts), dtype)
    for s in range(0, n_slices, 256):  # in chunks: no float64 copy of the whole set
        images[s:s + 256] = rng.random((min(256, n_slices - s), size, size, contrasts), dtype=np.float32)
    masks = (rng.random((n_slices, size, size, 1), dtype=np.float32) > 0.9).astype(np.uint8)
    index = np.arange(n_slices)
    n_cases = -(-n_slices // slices_per_case)
    return SliceSet(images, masks, (index // slices_per_case).astype(np.int32),
                    (index % slices_per_case).astype(np.int32), [f"case{i:03d}" for i in range(n_cases)],
                    tuple(f"c{i}" for i in range(contrasts)), ("wt",))


def epochs_for(n_batches: int, data, batch: int) -> int:
    from segan_lib.data.pipeline import steps_per_epoch

    return -(-n_batches // steps_per_epoch(len(data), batch))


def time_iterable(batches, n_batches: int, rounds: int = ROUNDS) -> float:
    """Seconds per batch: the best of `rounds` rounds of n_batches, after one untimed batch (start-up)."""
    it = iter(batches)
    next(it)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        best = min(best, (time.perf_counter() - t0) / n_batches)
    return best


def time_numpy_pipeline(data, batch: int, crop: int, n_batches: int, seed: int = 0) -> float:
    from segan_lib.data.pipeline import batch_iterator

    return time_iterable(batch_iterator(data, batch, crop, seed, 0, dataset_epochs(n_batches, data, batch)), n_batches)


def dataset_epochs(n_batches: int, data, batch: int) -> int:
    """Epochs of batches a dataset needs to be timed by time_iterable(ds, n_batches)."""
    return epochs_for(ROUNDS * n_batches + 1, data, batch)


def build_model(contrasts: int, width: int, seed: int = 0, **compile_kwargs):
    """A compiled SegAN_IO (concat critic) as training builds it; compile_kwargs go to keras.Model.compile."""
    import keras

    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN

    keras.utils.set_random_seed(seed)
    model = SegAN(build_segmentor(contrasts, width=width, seed=seed),
                  build_critic(contrasts, input_mode="concat", width=width, seed=seed))
    model.compile(learning_rate=2e-5, **compile_kwargs)
    return model


def constant_dataset(batch: int, crop: int, contrasts: int, seed: int = 0):
    """One random batch repeated forever: the step with no input pipeline behind it."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.random((batch, crop, crop, contrasts), dtype=np.float32)
    y = (rng.random((batch, crop, crop, 1)) > 0.9).astype(np.float32)
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def time_fit(model, make_dataset, steps: int, warmup: int = 2) -> dict:
    """Median seconds per step of model.fit over make_dataset() (first step apart), after an untimed
    fit of `warmup` steps that traces the step (0: already traced)."""
    import keras
    import numpy as np

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends, self.cpu = [time.perf_counter()], [time.process_time()]

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    t0 = time.perf_counter()
    if warmup:
        model.fit(make_dataset(), steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    warmup_s = time.perf_counter() - t0
    timer = StepTimer()
    model.fit(make_dataset(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    durations, cpu = np.diff(timer.ends), np.diff(timer.cpu)
    steady = slice(1, None) if steps > 1 else slice(None)
    # The median resists the spikes other processes cause. CPU seconds (all threads of this
    # process) count work rather than waiting, so they move less when the machine is shared.
    return {"seconds_per_step": float(np.median(durations[steady])),
            "mean_seconds_per_step": float(durations[steady].mean()),
            "cpu_seconds_per_step": float(cpu[steady].mean()), "first_step_s": float(durations[0]),
            "warmup_s": warmup_s}


def bench_shape(name: str, steps: int, n_batches: int, n_slices: int, repeats: int = 1) -> dict:
    import bench_train_step
    from segan_lib.data.pipeline import train_dataset

    size, crop, batch, contrasts, width, per_case = SHAPES[name]
    data = synthetic_slices(n_slices, size, contrasts, slices_per_case=per_case)
    numpy_s = time_numpy_pipeline(data, batch, crop, n_batches)
    tf_s = time_iterable(train_dataset(data, batch, crop, 0, 0, dataset_epochs(n_batches, data, batch)), n_batches)

    model = build_model(contrasts, width)
    const, fed = [], []
    for r in range(repeats):  # alternating, so a busy spell on the machine hits both alike
        const.append(time_fit(model, lambda: constant_dataset(batch, crop, contrasts), steps, warmup=2 * (r == 0)))
        fed.append(time_fit(model, lambda: train_dataset(data, batch, crop, 0, 0, epochs_for(steps, data, batch)),
                            steps, warmup=2 * (r == 0)))
    const, fed = (min(runs, key=lambda t: t["seconds_per_step"]) for runs in (const, fed))
    on_batch = bench_train_step.bench_shape(name, crop, batch, width, contrasts, steps=steps)
    return {
        "shape": name, "slice_size": size, "crop": crop, "batch": batch, "contrasts": contrasts, "width": width,
        "n_slices": n_slices, "images_mib": data.images.nbytes / 2 ** 20, "image_dtype": str(data.images.dtype),
        "numpy_slices_per_s": batch / numpy_s, "tf_data_slices_per_s": batch / tf_s,
        "step_constant_s": const["seconds_per_step"], "step_pipeline_s": fed["seconds_per_step"],
        "first_step_pipeline_s": fed["first_step_s"], "step_train_on_batch_s": on_batch["seconds_per_step"],
        "step_slices_per_s": batch / const["seconds_per_step"],
        "pipeline_over_step": (batch / tf_s) / (batch / const["seconds_per_step"]),
        "pipeline_slowdown": fed["seconds_per_step"] / const["seconds_per_step"],
        "pipeline_cpu_ratio": fed["cpu_seconds_per_step"] / const["cpu_seconds_per_step"],
        "steps": steps, "repeats": repeats, "pipeline_batches": n_batches,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="paper,quick", help=f"comma-separated, from {', '.join(SHAPES)}")
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per feed (at least 2)")
    ap.add_argument("--batches", type=int, default=100, help="batches timed for the pipeline alone")
    ap.add_argument("--slices", type=int, default=2048, help="synthetic slices held in memory")
    ap.add_argument("--repeats", type=int, default=1,
                    help="fits of each feed, alternating; the fastest counts (use 2-3 on a busy machine)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    rows = []
    print(f"{'shape':6s} {'numpy':>9s} {'tf.data':>9s} {'step':>8s} {'step+pipe':>9s} {'on_batch':>8s} "
          f"{'pipe/step':>9s} {'slowdown':>8s} {'cpu':>6s}")
    print(f"{'':6s} {'slices/s':>9s} {'slices/s':>9s} {'s':>8s} {'s':>9s} {'s':>8s} {'(>=10)':>9s} {'':>8s} "
          f"{'ratio':>6s}")
    for name in args.shapes.split(","):
        r = bench_shape(name, args.steps, args.batches, args.slices, args.repeats)
        rows.append(r)
        print(f"{name:6s} {r['numpy_slices_per_s']:9.0f} {r['tf_data_slices_per_s']:9.0f} "
              f"{r['step_constant_s']:8.3f} {r['step_pipeline_s']:9.3f} {r['step_train_on_batch_s']:8.3f} "
              f"{r['pipeline_over_step']:9.1f} {r['pipeline_slowdown']:8.3f} {r['pipeline_cpu_ratio']:6.3f}")
    if args.json:
        from segan_lib.atomic import atomic_write_json

        atomic_write_json(args.json, {"cpu_count": os.cpu_count(), "results": rows})


if __name__ == "__main__":
    main()
