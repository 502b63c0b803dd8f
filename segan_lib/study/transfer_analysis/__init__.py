"""Analysis of the transfer study: pure functions from per-subject results to tables and a figure.

Nothing here trains or evaluates a model; every function takes DataFrames of per-subject
Dice (as the evaluation writes them) and returns DataFrames or a Figure, and
`write_transfer_outputs` writes them all.

Input 1, the transfer runs, one row per (run, test subject):
    target      contrast the model is fine-tuned and tested on ('t1', 't1c', 't2', 'flair')
    source      contrast of the pre-trained model; '' for a model trained from scratch
    strategy    'scratch' | 'full' (all trainable) | 'critic' (critic frozen) |
                'encoder' (segmentor encoder frozen)
    fraction    fraction of the target's training subjects (0.1, 0.25, 0.5, 1.0)
    n_subjects  number of target training subjects that fraction is
    seed, case_id, dice (Dice per 3-D volume, threshold 0.5; NaN allowed)
Input 2, the missing-contrast evaluation: model ('four_contrast', or 'contrast_dropout' for
the model trained with random contrast dropout), subset ('t1+t2', contrasts present, joined
by '+'), fill ('zero' | 'mean'), seed, case_id, dice.

Protocol, the same in every table:
- seeds: each subject's Dice is first averaged over the seeds of a run (`seed_averaged`), so
  a subject counts once; the mean over subjects of these values is the reported Dice, and
  its 95% CI is the percentile bootstrap over subjects (`metrics.summarize`).
- run-to-run spread (the "±"): the SD (ddof=1) over seeds of the per-seed mean Dice
  (`seed_spread`); NaN, and left out of the cell, with a single seed.
- paired tests: two-sided Wilcoxon signed-rank test on the seed-averaged Dice of the same
  test subjects, zero differences kept with ``zero_method="zsplit"`` (see `wilcoxon_paired`
  for why), effect size the matched-pairs rank-biserial correlation; the p-values of all
  comparisons made by one call of `strategy_comparisons` form one family, Holm-adjusted.

Modules: `results` (reading, checking and seed-averaging the two long tables), `tables`
(every table), `figures` (the data-efficiency figure); the paired statistics are in
`segan_lib.metrics.statistics`. This package re-exports their public names (the notebook
calls them as ``transfer_analysis.<name>``) and holds `write_transfer_outputs`, which
writes them all.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from segan_lib.metrics.statistics import PairedTest, holm, rank_biserial, signed_rank_sums, wilcoxon_paired
from segan_lib.reporting.figures import save_figure
from segan_lib.reporting.tables import write_table
from segan_lib.study.transfer_analysis.figures import STRATEGY_COLOURS, STRATEGY_LABELS, data_efficiency_figure
from segan_lib.study.transfer_analysis.results import (
    SUBSET_AVERAGE, _results, all_subsets, format_cell, per_seed_means, seed_averaged, seed_spread,
)
from segan_lib.study.transfer_analysis.tables import (
    ABSENT, ALPHA, COMPARISON_COLUMNS, DICE_NOTE, DROPOUT_COLUMNS, PRESENT, TEST_NOTE, ZERO_METHOD,
    best_strategy_per_target, contrast_dropout_comparisons, crossover_fraction, data_efficiency_sources,
    data_efficiency_table, format_strategy_matrix, missing_contrast_summary, missing_contrast_table,
    strategy_comparisons, strategy_matrix,
)

__all__ = [
    "ABSENT", "ALPHA", "COMPARISON_COLUMNS", "DICE_NOTE", "DROPOUT_COLUMNS", "OUTPUT_NAMES", "PRESENT", "PairedTest",
    "STRATEGY_COLOURS", "STRATEGY_LABELS", "SUBSET_AVERAGE", "TEST_NOTE", "ZERO_METHOD", "all_subsets",
    "best_strategy_per_target", "contrast_dropout_comparisons", "crossover_fraction", "data_efficiency_figure",
    "data_efficiency_sources", "data_efficiency_table", "format_cell", "format_strategy_matrix", "holm",
    "missing_contrast_summary", "missing_contrast_table", "per_seed_means", "rank_biserial",
    "seed_averaged", "seed_spread", "signed_rank_sums", "strategy_comparisons", "strategy_matrix", "wilcoxon_paired",
    "write_transfer_outputs",
]


# ---------------------------------------------------------------- everything
# what write_transfer_outputs writes into out_dir (the missing-contrast tables when it is given the results)
OUTPUT_NAMES = tuple(
    [f"transfer_{n}.{ext}" for n in ("strategy_matrix", "strategy_matrix_values", "comparisons", "best_per_target",
                                     "crossover", "data_efficiency", "missing_contrasts", "missing_contrasts_values",
                                     "missing_contrasts_dropout")
     for ext in ("csv", "md")] + ["transfer_data_efficiency.png", "transfer_data_efficiency.pdf"])


def write_transfer_outputs(results_df: pd.DataFrame, missing_df: pd.DataFrame | None,
                           out_dir: str | Path) -> list[Path]:
    """Write every table of the transfer study (CSV + Markdown, note underneath) and the figure.

    Files (prefix transfer_): strategy_matrix (printable) and strategy_matrix_values (numbers),
    comparisons, best_per_target, crossover, data_efficiency (+ .png, .pdf), and, when
    `missing_df` is given, missing_contrasts (printable), missing_contrasts_values and
    missing_contrasts_dropout (the dropout-trained model against the plain one; no rows
    when no model was trained with contrast dropout).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _results(results_df)
    comparisons = strategy_comparisons(results)
    matrix = strategy_matrix(results, 1.0)
    efficiency = data_efficiency_table(results)
    written: list[Path] = []

    def table(df: pd.DataFrame, name: str, title: str, note: str) -> None:
        written.extend(write_table(df, out / f"transfer_{name}", title, note))

    table(format_strategy_matrix(matrix), "strategy_matrix",
          "Transfer strategies at the full training set: test Dice per source -> target", DICE_NOTE)
    table(matrix, "strategy_matrix_values", "Transfer strategies at the full training set (values)",
          DICE_NOTE + " seed_std is the ±; n_test: test subjects with a Dice; n_excluded: without one.")
    table(comparisons, "comparisons", "Paired comparisons of the transfer strategies", TEST_NOTE)
    table(best_strategy_per_target(results, comparisons), "best_per_target",
          "Best strategy per target at the full training set",
          DICE_NOTE + " beats_scratch / p_holm_vs_scratch from the comparisons table. " + TEST_NOTE)
    table(crossover_fraction(results, comparisons), "crossover",
          "Smallest fraction of target training data at which fine-tuning no longer beats scratch",
          "crossover_fraction: smallest fraction at which the strategy does not beat scratch significantly "
          "(empty: beats it at every fraction); beats_at: fractions at which it does; gap: mean Dice "
          "strategy - scratch. " + DICE_NOTE + " " + TEST_NOTE)
    table(efficiency, "data_efficiency", "Test Dice against the number of target training subjects",
          DICE_NOTE + " seed_std is the ±; n_subjects: target training subjects.")
    written.extend(save_figure(data_efficiency_figure(results, efficiency), out / "transfer_data_efficiency"))
    if missing_df is not None:
        table(missing_contrast_table(missing_df), "missing_contrasts",
              "Four-contrast model with missing contrasts (● present, ○ missing and filled)",
              DICE_NOTE + " A missing contrast's input channel is filled with 0 ('zero') or, inside the brain "
              "(where any present contrast is non-zero), with that contrast's mean brain intensity over the "
              "training subjects ('mean'; 0 outside). 'dropout-trained': the four-contrast model trained with "
              "random contrast dropout (transfer.contrast_dropout). Average: per subject the mean Dice over the 15 "
              "subsets, then as every cell, the summary row of the missing-modality papers.")
        table(missing_contrast_summary(missing_df), "missing_contrasts_values",
              "Four-contrast model with missing contrasts (values)", DICE_NOTE)
        table(contrast_dropout_comparisons(missing_df), "missing_contrasts_dropout",
              "Four-contrast model trained with contrast dropout against the one trained without",
              "a: the model trained with random contrast dropout (each training slice's contrast zeroed with "
              "probability transfer.contrast_dropout, one always kept), b: the same model trained without; "
              "winner: dropout, plain or none. No rows: no model was trained with contrast dropout "
              "(transfer.contrast_dropout = 0). " + TEST_NOTE)
    return written
