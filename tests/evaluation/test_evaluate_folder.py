"""`segan evaluate-folder`: predictions scored against a data set's labels on each scan's own grid, and the
label values `segan predict` writes for a three-region bundle."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from segan_lib.cli import main
from tests.layout_trees import make_brats2018_tree, tumour_label, write_nifti

SPACING = (1.0, 1.0, 2.0)  # anisotropic: a voxel is 2 mm3


def read_summary(out: Path) -> tuple[list[str], pd.DataFrame]:
    lines = (out / "summary.csv").read_text().splitlines()
    return [ln for ln in lines if ln.startswith("# ")], pd.read_csv(out / "summary.csv", comment="#")


@pytest.fixture
def tree(tmp_path):
    return tmp_path / "data", make_brats2018_tree(tmp_path / "data", n=3, spacing=SPACING)


def test_the_cli_scores_multi_class_binary_and_empty_predictions(tree, tmp_path, capsys):
    data, cases = tree
    ids = list(cases)
    preds = tmp_path / "preds"
    w = cases[ids[0]]
    write_nifti(preds / f"{ids[0]}.nii.gz", w.label, w.affine, dtype=np.uint8)  # the label itself
    w = cases[ids[1]]
    write_nifti(preds / ids[1] / f"{ids[1]}_seg.nii.gz", w.label > 0, w.affine, dtype=np.uint8)  # 0/1, one level down
    w = cases[ids[2]]
    write_nifti(preds / f"{ids[2]}-seg.nii.gz", np.zeros_like(w.label), w.affine, dtype=np.uint8)  # nothing found
    write_nifti(preds / f"{ids[0]}_probability.nii.gz", w.label * 0.1, w.affine)  # segan predict's map: passed over

    assert main(["evaluate-folder", str(preds), str(data), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "hd95_brats: the larger of the two directed 95th percentiles" in printed  # definitions under the summary
    out = preds / "evaluation"
    table = pd.read_csv(out / "cases.csv")
    assert list(table[["case", "region"]].itertuples(index=False, name=None)) == [
        (ids[0], "wt"), (ids[0], "tc"), (ids[0], "et"), (ids[1], "wt"), (ids[2], "wt"), (ids[2], "tc"), (ids[2], "et")]
    exact = table[table["case"] == ids[0]]
    assert (exact["dice"] == 1).all() and (exact["hd95"] == 0).all() and (exact["hd95_brats"] == 0).all()
    assert (exact["nsd"] == 1).all() and (exact["volume_diff_ml"] == 0).all()
    assert set(exact["kind"]) == {"multiclass"} and exact["read_as"].iloc[0] == "values 1,2,4 of brats2018"
    binary = table[table["case"] == ids[1]].iloc[0]
    assert binary["kind"] == "binary" and binary["dice"] == 1 and binary["prediction"] == f"{ids[1]}/{ids[1]}_seg.nii.gz"
    empty = table[table["case"] == ids[2]]
    assert set(empty["kind"]) == {"multiclass"} and "all zero" in empty["read_as"].iloc[0]  # as the folder's others
    assert (empty["dice"] == 0).all() and empty["hd95"].isna().all() and (empty["nsd"] == 0).all()
    assert np.allclose(empty["hd95_brats"], 373.128664, atol=1e-6)
    truth_voxels = {r: int(np.count_nonzero(m)) for r, m in
                    {"wt": cases[ids[2]].label > 0, "tc": np.isin(cases[ids[2]].label, [1, 4]),
                     "et": cases[ids[2]].label == 4}.items()}
    for _, row in empty.iterrows():  # 2 mm3 voxels: ml = voxels x 0.002
        assert row["truth_ml"] == pytest.approx(truth_voxels[row["region"]] * 0.002, abs=1e-9)
        assert row["volume_diff_ml"] == pytest.approx(-row["truth_ml"], abs=1e-9)

    header, summary = read_summary(out)
    assert header[0] == "# predictions by: no segan bundle named in the files' NIfTI descrip"
    assert "percentile bootstrap, 2000 resamples, seed 0" in header[2] and "NSD tolerance 1 mm" in header[2]
    wt = summary[summary["region"] == "wt"].set_index("metric")
    assert wt.loc["dice", "n"] == 3 and wt.loc["dice", "mean"] == pytest.approx(2 / 3, abs=1e-6)
    assert wt.loc["dice", "median"] == 1 and wt.loc["dice", "std"] == pytest.approx(np.std([1, 1, 0], ddof=1), abs=1e-6)
    assert wt.loc["hd95", "n"] == 2 and wt.loc["hd95", "n_excluded"] == 1  # MedPy's NaN: left out, counted
    assert wt.loc["hd95_brats", "mean"] == pytest.approx(373.128664 / 3, abs=1e-4)
    assert summary[summary["region"] == "tc"].set_index("metric").loc["dice", "n"] == 2  # the binary case scores WT only
    assert "373.13 mm" in (out / "definitions.txt").read_text()


def test_offset_cubes_through_the_folder_by_hand(tmp_path):
    """A cube of oedema (label 2) and a prediction shifted 2 voxels along the 2 mm axis: the hand values of
    tests/metrics/test_surface.py (Dice 1/2, both HD95 4 mm, NSD 28/56 at 1 mm and 40/56 at 2 mm)."""
    data = tmp_path / "data"
    w = next(iter(make_brats2018_tree(data, n=1, shape=(10, 8, 8), spacing=(2.0, 1.0, 1.0)).values()))
    label = np.zeros((10, 8, 8), np.uint8)
    label[2:6, 2:6, 2:6] = 2
    write_nifti(w.files["label"], label, w.affine)
    pred = np.zeros_like(label)
    pred[4:8, 2:6, 2:6] = 1
    write_nifti(tmp_path / "preds" / f"{w.case_id}.nii.gz", pred, w.affine)
    for tol, nsd in ((1.0, 28 / 56), (2.0, 40 / 56)):
        out = tmp_path / f"eval{tol:g}"
        assert main(["evaluate-folder", str(tmp_path / "preds"), str(data), "--out", str(out), "--quiet",
                     "--nsd-tolerance", str(tol)]) == 0
        row = pd.read_csv(out / "cases.csv").iloc[0]
        assert (row["region"], row["kind"], row["dice"], row["hd95"], row["hd95_brats"]) == ("wt", "binary", 0.5, 4, 4)
        assert row["nsd"] == pytest.approx(nsd, abs=1e-6) and row["volume_diff_ml"] == 0
        assert row["truth_ml"] == pytest.approx(64 * 2.0 / 1000, abs=1e-12)
        assert f"NSD tolerance {tol:g} mm" in read_summary(out)[0][2]


def test_missing_and_stray_predictions_are_named(tree, tmp_path, capsys):
    data, cases = tree
    ids = list(cases)
    preds = tmp_path / "preds"
    for cid in ids[:2]:
        write_nifti(preds / f"{cid}.nii.gz", cases[cid].label, cases[cid].affine, dtype=np.uint8)
    write_nifti(preds / "stray_case.nii.gz", cases[ids[0]].label, cases[ids[0]].affine, dtype=np.uint8)
    assert main(["evaluate-folder", str(preds), str(data), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"1 case(s) of {data} have no prediction" in err and ids[2] in err
    assert "1 prediction(s) name no case" in err and "stray_case.nii.gz" in err and "--on-missing skip" in err
    assert not (preds / "evaluation").exists()
    with pytest.warns(UserWarning, match="were not scored"):
        assert main(["evaluate-folder", str(preds), str(data), "--quiet", "--on-missing", "skip"]) == 0
    header, summary = read_summary(preds / "evaluation")
    assert f"# not scored, no prediction: {ids[2]}" in header and "# not scored, no case: stray_case.nii.gz" in header
    assert summary.set_index(["region", "metric"]).loc[("wt", "dice"), "n"] == 2
    (preds / f"{ids[0]}.nii.gz").rename(preds / f"{ids[0]}_seg.nii.gz")
    write_nifti(preds / f"{ids[0]}.nii.gz", cases[ids[0]].label, cases[ids[0]].affine, dtype=np.uint8)
    assert main(["evaluate-folder", str(preds), str(data), "--quiet", "--on-missing", "skip"]) == 2
    assert f"2 predictions in {preds} name this case" in capsys.readouterr().err


def test_a_prediction_off_the_label_grid_or_with_foreign_values_is_a_data_error(tree, tmp_path, capsys):
    data, cases = tree
    cid, w = next(iter(cases.items()))
    preds = tmp_path / "preds"
    others = {c: cases[c] for c in list(cases)[1:]}
    for c, wc in others.items():
        write_nifti(preds / f"{c}.nii.gz", wc.label, wc.affine, dtype=np.uint8)
    target = preds / f"{cid}.nii.gz"

    def run():
        assert main(["evaluate-folder", str(preds), str(data), "--quiet"]) == 2
        return capsys.readouterr().err

    write_nifti(target, w.label[:, :, :-1], w.affine, dtype=np.uint8)
    err = run()
    assert f"case {cid}" in err and str(target) in err and str(w.files["label"]) in err and "12x10x7" in err
    moved = w.affine.copy()
    moved[0, 3] += 0.5
    write_nifti(target, w.label, moved, dtype=np.uint8)
    err = run()
    assert str(target) in err and str(w.files["label"]) in err and "differ by up to 0.5 mm" in err
    write_nifti(target, np.where(w.label == 4, 7, w.label), w.affine, dtype=np.uint8)
    assert "holds the values [7]" in run()
    write_nifti(target, w.label * 0.25, w.affine)  # a probability-like float map
    assert "non-integer values" in run()
    img = nib.Nifti1Image(w.label.astype(np.uint8), w.affine)
    img.header["descrip"] = b"segan bundle 0123456789ab labels msd"
    nib.save(img, str(target))
    assert "--label-scheme brats2018" in run()  # MSD's 1/2/3 would be read silently as 2018's otherwise


def test_bad_options_are_refused(tree, tmp_path, capsys):
    data, _ = tree
    (tmp_path / "preds").mkdir()
    assert main(["evaluate-folder", str(tmp_path / "preds"), str(data), "--nsd-tolerance", "-1"]) == 2
    assert "tolerance" in capsys.readouterr().err
    assert main(["evaluate-folder", str(tmp_path / "preds"), str(data)]) == 2
    assert "no prediction in" in capsys.readouterr().err
    assert main(["evaluate-folder", str(tmp_path / "nowhere"), str(data)]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- label values of --regions brats masks
@pytest.mark.parametrize("scheme", ["brats2015", "brats2018", "brats2023", "msd"])
def test_region_labels_read_back_as_the_same_regions(scheme):
    from segan_lib.apply.labels import REGION_LABELS, regions_to_labels
    from segan_lib.data.case import LABEL_SCHEMES

    rng = np.random.default_rng(0)
    wt, tc, et = (rng.random((3, 9, 8, 7)) > 0.4)
    label = regions_to_labels(wt, tc, et, scheme)
    assert set(np.unique(label)) == {0, *REGION_LABELS[scheme]}
    back = LABEL_SCHEMES[scheme].regions(label)
    np.testing.assert_array_equal(back["wt"], wt)
    np.testing.assert_array_equal(back["tc"], wt & tc)  # nested: the core lies in the whole tumour
    np.testing.assert_array_equal(back["et"], wt & tc & et)


def _constant_bundle(folder: Path, logits, label_scheme) -> Path:
    """A real three-region bundle whose segmentor outputs sigmoid(logits) at every voxel (no training): the
    output convolution's kernel is zero and its bias is `logits`."""
    from segan_lib import __version__
    from segan_lib.apply.bundle import BUNDLE_FORMAT, CARD, WEIGHTS
    from segan_lib.nets.segmentor import build_segmentor

    seg = build_segmentor(4, width=2, n_outputs=3, seed=0)
    conv = seg.get_layer("out_conv")
    kernel, _ = conv.get_weights()
    conv.set_weights([np.zeros_like(kernel), np.asarray(logits, np.float32)])
    folder.mkdir(parents=True)
    np.savez(folder / WEIGHTS, **{f"v{i:04d}": np.asarray(v) for i, v in enumerate(seg.variables)})
    card = {"format": BUNDLE_FORMAT, "run_name": "constant", "contrasts": ["t1", "t1c", "t2", "flair"],
            "regions": ["wt", "tc", "et"], "n_outputs": 3, "width": 2,
            "preprocessing": {"spacing_mm": 1.0, "crop_shape": [16, 16, 8], "percentiles": [2.0, 98.0],
                              "percentile_region": "volume", "orientation": None},
            "threshold": 0.5, "training_data": {"name": "t", "cases_hash": None, "label_scheme": label_scheme},
            "versions": {"segan_lib": __version__}}
    (folder / CARD).write_text(json.dumps(card))
    return folder


def test_predict_writes_three_regions_in_the_data_sets_label_values(tmp_path, capsys):
    from segan_lib.apply.bundle import load_bundle

    data = tmp_path / "data"
    cases = make_brats2018_tree(data, n=2)
    core = _constant_bundle(tmp_path / "core", [5.0, 5.0, -5.0], "brats2018")  # wt and tc, not et: the core
    oedema = _constant_bundle(tmp_path / "oedema", [5.0, -5.0, 5.0], None)  # wt only (et lies in tc); an old card
    bundle_id = load_bundle(core).id
    assert len(bundle_id) == 12

    def masks(bundle, out, *more):
        assert main(["predict", "--model", str(bundle), "--input", str(data), "--output", str(out), "--quiet",
                     *more]) == 0
        return {c: nib.load(str(out / f"{c}.nii.gz")) for c in cases}

    written = masks(core, tmp_path / "p2018")
    for img in written.values():
        assert set(np.unique(np.asarray(img.dataobj))) == {1}  # BraTS 2018's non-enhancing core
        assert img.header["descrip"][()].decode() == f"segan bundle {bundle_id} labels brats2018"
    assert set(pd.read_csv(tmp_path / "p2018" / "summary.csv")["bundle"]) == {bundle_id}
    for scheme, value in (("brats2015", 3), ("brats2023", 1), ("msd", 2)):
        img = next(iter(masks(core, tmp_path / f"p{scheme}", "--label-scheme", scheme).values()))
        assert set(np.unique(np.asarray(img.dataobj))) == {value}, scheme

    assert main(["predict", "--model", str(oedema), "--input", str(data), "--output", str(tmp_path / "old"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "does not record the label scheme" in err and "--label-scheme" in err and not (tmp_path / "old").exists()
    for scheme, value in (("brats2018", 2), ("msd", 1)):
        img = next(iter(masks(oedema, tmp_path / f"o{scheme}", "--label-scheme", scheme).values()))
        assert set(np.unique(np.asarray(img.dataobj))) == {value}, scheme

    # the whole pipeline: the masks read as multi-class in the data set's values, named by their bundle
    assert main(["evaluate-folder", str(tmp_path / "p2018"), str(data), "--quiet"]) == 0
    header, summary = read_summary(tmp_path / "p2018" / "evaluation")
    assert header[0] == f"# predictions by segan bundle {bundle_id}"
    table = pd.read_csv(tmp_path / "p2018" / "evaluation" / "cases.csv")
    assert set(table["region"]) == {"wt", "tc", "et"} and set(table["bundle"]) == {bundle_id}
    assert table["read_as"].iloc[0] == f"descrip: segan bundle {bundle_id}, labels brats2018"
    # every voxel predicted core: WT and TC sensitivities 1; ET has no prediction
    assert (table.loc[table["region"] != "et", "sensitivity"] == 1).all()
    assert (table.loc[table["region"] == "et", "pred_ml"] == 0).all()
    label = tumour_label()
    wt_dice = 2 * np.count_nonzero(label) / (label.size + np.count_nonzero(label))
    assert table.loc[table["region"] == "wt", "dice"].to_numpy() == pytest.approx([wt_dice] * 2, abs=1e-6)


def test_a_whole_tumour_bundle_refuses_a_label_scheme(tmp_path):
    from segan_lib.apply.labels import mask_label_scheme
    from segan_lib.errors import SeganError

    class Card:  # a whole-tumour bundle: the two fields mask_label_scheme reads
        path = tmp_path / "wt_bundle"
        card = {"n_outputs": 1, "training_data": {"label_scheme": "brats2018"}}

    assert mask_label_scheme(Card()) is None
    with pytest.raises(SeganError, match="has no effect"):
        mask_label_scheme(Card(), "brats2023")
    with pytest.raises(SeganError, match="unknown label scheme"):
        mask_label_scheme(Card(), "brats2099")
