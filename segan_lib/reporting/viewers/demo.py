"""Seeded synthetic demo volumes for the viewers: a small head with a blob tumour and two stand-in "models".

`demo_volumes` needs no data on disk, so the viewer demo notebook and the tests can show
every viewer feature (four contrasts, a truth, two predictions) without a dataset.
"""
from __future__ import annotations

import numpy as np


def demo_volumes(seed: int = 0, shape=(48, 48, 32)):
    """A small seeded synthetic head with a blob tumour, for demos and tests.

    Returns (volumes, truth, predictions): volumes = dict 't1', 't1c', 't2', 'flair' -> float32
    (x, y, z) arrays; truth = uint8 mask of the tumour; predictions = {'shifted': the truth moved
    by 2 voxels along x, 'dilated': the truth grown by one voxel}, two stand-in "models".
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes of at least 8, got {shape}")
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid[0] / 0.75) ** 2 + (grid[1] / 0.88) ** 2 + ((grid[2] + 0.1) / 0.8) ** 2 < 1
    centre = rng.uniform(-0.3, 0.3, size=3)
    radii = rng.uniform(0.18, 0.3, size=3)
    wobble = 0.15 * np.sin(3 * grid[0] + rng.uniform(0, 6)) * np.cos(2 * grid[1] + rng.uniform(0, 6))
    blob = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) + wobble
    truth = (blob < 1) & brain
    core = (blob < 0.35) & brain
    tissue = {"t1": (0.6, 0.35, 0.2), "t1c": (0.6, 0.4, 1.0), "t2": (0.45, 0.9, 0.7), "flair": (0.4, 1.0, 0.8)}
    volumes = {}
    for name, (brain_value, tumour_value, core_value) in tissue.items():
        image = np.where(brain, brain_value, 0.0)
        image = np.where(truth, tumour_value, image)
        image = np.where(core, core_value, image)
        image = image + np.where(brain, rng.normal(0, 0.04, size=shape), 0.0)
        volumes[name] = np.clip(image, 0, None).astype(np.float32)
    truth = truth.astype(np.uint8)
    dilated = truth.astype(bool).copy()
    for axis in range(3):
        for step in (-1, 1):
            dilated |= np.roll(truth, step, axis=axis).astype(bool)
    predictions = {"shifted": np.roll(truth, 2, axis=0), "dilated": dilated.astype(np.uint8)}
    return volumes, truth, predictions
