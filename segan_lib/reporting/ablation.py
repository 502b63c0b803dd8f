"""The recipe ablation's table and figure, from saved runs (the plan: segan_lib.study.ablation_plan).

Each model of each variant is scored on the test set on one field (the authors' centre 160 by default),
read from the evaluation files `segan_lib.evaluation.evaluation_on_field` writes (a run validated on
another field has its own file for this one), with the seed protocol of every table
(segan_lib.metrics.seeds). Each variant is compared with the baseline (our old recipe) as the claims are:
runs paired by training seed, two-sided Wilcoxon on the seed-averaged per-subject Dice differences with
the project's zero rule, Holm over every comparison of the table, "higher" or "lower" only when the
adjusted p is below CLAIM_ALPHA and the interval of the mean difference, resampling seeds and subjects,
excludes zero, otherwise "not decided at this size".
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from segan_lib.reporting.tables import (Runs, claim_row, format_cell, seed_paired_differences, seed_runs, seeded,
                                        verdict)

OUTPUT_NAMES = ("recipe_ablation.csv", "recipe_ablation.md", "recipe_ablation.png", "recipe_ablation.pdf")
#: the settings of a run printed beside its variant: (column, section, key)
SETTING_COLUMNS = (("clip", "model", "clip_scope"), ("update", "train", "update_order"),
                   ("RMSprop", "train", "rmsprop"), ("validation field", "evaluate", "field"),
                   ("learning rate", "train", "learning_rate"))
MODEL_LABELS = {"segan_io": "SegAN_IO, four contrasts", "single_flair": "SegAN_IO, FLAIR"}
ABLATION_COLUMNS = ("model", "variant", *(c for c, _, _ in SETTING_COLUMNS), "test Dice", "n_test", "n_seeds",
                    "difference to baseline", "effect r", "p", "p (Holm)", "verdict")


def _stem(run, field: str) -> str:
    """The run's evaluation file on `field`, which must exist (made by evaluation_on_field)."""
    from segan_lib.errors import SeganError
    from segan_lib.evaluation.evaluate import evaluation_stem

    stem = evaluation_stem(run, field)
    if not (run / f"{stem}.csv").is_file():
        raise SeganError(f"no evaluation {stem}.csv in {run}: score it on the {field} field first "
                         f"(segan_lib.evaluation.evaluation_on_field)")
    return stem


def _settings(run: Runs) -> dict:
    """The recipe settings of a model's runs (they must agree across its seeds)."""
    from segan_lib.config import profile_from_dict
    from segan_lib.errors import SeganError
    from segan_lib.run_files import read_settings

    values = []
    for run_dir in seed_runs(run):
        profile = profile_from_dict(read_settings(run_dir)["profile"], where=str(run_dir / "settings.json")).to_dict()
        values.append({c: profile[s][k] for c, s, k in SETTING_COLUMNS})
    if any(v != values[0] for v in values):
        raise SeganError(f"the runs {[r.name for r in seed_runs(run)]} of one ablation model differ in their "
                         f"recipe settings: {values}")
    return values[0]


def ablation_table(runs: Mapping[str, Mapping[str, Runs]], labels: Mapping[str, str] | None = None,
                   baseline: str = "ours", field: str = "centre160") -> pd.DataFrame:
    """variant key -> model key -> run(s) (one per seed): one row per (model, variant), columns
    ABLATION_COLUMNS; every variant other than `baseline` compared with it on the same model."""
    from segan_lib.metrics.statistics import holm

    labels = dict(labels or {})
    if baseline not in runs:
        raise ValueError(f"the ablation's baseline variant {baseline!r} has no runs (variants: {', '.join(runs)})")
    stems = {(v, m): {_stem(r, field) for r in seed_runs(rs)}
             for v, models in runs.items() for m, rs in models.items()}
    if any(len(s) != 1 for s in stems.values()):  # the seeds of one model share their settings, so their files
        raise ValueError(f"the seeds of one ablation model were validated on different fields: {stems}")
    stem = {k: next(iter(s)) for k, s in stems.items()}
    rows = []
    for model in next(iter(runs.values())):
        for variant, models in runs.items():
            rs = models[model]
            s = seeded(rs, "dice", stem[(variant, model)])
            row = {"model": MODEL_LABELS.get(model, model), "variant": labels.get(variant, variant), **_settings(rs),
                   "test Dice": format_cell(s["mean"], s["ci_low"], s["ci_high"], s["seed_std"]),
                   "n_test": int(s["n_test"]), "n_seeds": int(s["n_seeds"])}
            if variant == baseline:  # the reference of the others: nothing to compare (blank, not "nan")
                row.update({"difference to baseline": "(baseline)", "effect r": None, "p": None, "p (Holm)": None,
                            "verdict": ""})
            else:
                d = seed_paired_differences(rs, runs[baseline][model], "dice", stem[(variant, model)],
                                            stem[(baseline, model)])
                c = claim_row(variant, d, "subjects", "")
                row.update({"difference to baseline": c["difference"], "effect r": c["effect r"], "p": c["p"],
                            "_claim": c})
            rows.append(row)
    compared = [r for r in rows if "_claim" in r]
    for row, adjusted in zip(compared, holm([r["p"] for r in compared])):
        row["p (Holm)"] = float(adjusted)
        c = {**row.pop("_claim"), "p (Holm)": float(adjusted)}
        row["verdict"] = {"yes": "higher", "no": "lower"}.get(verdict(c), verdict(c))
    for row in rows:  # as text, so that the baseline's row is blank there rather than "nan"
        for column, form in (("effect r", "{:+.2f}"), ("p", "{:.3g}"), ("p (Holm)", "{:.3g}")):
            row[column] = "" if row[column] is None else form.format(row[column])
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def field_effect_table(runs: Runs, fields=("centre160", "crop")) -> pd.DataFrame:
    """The same runs scored on each field: what the field changes in the reported number alone."""
    rows = []
    for f in fields:
        names = {_stem(r, f) for r in seed_runs(runs)}
        s = seeded(runs, "dice", next(iter(names)))
        rows.append({"scored on": f, "test Dice": format_cell(s["mean"], s["ci_low"], s["ci_high"], s["seed_std"]),
                     "n_test": int(s["n_test"]), "n_seeds": int(s["n_seeds"])})
    return pd.DataFrame(rows)


def ablation_figure(runs: Mapping[str, Mapping[str, Runs]], labels: Mapping[str, str] | None = None,
                    field: str = "centre160"):
    """Per model, each variant's seed-averaged test Dice with its bootstrap 95% interval (horizontal bars)."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    models = list(next(iter(runs.values())))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 0.45 * len(runs) + 1.5), sharey=True,
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        stats = []
        for variant, by_model in runs.items():
            stem = _stem(seed_runs(by_model[model])[0], field)
            stats.append(seeded(by_model[model], "dice", stem))
        y = np.arange(len(stats))
        mean = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["ci_low"] for s in stats], [s["ci_high"] - s["mean"] for s in stats]])
        ax.barh(y, mean, xerr=err, color="0.7", edgecolor="0.2", capsize=3)
        ax.set_yticks(y, [labels.get(v, v) for v in runs])
        ax.set_ylim(len(stats) - 0.5, -0.5)  # the first variant on top (idempotent on the shared axis)
        ax.set_xlabel(f"test Dice per volume ({field})")
        ax.set_title(MODEL_LABELS.get(model, model))
    fig.tight_layout()
    return fig

