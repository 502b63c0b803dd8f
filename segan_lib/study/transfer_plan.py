"""The transfer study beyond the paper: every source, three fine-tuning strategies, scratch
baselines, data efficiency, several seeds, and missing contrasts at test time.

The plan is data (`plan`): one `TransferRun` per model, all trained in this process by the
same `runs.train` with different settings, so a strategy is a parameter (`freeze`), not a
copy of code. Per seed:
  - the four-contrast SegAN_IO (for the missing-contrast evaluation), and when
    transfer.contrast_dropout > 0 a second one trained with random contrast dropout;
  - SegAN_IO from scratch on each contrast with all its training subjects: the scratch
    baseline at 100% and the source model of every fine-tuning;
  - every source fine-tuned on every other contrast with every strategy (full: everything
    trainable; critic: critic frozen, the paper's "Seg."; encoder: the segmentor's encoder
    frozen, decoder and critic trained) on all the target's training subjects;
  - data efficiency: scratch and each strategy (from the profile's source for that target)
    on 10%, 25%, 50% of the target's training subjects (nested, stratified, seeded).
A smaller training set gets proportionally more epochs (and patience), so every run sees
about the same number of updates and the curves compare data, not training time. For the
same reason the contrast-dropout model gets 1/(1 - rate) times the epochs: each contrast is
then seen in about as many training slices as by the plain four-contrast model.

Every run lives in runs/transfer_<settings key>/<run>/ and is skipped when its test
evaluation exists, so a rerun computes only what is missing.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from segan_lib import paths
from segan_lib.atomic import atomic_write_text
from segan_lib.config import Profile, apply_overrides
from segan_lib.constants import CONTRASTS, Freeze

FOUR_CONTRAST_MODELS = ("four_contrast", "contrast_dropout")  # the strategies of the runs on all four contrasts
# the long formats of the per-subject results, read by segan_lib.study.transfer_analysis
RESULT_COLUMNS = ("target", "source", "strategy", "fraction", "n_subjects", "seed", "case_id", "dice")
MISSING_COLUMNS = ("model", "subset", "fill", "seed", "case_id", "dice")


@dataclass(frozen=True)
class TransferRun:
    name: str  # run folder, relative to runs/
    target: str  # the contrast it is trained (or fine-tuned) and tested on; "all" for the four-contrast model
    source: str  # the pre-trained model's contrast; "" when trained from scratch
    strategy: str  # scratch, full, critic, encoder, four_contrast or contrast_dropout
    fraction: float  # of the target's training subjects
    seed: int
    init_from: str | None = None  # run whose best weights start this one
    contrast_dropout: float = 0.0  # probability of zeroing each training slice's contrast (runs.train)

    @property
    def freeze(self) -> str:
        return Freeze.of_strategy(self.strategy).value


def study_folder(profile: Profile) -> str:
    """runs/<this> holds the study's runs; the key changes with any setting the runs depend on."""
    return f"transfer_{profile.fingerprint('data', 'preprocess', 'split', 'model', 'train')[:10]}"


def _tag(fraction: float) -> str:
    return f"f{round(fraction * 100):03d}"


def plan(profile: Profile) -> list[TransferRun]:
    """Every run of the study, each after the run it starts from."""
    tc = profile.transfer
    folder = study_folder(profile)
    runs: list[TransferRun] = []
    for seed in tc.seeds:
        runs.append(TransferRun(f"{folder}/four_contrast_s{seed}", "all", "", "four_contrast", 1.0, seed))
        if tc.contrast_dropout > 0:
            runs.append(TransferRun(f"{folder}/four_contrast_cdrop{tc.contrast_dropout:g}_s{seed}",
                                    "all", "", "contrast_dropout", 1.0, seed, contrast_dropout=tc.contrast_dropout))
        scratch = {}
        for c in tc.contrasts:
            scratch[c] = TransferRun(f"{folder}/scratch_{c}_{_tag(1.0)}_s{seed}", c, "", "scratch", 1.0, seed)
            runs.append(scratch[c])
        for target in tc.contrasts:
            for source in (c for c in tc.contrasts if c != target):
                for strategy in tc.strategies:
                    runs.append(TransferRun(f"{folder}/{source}_to_{target}_{strategy}_{_tag(1.0)}_s{seed}", target,
                                            source, strategy, 1.0, seed, init_from=scratch[source].name))
            source = tc.efficiency_sources.get(target)
            for fraction in sorted(f for f in tc.fractions if f < 1.0):
                runs.append(TransferRun(f"{folder}/scratch_{target}_{_tag(fraction)}_s{seed}", target, "", "scratch",
                                        fraction, seed))
                if source is None:
                    continue
                for strategy in tc.strategies:
                    runs.append(TransferRun(f"{folder}/{source}_to_{target}_{strategy}_{_tag(fraction)}_s{seed}", target,
                                            source, strategy, fraction, seed, init_from=scratch[source].name))
    return runs


def run_profile(profile: Profile, run: TransferRun) -> Profile:
    """The settings of one run: its contrasts, seed and subject fraction; epochs (and patience) scaled
    by 1/fraction and by 1/(1 - contrast dropout)."""
    t = profile.train
    contrasts = list(CONTRASTS) if run.target == "all" else [run.target]
    scale = 1.0 / (run.fraction * (1.0 - run.contrast_dropout))
    return apply_overrides(profile, {
        "model.contrasts": contrasts, "train.seed": run.seed, "train.subject_fraction": run.fraction,
        # rounded first: in floating point 11 x 1/0.11 is 100.00000000000001, which must give 100 epochs, not 101
        "train.epochs": math.ceil(round(t.epochs * scale, 9)), "train.patience": math.ceil(round(t.patience * scale, 9)),
    })


def _is_complete(run: TransferRun) -> bool:
    run_dir = paths.runs_dir() / run.name
    return (run_dir / "metrics.json").exists() and (run_dir / "eval_test.csv").exists()


def train_and_evaluate(profile: Profile, run: TransferRun, log: Callable | None = print) -> None:
    """Train (or resume) one run and evaluate its best checkpoint on the test subjects."""
    import keras

    from segan_lib.study.models import evaluate_model, train_model

    keras.backend.clear_session()  # one process trains hundreds of models: free the previous graphs
    # no ONNX segmentor: these hundreds of small models are evaluated here, not applied to new scans
    train_model(run_profile(profile, run), run.name, init_from=run.init_from, freeze=run.freeze,
                contrast_dropout=run.contrast_dropout, log=None, onnx=False)
    evaluate_model(run.name, "test", compute_hd95=False, log=None)


def run_transfer_study(profile: Profile, log: Callable | None = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate what is missing; return the per-subject results and the missing-contrast table."""
    runs = plan(profile)
    todo = [r for r in runs if not _is_complete(r)]
    if log:
        log(f"transfer study: {len(runs)} runs in runs/{study_folder(profile)}, {len(runs) - len(todo)} done, "
            f"{len(todo)} to train")
    t0 = time.perf_counter()
    for i, run in enumerate(todo, 1):
        t_run = time.perf_counter()
        train_and_evaluate(profile, run, log)
        if log:
            elapsed = time.perf_counter() - t0
            log(f"  [{i}/{len(todo)}] {run.name.split('/', 1)[1]}: {time.perf_counter() - t_run:.0f} s "
                f"(about {elapsed / i * (len(todo) - i) / 60:.0f} min left)")
    missing = pd.concat([missing_contrast_results(profile, r, log) for r in runs if r.strategy in FOUR_CONTRAST_MODELS],
                        ignore_index=True)
    return collect_results(runs), missing


def collect_results(runs: list[TransferRun]) -> pd.DataFrame:
    """Per-subject test Dice of every single-contrast run, in the long format of transfer_analysis."""
    frames = []
    for run in runs:
        if run.strategy in FOUR_CONTRAST_MODELS:
            continue
        run_dir = paths.runs_dir() / run.name
        table = pd.read_csv(run_dir / "eval_test.csv")
        n_subjects = len(json.loads((run_dir / "train_subjects.json").read_text())["case_ids"])
        frames.append(pd.DataFrame({
            "target": run.target, "source": run.source, "strategy": run.strategy, "fraction": run.fraction,
            "n_subjects": n_subjects, "seed": run.seed, "case_id": table["case_id"], "dice": table["dice"]}))
    return pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)] if frames else pd.DataFrame(
        columns=list(RESULT_COLUMNS))


# ---------------------------------------------------------------- missing contrasts at test time
def contrast_subsets() -> list[tuple[str, ...]]:
    """The 15 non-empty subsets of the four contrasts, fewest first, each in the order t1, t1c, t2, flair."""
    return [s for k in range(1, len(CONTRASTS) + 1) for s in itertools.combinations(CONTRASTS, k)]


def training_means(cache, case_ids, contrasts) -> np.ndarray:
    """Per contrast, the mean preprocessed intensity inside the brain (non-zero voxels) of the training cases."""
    sums, counts = np.zeros(len(contrasts)), np.zeros(len(contrasts))
    for cid in case_ids:
        vol = np.asarray(cache.images(cid, list(contrasts)), np.float64)  # (C, X, Y, Z)
        inside = vol > 0
        sums += np.where(inside, vol, 0).sum(axis=(1, 2, 3))
        counts += inside.sum(axis=(1, 2, 3))
    return sums / np.maximum(counts, 1)


def fill_absent(images: np.ndarray, present: tuple[str, ...], contrasts: tuple[str, ...], fill: str,
                means: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, C) slices with the absent contrasts zeroed, or set to the training mean inside the brain.

    The brain is where any present contrast is non-zero (the background is 0 after preprocessing).
    """
    out = np.array(images, np.float32, copy=True)
    keep = [contrasts.index(c) for c in present]
    absent = [i for i in range(len(contrasts)) if contrasts[i] not in present]
    if not keep:
        raise ValueError("at least one contrast must be present")
    out[..., absent] = 0.0
    if fill == "mean":
        brain = (out[..., keep] > 0).any(axis=-1)
        for i in absent:
            out[..., i] = np.where(brain, np.float32(means[i]), 0.0)
    elif fill != "zero":
        raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}")
    return out


def missing_contrast_results(profile: Profile, run: TransferRun, log: Callable | None = print) -> pd.DataFrame:
    """Per-subject test Dice of a four-contrast model with each subset of contrasts present (cached per run).

    The column `model` is the run's strategy: four_contrast, or contrast_dropout when it was
    trained with contrast dropout.
    """
    out_path = paths.runs_dir() / run.name / "missing_contrasts.csv"
    fills = list(profile.transfer.missing_fill)
    if out_path.exists():
        cached = pd.read_csv(out_path, keep_default_na=False)
        if set(cached["fill"]) == set(fills):
            return cached.assign(model=run.strategy)[list(MISSING_COLUMNS)]
    import keras

    from segan_lib.data.cache import open_cache
    from segan_lib.evaluation.evaluate import load_run_models
    from segan_lib.nets.inference import predict_slices
    from segan_lib.training.validation import field_slices, volume_metrics_table
    from segan_lib.data.pipeline import load_slices
    from segan_lib.data.splits import default_splits_path, load_split

    keras.backend.clear_session()
    model, run_prof = load_run_models(paths.runs_dir() / run.name, "best")
    contrasts = tuple(run_prof.model.contrasts)
    cache = open_cache(run_prof.data_root, run_prof.preprocess)
    split = load_split(default_splits_path(run_prof.data_root), case_ids=cache.listed_ids)
    # the cases with the run's contrasts and a label, as training and evaluate_run choose them
    usable = dict.fromkeys(cache.usable(split.train + split.test, contrasts, need_label=True,
                                        on_bad_case=run_prof.data.on_bad_case, user="the missing-contrast evaluation"))
    test_ids = tuple(c for c in split.test if c in usable)
    data = field_slices(load_slices(cache, test_ids, contrasts, run_prof.model.regions, "all"),
                        run_prof.evaluate.field)  # scored as evaluate_run scores
    means = training_means(cache, tuple(c for c in split.train if c in usable), contrasts)
    full_images = data.images
    rows = []
    for present in contrast_subsets():
        for fill in fills:
            data.images = fill_absent(full_images, present, contrasts, fill, means)
            probs = predict_slices(model.segmentor, data, batch_size=run_prof.train.batch_size)
            table = volume_metrics_table(probs, data, spacing_mm=run_prof.preprocess.spacing_mm)
            rows.append(pd.DataFrame({"model": run.strategy, "subset": "+".join(present), "fill": fill, "seed": run.seed,
                                      "case_id": table["case_id"], "dice": table["dice"]}))
    data.images = full_images
    result = pd.concat(rows, ignore_index=True)[list(MISSING_COLUMNS)]
    atomic_write_text(out_path, result.to_csv(index=False))
    if log:
        log(f"  missing contrasts: {run.name.split('/', 1)[1]}: {len(contrast_subsets())} subsets x {len(fills)} fills")
    return result
