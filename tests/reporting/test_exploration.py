"""The data-exploration notebook's choice of subjects (segan_lib.reporting.exploration): one per grade present.

A data set without any high-grade case (MSD, BraTS 2023: no grades at all; or only LGG) must
give the subjects it has, not stop; the cases left out of the cache (skipped as bad) are not picked.
"""
from types import SimpleNamespace

import pytest

from segan_lib.data import open_dataset
from segan_lib.errors import SeganError
from segan_lib.reporting import UNKNOWN_GRADE, subjects_per_grade, viewer_subject
from tests.layout_trees import make_brats2018_tree, make_msd_tree


def cases(*grades):
    return [SimpleNamespace(case_id=f"c{i}", grade=g) for i, g in enumerate(grades)]


def ids(picked):
    return {grade: case.case_id for grade, case in picked.items()}


def test_the_first_subject_of_each_grade_in_grade_order():
    assert ids(subjects_per_grade(cases("LGG", "HGG", "LGG", "HGG"))) == {"HGG": "c1", "LGG": "c0"}
    assert list(subjects_per_grade(cases("LGG", "HGG"))) == ["HGG", "LGG"]
    assert viewer_subject(cases("LGG", "HGG")).case_id == "c1"  # the high-grade one


def test_no_grades_gives_one_subject_and_missing_grades_give_none():
    assert ids(subjects_per_grade(cases(None, None, None))) == {UNKNOWN_GRADE: "c0"}
    assert UNKNOWN_GRADE == "unknown"
    assert ids(subjects_per_grade(cases("LGG", "LGG"))) == {"LGG": "c0"}  # no HGG: no StopIteration
    assert viewer_subject(cases("LGG", "LGG")).case_id == "c0"
    assert viewer_subject(cases(None, None)).case_id == "c0"
    assert ids(subjects_per_grade(cases(None, "LGG", None, "HGG"))) == {"HGG": "c3", "LGG": "c1", UNKNOWN_GRADE: "c0"}


def test_only_the_cases_given_count():
    picked = subjects_per_grade(cases("HGG", "HGG", "LGG"), among=["c1", "c2"])  # c0 not in the cache
    assert ids(picked) == {"HGG": "c1", "LGG": "c2"}
    with pytest.raises(SeganError, match="no case to show"):
        subjects_per_grade(cases("HGG"), among=[])
    with pytest.raises(SeganError, match="no case to show"):
        viewer_subject([])


def test_real_data_sets_without_grades(tmp_path):
    make_msd_tree(tmp_path / "msd", n=3)
    msd = open_dataset(tmp_path / "msd")
    assert ids(subjects_per_grade(msd)) == {UNKNOWN_GRADE: "BRATS_001"}
    make_brats2018_tree(tmp_path / "b18", n=3, grades_csv=True)  # HGG, LGG, HGG from grades.csv
    b18 = open_dataset(tmp_path / "b18")
    assert list(subjects_per_grade(b18)) == ["HGG", "LGG"]
    assert viewer_subject(b18).grade == "HGG"
