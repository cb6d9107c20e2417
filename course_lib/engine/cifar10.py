"""CIFAR-10: find it, verify it, decode it once, cache it, and cut it into subsets.

The one entry point is :func:`load_cifar10`::

    from course_lib.engine.cifar10 import CLASSES, load_cifar10
    images, labels = load_cifar10("train")  # uint8 (50000, 32, 32, 3) RGB, int64 (50000,)

Where the data comes from, first match wins (see :func:`locate_cifar10`):

1. ``source=``: an explicit path to the official ``cifar-10-python.tar.gz``, to its extracted
   ``cifar-10-batches-py/`` folder, or to an *image folder* (a directory, ``.tar``,
   ``.tar.gz``/``.tgz`` or ``.zip`` holding ``train|test/<class>/*.png|*.jpg|*.jpeg``, possibly
   under one top-level folder).
2. In the data directory (``config.data_dir()``: the ``data_dir`` argument, else
   ``COURSE_DATA_DIR``, else the repository's ``data/``): the official archive
   ``cifar-10-python.tar.gz`` (or ``cifar-10-batches-py/``), then an image folder named
   ``cifar10-*`` (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip`` or a directory), e.g. the JPEG copy
   ``cifar10-jpeg.tar.gz``.
3. When neither is there: a cache left in the cache directory (``cifar10-official-<split>.npz``,
   then ``cifar10-imagefolder-<split>.npz``) whose record of its source is complete.
4. A download of the official archive (``download=True``), MD5-verified.

The official data comes before an image folder because its pixels are exact; an image folder
of JPEG files is only close to them, so results measured on it should say so. Use
:func:`locate_cifar10` to find out which kind a load will use.

**Cache.** Decoded arrays are saved, uncompressed, as one ``.npz`` per split and source
(``cifar10-official-train.npz``, ``cifar10-imagefolder-test.npz``; an explicit ``source=``, or
a cache outside the data directory, gets a hash of the path in its name), written under a
temporary name and renamed into place, so an interrupted write never leaves a file that looks
complete (and the next load removes what a killed writer left). Each cache records the source it
was decoded from (path, size, modification time, image count); one that does not describe the
source that would be read now (another directory, a changed file, a foreign or old-format
file) is rebuilt with a warning, never used (:mod:`course_lib.engine.cifar10_cache`). A
cached load of the training split takes well under a second. The cache directory is
``cache_dir`` when given, else the data directory when it is writable, else the repository's
``data/`` (so a read-only shared data directory works: the cache lands in the checkout, under a
name tied to the data directory). A
directory with no write permission bit at all counts as read-only even for root. Delete a cache
file to rebuild it. If a cache cannot be written the data is still returned, with a warning.

**Order.** The official source gives the official order. An image folder gives the images
grouped by class, in ``CLASSES`` order, and by file name within a class (numbers compared as
numbers, so ``2.png`` comes before ``10.png``).

**Errors.** Every problem with the data itself (wrong checksum, truncated or corrupt archive,
missing batch, batch of the wrong shape, image that is not 32x32, unknown class folder, no
images, no data at all) raises :class:`DataError`, naming the file and what was expected.
Nothing is written before the data has been decoded successfully.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import config
from ..files import is_writable_dir, remove_stale_temporaries
from .cifar10_cache import (_cache_path, _load_cache, _resolve_cache_dir, _save_cache,
                            cache_problem)
from .cifar10_formats import (_ARCHIVE_SUFFIXES, ARCHIVE_NAME, BATCHES_DIR, CLASSES, MD5, SPLITS, URL, DataError,
                              _check_arrays, _check_split, _is_archive, _looks_official, _read_image_folder,
                              _read_official, verify_md5)

__all__ = ["CLASSES", "SPLITS", "URL", "MD5", "DataError", "Cifar10Source", "load_cifar10", "locate_cifar10",
           "verify_md5", "class_balanced_subset", "train_val_split"]

log = logging.getLogger(__name__)


class Cifar10Source(NamedTuple):
    """Where :func:`load_cifar10` gets a split from.

    ``kind`` is ``"official"`` (exact pixels) or ``"imagefolder"`` (e.g. the JPEG copy);
    ``path`` the cache file, archive or folder; ``cached`` whether ``path`` is a decoded cache.
    """

    kind: str
    path: Path
    cached: bool


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _how_to_get(root: Path) -> str:
    return (
        f"To get it: download {URL} (MD5 {MD5}) into {root}, or call "
        f"load_cifar10(download=True); or put an image-folder copy such as cifar10-jpeg.tar.gz "
        f"there; or point COURSE_DATA_DIR (or data_dir=) at a directory that holds one; "
        f"or pass source= with the path of the archive."
    )




def locate_cifar10(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Cifar10Source | None:
    """Where :func:`load_cifar10` would read ``split`` from, without reading it; None when it
    would have to download. Arguments as for :func:`load_cifar10`."""
    _check_split(split)
    root = config.data_dir(data_dir)
    cache = _resolve_cache_dir(root, cache_dir)
    found, _ = _locate(split, root, source, cache)
    return found


def _locate(split: str, root: Path, source, cache: Path) -> tuple[Cifar10Source | None, list[str]]:
    """:func:`locate_cifar10`, and why each cache that was passed over was not used."""
    passed_over: list[str] = []

    def usable(cached: Path, kind: str, src: Path | None) -> bool:
        if not cached.is_file():
            return False
        problem = cache_problem(cached, kind, split, src)
        if problem is not None:
            passed_over.append(f"the CIFAR-10 cache {cached} {problem}")
        return problem is None

    if source is not None:
        src = Path(source).expanduser()
        if not src.exists():
            raise DataError(f"source {src} does not exist")
        if not (src.is_dir() or _is_archive(src)):
            kinds = ", ".join(_ARCHIVE_SUFFIXES)
            raise DataError(f"source {src}: expected a directory or a {kinds} archive")
        kind = "official" if _looks_official(src) else "imagefolder"
        cached = _cache_path(cache, kind, split, src)
        if usable(cached, kind, src):
            return Cifar10Source(kind, cached, True), passed_over
        return Cifar10Source(kind, src, False), passed_over
    dirs = [root] + ([cache] if cache.resolve() != root.resolve() else [])
    found = None
    for d in dirs:
        for name in (ARCHIVE_NAME, BATCHES_DIR):
            if found is None and (d / name).exists():
                found = Cifar10Source("official", d / name, False)
    for d in dirs:
        for p in sorted(d.glob("cifar10-*")):
            if found is None and not p.name.startswith(".") and (p.is_dir() or _is_archive(p)):
                found = Cifar10Source("imagefolder", p, False)
    if found is not None:  # the data itself is here: its cache only if made from it
        cached = _cache_path(cache, found.kind, split, root=root)
        if usable(cached, found.kind, found.path):
            return Cifar10Source(found.kind, cached, True), passed_over
        return found, passed_over
    for kind in ("official", "imagefolder"):  # no data: a cache that knows what it was made from
        cached = _cache_path(cache, kind, split, root=root)
        if usable(cached, kind, None):
            return Cifar10Source(kind, cached, True), passed_over
    return None, passed_over


def load_cifar10(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    source: str | os.PathLike | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    md5: str | None = MD5,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split as ``(images, labels)``.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        data_dir: where to look for (and download) the data; default ``config.data_dir()``.
        download: download the official archive when nothing is found locally.
        source: an explicit archive or folder (official or image folder), used before anything
            else; see the module docstring.
        progress: show progress bars; default: yes unless ``CI`` is set or output is not a
            terminal (or a Jupyter kernel).
        cache_dir: where decoded ``.npz`` caches are read and written; default the data
            directory if writable, else the repository's ``data/``.
        md5: expected MD5 of the official archive, checked before it is decoded (and by the
            download); ``None`` skips the check, e.g. for an archive made with
            :func:`write_official_archive`.

    Returns:
        ``images``: uint8 array ``(N, 32, 32, 3)``, RGB, height x width x channel;
        ``labels``: int64 array ``(N,)`` with values in ``0..9`` indexing :data:`CLASSES`.

    Raises:
        ValueError: unknown ``split``.
        DataError: no data and ``download=False``, or the data is damaged (see module docstring).
    """
    _check_split(split)
    root = config.data_dir(data_dir)
    cache = _resolve_cache_dir(root, cache_dir)
    show = config.show_progress(progress)
    remove_stale_temporaries(cache, "cifar10-*.npz")  # what a killed cache writer left
    found, passed_over = _locate(split, root, source, cache)
    for why in passed_over:
        warnings.warn(f"{why}; not using it" + ("; rebuilding it" if found is not None and not found.cached else ""),
                      stacklevel=2)  # fmt: skip
    if found is not None and found.cached:
        log.info("loading CIFAR-10 %s from the cache %s", split, found.path)
        return _load_cache(found.path)

    verify = md5 is not None
    if found is None:
        if not download:
            where = f"{root}" + (f" or {cache}" if cache.resolve() != root.resolve() else "")
            raise DataError(
                f"CIFAR-10 ({split}) not found: looked in {where} for a cache "
                f"cifar10-*-{split}.npz, "
                f"the official {ARCHIVE_NAME} (or {BATCHES_DIR}/) and an image folder "
                f"cifar10-* (.tar.gz, .tgz, .tar, .zip or a directory). " + _how_to_get(root)
                + "".join(f" Not used: {why}." for why in passed_over)
            )
        target = root if is_writable_dir(root) else cache
        found = Cifar10Source("official", _download(target, md5, show), False)
        verify = False  # pooch has just checked it
    kind, path, _ = found
    log.info("decoding CIFAR-10 %s from %s", split, path)
    if kind == "official":
        if verify and path.is_file():
            verify_md5(path, md5)
        images, labels = _read_official(path, split)
    else:
        images, labels = _read_image_folder(path, split, show)
    _check_arrays(images, labels, str(path))
    explicit = path if source is not None else None  # an explicit source: its own cache name
    _save_cache(_cache_path(cache, kind, split, explicit, root=root), images, labels, kind=kind, split=split,
                source=path, md5=md5 if kind == "official" and path.is_file() else None)  # fmt: skip
    return images, labels


def _download(directory: Path, md5: str | None, progress: bool) -> Path:
    import pooch

    try:
        fetched = pooch.retrieve(
            URL,
            known_hash=f"md5:{md5}" if md5 else None,
            fname=ARCHIVE_NAME,
            path=directory,
            progressbar=progress,
        )
    except Exception as exc:  # network errors, a hash mismatch (ValueError), a full disk...
        why = f"could not download {URL} into {directory}: {exc}. "
        raise DataError(why + _how_to_get(directory)) from exc
    return Path(fetched)


def class_balanced_subset(
    images: np.ndarray, labels: np.ndarray, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` examples of every class present, drawn reproducibly from ``seed``, in their
    original relative order. Raises ValueError when a class has fewer examples."""
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} examples, fewer than per_class={per_class}")
        chosen.append(rng.choice(idx, per_class, replace=False))
    keep = np.sort(np.concatenate(chosen))
    return images[keep], labels[keep]


def train_val_split(
    images: np.ndarray, labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into ``(train_x, train_y, val_x, val_y)``, stratified: each class gives
    ``round(val_fraction * count)`` examples to validation, drawn reproducibly from ``seed``.
    Both parts keep the original relative order."""
    labels = np.asarray(labels)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_val[rng.permutation(idx)[: round(val_fraction * len(idx))]] = True
    train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return images[train], labels[train], images[val], labels[val]
