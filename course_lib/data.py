"""CIFAR-10: find it, verify it, decode it once, cache it, and cut it into subsets.

The one entry point is :func:`load_cifar10`::

    from course_lib.data import CLASSES, load_cifar10
    images, labels = load_cifar10("train")  # uint8 (50000, 32, 32, 3) RGB, int64 (50000,)

Where the data comes from, first match wins (see :func:`locate_cifar10`):

1. ``source=``: an explicit path to the official ``cifar-10-python.tar.gz``, to its extracted
   ``cifar-10-batches-py/`` folder, or to an *image folder* (a directory, ``.tar``,
   ``.tar.gz``/``.tgz`` or ``.zip`` holding ``train|test/<class>/*.png|*.jpg|*.jpeg``, possibly
   under one top-level folder).
2. A cache in the cache directory: ``cifar10-official-<split>.npz``, then
   ``cifar10-imagefolder-<split>.npz``.
3. In the data directory (``config.data_dir()``: the ``data_dir`` argument, else
   ``COURSE_DATA_DIR``, else the repository's ``data/``): the official archive
   ``cifar-10-python.tar.gz`` (or ``cifar-10-batches-py/``), then an image folder named
   ``cifar10-*`` (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip`` or a directory), e.g. the JPEG copy
   ``cifar10-jpeg.tar.gz``.
4. A download of the official archive (``download=True``), MD5-verified.

The official data comes before an image folder because its pixels are exact; an image folder
of JPEG files is only close to them, so results measured on it should say so. Use
:func:`locate_cifar10` to find out which kind a load will use.

**Cache.** Decoded arrays are saved, uncompressed, as one ``.npz`` per split and kind of source
(``cifar10-official-train.npz``, ``cifar10-imagefolder-test.npz``; an explicit ``source=`` gets
its own name with a fingerprint of its path, size and modification time), written under a
temporary name and renamed into place, so an interrupted write never leaves a file that looks
complete. A cached load of the training split takes well under a second. The cache directory is
``cache_dir`` when given, else the data directory when it is writable, else the repository's
``data/`` (so a read-only shared data directory works: the cache lands in the checkout). A
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

import contextlib
import gc
import hashlib
import io
import logging
import os
import pickle
import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from course_lib import config
from course_lib.files import atomic_write

__all__ = [
    "CLASSES",
    "SPLITS",
    "URL",
    "MD5",
    "DataError",
    "Cifar10Source",
    "load_cifar10",
    "locate_cifar10",
    "verify_md5",
    "class_balanced_subset",
    "train_val_split",
    "write_official_archive",
    "write_image_folder",
]

log = logging.getLogger(__name__)

#: The ten class names, in label order (label ``i`` is ``CLASSES[i]``).
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
SPLITS = ("train", "test")

#: The official archive, its MD5 and its layout.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_SIDE = 32


class DataError(ValueError):
    """The data is missing, incomplete or not what CIFAR-10 should look like."""


class Cifar10Source(NamedTuple):
    """Where :func:`load_cifar10` gets a split from.

    ``kind`` is ``"official"`` (exact pixels) or ``"imagefolder"`` (e.g. the JPEG copy);
    ``path`` the cache file, archive or folder; ``cached`` whether ``path`` is a decoded cache.
    """

    kind: str
    path: Path
    cached: bool


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def verify_md5(path: str | os.PathLike, expected: str) -> str:
    """Check the MD5 of ``path`` against ``expected`` (hex); return the hash or raise DataError."""
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"cannot read {path} to check its MD5: {exc}") from exc
    actual = digest.hexdigest()
    expected = expected.lower().removeprefix("md5:")
    if actual != expected:
        raise DataError(
            f"{path}: MD5 checksum mismatch: expected {expected}, got {actual}. "
            "The file is damaged or not the official archive; delete it and download it again."
        )
    return actual


def _is_writable_dir(path: Path) -> bool:
    """A directory we may write to; one with no write bit at all is read-only even for root."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(path, os.W_OK | os.X_OK)


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


def _check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (_SIDE, _SIDE, 3):
        raise DataError(
            f"{where}: images of {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3)"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{where}: {labels.shape} labels for {len(images)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{where}: labels outside 0..{len(CLASSES) - 1}")


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


def _corrupt(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: truncated or corrupt archive ({type(exc).__name__}: {exc})")


# errors that a damaged tar/gzip/zip stream raises
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


# --------------------------------------------------------------------------------------------
# the official format: pickled batches in cifar-10-python.tar.gz
# --------------------------------------------------------------------------------------------

# The only globals a batch pickle needs (numpy arrays and dtypes; protocol 2 bytes written by
# Python 3 use _codecs.encode). Anything else is refused: unpickling can run arbitrary code.
_ALLOWED_GLOBALS = {
    "_reconstruct": np.ndarray((0,), np.uint8).__reduce__()[0],
    "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
    "scalar": np.uint8(0).__reduce__()[0],
    "ndarray": np.ndarray,
    "dtype": np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module == "numpy" or module.startswith(("numpy.core", "numpy._core"))) and (
            name in _ALLOWED_GLOBALS
        ):
            return _ALLOWED_GLOBALS[name]
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (N, 32, 32, 3) uint8 and labels (N,) int64."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a damaged or foreign file
        why = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{where}: not a CIFAR-10 batch pickle ({why})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{where}: expected keys b'data' (uint8 array) and b'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
        raise DataError(f"{where}: data of {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {labels.shape} labels for {len(data)} images")
    # each row: 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_official(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a split from the official archive (members read in memory) or its folder."""
    wanted = BATCHES[split]
    raw: dict[str, bytes] = {}
    if path.is_dir():
        folder = path / BATCHES_DIR if (path / BATCHES_DIR).is_dir() else path
        for name in wanted:
            with contextlib.suppress(FileNotFoundError):
                raw[name] = (folder / name).read_bytes()
    else:
        try:
            with tarfile.open(path, "r|*") as tf:
                for member in tf:
                    name = member.name.rstrip("/").rsplit("/", 1)[-1]
                    if member.isfile() and name in wanted and name not in raw:
                        raw[name] = tf.extractfile(member).read()
        except _ARCHIVE_ERRORS as exc:
            raise _corrupt(path, exc) from exc
    missing = [name for name in wanted if name not in raw]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)} (expected {BATCHES_DIR}/{wanted[0]}"
            f"{' .. ' + wanted[-1] if len(wanted) > 1 else ''} for the {split} split)"
        )
    parts = [_parse_batch(raw[name], f"{path}: {name}") for name in wanted]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --------------------------------------------------------------------------------------------
# image folders: train|test/<class>/*.png|jpg in a directory, tar or zip
# --------------------------------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _iter_files(path: Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(relative posix path, contents) of the files under ``path`` for which ``keep(relpath)``.

    ``path`` is a directory, a tar (any compression) or a zip. Tar members are read one after
    the other from the stream, nothing is extracted to disk.
    """
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            if keep(rel):
                yield rel, file.read_bytes()
    elif path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir() and keep(info.filename):
                    yield info.filename, zf.read(info)
    else:
        with tarfile.open(path, "r|*") as tf:
            for member in tf:
                if member.isfile() and keep(member.name):
                    yield member.name, tf.extractfile(member).read()


def _class_of(rel: str, split: str, source: Path) -> int | None:
    """Label of ``[top/]split/<class>/<file>.png|jpg``; None for files of no interest."""
    parts = rel.strip("/").split("/")
    if not parts[-1].lower().endswith(IMAGE_SUFFIXES) or "__MACOSX" in parts:
        return None
    if any(p.startswith(".") for p in parts) or len(parts) not in (3, 4) or parts[-3] != split:
        return None
    if parts[-2] not in CLASSES:
        raise DataError(
            f"{source}: unknown class folder {parts[-2]!r} ({rel}); "
            f"expected one of {', '.join(CLASSES)}"
        )
    return CLASSES.index(parts[-2])


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _decode_image(raw: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.size != (_SIDE, _SIDE):
                w, h = im.size
                raise DataError(f"{where}: image of {w}x{h} pixels, expected 32x32")
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except DataError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off (for code that makes no garbage cycles)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_gc_paused()  # collector passes over the tens of thousands of live objects here cost ~2x
def _read_image_folder(path: Path, split: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode a split of an image folder, ordered by class then file name."""
    from tqdm import tqdm

    labelled: list[tuple[int, str, bytes]] = []
    label_of: dict[str, int] = {}

    def keep(rel: str) -> bool:
        label = _class_of(rel, split, path)
        if label is not None:
            label_of[rel] = label
        return label is not None

    try:
        for rel, raw in _iter_files(path, keep):
            labelled.append((label_of[rel], rel, raw))
    except DataError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(path, exc) from exc
    if not labelled:
        raise DataError(
            f"{path}: no images for the {split} split; expected {split}/<class>/*.png|*.jpg "
            f"(possibly under one top-level folder) with <class> in {', '.join(CLASSES)}"
        )
    labelled.sort(key=lambda t: (t[0], _natural_key(t[1].rsplit("/", 1)[-1])))
    images = np.empty((len(labelled), _SIDE, _SIDE, 3), np.uint8)
    bar = tqdm(labelled, desc=f"decoding CIFAR-10 {split}", unit="img", disable=not progress)
    for i, (_, rel, raw) in enumerate(bar):
        images[i] = _decode_image(raw, f"{path}: {rel}")
    labels = np.fromiter((t[0] for t in labelled), np.int64, len(labelled))
    return images, labels


def _looks_official(path: Path) -> bool:
    """Whether an explicit ``source`` is in the official format (else an image folder)."""
    names = set(BATCHES["train"] + BATCHES["test"] + ("batches.meta",))
    if path.is_dir():
        return (path / BATCHES_DIR).is_dir() or any((path / n).is_file() for n in names)
    if path.name.lower().endswith(".zip"):
        return False
    try:  # the official archive starts with its folder and batches; peek at a few members
        with tarfile.open(path, "r|*") as tf:
            for i, member in enumerate(tf):
                if member.name.rstrip("/").rsplit("/", 1)[-1] in names | {BATCHES_DIR}:
                    return True
                if i >= 20:
                    break
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(path, exc) from exc
    return False


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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


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
    if source is not None:
        src = Path(source).expanduser()
        if not src.exists():
            raise DataError(f"source {src} does not exist")
        if not (src.is_dir() or _is_archive(src)):
            kinds = ", ".join(_ARCHIVE_SUFFIXES)
            raise DataError(f"source {src}: expected a directory or a {kinds} archive")
        kind = "official" if _looks_official(src) else "imagefolder"
        cached = _cache_path(cache, kind, split, src)
        if cached.is_file():
            return Cifar10Source(kind, cached, True)
        return Cifar10Source(kind, src, False)
    for kind in ("official", "imagefolder"):
        cached = _cache_path(cache, kind, split)
        if cached.is_file():
            return Cifar10Source(kind, cached, True)
    dirs = [root] + ([cache] if cache.resolve() != root.resolve() else [])
    for d in dirs:
        for name in (ARCHIVE_NAME, BATCHES_DIR):
            if (d / name).exists():
                return Cifar10Source("official", d / name, False)
    for d in dirs:
        for p in sorted(d.glob("cifar10-*")):
            if not p.name.startswith(".") and (p.is_dir() or _is_archive(p)):
                return Cifar10Source("imagefolder", p, False)
    return None


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
    found = locate_cifar10(split, root, source, cache)
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
            )
        target = root if _is_writable_dir(root) else cache
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
    _save_cache(_cache_path(cache, kind, split, explicit), images, labels)
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


# --------------------------------------------------------------------------------------------
# writers: small data sets in either format (tests, examples, own data)
# --------------------------------------------------------------------------------------------


def _tar_mode(path: Path, write: bool) -> str:
    gz = path.name.lower().endswith((".gz", ".tgz"))
    return ("w" if write else "r") + (":gz" if gz else "")


def _add_to_tar(tf: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))


def _write_tar(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    """Write ``members`` (name, bytes; None for a directory) as a tar, gzipped for .gz/.tgz, atomically."""

    def write(f: io.BufferedWriter) -> None:
        with tarfile.open(fileobj=f, mode=_tar_mode(path, write=True)) as tf:
            for name, data in members:
                _add_to_tar(tf, name, data)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    """Write ``members`` (name, bytes) as a deflated zip, atomically."""

    def write(f: io.BufferedWriter) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def write_official_archive(
    path: str | os.PathLike,
    images_by_split: Mapping[str, np.ndarray],
    labels_by_split: Mapping[str, np.ndarray],
) -> Path:
    """Write a CIFAR-10 archive in the official format and return its path.

    ``images_by_split`` maps ``"train"`` and/or ``"test"`` to uint8 arrays ``(N, 32, 32, 3)``;
    ``labels_by_split`` likewise to labels. The tar (gzip-compressed when ``path`` ends in
    ``.gz``/``.tgz``) holds ``cifar-10-batches-py/`` with ``batches.meta``, ``data_batch_1..5``
    (the training images split as evenly as possible) and ``test_batch``: pickled dicts with
    the keys ``b"batch_label"``, ``b"labels"``, ``b"data"`` (uint8 ``(n, 3072)``: red, green,
    blue planes) and ``b"filenames"``.
    """
    path = Path(path)
    if not set(images_by_split) <= set(SPLITS) or set(images_by_split) != set(labels_by_split):
        raise ValueError(f"images_by_split and labels_by_split need the same keys among {SPLITS}")
    members: list[tuple[str, bytes | None]] = [(BATCHES_DIR, None)]
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
    }
    members.append((f"{BATCHES_DIR}/batches.meta", pickle.dumps(meta, protocol=2)))
    for split in SPLITS:
        if split not in images_by_split:
            continue
        images = np.asarray(images_by_split[split])
        labels = np.asarray(labels_by_split[split], dtype=np.int64)
        _check_arrays(images, labels, f"write_official_archive({split!r})")
        names = BATCHES[split]
        start = 0
        for i, chunk in enumerate(np.array_split(np.arange(len(images)), len(names))):
            batch = {
                b"batch_label": (
                    f"training batch {i + 1} of 5" if split == "train" else "testing batch 1 of 1"
                ).encode(),
                b"labels": [int(v) for v in labels[chunk]],
                b"data": images[chunk].transpose(0, 3, 1, 2).reshape(len(chunk), -1),
                b"filenames": [f"image_{start + j:05d}.png".encode() for j in range(len(chunk))],
            }
            start += len(chunk)
            members.append((f"{BATCHES_DIR}/{names[i]}", pickle.dumps(batch, protocol=2)))
    readme = b'<meta HTTP-EQUIV="REFRESH" content="0; url=https://www.cs.toronto.edu/~kriz/cifar.html">'
    members.append((f"{BATCHES_DIR}/readme.html", readme))
    _write_tar(path, members)
    return path


def write_image_folder(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    split: str,
    fmt: str = "png",
) -> Path:
    """Write ``images`` as ``<split>/<class>/NNNN.<fmt>`` and return ``path``.

    ``path`` is a directory, or an archive when it ends in ``.zip``, ``.tar``, ``.tar.gz`` or
    ``.tgz``. Files are numbered from 0 within each class in the order given, so loading the
    folder back gives the images sorted by class, stably. Files already there for the *other*
    split are kept (an archive is rewritten with them), so two calls build both splits.
    ``fmt`` is ``"png"`` (lossless) or ``"jpg"``/``"jpeg"``. Images may be of any size here;
    :func:`load_cifar10` insists on 32x32.
    """
    from PIL import Image

    _check_split(split)
    path = Path(path)
    fmt = fmt.lower()
    pil_format = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"fmt must be 'png', 'jpg' or 'jpeg', got {fmt!r}")
    images, labels = np.asarray(images), np.asarray(labels)
    shape_ok = images.ndim == 4 and images.shape[3] == 3 and len(images) == len(labels)
    if images.dtype != np.uint8 or not shape_ok:
        raise ValueError("expected uint8 images (N, H, W, 3) and N labels")
    width = max(4, len(str(len(images))))
    counts = [0] * len(CLASSES)
    files: list[tuple[str, bytes]] = []
    for image, label in zip(images, labels):
        buf = io.BytesIO()
        Image.fromarray(image, "RGB").save(buf, format=pil_format)
        name = f"{split}/{CLASSES[int(label)]}/{counts[int(label)]:0{width}d}.{fmt}"
        counts[int(label)] += 1
        files.append((name, buf.getvalue()))

    if not _is_archive(path):
        for name, data in files:
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return path
    kept = []
    if path.exists():
        kept = list(_iter_files(path, lambda rel: rel.split("/", 1)[0] != split))
    everything = sorted(kept + files)
    (_write_zip if path.name.lower().endswith(".zip") else _write_tar)(path, everything)
    return path
