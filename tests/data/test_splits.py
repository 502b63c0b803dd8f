import json
from collections import Counter

import pytest

from segan_lib.errors import DataError
from segan_lib.data.splits import check_no_leak, ensure_split, load_split, make_split, subset_counts


def brats2015_grades():
    g = {f"HGG_{i:03d}": "HGG" for i in range(220)}
    g.update({f"LGG_{i:03d}": "LGG" for i in range(54)})
    return g


def test_paper_counts_and_stratification():
    assert subset_counts(274, (0.8, 0.1, 0.1)) == (219, 27, 28)
    g = brats2015_grades()
    s = make_split(g, seed=0)
    assert s.counts() == {"train": 219, "val": 27, "test": 28}
    grades = {name: Counter(g[c] for c in s.subset(name)) for name in ("train", "val", "test")}
    assert grades == {"train": {"HGG": 176, "LGG": 43}, "val": {"HGG": 22, "LGG": 5}, "test": {"HGG": 22, "LGG": 6}}
    assert s.stratified_by == "grade"


def test_phantom_sized_split():
    g = {f"c{i:02d}": ("LGG" if i < 12 else "HGG") for i in range(60)}
    s = make_split(g, seed=0)
    assert s.counts() == {"train": 48, "val": 6, "test": 6}
    assert Counter(g[c] for c in s.test) == {"HGG": 5, "LGG": 1}


def test_deterministic_and_seed_dependent():
    g = brats2015_grades()
    assert make_split(g, seed=5) == make_split(dict(reversed(list(g.items()))), seed=5)
    assert make_split(g, seed=5).test != make_split(g, seed=6).test


def test_unknown_grades_are_not_stratified():
    s = make_split({f"c{i}": None for i in range(10)}, seed=0)
    assert s.stratified_by is None and s.counts() == {"train": 8, "val": 1, "test": 1}


def test_leak_check():
    s = make_split({f"c{i}": None for i in range(10)}, seed=0)
    check_no_leak(s, [f"c{i}" for i in range(10)])
    leaky = type(s)(s.train + (s.test[0],), s.val, s.test, 0, (0.8, 0.1, 0.1), None)
    with pytest.raises(DataError, match=f"case {s.test[0]} is in both 'train' and 'test'"):
        check_no_leak(leaky)
    with pytest.raises(DataError, match="not in the data set"):
        check_no_leak(s, [f"c{i}" for i in range(9)])


def test_written_once_reused_never_silently_overwritten(tmp_path):
    path = tmp_path / "splits.json"
    g = {f"c{i}": "HGG" for i in range(20)}
    s1, created = ensure_split(path, g, seed=0)
    assert created and json.loads(path.read_text())["counts"] == {"train": 16, "val": 2, "test": 2}
    before = path.read_bytes()
    s2, created = ensure_split(path, g, seed=0)
    assert not created and s2 == s1 and path.read_bytes() == before
    with pytest.raises(DataError, match="seed 0 .* not seed 1"):
        ensure_split(path, g, seed=1)
    g2 = dict(g, extra="LGG")
    with pytest.raises(DataError, match="other cases"):
        ensure_split(path, g2, seed=0)
    assert path.read_bytes() == before
    s3, created = ensure_split(path, g2, seed=0, force=True)
    assert created and len(s3.all_ids) == 21
    assert (tmp_path / "splits.json.bak").read_bytes() == before
    assert not list(tmp_path.glob(".splits.json.*"))  # no temporary left behind


def test_a_split_of_another_stratification_is_refused_not_reused(tmp_path):
    path = tmp_path / "splits.json"
    graded = {f"c{i}": "HGG" if i < 15 else "LGG" for i in range(20)}
    split, _ = ensure_split(path, graded, seed=0, stratify=False)  # written without stratifying
    assert split.stratified_by is None
    with pytest.raises(DataError) as ei:
        ensure_split(path, graded, seed=0)  # now stratified by grade is asked for
    msg = str(ei.value)
    assert str(path) in msg and "not stratified" in msg and "stratified by grade is asked for" in msg
    assert "segan split --force" in msg
    path.unlink()
    ensure_split(path, graded, seed=0)
    with pytest.raises(DataError, match="is stratified by grade, but a split not stratified is asked for"):
        ensure_split(path, graded, seed=0, stratify=False)
    with pytest.raises(DataError, match="grades unknown"):  # the grades file gone: cannot stratify any more
        ensure_split(path, dict.fromkeys(graded), seed=0)
    assert ensure_split(path, graded, seed=0)[1] is False  # the same request still reuses it


def test_corrupt_split_file_is_named(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="splits.json"):
        load_split(path)


def test_nested_subsets_are_stratified_seeded_and_nested():
    from segan_lib.data.splits import nested_subset

    grades = {f"H{i:02d}": "HGG" for i in range(32)} | {f"L{i:02d}": "LGG" for i in range(8)}
    ids = list(grades)
    subsets = {f: nested_subset(ids, grades, f, seed=3) for f in (0.1, 0.25, 0.5, 1.0)}
    # 40 cases: 4, 10, 20, 40 of them, HGG:LGG 4:1 as in the whole set
    assert [len(subsets[f]) for f in (0.1, 0.25, 0.5, 1.0)] == [4, 10, 20, 40]
    assert sum(c.startswith("L") for c in subsets[0.25]) == 2 and sum(c.startswith("L") for c in subsets[0.5]) == 4
    assert set(subsets[0.1]) <= set(subsets[0.25]) <= set(subsets[0.5]) <= set(subsets[1.0]) == set(ids)
    assert nested_subset(ids, grades, 0.25, seed=3) == subsets[0.25]  # same seed, same subset
    assert nested_subset(ids, grades, 0.25, seed=4) != subsets[0.25]
    assert len(nested_subset(ids, grades, 0.01, seed=0)) == 1  # never empty
