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


# --- a killed writer's temporary file, and the next writer's clean-up ------------------------

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

from course_lib.files import (FileLock, LockHeld, pid_alive, remove_stale_temporaries,  # noqa: E402
                              source_mismatch, source_record)

_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from course_lib.files import atomic_write
    def slow(f):
        f.write(b"half a file")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    atomic_write(sys.argv[1], slow)
""")


def _start_slow_writer(target):
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temporaries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_leaves_a_temporary_that_the_next_clean_up_removes(tmp_path):
    target = tmp_path / "results.jsonl"
    atomic_write_text(target, "old\n")
    alive = _start_slow_writer(target)
    killed = _start_slow_writer(target)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert len(_temporaries(tmp_path)) == 2  # SIGKILL leaves one behind; the other is being written
        removed = remove_stale_temporaries(tmp_path, "results.jsonl")
        assert len(removed) == 1 and f"-{killed.pid}." in removed[0].name
        (left,) = _temporaries(tmp_path)  # the live writer's temporary is kept
        assert f"-{alive.pid}." in left
        assert target.read_text() == "old\n"
    finally:
        alive.kill()
        alive.wait(10)
    assert remove_stale_temporaries(tmp_path, "results.jsonl") and _temporaries(tmp_path) == []


def test_sigterm_during_a_write_removes_the_temporary(tmp_path):
    target = tmp_path / "x.bin"
    proc = _start_slow_writer(target)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_old_temporaries_without_a_pid_are_removed_only_when_old(tmp_path):
    fresh, old = tmp_path / ".a.npz.abc123.tmp", tmp_path / ".a.npz.xyz789.tmp"
    fresh.write_text("x")
    old.write_text("x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert remove_stale_temporaries(tmp_path, "a.npz") == [old]
    assert fresh.exists()


# --- the lock ---------------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from course_lib.files import FileLock
    with FileLock(sys.argv[1], command="holder-test"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(lock, seconds):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_with_the_holders_name_or_waits(tmp_path):
    lock = tmp_path / "results.jsonl.lock"
    holder = _hold(lock, 60)
    try:
        with pytest.raises(LockHeld, match=rf"the study is locked by pid {holder.pid} on host .*holder-test"):
            FileLock(lock, what="the study").acquire()
    finally:
        holder.kill()
        holder.wait(10)
    # SIGKILL released it; the next one takes it over and says from whom
    with FileLock(lock) as taken:
        assert taken.took_over["pid"] == holder.pid
        assert FileLock(lock).holder()["pid"] == os.getpid()
    assert not lock.exists()
    short = _hold(lock, 1.0)
    start = time.monotonic()
    try:
        with FileLock(lock, wait=30) as waited:  # waits until the holder is done
            assert time.monotonic() - start > 0.3 and waited.took_over is None  # released, not taken over
    finally:
        short.wait(10)
    assert short.returncode == 0 and not pid_alive(short.pid)


def test_without_flock_the_lock_file_itself_is_the_lock(tmp_path, monkeypatch):
    import errno
    import fcntl
    import socket

    def no_flock(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = tmp_path / "x.lock"
    with FileLock(lock, command="first"):
        with pytest.raises(LockHeld, match=rf"is locked by pid {os.getpid()} .*running 'first'"):
            FileLock(lock).acquire()
    assert not lock.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with FileLock(lock) as taken:
        assert taken.took_over["pid"] == dead.pid


def test_source_record_notices_another_path_and_a_change(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"123")
    b.write_bytes(b"123")
    rec = source_record(a)
    assert source_mismatch(rec, a) is None
    assert "was made from" in source_mismatch(rec, b) and str(b) in source_mismatch(rec, b)
    a.write_bytes(b"1234")
    assert "size" in source_mismatch(rec, a)
    assert "records no source" in source_mismatch({}, a)
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.png").write_bytes(b"x")
    rec = source_record(folder)
    assert source_mismatch(rec, folder) is None
    (folder / "sub" / "y.png").write_bytes(b"y")
    assert "files" in source_mismatch(rec, folder)
