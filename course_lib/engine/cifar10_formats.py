"""CIFAR-10's two on-disk formats, read and checked: the official pickled batches and image folders.

**The official format**: ``cifar-10-python.tar.gz`` (or its extracted ``cifar-10-batches-py/``)
holds five training batches and one test batch, each a pickled dict of 10,000 rows of 3,072
bytes (R, G, B planes) and their labels. Unpickling can run arbitrary code, so only the few
NumPy globals a batch needs are allowed.

**Image folders**: a directory, ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` holding
``train|test/<class>/*.png|*.jpg|*.jpeg`` (possibly under one top-level folder), e.g. the
JPEG copy ``cifar10-jpeg.tar.gz``. Images come grouped by class in ``CLASSES`` order and by file
name within a class (numbers compared as numbers).

Every problem with the data itself raises :class:`DataError`, naming the file and what was
expected. :mod:`course_lib.engine.cifar10` decides which source to read;
:mod:`course_lib.engine.cifar10_archives` writes small archives in both formats.
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
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


__all__ = ["CLASSES", "SPLITS", "URL", "MD5", "ARCHIVE_NAME", "BATCHES_DIR", "BATCHES", "IMAGE_SUFFIXES", "DataError",
           "verify_md5"]

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

def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


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

def _check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (_SIDE, _SIDE, 3):
        raise DataError(
            f"{where}: images of {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3)"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{where}: {labels.shape} labels for {len(images)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{where}: labels outside 0..{len(CLASSES) - 1}")

def _corrupt(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: truncated or corrupt archive ({type(exc).__name__}: {exc})")


# errors that a damaged tar/gzip/zip stream raises
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)

def _tar_mode(path: Path, write: bool) -> str:
    gz = path.name.lower().endswith((".gz", ".tgz"))
    return ("w" if write else "r") + (":gz" if gz else "")

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
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        bad = labels[(labels < 0) | (labels >= len(CLASSES))]
        raise DataError(f"{where}: labels outside 0..{len(CLASSES) - 1} (e.g. {int(bad[0])}, "
                        f"{len(bad)} of {len(labels)})")
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
