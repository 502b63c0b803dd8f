"""The data-efficiency figure of the transfer study: test Dice against the number of target training subjects.

One panel per target, one curve per strategy, drawn on a `matplotlib.figure.Figure`
(no pyplot state) from `data_efficiency_table` and the per-seed means of
`segan_lib.study.transfer_analysis.results`; `write_transfer_outputs` saves it as PNG and PDF.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from segan_lib.constants import CONTRASTS, TRANSFER_STRATEGIES
from segan_lib.study.transfer_analysis.results import _order, _results, _title, per_seed_means
from segan_lib.study.transfer_analysis.tables import data_efficiency_table


#: colour of each strategy in the figure (scratch dark, the fine-tuning strategies tab10)
STRATEGY_COLOURS = {"scratch": "#333333", "full": "#1f77b4", "critic": "#ff7f0e", "encoder": "#2ca02c"}
STRATEGY_LABELS = {"scratch": "from scratch", "full": "fine-tuned, all trainable",
                   "critic": "fine-tuned, critic frozen", "encoder": "fine-tuned, encoder frozen"}


def data_efficiency_figure(df: pd.DataFrame, table: pd.DataFrame | None = None) -> Figure:
    """Dice against target training subjects: one panel per target, one curve per strategy.

    Line: mean over subjects of the seed-averaged Dice; band: its bootstrap 95% CI; small
    dots: the per-seed means (the run-to-run spread), nudged sideways per strategy so
    they do not hide each other. x is log-scaled with a tick at each subject count.
    """
    d = _results(df)
    if table is None:
        table = data_efficiency_table(d)
    targets = _order(table["target"], CONTRASTS)
    n = max(len(targets), 1)
    fig = Figure(figsize=(3.6 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    if not targets:
        axes[0].text(0.5, 0.5, "no data-efficiency runs (fraction < 1)", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    seeds = per_seed_means(d, ["target", "source", "strategy", "n_subjects"])
    handles = {}
    for ax, target in zip(axes, targets):
        t = table[table["target"] == target]
        curves = list(t[["source", "strategy"]].drop_duplicates().itertuples(index=False))
        curves.sort(key=lambda c: TRANSFER_STRATEGIES.index(c.strategy) if c.strategy in TRANSFER_STRATEGIES else len(TRANSFER_STRATEGIES))
        for i, (source, strategy) in enumerate(curves):
            c = t[(t["source"] == source) & (t["strategy"] == strategy)].sort_values("n_subjects")
            colour = STRATEGY_COLOURS.get(strategy, f"C{i}")
            label = STRATEGY_LABELS.get(strategy, strategy)
            (line,) = ax.plot(c["n_subjects"], c["mean"], marker="o", markersize=4, color=colour, label=label)
            ax.fill_between(c["n_subjects"], c["ci_low"], c["ci_high"], color=colour, alpha=0.15, linewidth=0)
            s = seeds[(seeds["target"] == target) & (seeds["source"] == source) & (seeds["strategy"] == strategy)]
            nudge = 10 ** (0.02 * (i - (len(curves) - 1) / 2))   # a fraction of a decade, by strategy
            ax.scatter(s["n_subjects"] * nudge, s["dice"], s=9, color=colour, alpha=0.6, linewidths=0)
            handles.setdefault(label, line)
        ticks = sorted(t["n_subjects"].unique())
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(int(v)) for v in ticks])
        ax.minorticks_off()
        sources = _order(t.loc[t["source"] != "", "source"], CONTRASTS)
        ax.set_title(f"{_title(target)}" + (f" (pre-trained on {', '.join(map(_title, sources))})" if sources else ""),
                     fontsize=10)
        ax.set_xlabel(f"{_title(target)} training subjects")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test Dice (per volume)")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8)
    return fig
