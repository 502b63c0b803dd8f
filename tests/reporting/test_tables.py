"""Tests of segan_lib.reporting.tables: Tables I-III, Fig. 3's matrix and the claims, from hand-made run folders.

Each run folder holds what `segan evaluate` and training write and tables.py reads:
eval_test.csv (per-subject metrics by case_id) with its eval_test.json summary,
eval_test_on-<contrast>.csv/.json (the model on another contrast), history.csv (val_dice per
epoch) and settings.json (the training seed). A model is one run or a list of runs, one per
seed. Every expected cell is written out by hand (per-subject values constant across subjects
where the bootstrap interval should collapse to the mean); the paired tests are checked against
scipy called here with the project's zero rule.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segan_lib.errors import SeganError
from segan_lib.metrics.statistics import ZERO_METHOD, holm
from segan_lib.reporting import tables as T

METRICS = ("dice", "precision", "sensitivity")
# the paper's numbers, made up for the tests (the real ones are in params/_reference.yaml)
REFERENCE = {
    "protocol_note": "PAPER NOTE",
    "table1": {"SegAN (paper)": {"dice": 0.85, "precision": 0.92, "sensitivity": 0.8}},
    "table2_dice_per_volume": {"t1": 0.53, "t1c": 0.582, "t2": 0.744, "flair": 0.804},
    "fig3_dice_per_volume": {s: {t: (0.9 if s == t else 0.1) for t in ("t1", "t1c", "t2", "flair")}
                             for s in ("t1", "t1c", "t2", "flair")},
    "table3": {t: {"full": {"dice": 0.5, "precision": 0.6, "sensitivity": 0.7, "dice_per_volume": 0.45},
                   "seg": {"dice": 0.55, "precision": 0.65, "sensitivity": 0.75, "dice_per_volume": 0.5}}
               for t in ("t1", "t1c", "t2")},
}
# 14 subjects, two of them with a zero difference: |d| ranks 1.5, 1.5 (the zeros), 3 ... 13, 14 (the -12)
ZERO_CASE = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12]


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    monkeypatch.setattr(T, "reference", lambda: REFERENCE)
    return tmp_path


def write_run(root, name, dice, val_dice=(0.5, 0.5), others=None, seed=None):
    """A run folder: eval_test.csv (dice; precision and sensitivity = dice), eval_test.json, history.csv.

    others: contrast -> per-subject Dice (a number: the same for every subject) of eval_test_on-<contrast>;
    seed: the training seed written into settings.json (none written when None).
    """
    run = root / "runs" / name
    run.mkdir(parents=True)
    dice = np.asarray(dice, dtype=float)
    _write_eval(run / "eval_test", dice)
    for contrast, value in (others or {}).items():
        _write_eval(run / f"eval_test_on-{contrast}", np.broadcast_to(np.asarray(value, dtype=float), dice.shape))
    pd.DataFrame({"epoch": range(1, len(val_dice) + 1), "val_dice": val_dice}).to_csv(run / "history.csv", index=False)
    if seed is not None:
        (run / "settings.json").write_text(json.dumps({"profile": {"train": {"seed": seed}}}))
    return run


def _write_eval(base, dice):
    pd.DataFrame({"case_id": [f"case_{i:02d}" for i in range(len(dice))],
                  **{m: dice for m in METRICS}}).to_csv(f"{base}.csv", index=False)
    mean = float(dice.mean())
    Path(f"{base}.json").write_text(json.dumps({"n_subjects": len(dice), "space": "preprocessed crop (test)", "metrics": {
        m: {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05} for m in METRICS}}))


# ---------------------------------------------------------------- cells and files
def test_cell_is_mean_and_interval_rounded():
    s = {"metrics": {"dice": {"mean": 0.81234, "ci_low": 0.7, "ci_high": 0.90049}}}
    assert T.cell(s, "dice") == "0.812 [0.700, 0.900]"
    assert T.cell(s, "dice", digits=2) == "0.81 [0.70, 0.90]"
    assert T.mean_of(s, "dice") == 0.81234


def test_eval_summary_reads_the_run_and_names_what_is_missing(root):
    write_run(root, "a", [0.5, 0.7], others={"t2": 0.3})
    assert T.eval_summary("a")["n_subjects"] == 2
    assert T.eval_summary(root / "runs" / "a", on=("t2",), trained_on=("flair",))["metrics"]["dice"]["mean"] == \
        pytest.approx(0.3)
    assert T.eval_summary("a", on=("flair",), trained_on=("flair",))["n_subjects"] == 2  # its own contrast: eval_test
    with pytest.raises(SeganError, match=r"no evaluation eval_val.json .*segan evaluate a"):
        T.eval_summary("a", subset="val")


def test_the_real_reference_has_every_number_the_tables_print():
    ref = T.reference()  # params/_reference.yaml (no `root` fixture here, so not the made-up one)
    assert set(ref) >= {"table1", "table2_dice_per_volume", "fig3_dice_per_volume", "table3", "protocol_note"}
    assert set(ref["table2_dice_per_volume"]) == {"t1", "t1c", "t2", "flair"}
    assert all(set(v) >= {"full", "seg"} for v in ref["table3"].values())


# ---------------------------------------------------------------- Tables I-III and Fig. 3
def test_table_one_cells_then_the_papers_rows(root):
    write_run(root, "io", [0.7, 0.7])
    write_run(root, "segan", [0.5, 0.5, 0.5])
    t = T.table_one({"SegAN_IO (concat)": "io", "SegAN with Dice": "segan"})
    assert list(t.columns) == ["model", "source", "n_test", "n_seeds", *METRICS]
    # one seed: no "±"; every subject the same value: the bootstrap interval is that value
    assert t.iloc[0].to_dict() == {"model": "SegAN_IO (concat)", "source": "this study", "n_test": 2, "n_seeds": 1,
                                   **{m: "0.700 [0.700, 0.700]" for m in METRICS}}
    assert t.iloc[1]["dice"] == "0.500 [0.500, 0.500]" and t.iloc[1]["n_test"] == 3
    assert t.iloc[2].to_dict() == {"model": "SegAN (paper)", "source": "paper", "n_test": 28, "n_seeds": 1,
                                   "dice": "0.850", "precision": "0.920", "sensitivity": "0.800"}


def test_a_model_of_several_seeds_is_seed_averaged_with_its_spread(root):
    # seed 0: 0.6, 0.8 (mean 0.7); seed 1: 0.8, 1.0 (mean 0.9). Per subject over seeds: 0.7, 0.9, mean 0.8;
    # the bootstrap means of two subjects are 0.7, 0.8 or 0.9 (a quarter of draws each at the ends), so the
    # 95% interval is [0.7, 0.9]; ± = SD of the per-seed means 0.7, 0.9 (ddof 1) = 0.1 sqrt(2) = 0.141
    write_run(root, "io_s0", [0.6, 0.8], seed=0)
    write_run(root, "io_s1", [0.8, 1.0], seed=1)
    t = T.table_one({"SegAN_IO (concat)": ["io_s0", "io_s1"]})
    assert t.iloc[0]["dice"] == "0.800 [0.700, 0.900] ±0.141"
    assert t.iloc[0]["n_seeds"] == 2 and t.iloc[0]["n_test"] == 2
    s = T.seeded(["io_s0", "io_s1"])
    assert s["mean"] == pytest.approx(0.8) and s["seed_std"] == pytest.approx(0.1 * np.sqrt(2))
    assert list(T.per_subject(["io_s0", "io_s1"])["seed"]) == [0, 0, 1, 1]
    assert T.subject_values(["io_s0", "io_s1"]).to_dict() == {"case_00": pytest.approx(0.7),
                                                              "case_01": pytest.approx(0.9)}


def test_runs_of_one_model_must_be_of_different_seeds(root):
    write_run(root, "a", [0.6, 0.8], seed=3)
    write_run(root, "b", [0.6, 0.8], seed=3)
    with pytest.raises(SeganError, match="repeat a seed"):
        T.table_one({"SegAN_IO (concat)": ["a", "b"]})
    with pytest.raises(SeganError, match="at least one run"):
        T.seed_runs([])


def test_table_two_names_the_contrasts_beside_the_papers_dice(root):
    write_run(root, "f", [0.8, 0.8])
    write_run(root, "t1", [0.3, 0.3])
    t = T.table_two({"flair": "f", "t1": "t1"})
    assert list(t["contrast"]) == ["FLAIR", "T1"]
    assert list(t["dice"]) == ["0.800 [0.800, 0.800]", "0.300 [0.300, 0.300]"]
    assert list(t["paper dice (per volume)"]) == ["0.804", "0.530"]


def test_table_three_full_and_seg_beside_the_paper(root):
    write_run(root, "full", [0.55, 0.55])
    write_run(root, "seg", [0.65, 0.65])
    t = T.table_three({("t2", "full"): "full", ("t2", "seg"): "seg"})
    assert list(t["fine tuning"]) == ["Full", "Seg."] and list(t["target"]) == ["T2", "T2"]
    assert list(t["dice"]) == ["0.550 [0.550, 0.550]", "0.650 [0.650, 0.650]"]
    assert list(t["paper dice / precision / sensitivity"]) == ["0.500 / 0.600 / 0.700", "0.550 / 0.650 / 0.750"]
    assert list(t["paper dice (per volume)"]) == ["0.450", "0.500"]


def test_transfer_matrix_rows_trained_on_columns_tested_on(root):
    write_run(root, "t2", [0.7, 0.7], others={"flair": [0.3, 0.5]})
    write_run(root, "flair", [0.8, 0.8], others={"t2": 0.3})
    m = T.transfer_matrix({"t2": "t2", "flair": "flair"})
    assert m["mean"].loc["T2", "T2"] == pytest.approx(0.7) and m["mean"].loc["T2", "FLAIR"] == pytest.approx(0.4)
    assert m["mean"].loc["FLAIR", "T2"] == pytest.approx(0.3) and m["mean"].loc["FLAIR", "FLAIR"] == pytest.approx(0.8)
    # two subjects 0.3 and 0.5: the bootstrap interval of their mean is [0.3, 0.5]
    assert m["ci_low"].loc["T2", "FLAIR"] == pytest.approx(0.3) and m["ci_high"].loc["T2", "FLAIR"] == pytest.approx(0.5)
    assert np.isnan(m["seed_std"].loc["T2", "FLAIR"])  # one seed
    assert m["paper"].loc["T2", "FLAIR"] == 0.1 and m["paper"].loc["FLAIR", "FLAIR"] == 0.9


def test_write_table_puts_the_note_under_the_markdown(root, tmp_path):
    df = pd.DataFrame({"a": [1], "b": ["x"]})
    csv, md = T.write_table(df, tmp_path / "t", "Title", "the note")
    assert csv.read_text() == "a,b\n1,x\n"
    text = md.read_text()
    assert text == f"### Title\n\n{df.to_markdown(index=False)}\n\nthe note\n"
    assert "Metrics per 3-D volume (threshold 0.5) on the preprocessed crop (test)" in T.table_protocol_note(
        {"space": "preprocessed crop (test)"})
    assert T.table_protocol_note().endswith("PAPER NOTE")


# ---------------------------------------------------------------- the paired test
def test_paired_test_keeps_zero_differences_as_scipy_zsplit(root):
    d = np.array(ZERO_CASE, dtype=float) / 100
    write_run(root, "a", 0.5 + d)
    write_run(root, "b", np.full(d.size, 0.5))
    mean, p, n = T.paired_test("a", "b")
    assert n == 14  # the two zero differences are counted
    assert mean == pytest.approx(d.mean()) and mean == pytest.approx(0.54 / 14)  # sum of d: (66 - 12) / 100
    ref = stats.wilcoxon(d, zero_method="zsplit")
    assert ref.statistic == 15.5  # W-: the -12's rank 14 plus half of the zeros' 1.5 + 1.5
    assert p == pytest.approx(ref.pvalue, rel=1e-12)
    assert p != pytest.approx(stats.wilcoxon(d, zero_method="wilcox").pvalue, rel=1e-3)  # the rule matters here
    assert ZERO_METHOD == "zsplit"


def test_paired_test_uses_the_subjects_both_runs_have(root):
    write_run(root, "a", [0.6, 0.7, 0.8, 0.9])  # case_00 .. case_03
    write_run(root, "b", [0.5, 0.5, 0.5])  # case_00 .. case_02
    mean, p, n = T.paired_test("a", "b")
    assert n == 3 and mean == pytest.approx(0.2)  # (0.1 + 0.2 + 0.3) / 3
    assert p == pytest.approx(0.25)  # exact: 2 of the 2^3 sign patterns are as extreme


# ---------------------------------------------------------------- the claims
STEADY = [0.0, 0.9] + [0.60, 0.62] * 5   # 12 epochs: a wild start, then +-0.01 around 0.61
WOBBLY = [0.5, 0.5] + [0.40, 0.60] * 5   # a calm start, then +-0.1 around 0.5
N = 12
UP = np.linspace(0.01, 0.06, N)  # twelve distinct positive differences: exact two-sided p = 2 / 2^12
BASE = np.linspace(0.4, 0.65, N)
P_ALL_UP = 2 / 2 ** N


def _claims_project(root, with_dice_history=STEADY, without_dice_history=WOBBLY):
    table1 = {"SegAN without Dice": "nodice", "SegAN with Dice": "dice", "SegAN_IO (concat)": "io"}
    write_run(root, "nodice", BASE + UP, val_dice=without_dice_history)  # better test Dice than with Dice
    write_run(root, "dice", BASE, val_dice=with_dice_history)
    write_run(root, "io", BASE + UP)
    means = {"t1": 0.3, "t1c": 0.4, "t2": 0.6, "flair": 0.7}
    # trained on (row) -> tested on (column); the T1 <-> T1c pair is the best transfer here
    off = {("t1", "t1c"): 0.35, ("t1c", "t1"): 0.33, ("t2", "flair"): 0.2, ("flair", "t2"): 0.3}
    for c, v in means.items():
        # FLAIR beats T2 by UP on every subject
        values = BASE - BASE.mean() + v + (UP - UP.mean() if c == "flair" else 0)
        write_run(root, f"single_{c}", values,
                  others={t: off.get((c, t), 0.1) + (UP if (c, t) == ("t1", "t1c") else 0) for t in means if t != c})
    write_run(root, "t1_full", BASE)
    write_run(root, "t1_seg", BASE + UP)
    write_run(root, "t2_full", BASE + UP)  # on T2 freezing the critic does worse
    write_run(root, "t2_seg", BASE)
    table3 = {"t1/full": "t1_full", "t1/seg": "t1_seg", "t2/full": "t2_full", "t2/seg": "t2_seg"}
    return table1, {c: f"single_{c}" for c in means}, table3


def test_claims_table_verdicts_and_their_evidence(root):
    claims = T.claims_table(*_claims_project(root)).set_index("claim")
    assert list(claims.reset_index().columns) == list(T.CLAIM_COLUMNS)
    assert len(claims) == 6
    concat = claims.loc["concatenation beats masking (SegAN_IO vs SegAN, four contrasts)"]
    assert concat["holds here"] == "yes"
    assert concat["n"] == f"{N} subjects" and concat["effect r"] == 1.0
    assert concat["p"] == pytest.approx(P_ALL_UP) and concat["difference"].startswith(f"{UP.mean():+.3f} [")
    flair = claims.loc["FLAIR is the strongest single contrast"]
    assert flair["holds here"] == "yes"
    assert flair["evidence"] == "T1 0.300, T1c 0.400, T2 0.600, FLAIR 0.700 (FLAIR - T2, the strongest other)"
    transfer = claims.loc["T2 <-> FLAIR transfer best"]
    # T1<->T1c (0.340 + UP / 2 per subject) beats T2<->FLAIR (0.250) on every subject: decided the other way
    assert transfer["holds here"] == "no"
    assert transfer["evidence"].startswith(f"mean of both directions: T1<->T1c {((0.35 + UP + 0.33) / 2).mean():.3f}, ")
    assert "T2<->FLAIR 0.250" in transfer["evidence"] and transfer["evidence"].endswith("(T2<->FLAIR - T1<->T1c, the best other pair)")
    assert claims.loc["freezing the critic helps on T1 (Seg. vs Full)", "holds here"] == "yes"
    assert claims.loc["freezing the critic helps on T2 (Seg. vs Full)", "holds here"] == "no"
    assert claims.loc["freezing the critic helps on T2 (Seg. vs Full)", "effect r"] == -1.0


def test_claims_are_holm_adjusted_together(root):
    claims = T.claims_table(*_claims_project(root))
    tested = claims["p"].notna()
    assert np.allclose(claims.loc[tested, "p (Holm)"], holm(claims.loc[tested, "p"].to_numpy()))
    # five claims at p = 2 / 2^12 and the stability claim at p = 1 (one seed): the smallest is scaled by 6
    assert claims["p (Holm)"].min() == pytest.approx(6 * P_ALL_UP)


def test_a_claim_whose_interval_straddles_zero_is_not_decided(root):
    wobble = np.array([0.05, -0.04, 0.03, -0.02, 0.06, -0.05, 0.01, -0.03, 0.02, -0.01, 0.04, -0.06])
    write_run(root, "io", BASE + wobble)
    write_run(root, "dice", BASE)
    row = T.claims_table({"SegAN_IO (concat)": "io", "SegAN with Dice": "dice"}, {}, {}).iloc[0]
    assert row["holds here"] == T.UNDECIDED == "not decided at this size"
    low, high = (float(x) for x in row["difference"].split("[")[1].rstrip("]").split(","))
    assert low < 0 < high and row["p"] > 0.05


def test_a_claim_whose_seeds_disagree_is_not_decided_though_every_subject_agrees(root):
    """Three seeds, on every subject SegAN_IO +0.02, +0.02 and -0.01 against SegAN: each subject's seed-averaged
    difference is +0.01 (the Wilcoxon p as small as 12 subjects allow), but one seed's models rank the other way."""
    for seed, shift in enumerate((0.02, 0.02, -0.01)):
        write_run(root, f"io_s{seed}", BASE + shift, seed=seed)
        write_run(root, f"dice_s{seed}", BASE, seed=seed)
    row = T.claims_table({"SegAN_IO (concat)": [f"io_s{s}" for s in range(3)],
                          "SegAN with Dice": [f"dice_s{s}" for s in range(3)]}, {}, {}).iloc[0]
    assert row["n"] == f"{N} subjects x 3 seeds" and row["p"] < 0.001
    assert row["holds here"] == T.UNDECIDED
    # the interval's bounds: only the third seed drawn (1/27 of the resamples) gives -0.01, never the second
    # alone more than +0.02
    assert row["difference"] == "+0.010 [-0.010, +0.020]"
    # the same differences, all seeds agreeing: decided
    for seed in range(3):
        write_run(root, f"io2_s{seed}", BASE + 0.01, seed=seed)
    row = T.claims_table({"SegAN_IO (concat)": [f"io2_s{s}" for s in range(3)],
                          "SegAN with Dice": [f"dice_s{s}" for s in range(3)]}, {}, {}).iloc[0]
    assert row["holds here"] == "yes" and row["difference"] == "+0.010 [+0.010, +0.010]"


def test_the_dice_term_claim_is_judged_on_the_spread_of_validation_dice(root):
    claims = T.claims_table(*_claims_project(root)).set_index("claim")
    row = claims.loc["the Dice term stabilises adversarial training (SegAN with vs without Dice)"]
    # last 10 epochs: +-0.01 and +-0.1 around their means, so SD = 0.01 sqrt(10 / 9) and 0.1 sqrt(10 / 9);
    # the test Dice is worse with the Dice term, which must not decide the verdict. One seed each: one
    # difference, which no test can decide
    assert T.STABILITY_EPOCHS == 10
    assert T.val_dice_spread(pd.DataFrame({"val_dice": STEADY})) == (pytest.approx(0.01 * np.sqrt(10 / 9)), 10)
    assert T.val_dice_spread(pd.DataFrame({"val_dice": WOBBLY}))[0] == pytest.approx(0.1 * np.sqrt(10 / 9))
    assert row["holds here"] == T.UNDECIDED and row["n"] == "1 seeds"
    assert row["difference"].startswith(f"{0.09 * np.sqrt(10 / 9):+.3f}")
    assert row["evidence"].startswith("SD of validation Dice (per volume) over the last 10 epochs (here 10; "
                                      "lower is steadier), per seed: with 0.011 vs without 0.105; ")


def _seeded_stability(root, steadier_with: list[bool]):
    for seed, steadier in enumerate(steadier_with):
        write_run(root, f"dice_s{seed}", BASE, val_dice=STEADY if steadier else WOBBLY, seed=seed)
        write_run(root, f"nodice_s{seed}", BASE, val_dice=WOBBLY if steadier else STEADY, seed=seed)
    n = len(steadier_with)
    table1 = {"SegAN with Dice": [f"dice_s{s}" for s in range(n)],
              "SegAN without Dice": [f"nodice_s{s}" for s in range(n)]}
    return T.claims_table(table1, {}, {}).iloc[0]


def test_the_dice_term_claim_pairs_the_runs_by_seed(root):
    # six seeds, each steadier with the Dice term: W+ = 21 of 21, exact p = 2 / 2^6 = 0.03125, the only claim
    row = _seeded_stability(root, [True] * 6)
    assert row["holds here"] == "yes" and row["n"] == "6 seeds" and row["p (Holm)"] == pytest.approx(0.03125)


def test_three_seeds_cannot_decide_the_dice_term_claim(tmp_path, root):
    row = _seeded_stability(root, [True, True, True])  # the smallest two-sided exact p with n = 3 is 0.25
    assert row["holds here"] == T.UNDECIDED and row["p"] == pytest.approx(0.25)


def test_the_spread_needs_two_epochs_and_uses_what_a_short_run_has(root):
    assert T.val_dice_spread(pd.DataFrame({"val_dice": [0.4, 0.6, float("nan")]})) == (
        pytest.approx(np.sqrt(0.02)), 2)  # NaN dropped; SD of 0.4, 0.6 (ddof 1) = 0.1 sqrt(2)
    sd, k = T.val_dice_spread(pd.DataFrame({"val_dice": [0.5]}))
    assert np.isnan(sd) and k == 1
    write_run(root, "nodice", [0.5, 0.6], val_dice=[0.5])
    write_run(root, "dice", [0.5, 0.6], val_dice=[0.5, 0.6])
    row = T.claims_table({"SegAN without Dice": "nodice", "SegAN with Dice": "dice"}, {}, {}).iloc[0]
    assert row["holds here"] == "not measurable" and row["n"] == "0 seeds"
    assert "(here 1/2;" in row["evidence"]
