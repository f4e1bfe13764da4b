import os
from pathlib import Path

import pytest

from rsft.atomic import atomic_write_text


def test_atomic_write_text_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\r\n")
    assert target.read_bytes() == b"two\r\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(os.listdir(target.parent)) == ["f.txt"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]
