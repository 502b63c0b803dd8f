"""The embedded phantom: layout, determinism, labels, grades and contrast relations.

Most tests run at 4 mm (a subject in a fraction of a second); one runs at 1 mm for the
BraTS geometry.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from segan_lib.data import phantom as P
from segan_lib.errors import DataError

FAST = 4.0  # mm


def _hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fast_subjects():
    """A few HGG and LGG subjects at 4 mm, with their deformed tissue maps (same random stream)."""
    out = []
    for index in range(8):
        grade = "LGG" if index % 2 else "HGG"
        subject = P.make_subject(7, index, grade, FAST)
        tissues = P._deform_anatomy(P._subject_streams(7, index)[0], P._anatomy(FAST))
        out.append((subject, tissues))
    return out


def _full(tissues, array):
    shape = P.grid_shape(FAST)
    full = np.zeros(shape, array.dtype)
    full[tissues.bbox] = array
    return full


# ---------------------------------------------------------------------------------- grades


def test_grade_proportions_follow_the_paper():
    grades = P.phantom_grades(274, seed=0)
    assert (grades.count("HGG"), grades.count("LGG")) == (220, 54)
    grades = P.phantom_grades(60, seed=3)
    assert (grades.count("HGG"), grades.count("LGG")) == (48, 12)
    assert P.phantom_grades(60, seed=3) == grades  # deterministic
    assert P.phantom_grades(60, seed=4) != grades  # and seeded
    assert P.phantom_grades(0, seed=0) == []


# ---------------------------------------------------------------------------------- subjects


def test_subject_arrays_labels_and_brain(fast_subjects):
    for subject, tissues in fast_subjects:
        assert set(subject.images) == {"t1", "t1c", "t2", "flair"}
        for image in subject.images.values():
            assert image.dtype == np.int16 and image.shape == P.grid_shape(FAST)
            assert image.min() >= 0
        assert subject.label.dtype == np.uint8
        assert set(np.unique(subject.label)) <= {0, 1, 2, 4}
        assert (subject.label > 0).sum() * FAST**3 / 1000 > 5.0  # ml of tumour
        brain = _full(tissues, tissues.brain)
        assert not (subject.label[~brain] > 0).any(), "label outside the brain"
        for image in subject.images.values():  # skull-stripped: 0 outside, > 0 inside
            assert not image[~brain].any() and (image[brain] > 0).all()


def test_high_and_low_grade_differ(fast_subjects):
    def fractions(subject):
        lab = subject.label
        return (lab == 4).sum() / (lab > 0).sum(), np.isin(lab, (1, 4)).sum() / (lab > 0).sum()

    hgg = [fractions(s) for s, _ in fast_subjects if s.grade == "HGG"]
    lgg = [fractions(s) for s, _ in fast_subjects if s.grade == "LGG"]
    assert all(et > 0.05 for et, _ in hgg), hgg
    assert np.mean([et for et, _ in lgg]) < 0.3 * np.mean([et for et, _ in hgg])
    assert np.mean([core for _, core in lgg]) > np.mean([core for _, core in hgg])  # larger core, less oedema


def test_contrast_relations(fast_subjects):
    for subject, tissues in fast_subjects:
        lab, im = subject.label, {k: v.astype(float) for k, v in subject.images.items()}
        wm = _full(tissues, tissues.wm) > 0.9
        csf = _full(tissues, tissues.csf) > 0.9
        wm &= lab == 0
        csf &= lab == 0
        oedema, enhancing = lab == 2, lab == 4

        def mean(name, mask):
            return im[name][mask].mean()

        assert mean("flair", oedema) > 1.3 * mean("flair", wm)
        assert mean("t2", oedema) > 1.3 * mean("t2", wm)
        assert mean("flair", csf) < 0.6 * mean("flair", wm)
        assert mean("t2", csf) > 1.5 * mean("t2", wm)
        if enhancing.sum() >= 5:  # each scan has its own scale: compare relative to white matter
            assert mean("t1c", enhancing) / mean("t1c", wm) > 1.1 * mean("t1", enhancing) / mean("t1", wm)
        # T1 is the weakest contrast for the oedema
        t1_contrast = abs(mean("t1", oedema) / mean("t1", wm) - 1)
        assert t1_contrast < abs(mean("flair", oedema) / mean("flair", wm) - 1)


def test_geometry_at_1mm_and_2mm():
    subject = P.make_subject(0, 0, "HGG", 1.0)
    assert subject.label.shape == (240, 240, 155) and subject.images["flair"].shape == (240, 240, 155)
    assert np.allclose(np.diag(subject.affine)[:3], [-1, -1, 1])
    assert subject.case_id == "Phantom_000" and subject.grade == "HGG"
    # brain centre near world 0
    centre = np.argwhere(subject.images["t1"] > 0).mean(0)
    assert np.abs((subject.affine @ np.r_[centre, 1])[:3]).max() < 20

    assert P.grid_shape(2.0) == (120, 120, 78)
    affine2 = P.brats_affine(2.0)
    assert np.allclose(np.diag(affine2)[:3], [-2, -2, 2])
    # the grid centre maps to world 0 at every voxel size
    for s in (1.0, 2.0):
        c = (np.array(P.grid_shape(s)) - 1) / 2
        assert np.allclose((P.brats_affine(s) @ np.r_[c, 1])[:3], 0)


def test_same_subject_is_reproducible_and_seeded():
    a = P.make_subject(5, 2, "LGG", FAST)
    b = P.make_subject(5, 2, "LGG", FAST)
    c = P.make_subject(6, 2, "LGG", FAST)
    assert all(np.array_equal(a.images[k], b.images[k]) for k in a.images)
    assert np.array_equal(a.label, b.label)
    assert not np.array_equal(a.images["flair"], c.images["flair"])


# ---------------------------------------------------------------------------------- the folder


def test_written_layout(tmp_path):
    out = tmp_path / "ph"
    ids = P.generate_phantom(out, n=3, seed=1, voxel_size=FAST)
    assert ids == ["Phantom_000", "Phantom_001", "Phantom_002"]
    with open(out / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["case_id"], r["grade"]) for r in rows] == list(zip(ids, P.phantom_grades(3, 1)))
    meta = json.loads((out / "phantom.json").read_text())
    assert (meta["n"], meta["seed"], meta["voxel_size"], meta["shape"]) == (3, 1, FAST, list(P.grid_shape(FAST)))
    assert meta["segan_lib_version"]
    for cid in ids:
        files = sorted(p.name for p in (out / cid).iterdir())
        assert files == sorted(f"{cid}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair", "seg"))
        imgs = {p.name: nib.load(p) for p in (out / cid).iterdir()}
        affines = [img.affine for img in imgs.values()]
        assert all(np.allclose(a, affines[0]) for a in affines)
        assert np.allclose(affines[0], P.brats_affine(FAST))
        assert imgs[f"{cid}_t1.nii.gz"].get_data_dtype() == np.int16
        assert imgs[f"{cid}_seg.nii.gz"].get_data_dtype() == np.uint8
        raw = (out / cid / f"{cid}_flair.nii.gz").read_bytes()
        assert raw[3] == 0 and raw[4:8] == b"\0\0\0\0"  # gzip header: no file name, mtime 0
        assert int.from_bytes(gzip.decompress(raw)[:4], "little") == 348  # a NIfTI-1 header inside
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    P.generate_phantom(a, n=3, seed=11, voxel_size=FAST)
    P.generate_phantom(b, n=3, seed=11, voxel_size=FAST, workers=2)
    P.generate_phantom(c, n=3, seed=12, voxel_size=FAST)
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert ha == hb
    images = [k for k in ha if k.endswith(".nii.gz")]
    assert len(images) == 15
    assert all(ha[k] != hc[k] for k in images)


def test_subject_does_not_depend_on_n(tmp_path):
    P.generate_phantom(tmp_path / "a", n=3, seed=2, voxel_size=FAST)
    P.generate_phantom(tmp_path / "b", n=5, seed=2, voxel_size=FAST)
    ha, hb = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    g3, g5 = P.phantom_grades(3, 2), P.phantom_grades(5, 2)
    same = [i for i in range(3) if g3[i] == g5[i]]
    assert same
    for i in same:
        cid = P.case_id_for(i)
        assert {k: v for k, v in ha.items() if k.startswith(cid)} == {k: v for k, v in hb.items() if k.startswith(cid)}


def test_rerun_skips_complete_cases_and_fills_missing(tmp_path):
    out = tmp_path / "ph"
    P.generate_phantom(out, n=3, seed=4, voxel_size=FAST)
    before = _hashes(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    shutil.rmtree(out / "Phantom_001")
    (out / ".Phantom_002.tmp-999").mkdir()  # a crashed run's leftover
    P.generate_phantom(out, n=3, seed=4, voxel_size=FAST)
    assert _hashes(out) == before
    for p, t in mtimes.items():
        if "Phantom_001" not in p.name:
            assert p.stat().st_mtime_ns == t, f"{p.name} was rewritten"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_other_parameters_are_an_error_unless_overwrite(tmp_path):
    out = tmp_path / "ph"
    P.generate_phantom(out, n=2, seed=4, voxel_size=FAST)
    with pytest.raises(DataError, match="ph"):
        P.generate_phantom(out, n=2, seed=5, voxel_size=FAST)
    with pytest.raises(DataError, match="other parameters"):
        P.generate_phantom(out, n=3, seed=4, voxel_size=FAST)
    P.generate_phantom(out, n=2, seed=5, voxel_size=FAST, overwrite=True)
    assert json.loads((out / "phantom.json").read_text())["seed"] == 5
    P.generate_phantom(tmp_path / "fresh", n=2, seed=5, voxel_size=FAST)
    assert _hashes(out) == _hashes(tmp_path / "fresh")

    foreign = tmp_path / "someone_elses"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no phantom.json"):
        P.generate_phantom(foreign, n=1, seed=0, voxel_size=FAST)


def test_bad_arguments():
    from segan_lib.errors import ConfigError

    with pytest.raises(ConfigError):
        P.make_subject(0, 0, "GBM", FAST)
    with pytest.raises(ConfigError):
        P.make_subject(0, 0, "HGG", 0.0)
    with pytest.raises(ConfigError):
        P.make_subject(-1, 0, "HGG", FAST)


# ---------------------------------------------------------------------------------- figure


def test_overview_figure(fast_subjects):
    from segan_lib.reporting.figures import subject_overview_figure, tumour_slice

    subject, _ = fast_subjects[0]
    fig = subject_overview_figure(subject.images, subject.label, title=subject.case_id)
    assert len(fig.axes) == 5
    k = tumour_slice(subject.label)
    assert (subject.label[:, :, k] > 0).sum() == (subject.label > 0).sum(axis=(0, 1)).max()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:4] == b"\x89PNG"
