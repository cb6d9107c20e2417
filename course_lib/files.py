"""Writing files so that an interruption never leaves one that looks complete; locks; sources.

:func:`atomic_write` writes into a temporary file in the target's directory, flushes it to
disk, gives it the target's permissions (an existing file's, else the usual ``0o666 & ~umask``)
and renames it over the target in one step; on any error or interrupt the temporary file is
removed and the target is untouched. The temporary file is named
``.<target name>.<host>-<pid>.<random>.tmp``, so that when a writer is killed outright
(SIGKILL, a power cut) :func:`remove_stale_temporaries` can tell its leftover from the file of
a writer that is still running, and remove it. SIGTERM is turned into an exception while a
write is in progress (in the main thread), so a terminated writer cleans up too.

:class:`FileLock` is an exclusive lock held by one process at a time, in a lock file that
names its holder (pid, host, start time, command); a lock left by a process that has died is
taken over. :func:`source_record` and :func:`source_mismatch` tie a cache to the file or folder
it was made from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_notebook", "remove_stale_temporaries",
           "pid_alive", "FileLock", "LockHeld", "source_record", "source_mismatch", "is_writable_dir"]  # fmt: skip

#: temporaries of other hosts (which cannot be asked whether their writer lives), and of older
#: versions without a pid in their name, are removed once they are this old
STALE_AFTER_S = 24 * 3600.0


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = True) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes; all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else _default_mode()
    prefix = f".{path.name}.{_host()}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with _sigterm_raises(), os.fdopen(fd, "wb" if binary else "w",
                                          **({} if binary else {"encoding": "utf-8"})) as f:  # fmt: skip
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _host() -> str:
    """This machine's name, safe inside a file name (no path separators, no dots)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


class _Terminated(SystemExit):
    """SIGTERM during an atomic write: unwinds (removing the temporary file), then exits 143."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, while SIGTERM has its default action, make it raise instead of
    killing the process at once, so that the writer's ``except`` removes its temporary file."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):
        previous = None
    if previous is not signal.SIG_DFL:
        yield
        return

    def terminated(signum, frame):
        raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OSError:
        return True  # cannot tell: assume it lives
    return True


_TMP_NAME = re.compile(r"^\.(?P<target>.+?)\.(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.)?[^.]+\.tmp$")


def remove_stale_temporaries(directory: str | os.PathLike, target: str = "*") -> list[Path]:
    """Remove the temporaries that :func:`atomic_write` left in ``directory`` for targets whose
    name matches the glob ``target`` (e.g. ``"results.jsonl"``, ``"cifar10-*.npz"``) and that no
    live process holds; return what was removed.

    A temporary is stale when its writer's pid (in its name) is dead on this host; one of
    another host, or one without a pid (from an older version), when older than
    :data:`STALE_AFTER_S`. A file that vanishes meanwhile or cannot be removed is skipped.
    """
    directory = Path(directory)
    removed = []
    here = _host()
    try:
        candidates = list(directory.glob(f".{target}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        m = _TMP_NAME.match(tmp.name)
        if m is None:
            continue
        try:
            age = time.time() - tmp.stat().st_mtime
        except OSError:
            continue
        if m["pid"] is not None and m["host"] == here:
            stale = not pid_alive(int(m["pid"]))
        else:
            stale = age > STALE_AFTER_S
        if stale:
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def is_writable_dir(path: str | os.PathLike) -> bool:
    """A directory we may write to; one with no write bit at all is read-only even for root
    (``os.access`` alone says yes to root everywhere)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(path, os.W_OK | os.X_OK)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` for a string (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_notebook(path: str | os.PathLike, nb) -> Path:
    """:func:`atomic_write` for a Jupyter notebook (an ``nbformat`` node), in nbformat's JSON layout."""
    import nbformat

    return atomic_write(path, lambda f: nbformat.write(nb, f), binary=False)


# --------------------------------------------------------------------------------------------
# an exclusive lock that names its holder
# --------------------------------------------------------------------------------------------


class LockHeld(RuntimeError):
    """Another live process holds a :class:`FileLock`; ``holder`` is what its lock file says."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def _describe_holder(holder: dict) -> str:
    if not holder:
        return "another process (its lock file names no holder)"
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    if holder.get("command"):
        text += f", running {holder['command']!r}"
    return text


class FileLock:
    """An exclusive lock on ``path`` (a lock file), held by one process at a time.

    ``with FileLock(path, wait=0, what="the study in results/x"):`` either holds the lock for
    the block or raises :class:`LockHeld` with a message that names the holder (pid, host, since
    when, its command) and ``what``, then ``hint`` (what to do); ``wait`` seconds are spent waiting for it first. The lock
    is the kernel's ``flock`` on the lock file, so a holder that dies, even by SIGKILL, releases
    it: the next process takes it over (``took_over`` then holds the dead holder's record). The
    lock file is removed on release. Where ``flock`` is missing (Windows, some network file
    systems) the lock file's own existence is the lock, and a holder whose pid is dead on this
    host counts as gone.
    """

    def __init__(self, path: str | os.PathLike, *, wait: float = 0.0, what: str | None = None,
                 command: str | None = None, poll: float = 0.2, hint: str = ""):  # fmt: skip
        self.path = Path(path)
        self.hint = hint
        self.wait = float(wait)
        self.what = what or str(self.path.parent)
        self.command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.poll = poll
        self.took_over: dict | None = None
        self._fd: int | None = None
        self._no_flock = False

    def holder(self) -> dict:
        """What the lock file says about its holder ({} when there is none or it is unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": self.command}

    def _try_flock(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:  # a file system without flock (some network mounts): the file's existence
            os.close(fd)
            if not self.holder():  # the empty file just created is not a holder's
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._no_flock = True
            return self._try_exclusive_create()
        # the file may have been removed (released) between open and flock: lock the current one
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_flock()
        previous = self.holder()
        if previous and previous.get("pid") != os.getpid():
            self.took_over = previous  # a holder that died without releasing
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self._record()).encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def _try_exclusive_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = self.holder()
            if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", 0))):
                self.took_over = holder
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                return self._try_exclusive_create()
            return False
        os.write(fd, json.dumps(self._record()).encode())
        self._fd = fd
        return True

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this FileLock is already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl  # noqa: F401

            attempt = self._try_flock
        except ImportError:
            attempt = self._try_exclusive_create
        deadline = time.monotonic() + self.wait
        while not (self._try_exclusive_create() if self._no_flock else attempt()):
            if time.monotonic() >= deadline:
                holder = self.holder()
                waited = f" (waited {self.wait:g} s)" if self.wait > 0 else ""
                raise LockHeld(f"{self.what} is locked by {_describe_holder(holder)}{waited}; "
                               f"lock file {self.path}" + (f". {self.hint}" if self.hint else ""), holder)  # fmt: skip
            time.sleep(self.poll)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # before unlocking: a waiter then locks a new file, never this one
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# tying a cache to its source
# --------------------------------------------------------------------------------------------


def source_record(path: str | os.PathLike) -> dict:
    """What identifies the file or folder a cache is made from: its resolved path, size and
    modification time (ns). For a folder, the number of files, their total size and the
    newest modification time below it. Store it with the cache; compare with
    :func:`source_mismatch` before using the cache."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        files = [p.stat() for p in path.rglob("*") if p.is_file()]
        return {"path": str(path), "kind": "folder", "files": len(files), "size": sum(st.st_size for st in files),
                "mtime_ns": max((st.st_mtime_ns for st in files), default=path.stat().st_mtime_ns)}  # fmt: skip
    st = path.stat()
    return {"path": str(path), "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def source_mismatch(recorded: dict | None, path: str | os.PathLike) -> str | None:
    """None when ``recorded`` (a :func:`source_record`) still describes ``path``; else why not,
    in words (``"made from /a/x.tar.gz, not /b/x.tar.gz"``, ``"... has changed since (size
    ...)"``, ``"records no source"``)."""
    if not recorded or "path" not in recorded:
        return "records no source (made by an older version or by hand)"
    current = source_record(path)
    if recorded["path"] != current["path"]:
        return f"was made from {recorded['path']}, not {current['path']}"
    changed = [k for k in ("kind", "files", "size", "mtime_ns") if recorded.get(k) != current.get(k)]
    if changed:
        return f"was made from {current['path']} before it changed ({', '.join(changed)} differ)"
    return None
