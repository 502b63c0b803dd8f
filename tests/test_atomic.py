"""Atomic writes: a reader sees the old file or the new one, and the new one has open()'s permissions."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from segan_lib.atomic import atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, make_temp_dir


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set a umask for the test; the old one is restored afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, expected_file, expected_dir", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                               (0o002, 0o664, 0o775)])
def test_written_files_get_the_permissions_open_gives(tmp_path, umask, mask, expected_file, expected_dir):
    umask(mask)
    atomic_write_text(tmp_path / "table.md", "| a |\n")
    atomic_write_json(tmp_path / "run" / "settings.json", {"a": 1})
    atomic_save_npy(tmp_path / "x.npy", np.zeros(3))
    with atomic_path(tmp_path / "figure.png", suffix=".png") as tmp:
        tmp.write_bytes(b"png")
    for name in ("table.md", "run/settings.json", "x.npy", "figure.png"):
        assert mode(tmp_path / name) == expected_file, name  # 0666 & ~umask, not mkstemp's 0600
    assert mode(make_temp_dir(tmp_path / "bundle")) == expected_dir  # 0777 & ~umask, not mkdtemp's 0700
    # a file replaced gets the same, whatever the old one had
    (tmp_path / "old.txt").write_text("old")
    os.chmod(tmp_path / "old.txt", 0o600)
    atomic_write_text(tmp_path / "old.txt", "new")
    assert mode(tmp_path / "old.txt") == expected_file and (tmp_path / "old.txt").read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
