"""Writing small CIFAR-10 data sets in either on-disk format: for tests, examples and your own data.

:func:`write_official_archive` writes pickled batches as ``cifar-10-python.tar.gz`` does;
:func:`write_image_folder` writes ``train|test/<class>/*.png`` as a directory, tar or zip. Every
file is written atomically (:func:`course_lib.files.atomic_write`).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .cifar10_formats import (BATCHES, BATCHES_DIR, CLASSES, SPLITS, _check_arrays, _check_split, _is_archive,
                              _iter_files, _tar_mode)

__all__ = ["write_official_archive", "write_image_folder"]

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
