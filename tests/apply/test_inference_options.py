"""Inference options of `segan predict`: flip TTA, ensembles, small-component removal, folder probabilities."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.apply.test_predict import case_arrays


# ---------------------------------------------------------------- test-time augmentation
def test_the_flips_follow_the_training_orientation():
    from segan_lib.apply.tta import tta_flips
    from segan_lib.errors import SeganError

    card = lambda codes: {"preprocessing": {"orientation": codes}}  # noqa: E731
    assert tta_flips(card(["L", "P", "S"]), None) == [()]
    assert tta_flips(card(["L", "P", "S"]), "lr") == [(), (1,)]  # volume axis 0 is the stack's axis 1
    assert tta_flips(card(["A", "R", "S"]), "lr") == [(), (2,)]
    assert tta_flips(card(None), "lr") == [(), (1,)]  # unknown: BraTS' left-right first
    assert tta_flips(card(["L", "P", "S"]), "inplane") == [(), (1,), (2,), (1, 2)]
    with pytest.raises(SeganError, match="left-right along the slice axis"):
        tta_flips(card(["S", "P", "L"]), "lr")
    with pytest.raises(SeganError, match="unknown test-time augmentation"):
        tta_flips(card(["L", "P", "S"]), "rotate")


def test_flipped_predictions_are_flipped_back_and_averaged():
    """By hand: predict = cumulative sum along X of x = [1, 2]: identity [1, 3]; flipped [2, 1] -> [2, 3],
    back [3, 2]; mean [2, 2.5]."""
    from segan_lib.apply.tta import predict_flipped

    x = np.array([1.0, 2.0], np.float32).reshape(1, 2, 1, 1)
    out = predict_flipped(lambda a: np.cumsum(a, axis=1), x, [(), (1,)])
    np.testing.assert_array_equal(out.ravel(), [2.0, 2.5])


def test_tta_makes_the_segmentor_equivariant_to_the_left_right_flip(bundle):
    """mean(P(x), flip P(flip x)) flipped is mean(flip P(x), P(flip x)): the same two terms, so the same bits."""
    from segan_lib.apply.tta import predict_flipped
    from segan_lib.nets.inference import predict_array

    x = np.random.default_rng(0).random((3, 45, 38, 4), dtype=np.float32)  # odd padding on both axes
    predict = lambda a: predict_array(bundle.segmentor, a)  # noqa: E731
    plain = predict(x)
    assert np.abs(np.flip(predict(np.flip(x, 1)), 1) - plain).max() > 1e-3  # the network alone is not
    tta = predict_flipped(predict, x, [(), (1,)])
    np.testing.assert_array_equal(predict_flipped(predict, np.ascontiguousarray(np.flip(x, 1)), [(), (1,)]),
                                  np.flip(tta, 1))


def test_predict_case_runs_one_pass_per_flip(env, bundle):
    import dataclasses

    from segan_lib.apply.predict import predict_case

    class Counting:
        def __init__(self, segmentor):
            self.segmentor, self.flipped = segmentor, []
            self.first = None

        def predict_on_batch(self, x):
            self.first = x if self.first is None else self.first
            self.flipped.append(np.array_equal(x, self.first[:, ::-1]))
            return self.segmentor.predict_on_batch(x)

    arrays = case_arrays(env, 1)
    passes = {}
    for tta in (None, "lr", "inplane"):
        counting = Counting(bundle.segmentor)
        result = predict_case(dataclasses.replace(bundle, segmentor=counting), arrays, tta=tta)
        passes[tta] = len(counting.flipped)
        if tta == "lr":  # the second pass sees the first batch mirrored along the left-right axis (stack axis 1)
            assert counting.flipped[passes[tta] // 2] and not counting.flipped[0]
            plain = predict_case(bundle, arrays)
            assert 0 < np.abs(result.probability - plain.probability).max() < 0.5
    assert passes["lr"] == 2 * passes[None] and passes["inplane"] == 4 * passes[None]


# ---------------------------------------------------------------- small components
def _blobs():
    """A 0/1 mask with components of 1 voxel, 2 voxels touching by a corner only, and 8 voxels (2x2x2)."""
    m = np.zeros((10, 10, 10), np.uint8)
    m[0, 0, 0] = 1
    m[4, 4, 4] = m[5, 5, 5] = 1  # one component with 26-connectivity, two with 6
    m[7:9, 7:9, 7:9] = 1
    return m


def test_components_below_the_volume_are_removed_26_connected():
    from segan_lib.apply.components import remove_small_components

    m = _blobs()
    voxel_ml = 0.001  # 1 mm isotropic
    assert remove_small_components(m, voxel_ml, 0.0) is m
    kept = remove_small_components(m, voxel_ml, 0.002)  # 2 voxels = 0.002 ml: kept (the limit itself stays)
    assert kept.sum() == 10 and kept[0, 0, 0] == 0 and kept[4, 4, 4] == kept[5, 5, 5] == 1
    kept = remove_small_components(m, voxel_ml, 0.003)
    assert kept.sum() == 8 and kept[7:9, 7:9, 7:9].all()
    assert remove_small_components(m, 0.008, 0.05).sum() == 8  # 2 mm voxels: 8 x 0.008 = 0.064 ml >= 0.05
    assert remove_small_components(m, voxel_ml, 1.0).sum() == 0


def test_three_region_masks_are_cleaned_from_the_outside_in():
    from segan_lib.apply.components import remove_small_components
    from segan_lib.apply.labels import REGION_LABELS

    oedema, core, enhancing = REGION_LABELS["brats2018"]  # 2, 1, 4
    m = np.zeros((12, 12, 12), np.uint8)
    m[1:5, 1:5, 1:5] = oedema  # 64 voxels of tumour ...
    m[1, 1, 1] = core  # ... holding a 1-voxel core (not touching the other) ...
    m[3:5, 3:5, 3:5] = core  # ... and an 8-voxel core with a 1-voxel enhancing part
    m[4, 4, 4] = enhancing
    m[8, 8, 8] = enhancing  # a lone 1-voxel tumour, all enhancing
    out = remove_small_components(m, 0.001, 0.005, "brats2018")  # 5 voxels
    assert out[8, 8, 8] == 0  # a small whole tumour goes with what it holds
    assert out[1, 1, 1] == oedema  # a small core is still tumour
    assert out[4, 4, 4] == core  # a small enhancing part is still core
    assert (out[3:5, 3:5, 3:5] == core).all() and (out > 0).sum() == 64


def test_predict_case_removes_small_components_of_the_mask(env, bundle):
    from scipy import ndimage

    from segan_lib.apply.predict import predict_case
    from segan_lib.errors import SeganError

    arrays = case_arrays(env, 0)
    base = predict_case(bundle, arrays)
    labels, n = ndimage.label(base.mask > 0, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:] * base.voxel_ml
    assert n >= 2, "the tiny model's mask needs two components for this test"
    limit = float(np.sort(sizes)[-1])  # keep the largest component only
    cleaned = predict_case(bundle, arrays, min_component_ml=limit)
    assert cleaned.tumour_ml == pytest.approx(limit) and set(np.unique(cleaned.mask[base.mask == 0])) == {0}
    np.testing.assert_array_equal(cleaned.probability, base.probability)  # the probability map is the model's
    with pytest.raises(SeganError, match="min-component-ml"):
        predict_case(bundle, arrays, min_component_ml=-1)


# ---------------------------------------------------------------- ensembles
def _shifted_bundle(bundle, folder, shift: float):
    """A copy of the bundle whose output bias is moved by `shift` (other weights, another id)."""
    from segan_lib.apply.bundle import WEIGHTS, _file_sha256

    shutil.copytree(bundle.path, folder)
    with np.load(folder / WEIGHTS) as z:
        arrays = {k: z[k] for k in z.files}
    last = sorted(arrays)[-1]  # the output convolution's bias, the segmentor's last variable
    arrays[last] = arrays[last] + np.float32(shift)
    np.savez(folder / WEIGHTS, **arrays)
    card = json.loads((folder / "card.json").read_text())
    card["weights"]["sha256"] = _file_sha256(folder / WEIGHTS)
    card.pop("onnx")  # the ONNX graph holds the old weights
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_an_ensemble_averages_its_members_probabilities(env, bundle, tmp_path):
    from segan_lib.apply.bundle import load_bundle
    from segan_lib.apply.ensemble import load_models, make_ensemble
    from segan_lib.apply.predict import predict_case

    other = load_bundle(_shifted_bundle(bundle, tmp_path / "other", 1.0))
    arrays = case_arrays(env, 0)
    a, b = predict_case(bundle, arrays), predict_case(other, arrays)
    ens = make_ensemble([bundle, other])
    both = predict_case(ens, arrays)
    # the mean is taken before the linear resampling back to the input grid: the same up to rounding
    # (measured 0 over the 10 cases: the phantom's 4 mm is the bundle's, nothing is resampled)
    np.testing.assert_allclose(both.probability, (a.probability + b.probability) / 2, rtol=0, atol=1e-6)
    assert np.abs(a.probability - b.probability).max() > 0.05  # the members do differ
    assert both.bundle_id == f"{bundle.id}+{other.id}" and both.descrip().startswith(f"segan bundle {bundle.id}+")
    same = predict_case(make_ensemble([bundle, bundle]), arrays)  # (p + p) / 2 is p exactly
    np.testing.assert_array_equal(same.probability, a.probability)
    assert make_ensemble([bundle]) is bundle
    assert load_models([bundle.path, other.path]).engine == "tensorflow"  # one member has no ONNX file


def test_an_ensemble_of_different_inputs_is_refused_naming_the_field(bundle, tmp_path):
    from segan_lib.apply.ensemble import load_models
    from segan_lib.errors import SeganError

    for field, change in (("contrasts", lambda c: c.update(contrasts=["t2", "t1", "t1c", "flair"])),
                          ("preprocessing.crop_shape", lambda c: c["preprocessing"].update(crop_shape=[64, 64, 16])),
                          ("regions", lambda c: c.update(regions=["wt", "tc", "et"]))):
        other = tmp_path / field
        shutil.copytree(bundle.path, other)
        card = json.loads((other / "card.json").read_text())
        change(card)
        (other / "card.json").write_text(json.dumps(card))
        with pytest.raises(SeganError, match=f"differ in {field}: .* has .*, .*{field}"):
            load_models([bundle.path, other])


# ---------------------------------------------------------------- folders
def test_folder_mode_writes_a_probability_map_per_case_with_the_options(env, bundle, tmp_path):
    import pandas as pd

    from segan_lib.cli import main

    src = tmp_path / "scans"
    src.mkdir()
    for name in sorted(p.name for p in env["data"].iterdir() if p.is_dir())[:2]:
        shutil.copytree(env["data"] / name, src / name)
    out = tmp_path / "masks"
    args = ["predict", "--model", str(bundle.path), "--input", str(src), "--output", str(out), "--quiet",
            "--probabilities", "--tta", "--min-component-ml", "0.5"]
    assert main(args) == 0
    table = pd.read_csv(out / "summary.csv")
    assert list(table["status"]) == ["ok", "ok"]
    for cid in table["case_id"]:
        mask, prob = nib.load(str(out / f"{cid}.nii.gz")), nib.load(str(out / f"{cid}_probability.nii.gz"))
        assert mask.shape == prob.shape and prob.get_data_dtype() == np.float32
        assert prob.header["descrip"][()].decode() == f"segan bundle {bundle.id} wt probability"
    assert main(args) == 1  # existing maps are not overwritten silently
    assert main(args + ["--overwrite"]) == 0
