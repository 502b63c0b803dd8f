"""How much Keras 3's RMSprop damps the paper-width networks' steps against TF 2.0's (the authors').

    .venv/bin/python benchmarks/bench_gradient_rms.py [--crop 64] [--batch 8] [--steps 5] [--lr 2e-5] [--json out.json]

TF 2.0's RMSprop steps by lr g / (sqrt(v) + eps), Keras 3's by lr g / sqrt(v + eps), eps = 1e-7
(segan_lib.training.optimizers). The two agree where sqrt(v) >> sqrt(eps) ~ 3.2e-4 and part where
a parameter's gradient RMS is near or below it. This builds the paper-width (64) segmentor and
critic (four contrasts, SegAN_IO), trains them with the authors' step (update_order "joint",
rmsprop "tf2", lr 2e-5 by default) on a few synthetic phantom-like batches (an elliptic "brain"
with tissue texture, bias and noise in four channels, a tumour blob brighter in two of them; small
crops so it runs in about a minute on a CPU), records every parameter's gradient at each step
before the update, and prints per network:

- the distribution over scalar parameters of the gradient RMS over the steps (sqrt(mean_t g_t^2),
  what RMSprop's v estimates once warmed up): quantiles, and the fraction below sqrt(1e-7);
- the damping factor of Keras 3's step against TF 2.0's for v = RMS^2,
  (sqrt(v) + eps) / sqrt(v + eps) (1 = no damping): its quantiles and its mean weighted by the
  TF 2.0 step size, i.e. how much shorter Keras 3's total update is.

The gradients' scale depends on the crop, the batch and the data (the multi-scale L1 is a mean
over every critic feature); these are the first steps of a fresh model, not a trained one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPS = 1e-7
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def phantom_like_batch(rng, batch: int, size: int, channels: int = 4):
    """(images, truth): an elliptic brain with texture, bias field and noise; a tumour blob in it."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    images = np.zeros((batch, size, size, channels), np.float32)
    truth = np.zeros((batch, size, size, 1), np.float32)
    for b in range(batch):
        a, c = rng.uniform(0.35, 0.48, 2)
        brain = (xx / a) ** 2 + (yy / c) ** 2 < 1.0
        cy, cx = rng.uniform(-0.2, 0.2, 2)
        r = rng.uniform(0.05, 0.15)
        tumour = brain & (((xx - cx) ** 2 + (yy - cy) ** 2) < r ** 2) if rng.random() < 0.8 else np.zeros_like(brain)
        bias = 1.0 + 0.2 * (xx * rng.normal() + yy * rng.normal())
        for ch in range(channels):
            texture = 0.5 + 0.15 * np.sin(xx * rng.uniform(10, 30)) * np.cos(yy * rng.uniform(10, 30))
            img = np.where(brain, texture * bias, 0.0) + np.where(tumour, 0.35 if ch in (2, 3) else -0.1, 0.0)
            img = img + rng.normal(0, 0.03, img.shape) * brain
            images[b, ..., ch] = np.clip(img, 0, 1)
        truth[b, ..., 0] = tumour
    return images, truth


def gradients(model, images, truth):
    """Both networks' gradients at the current weights, as the authors' (joint) step takes them."""
    import tensorflow as tf

    from segan_lib.nets.losses import dice_loss, multiscale_l1

    images, truth = tf.constant(images), tf.constant(truth)
    with tf.GradientTape(persistent=True) as tape:
        prediction = model.segmentor(images, training=True)
        l1 = multiscale_l1(model.critic([images, truth], training=True),
                           model.critic([images, prediction], training=True))
        seg_loss = l1 + dice_loss(truth, prediction)
        critic_loss = -l1
    seg = tape.gradient(seg_loss, model.segmentor.trainable_variables)
    critic = tape.gradient(critic_loss, model.critic.trainable_variables)
    del tape
    return [g.numpy() for g in seg], [g.numpy() for g in critic]


def summarize(name: str, squares, steps: int) -> dict:
    import numpy as np

    rms = np.sqrt(np.concatenate([s.ravel() for s in squares]) / steps)
    v = rms.astype(np.float64) ** 2
    damping = (np.sqrt(v) + EPS) / np.sqrt(v + EPS)  # Keras 3's step / TF 2.0's for the same v
    tf2_step = rms / (rms + EPS)  # |lr g / (sqrt(v) + eps)| / lr with |g| ~ RMS
    return {
        "network": name, "parameters": int(rms.size),
        "rms_quantiles": {f"{q:g}": float(np.quantile(rms, q)) for q in QUANTILES},
        "fraction_rms_below_sqrt_eps": float((rms < math.sqrt(EPS)).mean()),
        "damping_quantiles": {f"{q:g}": float(np.quantile(damping, q)) for q in QUANTILES},
        "damping_mean_weighted_by_step": float((damping * tf2_step).sum() / tf2_step.sum()),
        "fraction_damped_below_half": float((damping < 0.5).mean()),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=64, help="in-plane size of the synthetic slices (paper: 160)")
    parser.add_argument("--batch", type=int, default=8, help="slices per batch (paper: 64)")
    parser.add_argument("--steps", type=int, default=5, help="training steps recorded")
    parser.add_argument("--lr", type=float, default=2e-5, help="learning rate (paper: 2e-5)")
    parser.add_argument("--width", type=int, default=64, help="network width (paper: 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np

    from segan_lib.nets.critic import build_critic
    from segan_lib.nets.segmentor import build_segmentor
    from segan_lib.training.segan import SegAN

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    model = SegAN(build_segmentor(4, width=args.width, seed=args.seed),
                  build_critic(4, input_mode="concat", width=args.width, seed=args.seed), update_order="joint")
    model.compile(learning_rate=args.lr, rmsprop="tf2")
    model(np.zeros((1, args.crop, args.crop, 4), np.float32))
    squares = {"segmentor": None, "critic": None}
    for _ in range(args.steps):
        images, truth = phantom_like_batch(rng, args.batch, args.crop)
        seg, critic = gradients(model, images, truth)
        for name, grads in (("segmentor", seg), ("critic", critic)):
            sq = [g.astype(np.float64) ** 2 for g in grads]
            squares[name] = sq if squares[name] is None else [a + b for a, b in zip(squares[name], sq)]
        model.train_on_batch(images, truth)  # the authors' step: the same gradients, then both updates
    results = [summarize(name, sq, args.steps) for name, sq in squares.items()]
    results.append(summarize("both", squares["segmentor"] + squares["critic"], args.steps))

    print(f"gradient RMS over the first {args.steps} steps, width {args.width}, {args.batch} slices of "
          f"{args.crop}x{args.crop}, 4 contrasts, lr {args.lr:g} (sqrt(1e-7) = {math.sqrt(EPS):.2e})")
    header = "network    params     " + "  ".join(f"q{q:<7g}" for q in QUANTILES)
    print("\nper-parameter gradient RMS")
    print(header)
    for r in results:
        print(f"{r['network']:<10} {r['parameters']:<10d} " + "  ".join(f"{v:.2e}" for v in r["rms_quantiles"].values())
              + f"   below sqrt(eps): {100 * r['fraction_rms_below_sqrt_eps']:.1f}%")
    print("\ndamping of Keras 3's step against TF 2.0's, (sqrt(v) + eps) / sqrt(v + eps), v = RMS^2")
    print(header)
    for r in results:
        print(f"{r['network']:<10} {r['parameters']:<10d} " + "  ".join(f"{v:8.3f}" for v in r["damping_quantiles"].values())
              + f"   step-weighted mean {r['damping_mean_weighted_by_step']:.3f},"
                f" damped below 0.5: {100 * r['fraction_damped_below_half']:.1f}%")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    out = {"crop": args.crop, "batch": args.batch, "steps": args.steps, "width": args.width, "lr": args.lr,
           "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
