"""The decoded-array cache of CIFAR-10: one uncompressed ``.npz`` per split and kind of source.

``cifar10-official-<split>.npz`` and ``cifar10-imagefolder-<split>.npz``; an explicit source
gets its own name with a fingerprint of its path, size and modification time. A cache is
written under a temporary name and renamed into place (:func:`course_lib.files.atomic_write`),
so an interrupted write never leaves a file that looks complete, and it is checked when read.
The cache directory is ``cache_dir`` when given, else the data directory when it is writable,
else the repository's ``data/``; a directory with no write permission bit at all counts as
read-only even for root.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .. import config
from ..files import atomic_write
from .cifar10_formats import DataError, _check_arrays

def _is_writable_dir(path: Path) -> bool:
    """A directory we may write to; one with no write bit at all is read-only even for root."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(path, os.W_OK | os.X_OK)

log = logging.getLogger(__name__)


def _resolve_cache_dir(root: Path, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        out = Path(cache_dir).expanduser()
    elif _is_writable_dir(root):
        out = root
    else:
        out = config.repo_root() / "data"
    with contextlib.suppress(OSError):  # a failure to create it shows up as a cache warning
        out.mkdir(parents=True, exist_ok=True)
    return out


def _fingerprint(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _cache_path(cache_dir: Path, kind: str, split: str, source: Path | None = None) -> Path:
    suffix = f"-{_fingerprint(source)}" if source is not None else ""
    return cache_dir / f"cifar10-{kind}-{split}{suffix}.npz"

def _load_cache(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"].astype(np.int64, copy=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable cache ({exc}); delete it to rebuild it") from exc
    _check_arrays(images, labels, f"{path} (cache; delete it to rebuild it)")
    return images, labels


def _save_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    try:
        atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
    except OSError as exc:
        warnings.warn(f"could not write the CIFAR-10 cache {path}: {exc}", stacklevel=3)
    else:
        log.info("cached CIFAR-10 in %s", path)
