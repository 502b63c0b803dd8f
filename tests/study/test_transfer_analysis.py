"""Tests of segan_lib.study.transfer_analysis: hand-worked statistics and planted effects on seeded synthetic data."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segan_lib.constants import FINE_TUNING_STRATEGIES
from segan_lib.study import transfer_analysis as T

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
N_TRAIN = {0.1: 20, 0.25: 50, 0.5: 100, 1.0: 200}


# ---------------------------------------------------------------- synthetic data
def _synthetic(effect, targets=("t1", "t2"), de_source=None, full_sources=None, n_cases=30, seeds=(0, 1, 2),
               rng_seed=0, noise=0.02):
    """Per-subject Dice = subject base + effect(target, source, strategy, fraction) + per-seed noise.

    The fine-tuning runs below fraction 1 use de_source[target] only (the data-efficiency
    runs); at fraction 1 all of full_sources[target] are run. Scratch is run at every fraction.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    for target in targets:
        base = rng.uniform(0.55, 0.8, n_cases)
        cases = [f"{target}_{i:02d}" for i in range(n_cases)]
        for fraction in FRACTIONS:
            runs = [("", "scratch")]
            sources = full_sources[target] if fraction == 1.0 else [de_source[target]]
            runs += [(s, strategy) for s in sources for strategy in FINE_TUNING_STRATEGIES]
            for source, strategy in runs:
                e = effect(target, source, strategy, fraction)
                for seed in seeds:
                    dice = np.clip(base + e + rng.normal(0, noise, n_cases), 0, 1)
                    rows += [{"target": target, "source": source, "strategy": strategy, "fraction": fraction,
                              "n_subjects": N_TRAIN[fraction], "seed": seed, "case_id": c, "dice": v}
                             for c, v in zip(cases, dice)]
    return pd.DataFrame(rows)


def _planted_crossover(target, source, strategy, fraction):
    """Fine-tuning +0.1 Dice at fractions 0.1 and 0.25, no effect at 0.5 and 1.0."""
    return 0.1 if strategy != "scratch" and fraction < 0.5 else 0.0


@pytest.fixture(scope="module")
def study():
    de = {"t1": "t2", "t2": "flair"}
    full = {"t1": ["t2", "flair"], "t2": ["flair", "t1"]}
    return _synthetic(_planted_crossover, de_source=de, full_sources=full)


def _missing(rng_seed=0, seeds=(0, 1), models=("four_contrast",)):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for model in models:
        for subset in T.all_subsets():
            for fill in ("zero", "mean"):
                level = 0.4 + 0.1 * subset.count("+") + (0.02 if fill == "mean" else 0.0)
                for seed in seeds:
                    rows += [{"model": model, "subset": subset, "fill": fill, "seed": seed, "case_id": f"c{i}",
                              "dice": level + rng.normal(0, 0.03)} for i in range(10)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Holm, by hand
def test_holm_hand_worked():
    # sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04;
    # running max -> 0.02, 0.03, 0.06, 0.06; back in input order:
    np.testing.assert_allclose(T.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_keeps_nan_out_of_m():
    # m = 2 (the NaN is not a test): 0.3 * 2 = 0.6, then max(0.6, 0.8 * 1) = 0.8
    np.testing.assert_allclose(T.holm([0.8, np.nan, 0.3]), [0.8, np.nan, 0.6])
    np.testing.assert_allclose(T.holm([0.6, 0.7]), [1.0, 1.0])
    assert T.holm([]).size == 0


# ---------------------------------------------------------------- Wilcoxon and the rank-biserial r
def test_rank_biserial_by_hand():
    # |d| = 1, 2, 3, 4 -> ranks 1, 2, 3, 4; W+ = 1 + 2 + 4 = 7, W- = 3; r = (7 - 3) / 10
    assert T.signed_rank_sums([1, 2, -3, 4]) == (7.0, 3.0)
    assert T.rank_biserial([1, 2, -3, 4]) == pytest.approx(0.4)
    # a zero difference takes rank 1, split half to each side: W+ = 0.5 + 2 + 3 = 5.5, W- = 0.5 + 4 = 4.5
    assert T.signed_rank_sums([0, 1, 2, -3]) == (5.5, 4.5)
    assert T.rank_biserial([0, 1, 2, -3]) == pytest.approx(0.1)
    assert T.rank_biserial([1, 2, 3]) == 1.0 and T.rank_biserial([-1, -2]) == -1.0


def test_wilcoxon_exact_p_by_hand_and_equals_scipy():
    # n = 4, W- = 3: of the 16 equally likely sign patterns, W+ <= 3 for {}, {1}, {2}, {3}, {1,2}: 5/16;
    # two-sided p = 10/16
    t = T.wilcoxon_paired([1, 2, -3, 4], [0, 0, 0, 0])
    assert t.p == pytest.approx(0.625)
    assert t.statistic == 3.0 and t.n == 4 and t.effect_r == pytest.approx(0.4)
    assert t.median_diff == 1.5 and t.mean_diff == 1.0

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.05, 40), rng.normal(0.78, 0.05, 40)
    b[:3] = a[:3]                       # zero differences: the zsplit branch (normal approximation)
    t = T.wilcoxon_paired(a, b)
    ref = stats.wilcoxon(a - b, zero_method="zsplit")
    assert t.p == pytest.approx(ref.pvalue) and t.statistic == pytest.approx(ref.statistic)
    assert t.statistic == pytest.approx(min(t.w_plus, t.w_minus))   # our ranks are scipy's
    assert t.w_plus + t.w_minus == pytest.approx(40 * 41 / 2) and t.n == 40


def test_wilcoxon_nan_pairs_dropped_and_degenerate_cases():
    t = T.wilcoxon_paired([0.9, np.nan, 0.7, 0.6], [0.8, 0.5, np.nan, 0.5])
    assert t.n == 2
    t = T.wilcoxon_paired([0.5, 0.6], [0.5, 0.6])
    assert (t.p, t.effect_r, t.n) == (1.0, 0.0, 2)
    t = T.wilcoxon_paired([np.nan], [0.1])
    assert t.n == 0 and math.isnan(t.p)
    with pytest.raises(ValueError, match="aligned"):
        T.wilcoxon_paired([1, 2], [1])


# ---------------------------------------------------------------- seeds
def test_seed_averaging_and_spread_on_a_two_seed_toy():
    df = pd.DataFrame({"run": ["x"] * 4, "seed": [0, 0, 1, 1], "case_id": ["a", "b", "a", "b"],
                       "dice": [0.6, 0.8, 0.7, 1.0]})
    avg = T.seed_averaged(df, ["run"]).set_index("case_id")
    assert avg.loc["a", "dice"] == pytest.approx(0.65) and avg.loc["b", "dice"] == pytest.approx(0.9)
    assert (avg["n_seeds"] == 2).all()
    # per-seed means 0.7 and 0.85 -> SD (ddof=1) = 0.15 / sqrt(2)
    spread = T.seed_spread(df, ["run"])
    assert spread["seed_std"].iloc[0] == pytest.approx(0.15 / math.sqrt(2))
    assert spread["n_seeds"].iloc[0] == 2
    # a NaN seed is skipped, not propagated
    df.loc[2, "dice"] = np.nan
    assert T.seed_averaged(df, ["run"]).set_index("case_id").loc["a", "dice"] == pytest.approx(0.6)


# ---------------------------------------------------------------- strategy matrix and comparisons
def _effect_full_only(target, source, strategy, fraction):
    """'full' is +0.1 better than scratch, 'critic' and 'encoder' equal to scratch (null)."""
    return 0.1 if strategy == "full" else 0.0


def test_comparisons_find_planted_effect_and_not_the_null():
    df = _synthetic(_effect_full_only, targets=("t1",), de_source={"t1": "t2"}, full_sources={"t1": ["t2"]},
                    rng_seed=3)
    c = T.strategy_comparisons(df, fraction=1.0)
    assert list(c.columns) == list(T.COMPARISON_COLUMNS)
    assert len(c) == 6 and set(c["fraction"]) == {1.0}
    row = lambda a, b: c[(c["a"] == a) & (c["b"] == b)].iloc[0]
    big = row("full", "scratch")
    assert big["significant"] and big["winner"] == "full" and big["n"] == 30
    assert big["effect_r"] == 1.0 and big["diff"] == pytest.approx(0.1, abs=0.01)
    for a, b in [("critic", "scratch"), ("encoder", "scratch"), ("critic", "encoder")]:
        assert not row(a, b)["significant"] and row(a, b)["winner"] == "none"
    assert row("full", "critic")["winner"] == "full"
    # one family: Holm over the 6 p-values of this call
    np.testing.assert_allclose(c["p_holm"], T.holm(c["p"]))


def test_strategy_matrix_and_formatted_version(study):
    m = T.strategy_matrix(study)
    # per target: scratch + 2 sources x 3 strategies
    assert len(m) == 2 * 7 and (m["n_test"] == 30).all() and (m["n_seeds"] == 3).all()
    first = m.iloc[0]
    assert (first["target"], first["source"], first["strategy"]) == ("t1", "", "scratch")
    assert (m["ci_low"] < m["mean"]).all() and (m["mean"] < m["ci_high"]).all()
    assert (m["seed_std"] > 0).all()
    wide = T.format_strategy_matrix(m)
    assert list(wide.columns) == ["source -> target", "scratch", "full", "critic", "encoder"]
    assert list(wide["source -> target"]) == ["T2 -> T1", "FLAIR -> T1", "T1 -> T2", "FLAIR -> T2"]
    assert wide.loc[0, "scratch"] == wide.loc[1, "scratch"]   # the target's baseline on each of its rows
    assert wide.loc[0, "full"].count("[") == 1 and " ±" in wide.loc[0, "full"]


def test_best_strategy_per_target():
    effect = lambda t, s, strategy, f: {"critic": 0.1, "full": 0.05}.get(strategy, 0.0) if s == "t2" else 0.0
    df = _synthetic(effect, targets=("t1",), de_source={"t1": "t2"}, full_sources={"t1": ["t2", "flair"]},
                    rng_seed=5)
    best = T.best_strategy_per_target(df)
    assert len(best) == 1
    b = best.iloc[0]
    assert (b["strategy"], b["source"]) == ("critic", "t2") and b["beats_scratch"]
    assert b["diff_vs_scratch"] == pytest.approx(0.1, abs=0.01) and b["p_holm_vs_scratch"] < 0.05


def test_crossover_fraction_on_planted_data(study):
    comparisons = T.strategy_comparisons(study)
    cross = T.crossover_fraction(study, comparisons)
    assert len(cross) == 2 * 3                  # 2 targets x 3 strategies, data-efficiency source only
    assert set(zip(cross["target"], cross["source"])) == {("t1", "t2"), ("t2", "flair")}
    assert (cross["crossover_fraction"] == 0.5).all()
    assert (cross["crossover_n_subjects"] == N_TRAIN[0.5]).all()
    assert (cross["beats_at"] == "0.1, 0.25").all()
    assert cross["gap 0.1"].to_numpy() == pytest.approx(0.1, abs=0.01)
    assert cross["gap 1"].to_numpy() == pytest.approx(0.0, abs=0.01)


def test_crossover_none_when_always_better():
    effect = lambda t, s, strategy, f: 0.1 if strategy != "scratch" else 0.0
    df = _synthetic(effect, targets=("t1",), de_source={"t1": "t2"}, full_sources={"t1": ["t2"]},
                    n_cases=15, seeds=(0,), rng_seed=2)
    cross = T.crossover_fraction(df)
    assert cross["crossover_fraction"].isna().all() and cross["crossover_n_subjects"].isna().all()
    assert (cross["beats_at"] == "0.1, 0.25, 0.5, 1").all()


def test_results_validation():
    df = _synthetic(_effect_full_only, targets=("t1",), de_source={"t1": "t2"}, full_sources={"t1": ["t2"]},
                    n_cases=3, seeds=(0,))
    with pytest.raises(ValueError, match="lacks the column"):
        T.strategy_matrix(df.drop(columns="seed"))
    with pytest.raises(ValueError, match="unknown strategy"):
        T.strategy_matrix(df.assign(strategy="frozen"))
    with pytest.raises(ValueError, match="duplicated"):
        T.strategy_matrix(pd.concat([df, df.iloc[:1]]))


# ---------------------------------------------------------------- data efficiency, missing contrasts, outputs
def test_data_efficiency_table(study):
    t = T.data_efficiency_table(study)
    # per target: (scratch + 3 strategies of the data-efficiency source) x 4 fractions; other sources left out
    assert len(t) == 2 * 4 * 4
    assert set(t.loc[t["target"] == "t1", "source"]) == {"", "t2"}
    assert sorted(t["n_subjects"].unique()) == sorted(N_TRAIN.values())


def test_missing_contrast_table_rows_and_order():
    table = T.missing_contrast_table(_missing())
    assert len(table) == 15 + 1  # the subsets, then their average
    assert list(table.columns) == ["T1", "T1c", "T2", "FLAIR", "Dice, zero fill", "Dice, mean fill"]
    assert T.all_subsets()[:5] == ["t1", "t1c", "t2", "flair", "t1+t1c"]
    assert T.all_subsets()[-2:] == ["t1c+t2+flair", "t1+t1c+t2+flair"]
    assert list(table.iloc[0, :4]) == ["●", "○", "○", "○"]
    assert list(table.iloc[4, :4]) == ["●", "●", "○", "○"]
    assert list(table.iloc[14, :4]) == ["●"] * 4
    assert list(table.iloc[15, :4]) == ["Average", "", "", ""]
    n_present = (table.iloc[:15, :4] == "●").sum(axis=1)
    assert list(n_present) == sorted(n_present)
    # subsets written in another order are the same subset; one not evaluated shows '–'
    df = _missing()
    df = df[df["subset"] != "t1"].replace({"subset": {"t1+t2": "t2+t1"}})
    table = T.missing_contrast_table(df)
    assert table.loc[0, "Dice, zero fill"] == "–" and table.loc[5, "Dice, zero fill"] != "–"
    assert len(table) == 15  # no average without all 15 subsets


def test_the_average_over_the_fifteen_subsets_is_per_subject_then_over_subjects():
    # subject c0: Dice = (contrasts present) / 4 on each subset; c1: 0 everywhere. c0's average:
    # (4 x 1 + 6 x 2 + 4 x 3 + 1 x 4) / (4 x 15) = 32/60; the mean over the two subjects 16/60
    rows = [{"model": "four_contrast", "subset": subset, "fill": "zero", "seed": 0, "case_id": case,
             "dice": (subset.count("+") + 1) / 4 if case == "c0" else 0.0}
            for subset in T.all_subsets() for case in ("c0", "c1")]
    summary = T.missing_contrast_summary(pd.DataFrame(rows))
    average = summary[summary["subset"] == T.SUBSET_AVERAGE]
    assert len(average) == 1 and average["mean"].iloc[0] == pytest.approx(16 / 60)
    assert list(summary["subset"]) == T.all_subsets() + [T.SUBSET_AVERAGE]
    table = T.missing_contrast_table(pd.DataFrame(rows))
    assert table.iloc[-1]["Dice, zero fill"].startswith("0.267 [")


def test_the_dropout_trained_model_gets_its_own_columns():
    table = T.missing_contrast_table(_missing(models=("four_contrast", "contrast_dropout")))
    assert list(table.columns)[4:] == ["Dice, zero fill", "Dice, mean fill", "Dice, zero fill, dropout-trained",
                                       "Dice, mean fill, dropout-trained"]
    with pytest.raises(ValueError, match="unknown model"):
        T.missing_contrast_table(_missing().assign(model="dropped"))


def test_contrast_dropout_comparisons_hand_worked():
    # 10 subjects, one seed; t1 alone: the dropout-trained model 0.05 better for every subject, so
    # W+ = 55, W- = 0, r = 1 and the exact two-sided p = 2 / 2**10; t2 alone: identical, p = 1.
    # Holm over the m = 2 rows: 0.0039 and 1.
    rows = []
    for model, gain in (("four_contrast", 0.0), ("contrast_dropout", 0.05)):
        for subset in ("t1", "t2"):
            rows += [{"model": model, "subset": subset, "fill": "zero", "seed": 0, "case_id": f"c{i}",
                      "dice": 0.3 + 0.01 * i + (gain if subset == "t1" else 0.0)} for i in range(10)]
    out = T.contrast_dropout_comparisons(pd.DataFrame(rows))
    assert list(out["subset"]) == ["t1", "t2"] and list(out.columns) == list(T.DROPOUT_COLUMNS)
    t1, t2 = out.iloc[0], out.iloc[1]
    assert t1["p"] == pytest.approx(2 / 2 ** 10) and t1["p_holm"] == pytest.approx(4 / 2 ** 10)
    assert t1["effect_r"] == 1.0 and t1["diff"] == pytest.approx(0.05) and t1["winner"] == "dropout"
    assert t1["mean_dropout"] == pytest.approx(0.395) and t1["mean_plain"] == pytest.approx(0.345)
    assert t2["p"] == 1.0 and t2["p_holm"] == 1.0 and t2["winner"] == "none" and not t2["significant"]
    # without a dropout-trained model there is nothing to compare
    assert T.contrast_dropout_comparisons(_missing()).empty


def test_write_transfer_outputs(study, tmp_path, monkeypatch):
    written = T.write_transfer_outputs(study, _missing(), tmp_path / "out")
    names = {p.name for p in written}
    tables = ["strategy_matrix", "strategy_matrix_values", "comparisons", "best_per_target", "crossover",
              "data_efficiency", "missing_contrasts", "missing_contrasts_values", "missing_contrasts_dropout"]
    expected = {f"transfer_{t}.{ext}" for t in tables for ext in ("csv", "md")}
    expected |= {"transfer_data_efficiency.png", "transfer_data_efficiency.pdf"}
    assert names == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    md = (tmp_path / "out" / "transfer_comparisons.md").read_text()
    assert "Holm" in md and "zsplit" in md
    # without the missing-contrast results that table is skipped (figure not drawn again: time)
    monkeypatch.setattr(T, "save_figure", lambda fig, path: [])
    names = {p.name for p in T.write_transfer_outputs(study, None, tmp_path / "out2")}
    assert not any("missing" in n for n in names)


def test_data_efficiency_figure_one_panel_per_target(study):
    fig = T.data_efficiency_figure(study)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == sorted(N_TRAIN.values())
    assert len(ax.get_lines()) == 4             # scratch + 3 fine-tuning strategies


def test_no_data_efficiency_runs_gives_empty_tables_not_errors(study):
    full_only = study[study["fraction"] == 1.0]
    cross = T.crossover_fraction(full_only)
    assert cross.empty and "crossover_fraction" in cross.columns
    assert T.data_efficiency_table(full_only).empty
    assert len(T.data_efficiency_figure(full_only).axes) == 1     # a placeholder panel saying so
