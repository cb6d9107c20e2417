"""The decoded-array cache of CIFAR-10: one uncompressed ``.npz`` per split and source.

``cifar10-official-<split>.npz`` and ``cifar10-imagefolder-<split>.npz`` next to the data they
were decoded from; in another directory (a read-only data directory's caches land in the
repository's ``data/``) the name also carries a hash of the data directory's path, and an
explicit ``source=`` gets a hash of its own path. A cache is written under a temporary name and
renamed into place (:func:`course_lib.files.atomic_write`), so an interrupted write never leaves
a file that looks complete; temporaries of writers that died are removed by the next load.

**Tied to its source.** Each cache stores, next to the arrays, a record of what it was decoded
from (``meta``: kind, split, image count, the source's path, size and modification time, and the
MD5 it was verified against). A cache is used only when that record still describes the source
that would be read (:func:`cache_problem`); otherwise it is rebuilt, with a warning saying why.
When no source is present any more, a cache with a complete record is still used (the cache
alone is enough), one without (foreign, or by an older version) is not. A cache of the official
archive verified against the official MD5 must hold 50,000 / 10,000 images.

The cache directory is ``cache_dir`` when given, else the data directory when it is writable,
else the repository's ``data/``; a directory with no write permission bit at all counts as
read-only even for root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .. import config
from ..files import atomic_write, is_writable_dir, source_mismatch, source_record
from .cifar10_formats import MD5, DataError, _check_arrays

#: image count of each split of the official archive
OFFICIAL_COUNTS = {"train": 50_000, "test": 10_000}
_FORMAT = 2  # version of the cache's meta record

log = logging.getLogger(__name__)


def _resolve_cache_dir(root: Path, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        out = Path(cache_dir).expanduser()
    elif is_writable_dir(root):
        out = root
    else:
        out = config.repo_root() / "data"
    with contextlib.suppress(OSError):  # a failure to create it shows up as a cache warning
        out.mkdir(parents=True, exist_ok=True)
    return out


def _path_hash(path: Path) -> str:
    return hashlib.sha1(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:12]


def _cache_path(cache_dir: Path, kind: str, split: str, source: Path | None = None,
                root: Path | None = None) -> Path:  # fmt: skip
    """The cache of ``split`` decoded from an explicit ``source`` (its own name, by its path), or
    from the data directory ``root`` (plain name when the cache sits in ``root`` itself)."""
    if source is not None:
        suffix = f"-{_path_hash(source)}"
    elif root is not None and Path(cache_dir).resolve() != Path(root).resolve():
        suffix = f"-{_path_hash(root)}"
    else:
        suffix = ""
    return cache_dir / f"cifar10-{kind}-{split}{suffix}.npz"


def _read_meta(path: Path) -> dict | None:
    """The cache's record of its source, None when it has none (or is unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                return None
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return meta if isinstance(meta, dict) else None


def cache_problem(path: Path, kind: str, split: str, source: Path | None) -> str | None:
    """Why the cache ``path`` must not stand for ``split`` of ``source`` (None: it may).

    ``source=None``: no source is present; the cache is then judged on its own record."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return f"is unreadable ({type(exc).__name__}: {exc}); delete it to rebuild it"
    meta = _read_meta(path) if {"images", "labels"} <= names else None
    if meta is None:
        return "records no source (a foreign file, or one made by an older version)"
    if meta.get("format") != _FORMAT or meta.get("kind") != kind or meta.get("split") != split:
        return (f"holds {meta.get('kind')!r} {meta.get('split')!r} data (format {meta.get('format')}), "
                f"expected {kind!r} {split!r} (format {_FORMAT})")  # fmt: skip
    n = meta.get("n")
    if not isinstance(n, int) or n < 1:
        return "records no image count"
    if kind == "official" and meta.get("md5") == MD5 and n != OFFICIAL_COUNTS[split]:
        return f"holds {n} images, but the official {split} split has {OFFICIAL_COUNTS[split]}"
    if source is not None:
        return source_mismatch(meta.get("source"), source)
    return None


def _load_cache(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"].astype(np.int64, copy=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable cache ({exc}); delete it to rebuild it") from exc
    where = f"{path} (cache; delete it to rebuild it)"
    _check_arrays(images, labels, where)
    meta = _read_meta(path)
    if meta is not None and meta.get("n") != len(images):
        raise DataError(f"{where}: {len(images)} images, but its record says {meta.get('n')}")
    return images, labels


def _save_cache(path: Path, images: np.ndarray, labels: np.ndarray, *, kind: str, split: str, source: Path,
                md5: str | None) -> None:  # fmt: skip
    """Write the cache with its record of ``source``; a failure to write is only a warning."""
    meta = {"format": _FORMAT, "kind": kind, "split": split, "n": int(len(images)), "md5": md5,
            "source": source_record(source)}  # fmt: skip
    try:
        atomic_write(path, lambda f: np.savez(f, images=images, labels=labels, meta=np.array(json.dumps(meta))))
    except OSError as exc:
        warnings.warn(f"could not write the CIFAR-10 cache {path}: {exc}", stacklevel=3)
    else:
        log.info("cached CIFAR-10 in %s", path)
