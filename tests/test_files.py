"""course_lib.files: all-or-nothing writes."""

import os

import pytest

from course_lib.files import atomic_write, atomic_write_text


def test_writes_creates_parents_and_keeps_an_existing_mode(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "one")
    assert target.read_text() == "one"
    os.chmod(target, 0o600)
    atomic_write(target, lambda f: f.write(b"two"))
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def broken(f):
        f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken, binary=False)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
