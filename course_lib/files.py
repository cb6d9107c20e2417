"""Writing files so that an interruption never leaves one that looks complete.

:func:`atomic_write` writes into a temporary file in the target's directory, flushes it to
disk, gives it the target's permissions (an existing file's, else the usual ``0o666 & ~umask``)
and renames it over the target in one step; on any error or interrupt the temporary file is
removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_notebook"]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = True) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes; all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else _default_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` for a string (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_notebook(path: str | os.PathLike, nb) -> Path:
    """:func:`atomic_write` for a Jupyter notebook (an ``nbformat`` node), in nbformat's JSON layout."""
    import nbformat

    return atomic_write(path, lambda f: nbformat.write(nb, f), binary=False)
