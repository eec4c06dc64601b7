import os

import pytest

from latentmap.io.atomic import atomic_directory, atomic_write_bytes
from latentmap.errors import ConfigError


def test_success_replaces_and_cleans(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # untouched while writing
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)


def test_failure_keeps_previous_and_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise KeyboardInterrupt
    assert (target / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_no_overwrite_and_file_in_the_way(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        with atomic_directory(tmp_path / "exists", overwrite=False):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        with atomic_directory(tmp_path / "file"):
            pass


def test_atomic_write_bytes(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"123")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"123"
