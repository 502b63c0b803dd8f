"""notebooks/01_data_exploration.ipynb through papermill on data sets without a high-grade case.

A 6-subject 4 mm phantom whose grades.csv is removed (as MSD or BraTS 2023: no grades at all):
the notebook must run to the end and show one subject, `data_subject_unknown`. Then the same
data with `data.grades_file` naming a CSV outside the data folder that grades one case LGG and
leaves the rest unknown: the notebook must read that file (the profile's data settings, via
`open_profile_dataset`) and show an LGG and an ungraded subject, no HGG.
"""
import json

import pytest

from segan_lib.config import load_profile

OVERRIDES = {"data.phantom_n": 6}


@pytest.fixture(scope="module")
def ungraded(tmp_path_factory):
    """SEGAN_ROOT with the phantom (grades.csv removed), its cache and an unstratified split."""
    root = tmp_path_factory.mktemp("ungraded")
    mp = pytest.MonkeyPatch()
    mp.setenv("SEGAN_ROOT", str(root))
    from segan_lib.data.cache import build_cache
    from segan_lib.data.phantom import generate_phantom
    from segan_lib.data.profile_data import open_profile_dataset
    from segan_lib.data.splits import default_splits_path, ensure_split

    profile = load_profile("smoke", [f"{k}={v}" for k, v in OVERRIDES.items()])
    generate_phantom(profile.data_root, n=6, seed=0, voxel_size=4.0)
    (profile.data_root / "grades.csv").unlink()
    ds = open_profile_dataset(profile)
    assert {c.grade for c in ds} == {None}
    build_cache(ds, profile.preprocess, log=None)
    ensure_split(default_splits_path(profile.data_root), {c.case_id: None for c in ds}, seed=0, stratify=False)
    yield root, [c.case_id for c in ds]
    mp.undo()


def _run(root, out_name, overrides):
    from segan_lib.study.notebook import run_notebook

    out = root / out_name
    nb = run_notebook("01_data_exploration.ipynb", root / "runs" / out_name,
                      {"profile": "smoke", "overrides": {**OVERRIDES, **overrides}, "out_dir": str(out)})
    return out, json.loads(nb.read_text())


def test_no_grades_shows_one_subject(ungraded):
    root, _ = ungraded
    out, nb = _run(root, "no_grades", {})
    assert sorted(p.name for p in out.glob("data_subject_*")) == ["data_subject_unknown.pdf",
                                                                   "data_subject_unknown.png"]
    assert (out / "data_tumour_volumes.png").exists() and (out / "data_intensities.png").exists()
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_the_profiles_grades_file_is_read(ungraded, tmp_path):
    root, case_ids = ungraded
    grades = tmp_path / "my_grades.csv"
    grades.write_text("case_id,grade\n" + "".join(f"{c},{'LGG' if i == 2 else ''}\n" for i, c in enumerate(case_ids)))
    out, _ = _run(root, "grades_file", {"data.grades_file": str(grades)})
    assert sorted(p.stem for p in out.glob("data_subject_*.png")) == ["data_subject_LGG", "data_subject_unknown"]
