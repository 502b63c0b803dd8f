"""The nnU-Net v2 raw layout and the pattern layout: detection, case ids, contrasts, label schemes, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

try:
    from tests.layout_trees import CONTRAST_OFFSETS, nifti_affine, synthetic_image, tumour_label, write_nifti
except ImportError:  # tests/ itself on sys.path
    from layout_trees import (  # type: ignore[no-redef]
        CONTRAST_OFFSETS, nifti_affine, synthetic_image, tumour_label, write_nifti,
    )

from segan_lib.data import (
    LABEL_SCHEMES, LAYOUT_FILE, LAYOUTS, MASK_KEY, clear_cache, detect_layout, load_case, normalize_contrast,
    open_dataset, resolve_layout, summarize_dataset,
)
from segan_lib.data.layouts.nnunet import SCHEME_ROLES, scheme_from_labels
from segan_lib.errors import ConfigError, DataError

SHAPE = (8, 8, 4)
AFFINE = nifti_affine(SHAPE)

# nnU-Net's conversion of MSD Task01 (Dataset001_BrainTumour): MSD's channels and labels, renamed keys
MSD_CHANNELS = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
MSD_LABELS = {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}
# nnU-Net's Dataset137_BraTS2021: BraTS 2 -> 1, 1 -> 2, 4 -> 3, and region-based labels
BRATS21_CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}
BRATS21_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def make_nnunet_tree(root: Path, n: int = 2, *, channels=MSD_CHANNELS, labels=MSD_LABELS, n_test: int = 0,
                     seed: int = 0, ending: str = ".nii.gz") -> dict[str, dict]:
    """imagesTr/<case>_000c.nii.gz, labelsTr/<case>.nii.gz, imagesTs/ (n_test cases), dataset.json.
    Returns case id -> {contrast: image, "label": label} of the training cases; the contrast of a
    channel is told by its offset (CONTRAST_OFFSETS)."""
    rng = np.random.default_rng(seed)
    by_name = {"flair": "flair", "t1w": "t1", "t1": "t1", "t1gd": "t1c", "t1ce": "t1c", "t2w": "t2", "t2": "t2"}
    written: dict[str, dict] = {}
    for i in range(n + n_test):
        cid = f"BraTS_{i + 1:03d}"
        folder = "imagesTs" if i >= n else "imagesTr"
        label = tumour_label(SHAPE, "msd", radius=2.5)
        arrays = {}
        for index, name in channels.items():
            contrast = by_name[name.lower()]
            arrays[contrast] = synthetic_image(label, rng, CONTRAST_OFFSETS[contrast])
            write_nifti(root / folder / f"{cid}_{int(index):04d}{ending}", arrays[contrast], AFFINE)
        if i < n:
            write_nifti(root / "labelsTr" / f"{cid}{ending}", label, AFFINE, dtype=np.uint8)
            written[cid] = dict(arrays, label=label)
    meta = {"channel_names": channels, "labels": labels, "numTraining": n, "file_ending": ending,
            "name": "BrainTumour"}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return written


# ---------------------------------------------------------------- nnU-Net


def test_nnunet_msd_conversion_is_detected_and_read_exactly(tmp_path):
    written = make_nnunet_tree(tmp_path, 2)
    # its imagesTr/*.nii.gz also look like MSD's: dataset.json's channel_names / file_ending say nnU-Net
    assert LAYOUTS["msd"].matches(tmp_path)
    assert detect_layout(tmp_path) == "nnunet"
    ds = open_dataset(tmp_path)
    assert ds.layout == "nnunet" and ds.case_ids == ["BraTS_001", "BraTS_002"]
    assert ds.scheme == "msd"
    for case in ds:
        want = written[case.case_id]
        assert case.scheme == "msd" and case.has_label and case.contrasts == ["t1", "t1c", "t2", "flair"]
        assert case.files["flair"].name == f"{case.case_id}_0000.nii.gz"
        assert case.files["t1c"].name == f"{case.case_id}_0002.nii.gz"
        arrays = load_case(case)
        for contrast in ("t1", "t1c", "t2", "flair"):
            np.testing.assert_array_equal(arrays.images[contrast], want[contrast], err_msg=contrast)
        np.testing.assert_array_equal(arrays.label, want["label"])
        # msd scheme: tumour core = 2 and 3, enhancing = 3
        np.testing.assert_array_equal(case.regions()["tc"], np.isin(want["label"], [2, 3]))


def test_nnunet_brats2021_region_labels_give_the_msd_scheme(tmp_path):
    written = make_nnunet_tree(tmp_path, 1, channels=BRATS21_CHANNELS, labels=BRATS21_LABELS)
    (case,) = open_dataset(tmp_path)
    assert case.scheme == "msd"
    assert case.files["t1"].name.endswith("_0000.nii.gz") and case.files["flair"].name.endswith("_0003.nii.gz")
    np.testing.assert_array_equal(case.image("t1c"), written[case.case_id]["t1c"])


@pytest.mark.parametrize("labels, scheme", [
    (MSD_LABELS, "msd"),
    (BRATS21_LABELS, "msd"),
    ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}, "brats2023"),  # a BraTS 2023 GLI conversion
    ({"background": 0, "NCR/NET": 1, "ED": 2, "ET": 4}, "brats2018"),
    ({"background": 0, "necrosis": 1, "edema": 2, "non-enhancing tumor": 3, "enhancing tumor": 4}, "brats2015"),
    ({"background": 0, "whole tumour": [1, 2, 3], "tumour core": [1, 3], "enhancing tumour": [3]}, "brats2023"),
    # nnU-Net's BraTS 2024 GLI: 4 is the resection cavity, which is no tumour
    ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}, None),
    ({"background": 0, "tumor": 1}, None),
    ({"background": 0, "edema": 1, "enhancing tumour": 2, "non-enhancing tumor": 3}, None),  # no scheme orders them so
    ({"background": 0, "whole tumor": [1, 2, 3]}, None),  # wt alone fits msd and brats2023 alike
    ({"background": 0, "edema": 1, "oedema": 2, "enhancing": 3}, None),
    ({}, None),
    (None, None),
])
def test_scheme_from_labels(labels, scheme):
    assert scheme_from_labels(labels) == scheme


def test_scheme_roles_name_every_value_of_each_scheme():
    assert set(SCHEME_ROLES) == set(LABEL_SCHEMES)
    for key, roles in SCHEME_ROLES.items():
        assert set(roles) == LABEL_SCHEMES[key].values - {0}, key


def test_nnunet_unknown_channel_name_is_refused_naming_the_file_channel_and_name(tmp_path):
    make_nnunet_tree(tmp_path, 1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["channel_names"] = {"0": "FLAIR", "1": "PD"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    text = str(ei.value)
    assert "dataset.json" in text and "channel 1" in text and "'PD'" in text
    assert "t1gd" in text and "t2f" in text  # the names understood are listed


def test_nnunet_two_channels_of_one_contrast_are_refused(tmp_path):
    make_nnunet_tree(tmp_path, 1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["channel_names"] = {"0": "T1ce", "1": "T1Gd"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"channels 0 \('T1ce'\) and 1 \('T1Gd'\).*both t1c"):
        open_dataset(tmp_path)


@pytest.mark.parametrize("name, contrast", [
    ("T1Gd", "t1c"), ("T2-FLAIR", "flair"), ("t1ce", "t1c"), ("T1_Gd", "t1c"), ("T1 CE", "t1c"), ("T1C", "t1c"),
    ("T2W", "t2"), ("T2F", "flair"), ("Flair", "flair"), ("T1w", "t1"), ("T1", "t1"), ("PD", None), ("DWI", None),
])
def test_contrast_spellings_of_nnunet_data_sets(name, contrast):
    assert normalize_contrast(name) == contrast


def test_nnunet_unrecognised_labels_need_an_explicit_scheme(tmp_path):
    make_nnunet_tree(tmp_path, 1, labels={"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4})
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    assert "dataset.json" in str(ei.value) and "--label-scheme" in str(ei.value) and "RC" in str(ei.value)
    ds = open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, {"label_scheme": "brats2023"}))
    assert ds.layout == "nnunet" and [c.scheme for c in ds] == ["brats2023"]


def test_nnunet_test_images_are_read_unlabelled_like_msd(tmp_path):
    make_nnunet_tree(tmp_path, 2, n_test=2)
    train = open_dataset(tmp_path)
    assert train.case_ids == ["BraTS_001", "BraTS_002"]
    with pytest.raises(DataError, match="require_label=False"):
        open_dataset(tmp_path / "imagesTs")
    test = open_dataset(tmp_path / "imagesTs", require_label=False)
    assert test.layout == "nnunet" and test.case_ids == ["BraTS_003", "BraTS_004"]
    assert not any(c.has_label for c in test) and all(len(c.contrasts) == 4 for c in test)


def test_nnunet_missing_channel_file_lists_the_case_with_the_others(tmp_path):
    make_nnunet_tree(tmp_path, 2)
    (tmp_path / "imagesTr" / "BraTS_002_0003.nii.gz").unlink()  # its T2w
    ds = open_dataset(tmp_path)
    assert ds["BraTS_001"].contrasts == ["t1", "t1c", "t2", "flair"]
    assert ds["BraTS_002"].contrasts == ["t1", "t1c", "flair"]


def test_nnunet_missing_label_is_a_problem_only_when_labels_are_required(tmp_path):
    make_nnunet_tree(tmp_path, 2)
    (tmp_path / "labelsTr" / "BraTS_002.nii.gz").unlink()
    with pytest.raises(DataError, match="BraTS_002.*missing label file"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, require_label=False)
    assert [c.has_label for c in ds] == [True, False]


def test_nnunet_channel_not_in_channel_names_is_a_problem(tmp_path):
    make_nnunet_tree(tmp_path, 2)
    write_nifti(tmp_path / "imagesTr" / "BraTS_002_0004.nii.gz", np.ones(SHAPE, np.float32), AFFINE)
    with pytest.warns(UserWarning, match="channels \\[4\\]"):
        ds = open_dataset(tmp_path, on_bad_case="skip")
    assert ds.case_ids == ["BraTS_001"]


def test_original_msd_folder_is_still_msd(tmp_path):
    try:
        from tests.layout_trees import make_msd_tree
    except ImportError:
        from layout_trees import make_msd_tree  # type: ignore[no-redef]
    make_msd_tree(tmp_path, 2)  # dataset.json with "modality" and no "file_ending"
    assert detect_layout(tmp_path) == "msd"


# ---------------------------------------------------------------- pattern


def make_pattern_tree(root: Path, cases=("pat_01", "pat_02"), names=None, *, seed: int = 0) -> dict[str, dict]:
    """<case>/<Name>_norm.nii.gz for FLAIR and T1c only, <case>/truth.nii.gz (BRATS 2015 values, stored as
    float32), <case>/brain.nii.gz (float64 0 / 0.99999997, as the real BRATS derivative stores it)."""
    names = names or {"flair": "Flair", "t1c": "T1c"}
    rng = np.random.default_rng(seed)
    written = {}
    for cid in cases:
        label = tumour_label(SHAPE, "brats2015", radius=2.5)
        arrays = {c: synthetic_image(label, rng, CONTRAST_OFFSETS[c]) for c in names}
        for c, name in names.items():
            write_nifti(root / cid / f"{name}_norm.nii.gz", arrays[c], AFFINE)
        write_nifti(root / cid / "truth.nii.gz", label.astype(np.float32), AFFINE)
        brain = np.zeros(SHAPE)
        brain[1:-1, 1:-1, :] = 0.99999997
        write_nifti(root / cid / "brain.nii.gz", brain, AFFINE)
        written[cid] = dict(arrays, label=label, brain=brain > 0)
    return written


SETTINGS = {"pattern": "{case}/{contrast}_norm.nii.gz", "contrast_names": "flair=Flair,t1c=T1c",
            "label_pattern": "{case}/truth.nii.gz", "mask_pattern": "{case}/brain.nii.gz",
            "label_scheme": "brats2015"}


def test_pattern_from_settings_reads_contrasts_label_mask_and_scheme(tmp_path):
    written = make_pattern_tree(tmp_path)
    reader = resolve_layout(tmp_path, None, SETTINGS)  # the templates imply the pattern layout
    assert reader.key == "pattern"
    ds = open_dataset(tmp_path, layout=reader)
    assert ds.layout == "pattern" and ds.case_ids == ["pat_01", "pat_02"] and ds.scheme == "brats2015"
    for case in ds:
        want = written[case.case_id]
        assert case.contrasts == ["t1c", "flair"] and case.has_label and case.has_mask
        assert case.scheme == "brats2015" and case.files[MASK_KEY].name == "brain.nii.gz"
        arrays = load_case(case)
        np.testing.assert_array_equal(arrays.images["flair"], want["flair"])
        np.testing.assert_array_equal(arrays.images["t1c"], want["t1c"])
        np.testing.assert_array_equal(arrays.label, want["label"])
        np.testing.assert_array_equal(arrays.brain, want["brain"])
        np.testing.assert_array_equal(case.brain_mask(), want["brain"])
        # brats2015: enhancing = 4
        np.testing.assert_array_equal(case.regions()["et"], want["label"] == 4)


def test_pattern_case_in_a_file_name_and_repeated(tmp_path):
    rng = np.random.default_rng(1)
    label = tumour_label(SHAPE, "brats2018", radius=2.5)
    t1, t1ce = synthetic_image(label, rng, 100.0), synthetic_image(label, rng, 200.0)
    for cid in ("site_A_001", "site_A_002"):  # underscores in the id, and 't1' a prefix of 't1ce'
        write_nifti(tmp_path / "flat" / f"{cid}_t1.nii.gz", t1, AFFINE)
        write_nifti(tmp_path / "flat" / f"{cid}_t1ce.nii.gz", t1ce, AFFINE)
    ds = open_dataset(tmp_path / "flat", layout=resolve_layout(tmp_path / "flat", None, {
        "pattern": "{case}_{contrast}.nii.gz", "contrast_names": {"t1": "t1", "t1c": "t1ce"}}), require_label=False)
    assert ds.case_ids == ["site_A_001", "site_A_002"]
    np.testing.assert_array_equal(ds[0].image("t1c"), t1ce)
    np.testing.assert_array_equal(ds[0].image("t1"), t1)
    # {case} twice is the same text both times: B/A_t1.nii.gz is no case
    write_nifti(tmp_path / "nested" / "A" / "A_t1.nii.gz", t1, AFFINE)
    write_nifti(tmp_path / "nested" / "B" / "A_t1.nii.gz", t1, AFFINE)
    ds = open_dataset(tmp_path / "nested", layout=resolve_layout(tmp_path / "nested", "pattern", {
        "pattern": "{case}/{case}_{contrast}.nii.gz", "contrast_names": "t1"}), require_label=False)
    assert ds.case_ids == ["A"] and ds[0].contrasts == ["t1"]


def test_pattern_from_the_yaml_file_wins_over_the_release_names(tmp_path):
    try:
        from tests.layout_trees import make_brats2018_tree
    except ImportError:
        from layout_trees import make_brats2018_tree  # type: ignore[no-redef]
    written = make_brats2018_tree(tmp_path, 2, grades_csv=False)
    assert detect_layout(tmp_path) == "brats2018"
    # the same files, told by the user to hold only two contrasts, under the BraTS 2023 label values
    (tmp_path / LAYOUT_FILE).write_text(
        'pattern: "{case}/{case}_{contrast}.nii.gz"\n'
        "contrast_names: {flair: flair, t1c: t1ce}\n"
        'label_pattern: "{case}/{case}_seg.nii.gz"\n'
        "label_scheme: brats2018\n")
    assert detect_layout(tmp_path) == "pattern"
    ds = open_dataset(tmp_path)
    assert ds.layout == "pattern" and ds.case_ids == sorted(written)
    assert [c.contrasts for c in ds] == [["t1c", "flair"]] * 2 and ds.scheme == "brats2018"
    np.testing.assert_array_equal(ds[0].label(), written[ds[0].case_id].label)
    # an explicit setting wins over the file's, key by key
    ds = open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, {"contrast_names": "flair"}))
    assert [c.contrasts for c in ds] == [["flair"]] * 2 and ds.scheme == "brats2018"


def test_pattern_missing_contrast_is_listed_two_files_are_a_problem(tmp_path):
    make_pattern_tree(tmp_path, cases=("pat_01", "pat_02", "pat_03"))
    (tmp_path / "pat_02" / "T1c_norm.nii.gz").unlink()
    (tmp_path / "pat_03" / "Flair_norm_v2.nii.gz").write_bytes((tmp_path / "pat_03" / "Flair_norm.nii.gz").read_bytes())
    settings = dict(SETTINGS, pattern="{case}/{contrast}_norm*.nii.gz")
    with pytest.raises(DataError, match="pat_03.*several flair image files"):
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, settings))
    with pytest.warns(UserWarning, match="several flair image files"):
        ds = open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, settings), on_bad_case="skip")
    assert ds.case_ids == ["pat_01", "pat_02"] and ds["pat_02"].contrasts == ["flair"]


def test_pattern_missing_label_and_label_without_images(tmp_path):
    make_pattern_tree(tmp_path, cases=("pat_01", "pat_02"))
    (tmp_path / "pat_02" / "truth.nii.gz").unlink()
    with pytest.raises(DataError, match=r"pat_02.*missing label file.*pat_02/truth\.nii\.gz"):
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, SETTINGS))
    ds = open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, SETTINGS), require_label=False)
    assert [c.has_label for c in ds] == [True, False]
    # labels required but no label template at all: one error, not one per case
    with pytest.raises(DataError, match="no label pattern"):
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, {"pattern": SETTINGS["pattern"]}))
    write_nifti(tmp_path / "pat_09" / "truth.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
    with pytest.raises(DataError, match="pat_09.*no image file of any contrast"):
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, SETTINGS), require_label=False)


@pytest.mark.parametrize("change, says", [
    ({"pattern": "images/{contrast}.nii.gz"}, ["has no {case}"]),
    ({"pattern": "{case}/flair.nii.gz"}, ["has no {contrast}"]),
    ({"pattern": "{subject}/{contrast}.nii.gz"}, ["unknown placeholder {subject}"]),
    ({"pattern": "{case/{contrast}.nii.gz"}, ["unbalanced"]),
    ({"pattern": "../{case}/{contrast}.nii.gz"}, ["inside the data folder"]),
    ({"label_pattern": "{case}/{contrast}_seg.nii.gz"}, ["{contrast} belongs in the image pattern only"]),
    ({"mask_pattern": "brainmask.nii.gz"}, ["--mask", "has no {case}"]),
    ({"contrast_names": "pd=PD"}, ["unknown contrast 'pd'", "t1, t1c, t2, flair"]),
    ({"contrast_names": "flair=X,t1c=X"}, ["two contrasts are named 'X'"]),
    ({"label_scheme": "brats2099"}, ["unknown label scheme 'brats2099'", "brats2015, brats2018"]),
    ({"label_scheme": None}, ["no label scheme", "--label-scheme"]),
])
def test_pattern_bad_settings_are_clear_errors(tmp_path, change, says):
    make_pattern_tree(tmp_path)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, {**SETTINGS, **change}))
    for text in says:
        assert text in str(ei.value)


def test_pattern_that_matches_nothing_says_so(tmp_path):
    make_pattern_tree(tmp_path)
    with pytest.raises(DataError, match=r"no file matches the pattern.*flair=FLAIR.*case-sensitively"):
        open_dataset(tmp_path, layout=resolve_layout(tmp_path, None, {**SETTINGS, "contrast_names": "flair=FLAIR"}))


def test_pattern_yaml_file_errors_name_the_file(tmp_path):
    make_pattern_tree(tmp_path)
    (tmp_path / LAYOUT_FILE).write_text('pattern: "{case}/{contrast}_norm.nii.gz"\nlabel: "{case}/truth.nii.gz"\n')
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    assert LAYOUT_FILE in str(ei.value) and "unknown setting(s) label" in str(ei.value)
    (tmp_path / LAYOUT_FILE).write_text('pattern: "{case}/{contrast}_norm.nii.gz"\ncontrast_names: {pd: PD}\n')
    with pytest.raises(DataError, match=f"{LAYOUT_FILE}: contrast_names: unknown contrast 'pd'"):
        open_dataset(tmp_path, require_label=False)


def test_layout_settings_that_do_not_fit_the_layout_are_refused(tmp_path):
    try:
        from tests.layout_trees import make_brats2018_tree
    except ImportError:
        from layout_trees import make_brats2018_tree  # type: ignore[no-redef]
    make_brats2018_tree(tmp_path, 1)
    with pytest.raises(DataError, match="--pattern describe files for the pattern layout"):
        resolve_layout(tmp_path, "brats2018", {"pattern": "{case}/{contrast}.nii.gz"})
    with pytest.raises(DataError, match="has its own label scheme"):
        resolve_layout(tmp_path, None, {"label_scheme": "brats2023"})
    with pytest.raises(DataError, match="unknown layout 'brats2030'"):
        resolve_layout(tmp_path, "brats2030")


# ---------------------------------------------------------------- command line and profile


def test_cli_layout_choices_are_the_registry_keys():
    from segan_lib import cli

    assert cli.LAYOUT_CHOICES == tuple(LAYOUTS)
    assert cli.LABEL_SCHEME_CHOICES == tuple(LABEL_SCHEMES)


def test_cli_info_with_pattern_options_and_with_the_yaml_file(tmp_path, monkeypatch, capsys):
    from segan_lib.cli import main

    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "project"))
    make_pattern_tree(tmp_path / "data")
    args = ["info", "--data", str(tmp_path / "data"), "--pattern", SETTINGS["pattern"], "--contrast-names",
            SETTINGS["contrast_names"], "--label", SETTINGS["label_pattern"], "--mask", SETTINGS["mask_pattern"],
            "--label-scheme", "brats2015", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "pattern" and summary["n_cases"] == 2 and summary["n_with_mask"] == 2
    assert summary["label_scheme"] == [0, 1, 2, 3, 4]
    assert main(["info", str(tmp_path / "data"), "--layout", "brats2018", "--pattern", SETTINGS["pattern"]]) == 2
    assert "describe files for the pattern layout" in capsys.readouterr().err
    (tmp_path / "data" / LAYOUT_FILE).write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in SETTINGS.items()))
    assert main(["info", str(tmp_path / "data"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "pattern" and summary["contrasts"]["flair"]["cases"] == 2


def test_profile_layout_settings(tmp_path):
    from segan_lib.config import load_profile
    from segan_lib.data.profile_data import open_profile_dataset

    make_pattern_tree(tmp_path)
    overrides = [f"data.root={json.dumps(str(tmp_path))}"] + [f"data.{k}={json.dumps(v)}" for k, v in SETTINGS.items()]
    profile = load_profile("smoke", overrides)
    assert profile.data.layout_settings() == SETTINGS
    ds = open_profile_dataset(profile)
    assert ds.layout == "pattern" and ds.case_ids == ["pat_01", "pat_02"]
    with pytest.raises(ConfigError, match="data.pattern describe files for the pattern layout"):
        load_profile("smoke", ["data.layout=msd", 'data.pattern="{case}/{contrast}.nii.gz"'])
    with pytest.raises(ConfigError, match="data.label_scheme is for the pattern and nnunet layouts"):
        load_profile("smoke", ["data.layout=brats2018", "data.label_scheme=brats2023"])


# ---------------------------------------------------------------- the real BRATS 2015 cases


def test_real_brats2015_through_the_pattern_layout(real_brats_root):
    """The two real cases as their README names the files: FLAIR and T1c only, the label in
    OTMultiClass (float32 0..4), a float brain mask."""
    settings = {"pattern": "{case}/{contrast}_subtrMeanDivStd.nii.gz", "contrast_names": "flair=Flair,t1c=T1c",
                "label_pattern": "{case}/OTMultiClass.nii.gz", "mask_pattern": "{case}/brainmask.nii.gz",
                "label_scheme": "brats2015"}
    ds = open_dataset(real_brats_root, layout=resolve_layout(real_brats_root, None, settings))
    assert ds.layout == "pattern" and ds.case_ids == ["brats_2013_pat0003_1", "brats_2013_pat0004_1"]
    for case in ds:
        assert case.contrasts == ["t1c", "flair"] and case.scheme == "brats2015"
        assert case.has_label and case.has_mask
    summary = summarize_dataset(ds, deep=True)
    assert summary["bad"] == [] and summary["shapes"] == {"240x240x155": 2}
    assert summary["label_values"] == [0, 1, 2, 3, 4] and summary["n_with_mask"] == 2
    for case in ds:
        brain, tumour = case.brain_mask(), case.whole_tumour()
        # the mask holds the brain, not the field of view (measured: 18.9% and 13.9% of the voxels), and
        # the tumour lies inside it (measured: all but 120 of 173928 and 14 of 120674 tumour voxels)
        assert 0.05 < brain.mean() < 0.5
        assert np.count_nonzero(tumour & brain) / np.count_nonzero(tumour) > 0.999
