"""Result tables, computed from saved runs only, printed beside the paper's numbers.

Every number comes from a run folder's eval_*.csv / .json (written by
segan_lib.evaluation.evaluate.evaluate_run); the paper's numbers come from
params/_reference.yaml. Tables are written as CSV and Markdown with the metric
protocol stated under each.

A model of a table is one run folder or a list of them, one per training seed. Every cell
follows the seed protocol of `segan_lib.metrics.seeds`: each test subject's value averaged
over the seeds, the mean over subjects with its bootstrap 95% CI, and "±" the SD over seeds
of the per-seed mean (absent with one seed). The claims table decides each of the paper's
claims on the differences of two models' runs paired by training seed: two-sided Wilcoxon
signed-rank test on the seed-averaged per-subject differences (the project's zero rule), Holm
over the claims, effect size and n printed; "yes" or "no" only when the Holm-adjusted p is
below CLAIM_ALPHA and the interval of the mean difference, resampling seeds and subjects
(metrics.seeds.two_level_bootstrap), excludes zero, otherwise "not decided at this size".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from segan_lib import paths
from segan_lib.atomic import atomic_write_text
from segan_lib.errors import SeganError

CONTRAST_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
TABLE_METRICS = ("dice", "precision", "sensitivity")
#: the claim "the Dice term stabilises training" is judged on the SD of the validation Dice over
#: a run's last STABILITY_EPOCHS epochs (all of them when it has fewer): lower is steadier
STABILITY_EPOCHS = 10
#: a claim is decided ("yes" / "no") only below this Holm-adjusted p, with its interval clear of zero
CLAIM_ALPHA = 0.05
UNDECIDED = "not decided at this size"
CLAIM_COLUMNS = ("claim", "holds here", "difference", "n", "effect r", "p", "p (Holm)", "evidence")

#: one run folder (a name in runs/ or a path), or one per seed
Runs = str | Path | Sequence[str | Path]


def reference() -> dict:
    return yaml.safe_load((paths.params_dir() / "_reference.yaml").read_text())


def eval_summary(run_dir: str | Path, subset: str = "test", on: tuple[str, ...] | None = None,
                 trained_on: tuple[str, ...] | None = None) -> dict:
    """The summary JSON that `segan evaluate` wrote for a run (on other contrasts when `on` is given)."""
    from segan_lib.run_files import run_folder

    run_dir = run_folder(run_dir)
    name = _eval_name(subset, on, trained_on)
    path = run_dir / f"{name}.json"
    if not path.is_file():
        raise SeganError(f"no evaluation {path.name} in {run_dir}: run `segan evaluate {run_dir.name}` first")
    return json.loads(path.read_text())


def cell(summary: dict, metric: str, digits: int = 3) -> str:
    """'mean [low, high]' of a metric in an evaluation summary."""
    m = summary["metrics"][metric]
    return f"{m['mean']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"


def mean_of(summary: dict, metric: str) -> float:
    return float(summary["metrics"][metric]["mean"])


def seed_runs(runs: Runs) -> list[Path]:
    """The run folders of one model: a single run, or a list of them (one per seed)."""
    from segan_lib.run_files import run_folder

    items = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not items:
        raise SeganError("a model of a table needs at least one run folder")
    return [run_folder(r) for r in items]


def _eval_name(subset: str = "test", on: Sequence[str] | None = None,
               trained_on: Sequence[str] | None = None) -> str:
    name = f"eval_{subset}"
    if on and (trained_on is None or tuple(on) != tuple(trained_on)):
        name += f"_on-{'-'.join(on)}"
    return name


def _run_seed(run_dir: Path, position: int) -> int:
    """The run's training seed from its settings.json (its position in the list when unreadable)."""
    try:
        return int(json.loads((run_dir / "settings.json").read_text())["profile"]["train"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return position


def per_subject(runs: Runs, name: str = "eval_test") -> pd.DataFrame:
    """One row per (seed, test subject) of a model's runs: seed, case_id and the metric columns of <name>.csv."""
    frames = []
    for position, run_dir in enumerate(seed_runs(runs)):
        path = run_dir / f"{name}.csv"
        if not path.is_file():
            raise SeganError(f"no evaluation {path.name} in {run_dir}: run `segan evaluate {run_dir.name}` first")
        frames.append(pd.read_csv(path).assign(seed=_run_seed(run_dir, position)))
    out = pd.concat(frames, ignore_index=True)
    out["case_id"] = out["case_id"].astype(str)
    if out.duplicated(["seed", "case_id"]).any():
        raise SeganError(f"the runs {[r.name for r in seed_runs(runs)]} repeat a seed (each must be its own seed)")
    return out


def seeded(runs: Runs, metric: str = "dice", name: str = "eval_test") -> dict:
    """The seed protocol's numbers of one metric of a model: mean, ci_low, ci_high, seed_std, n_seeds, n_test."""
    from segan_lib.metrics.seeds import seed_summary

    df = per_subject(runs, name).assign(model="m")
    return seed_summary(df, ["model"], value=metric).iloc[0].drop("model").to_dict()


def format_cell(mean: float, ci_low: float, ci_high: float, seed_std: float = float("nan"), digits: int = 3) -> str:
    """'0.812 [0.781, 0.843] ±0.012'; the ± part only when the seed spread is known, '–' with no data."""
    if not np.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f} [{ci_low:.{digits}f}, {ci_high:.{digits}f}]"
    return text + (f" ±{seed_std:.{digits}f}" if np.isfinite(seed_std) else "")


def seeded_cell(runs: Runs, metric: str = "dice", name: str = "eval_test", digits: int = 3) -> str:
    s = seeded(runs, metric, name)
    return format_cell(s["mean"], s["ci_low"], s["ci_high"], s["seed_std"], digits)


def _model_cells(runs: Runs) -> dict:
    s = seeded(runs)
    return {"n_test": int(s["n_test"]), "n_seeds": int(s["n_seeds"]),
            **{m: seeded_cell(runs, m) for m in TABLE_METRICS}}


def table_one(runs: Mapping[str, Runs]) -> pd.DataFrame:
    """Table I: four-contrast models (label -> run folder(s)), with the paper's rows below ours."""
    rows = [{"model": label, "source": "this study", **_model_cells(r)} for label, r in runs.items()]
    for label, values in reference()["table1"].items():
        rows.append({"model": label, "source": "paper", "n_test": 28, "n_seeds": 1,
                     **{m: f"{values[m]:.3f}" for m in TABLE_METRICS}})
    return pd.DataFrame(rows)


def table_two(runs: Mapping[str, Runs]) -> pd.DataFrame:
    """Table II: single-contrast models (contrast -> run folder(s)), Dice with the paper's per-volume Dice."""
    ref = reference()["table2_dice_per_volume"]
    return pd.DataFrame([{"contrast": CONTRAST_NAMES[c], **_model_cells(r), "paper dice (per volume)": f"{ref[c]:.3f}"}
                         for c, r in runs.items()])


def transfer_matrix(runs: Mapping[str, Runs]) -> dict[str, pd.DataFrame]:
    """Fig. 3: Dice of each single-contrast model on each contrast: mean, ci_low, ci_high, seed_std, paper."""
    contrasts = list(runs)
    titles = [CONTRAST_NAMES[c] for c in contrasts]
    out = {k: pd.DataFrame(index=titles, columns=titles, dtype=float) for k in ("mean", "ci_low", "ci_high", "seed_std")}
    for src, r in runs.items():
        for tgt in contrasts:
            s = seeded(r, "dice", _eval_name(on=(tgt,), trained_on=(src,)))
            for k in out:
                out[k].loc[CONTRAST_NAMES[src], CONTRAST_NAMES[tgt]] = s[k]
    ref = reference()["fig3_dice_per_volume"]
    out["paper"] = pd.DataFrame({CONTRAST_NAMES[t]: {CONTRAST_NAMES[s]: ref[s][t] for s in contrasts}
                                 for t in contrasts}).loc[titles]
    return out


def table_three(runs: Mapping[tuple[str, str], Runs]) -> pd.DataFrame:
    """Table III: (target contrast, strategy 'full' | 'seg') -> fine-tuned run(s), beside the paper."""
    ref = reference()["table3"]
    rows = []
    for (target, strategy), r in runs.items():
        p = ref[target][strategy]
        rows.append({"target": CONTRAST_NAMES[target], "fine tuning": "Full" if strategy == "full" else "Seg.",
                     **_model_cells(r),
                     "paper dice / precision / sensitivity": f"{p['dice']:.3f} / {p['precision']:.3f} / {p['sensitivity']:.3f}",
                     "paper dice (per volume)": f"{p['dice_per_volume']:.3f}"})
    return pd.DataFrame(rows)


def table_protocol_note(summary_example: dict | None = None) -> str:
    space = f" on the {summary_example['space']}" if summary_example else ""
    return ("Metrics per 3-D volume (threshold 0.5)" + space + ". Each test subject's value is averaged over the "
            "seeds a model was trained with (n_seeds); a cell is the mean over the n_test subjects with a bootstrap "
            "95% interval of the mean in brackets, and ± the SD over seeds of the per-seed mean (absent with one "
            "seed). " + reference()["protocol_note"])


def write_table(df: pd.DataFrame, path_without_suffix: str | Path, title: str, note: str) -> list[Path]:
    """CSV and Markdown (title, table, protocol note underneath), written atomically."""
    base = Path(path_without_suffix)
    csv_path, md_path = base.with_name(base.name + ".csv"), base.with_name(base.name + ".md")
    atomic_write_text(csv_path, df.to_csv(index=False))
    atomic_write_text(md_path, f"### {title}\n\n{df.to_markdown(index=False)}\n\n{note}\n")
    return [csv_path, md_path]




# ---------------------------------------------------------------- paired comparisons and the claims
def subject_values(runs: Runs, metric: str = "dice", name: str = "eval_test") -> pd.Series:
    """A model's per-subject value averaged over its seeds, by case_id."""
    return per_subject(runs, name).groupby("case_id")[metric].mean()


def paired_test(run_a: Runs, run_b: Runs, metric: str = "dice") -> tuple[float, float, int]:
    """Mean difference a - b over the same test subjects (seed-averaged) and the two-sided Wilcoxon p-value.

    Returns (mean difference, p, number of subjects with a value in both); the statistic is
    `segan_lib.metrics.statistics.paired_difference_test` with the project's zero rule
    (ZERO_METHOD, "zsplit": zero differences kept, their ranks split between W+ and W-).
    """
    # imported on use, so that importing this module does not load scipy.stats
    from segan_lib.metrics.statistics import paired_difference_test

    return paired_difference_test(_aligned_difference(subject_values(run_a, metric), subject_values(run_b, metric)))


def _aligned_difference(a: pd.Series, b: pd.Series) -> np.ndarray:
    common = a.index.intersection(b.index)
    return (a.loc[common] - b.loc[common]).to_numpy(dtype=float)


def val_dice_spread(history: pd.DataFrame, last: int = STABILITY_EPOCHS) -> tuple[float, int]:
    """(SD, number of epochs) of the validation Dice over the last `last` epochs of a history.csv.

    The sample SD (ddof 1) of the `val_dice` column's last `last` finite values (all of them when
    there are fewer); NaN with fewer than two.
    """
    values = pd.to_numeric(history["val_dice"], errors="coerce").dropna().to_numpy(dtype=float)[-last:]
    return (float(values.std(ddof=1)) if values.size >= 2 else float("nan")), int(values.size)


def seed_paired_differences(runs_a: Runs, runs_b: Runs, metric: str = "dice", name_a: str = "eval_test",
                            name_b: str | None = None) -> pd.DataFrame:
    """Per-subject differences a - b of two models' runs paired by training seed: subjects x seeds (index
    case_id, one column per seed both have; subjects both have)."""
    a = per_subject(runs_a, name_a).pivot(index="case_id", columns="seed", values=metric)
    b = per_subject(runs_b, name_b or name_a).pivot(index="case_id", columns="seed", values=metric)
    seeds = [s for s in a.columns if s in b.columns]
    subjects = a.index.intersection(b.index)
    return a.loc[subjects, seeds] - b.loc[subjects, seeds]


def claim_row(claim: str, differences, unit: str, evidence: str) -> dict:
    """One claim's row before Holm: the paired differences (> 0: the claim's way) and their test.

    differences: one value per subject (or seed), or a subjects x seeds table of two models paired by
    training seed (`seed_paired_differences`). The Wilcoxon test is on each subject's seed-averaged
    difference; the interval of the mean difference resamples the seeds as well as the subjects when there
    are several (`metrics.seeds.two_level_bootstrap`), so a difference that changes sign between seeds
    is not decided however many subjects agree on its average.
    """
    from segan_lib.metrics.seeds import two_level_bootstrap
    from segan_lib.metrics.statistics import wilcoxon_paired

    table = np.asarray(differences, dtype=float)
    table = table.reshape(-1, 1) if table.ndim == 1 else table
    table = table[np.isfinite(table).any(axis=1)]
    d = np.nanmean(table, axis=1) if table.size else np.zeros(0)
    test = wilcoxon_paired(d, np.zeros_like(d))
    mean, low, high = two_level_bootstrap(table) if table.size else (float("nan"),) * 3
    diff = (f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" if d.size else "–")
    n = f"{d.size} {unit}" + (f" x {table.shape[1]} seeds" if table.shape[1] > 1 else "")
    return {"claim": claim, "difference": diff, "n": n, "effect r": test.effect_r, "p": test.p,
            "evidence": evidence, "_mean": mean, "_ci": (low, high)}


def verdict(row: dict) -> str:
    if not np.isfinite(row["_mean"]):
        return "not measurable"
    low, high = row["_ci"]
    if row["p (Holm)"] < CLAIM_ALPHA and (low > 0 or high < 0):
        return "yes" if row["_mean"] > 0 else "no"
    return UNDECIDED


def _seed_pairs(runs_a: Runs, runs_b: Runs) -> list[tuple[Path, Path]]:
    """The runs of two models paired by training seed (seeds only one model has are left out)."""
    a = {_run_seed(r, i): r for i, r in enumerate(seed_runs(runs_a))}
    b = {_run_seed(r, i): r for i, r in enumerate(seed_runs(runs_b))}
    return [(a[k], b[k]) for k in sorted(set(a) & set(b))]


def _pair_scores(t2: Mapping[str, Runs]) -> dict[tuple[str, str], pd.DataFrame]:
    """Per subject and training seed the models share, the mean of both directions of each pair of
    single-contrast models: subjects x seeds (its row means are the seed-averaged pair scores)."""
    names = list(t2)
    on = {(s, t): per_subject(t2[s], _eval_name(on=(t,), trained_on=(s,))).pivot(
        index="case_id", columns="seed", values="dice") for s in names for t in names}
    seeds = sorted(set.intersection(*(set(v.columns) for v in on.values())))
    return {(a, b): ((on[(a, b)][seeds] + on[(b, a)][seeds]) / 2).dropna(how="all")
            for i, a in enumerate(names) for b in names[i + 1:]}


def claims_table(table1_runs: Mapping[str, Runs], table2_runs: Mapping[str, Runs],
                 table3_runs: Mapping[str, Runs]) -> pd.DataFrame:
    """Each of the paper's claims decided on the saved runs (see the module docstring), with its evidence.

    Columns CLAIM_COLUMNS: the verdict ("yes", "no", UNDECIDED, or "not measurable"), the mean paired
    difference in the claim's direction with its bootstrap 95% interval, n (subjects, or seeds for
    the stability claim), the rank-biserial effect r, the Wilcoxon p and its Holm adjustment over the
    claims of this table.
    """
    rows = []
    t1 = dict(table1_runs)
    io = next((v for k, v in t1.items() if "SegAN_IO" in k), None)
    dice, nodice = t1.get("SegAN with Dice"), t1.get("SegAN without Dice")
    if io is not None and dice is not None:
        a, b = subject_values(io), subject_values(dice)
        rows.append(claim_row("concatenation beats masking (SegAN_IO vs SegAN, four contrasts)",
                           seed_paired_differences(io, dice), "subjects",
                           f"test Dice {a.mean():.3f} vs {b.mean():.3f} (SegAN_IO - SegAN with Dice)"))
    if dice is not None and nodice is not None:
        # judged on stability, as the claim says: per seed, the spread of the validation Dice at the end of
        # training without the Dice term minus with it (> 0: steadier with it); the test Dice is context
        pairs = _seed_pairs(dice, nodice)
        spreads = [(val_dice_spread(pd.read_csv(w / "history.csv")), val_dice_spread(pd.read_csv(wo / "history.csv")))
                   for w, wo in pairs]
        d = np.array([sd_wo - sd_w for (sd_w, _), (sd_wo, _) in spreads])
        epochs = sorted({k for (_, k1), (_, k2) in spreads for k in (k1, k2)})
        rows.append(claim_row(
            "the Dice term stabilises adversarial training (SegAN with vs without Dice)", d, "seeds",
            f"SD of validation Dice (per volume) over the last {STABILITY_EPOCHS} epochs (here "
            f"{'/'.join(map(str, epochs))}; lower is steadier), per seed: with "
            + ", ".join(f"{sd:.3f}" for (sd, _), _ in spreads) + " vs without "
            + ", ".join(f"{sd:.3f}" for _, (sd, _) in spreads)
            + f"; test Dice {subject_values(dice).mean():.3f} vs {subject_values(nodice).mean():.3f}"))
    t2 = dict(table2_runs)
    if "flair" in t2 and len(t2) > 1:
        means = {k: subject_values(v) for k, v in t2.items()}
        other = max((k for k in means if k != "flair"), key=lambda k: means[k].mean())
        rows.append(claim_row("FLAIR is the strongest single contrast", seed_paired_differences(t2["flair"], t2[other]),
                           "subjects", ", ".join(f"{CONTRAST_NAMES[k]} {v.mean():.3f}" for k, v in means.items())
                           + f" (FLAIR - {CONTRAST_NAMES[other]}, the strongest other)"))
    if {"t2", "flair"} <= set(t2) and len(t2) > 2:
        per_seed = _pair_scores(t2)
        pairs = {p: v.mean(axis=1) for p, v in per_seed.items()}  # seed-averaged, per subject
        key = next(p for p in pairs if set(p) == {"t2", "flair"})
        other = max((p for p in pairs if p != key), key=lambda p: pairs[p].mean())
        title = lambda p: f"{CONTRAST_NAMES[p[0]]}<->{CONTRAST_NAMES[p[1]]}"
        rows.append(claim_row("T2 <-> FLAIR transfer best", per_seed[key] - per_seed[other], "subjects",
                           "mean of both directions: " + ", ".join(
                               f"{title(p)} {v.mean():.3f}" for p, v in sorted(pairs.items(), key=lambda kv: -kv[1].mean()))
                           + f" (T2<->FLAIR - {title(other)}, the best other pair)"))
    t3 = {tuple(k.split("/")): v for k, v in table3_runs.items()}
    for target in ("t1", "t2"):
        if (target, "full") in t3 and (target, "seg") in t3:
            seg, full = subject_values(t3[(target, "seg")]), subject_values(t3[(target, "full")])
            rows.append(claim_row(f"freezing the critic helps on {CONTRAST_NAMES[target]} (Seg. vs Full)",
                               seed_paired_differences(t3[(target, "seg")], t3[(target, "full")]), "subjects",
                               f"test Dice Seg. {seg.mean():.3f} vs Full {full.mean():.3f}"))
    from segan_lib.metrics.statistics import holm

    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p (Holm)"] = float(adjusted)
        row["holds here"] = verdict(row)
    return pd.DataFrame([{c: r[c] for c in CLAIM_COLUMNS} for r in rows], columns=list(CLAIM_COLUMNS))
