"""Result tables, computed from saved runs only, printed beside the paper's numbers.

Every number comes from a run folder's eval_*.json (written by
segan_lib.evaluation.evaluate.evaluate_run); the paper's numbers come from
params/_reference.yaml. Tables are written as CSV and Markdown with the metric
protocol stated under each.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

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


def reference() -> dict:
    return yaml.safe_load((paths.params_dir() / "_reference.yaml").read_text())


def eval_summary(run_dir: str | Path, subset: str = "test", on: tuple[str, ...] | None = None,
                 trained_on: tuple[str, ...] | None = None) -> dict:
    """The summary JSON that `segan evaluate` wrote for a run (on other contrasts when `on` is given)."""
    from segan_lib.run_files import run_folder

    run_dir = run_folder(run_dir)
    name = f"eval_{subset}"
    if on and (trained_on is None or tuple(on) != tuple(trained_on)):
        name += f"_on-{'-'.join(on)}"
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


def table_one(runs: Mapping[str, str | Path]) -> pd.DataFrame:
    """Table I: four-contrast models (label -> run folder), with the paper's rows below ours."""
    rows = []
    for label, run in runs.items():
        s = eval_summary(run)
        rows.append({"model": label, "source": "this study", "n_test": s["n_subjects"],
                     **{m: cell(s, m) for m in TABLE_METRICS}})
    for label, values in reference()["table1"].items():
        rows.append({"model": label, "source": "paper", "n_test": 28, **{m: f"{values[m]:.3f}" for m in TABLE_METRICS}})
    return pd.DataFrame(rows)


def table_two(runs: Mapping[str, str | Path]) -> pd.DataFrame:
    """Table II: single-contrast models (contrast -> run folder), Dice with the paper's per-volume Dice."""
    ref = reference()["table2_dice_per_volume"]
    rows = []
    for contrast, run in runs.items():
        s = eval_summary(run)
        rows.append({"contrast": CONTRAST_NAMES[contrast], "n_test": s["n_subjects"],
                     **{m: cell(s, m) for m in TABLE_METRICS}, "paper dice (per volume)": f"{ref[contrast]:.3f}"})
    return pd.DataFrame(rows)


def transfer_matrix(runs: Mapping[str, str | Path]) -> dict[str, pd.DataFrame]:
    """Fig. 3: mean Dice (and 95% interval bounds) of each single-contrast model on each contrast."""
    contrasts = list(runs)
    out = {k: pd.DataFrame(index=[CONTRAST_NAMES[c] for c in contrasts],
                           columns=[CONTRAST_NAMES[c] for c in contrasts], dtype=float)
           for k in ("mean", "ci_low", "ci_high")}
    for src, run in runs.items():
        for tgt in contrasts:
            s = eval_summary(run, on=(tgt,), trained_on=(src,))
            for k in out:
                out[k].loc[CONTRAST_NAMES[src], CONTRAST_NAMES[tgt]] = s["metrics"]["dice"][k]
    ref = reference()["fig3_dice_per_volume"]
    out["paper"] = pd.DataFrame({CONTRAST_NAMES[t]: {CONTRAST_NAMES[s]: ref[s][t] for s in contrasts}
                                 for t in contrasts}).loc[[CONTRAST_NAMES[c] for c in contrasts]]
    return out


def table_three(runs: Mapping[tuple[str, str], str | Path]) -> pd.DataFrame:
    """Table III: (target contrast, strategy 'full' | 'seg') -> fine-tuned run, beside the paper."""
    ref = reference()["table3"]
    rows = []
    for (target, strategy), run in runs.items():
        s = eval_summary(run)
        r = ref[target][strategy]
        rows.append({"target": CONTRAST_NAMES[target], "fine tuning": "Full" if strategy == "full" else "Seg.",
                     "n_test": s["n_subjects"], **{m: cell(s, m) for m in TABLE_METRICS},
                     "paper dice / precision / sensitivity": f"{r['dice']:.3f} / {r['precision']:.3f} / {r['sensitivity']:.3f}",
                     "paper dice (per volume)": f"{r['dice_per_volume']:.3f}"})
    return pd.DataFrame(rows)


def table_protocol_note(summary_example: dict | None = None) -> str:
    space = f" on the {summary_example['space']}" if summary_example else ""
    return ("Metrics per 3-D volume (threshold 0.5)" + space + ", mean over the test volumes, with a "
            "bootstrap 95% interval of the mean in brackets. " + reference()["protocol_note"])


def write_table(df: pd.DataFrame, path_without_suffix: str | Path, title: str, note: str) -> list[Path]:
    """CSV and Markdown (title, table, protocol note underneath), written atomically."""
    base = Path(path_without_suffix)
    csv_path, md_path = base.with_name(base.name + ".csv"), base.with_name(base.name + ".md")
    atomic_write_text(csv_path, df.to_csv(index=False))
    atomic_write_text(md_path, f"### {title}\n\n{df.to_markdown(index=False)}\n\n{note}\n")
    return [csv_path, md_path]


def _per_subject(run_dir: Path, name: str = "eval_test") -> pd.DataFrame:
    from segan_lib.run_files import run_folder

    return pd.read_csv(run_folder(run_dir) / f"{name}.csv").set_index("case_id")


def paired_test(run_a: str | Path, run_b: str | Path, metric: str = "dice") -> tuple[float, float, int]:
    """Mean difference a - b over the same test subjects and the two-sided Wilcoxon signed-rank p-value.

    Returns (mean difference, p, number of subjects with a value in both runs); the statistic is
    `segan_lib.metrics.statistics.paired_difference_test` with the project's zero rule
    (ZERO_METHOD, "zsplit": zero differences kept, their ranks split between W+ and W-).
    """
    # imported on use, so that importing this module does not load scipy.stats
    from segan_lib.metrics.statistics import paired_difference_test

    a, b = _per_subject(run_a)[metric], _per_subject(run_b)[metric]
    common = a.index.intersection(b.index)
    return paired_difference_test((a.loc[common] - b.loc[common]).to_numpy(dtype=float))


def val_dice_spread(history: pd.DataFrame, last: int = STABILITY_EPOCHS) -> tuple[float, int]:
    """(SD, number of epochs) of the validation Dice over the last `last` epochs of a history.csv.

    The sample SD (ddof 1) of the `val_dice` column's last `last` finite values (all of them when
    there are fewer); NaN with fewer than two.
    """
    values = pd.to_numeric(history["val_dice"], errors="coerce").dropna().to_numpy(dtype=float)[-last:]
    return (float(values.std(ddof=1)) if values.size >= 2 else float("nan")), int(values.size)


def claims_table(table1_runs: Mapping[str, str], table2_runs: Mapping[str, str],
                 table3_runs: Mapping[str, str]) -> pd.DataFrame:
    """Each of the paper's claims checked on the saved runs: the numbers, and whether it holds here."""
    from segan_lib.run_files import run_folder

    rows = []

    def add(claim, holds, evidence, p_values=()):
        # "yes" / "no" by the sign of the difference; a paired test says whether it is more than chance
        significant = bool(p_values) and all(p < 0.05 for p in p_values)
        verdict = ("yes" if holds else "no") + ("" if not p_values else
                                                (", significant" if significant else ", not significant (p >= 0.05)"))
        rows.append({"claim": claim, "holds here": verdict, "evidence": evidence})

    t1 = {k: run_folder(v) for k, v in table1_runs.items()}
    io = next((v for k, v in t1.items() if "SegAN_IO" in k), None)
    dice = next((v for k, v in t1.items() if k == "SegAN with Dice"), None)
    nodice = next((v for k, v in t1.items() if k == "SegAN without Dice"), None)
    if io and dice:
        d, p, n = paired_test(io, dice)
        add("concatenation beats masking (SegAN_IO vs SegAN, four contrasts)", d > 0,
            f"test Dice {mean_of(eval_summary(io), 'dice'):.3f} vs {mean_of(eval_summary(dice), 'dice'):.3f}; "
            f"paired difference {d:+.3f} over {n} subjects, Wilcoxon p = {p:.3g}", (p,))
    if dice and nodice:
        # judged on stability, as the claim says: the spread of the validation Dice at the end of
        # training, one run each (so no test); the test Dice difference is context, not the verdict
        (sd_d, k_d), (sd_n, k_n) = (val_dice_spread(pd.read_csv(r / "history.csv")) for r in (dice, nodice))
        d, p, n = paired_test(dice, nodice)
        measurable = sd_d == sd_d and sd_n == sd_n  # both finite: two or more epochs each
        rows.append({
            "claim": "the Dice term stabilises adversarial training (SegAN with vs without Dice)",
            "holds here": ((("yes" if sd_d < sd_n else "no") + ", one run each (no test)") if measurable
                           else "not measurable (fewer than 2 validated epochs)"),
            "evidence": f"SD of validation Dice (per volume) over the last {STABILITY_EPOCHS} epochs "
                        f"(here {k_d} and {k_n}; lower is steadier): {sd_d:.3f} with vs {sd_n:.3f} without; "
                        f"test Dice {mean_of(eval_summary(dice), 'dice'):.3f} vs "
                        f"{mean_of(eval_summary(nodice), 'dice'):.3f} (paired {d:+.3f}, p = {p:.3g})"})
    t2 = {k: run_folder(v) for k, v in table2_runs.items()}
    if t2:
        means = {k: mean_of(eval_summary(v), "dice") for k, v in t2.items()}
        best = max(means, key=means.get)
        add("FLAIR is the strongest single contrast", best == "flair",
            ", ".join(f"{CONTRAST_NAMES[k]} {v:.3f}" for k, v in means.items()))
    if len(t2) == 4:
        m = transfer_matrix(t2)["mean"]
        names = list(m.index)
        pairs = {(a, b): (m.loc[a, b] + m.loc[b, a]) / 2 for i, a in enumerate(names) for b in names[i + 1:]}
        best_pair = max(pairs, key=pairs.get)
        add("T2 <-> FLAIR transfer best", set(best_pair) == {"T2", "FLAIR"},
            "mean of both directions: " + ", ".join(f"{a}<->{b} {v:.3f}" for (a, b), v in
                                                    sorted(pairs.items(), key=lambda kv: -kv[1])))
    t3 = {tuple(k.split("/")): run_folder(v) for k, v in table3_runs.items()}
    checks = []
    for target in ("t1", "t2"):
        if (target, "full") in t3 and (target, "seg") in t3:
            d, p, n = paired_test(t3[(target, "seg")], t3[(target, "full")])
            checks.append((target, d, p, n))
    if checks:
        add("freezing the critic helps on T1 and T2 (Seg. vs Full)", all(d > 0 for _, d, _, _ in checks),
            "; ".join(f"{CONTRAST_NAMES[t]}: Seg. - Full = {d:+.3f} (p = {p:.3g}, {n} subjects)"
                      for t, d, p, n in checks), tuple(p for _, _, p, _ in checks))
    return pd.DataFrame(rows)
