"""Tests for course_lib.engine.cifar10: CIFAR-10 loading on small archives built here, never the network."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_lib import config
from course_lib.engine import cifar10
from course_lib.engine.cifar10 import (
    CLASSES,
    class_balanced_subset,
    load_cifar10,
    locate_cifar10,
    train_val_split,
)
from course_lib.engine.cifar10_formats import DataError, verify_md5
from course_lib.engine.cifar10_archives import write_image_folder, write_official_archive

N_TRAIN, N_TEST = 20, 6  # 5 training batches of 4 images, a test batch of 6


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test sees the developer's data directory or draws progress bars."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path_factory.mktemp("default-data")))
    monkeypatch.setenv("CI", "1")


def _no_network(monkeypatch):
    import pooch

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to download")

    monkeypatch.setattr(pooch, "retrieve", refuse)


def _random_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int64)


@pytest.fixture
def small():
    train, test = _random_split(N_TRAIN, 1), _random_split(N_TEST, 2)
    return {"train": train, "test": test}


def _official(path: Path, small) -> Path:
    return write_official_archive(
        path, {s: small[s][0] for s in small}, {s: small[s][1] for s in small}
    )


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _rewrite_tar(src: Path, dst: Path, drop: str = "", replace: dict | None = None) -> Path:
    """Copy a .tar.gz, leaving out members whose name ends with ``drop`` or swapping contents."""
    replace = replace or {}
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            if drop and m.name.endswith(drop):
                continue
            base = m.name.rsplit("/", 1)[-1]
            if m.isfile() and base in replace:
                m.size = len(replace[base])
                tout.addfile(m, io.BytesIO(replace[base]))
            else:
                tout.addfile(m, tin.extractfile(m) if m.isfile() else None)
    return dst


# ---------------------------------------------------------------------------------------------
# official format
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_official_round_trip(tmp_path, small, split, monkeypatch):
    _no_network(monkeypatch)
    archive = _official(tmp_path / "mine.tar.gz", small)
    images, labels = load_cifar10(split, source=archive, md5=None, cache_dir=tmp_path / "cache")
    assert images.dtype == np.uint8 and images.shape == (len(small[split][0]), 32, 32, 3)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, small[split][0])
    np.testing.assert_array_equal(labels, small[split][1])


def test_official_layout_matches_the_planes(tmp_path, small):
    """Row r of a batch holds R, G, B planes of 32x32, row-major: pixel (y, x, c) is at
    c * 1024 + y * 32 + x; the loader must put it at images[i, y, x, c]."""
    archive = _official(tmp_path / "mine.tar.gz", small)
    with tarfile.open(archive) as tf:
        names = sorted(m.name for m in tf.getmembers())
        raw = tf.extractfile("cifar-10-batches-py/data_batch_2").read()
    inside = ["batches.meta", "readme.html", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
    assert names == sorted(["cifar-10-batches-py"] + [f"cifar-10-batches-py/{n}" for n in inside])
    import pickle

    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].shape == (4, 3072) and batch[b"data"].dtype == np.uint8
    images, _ = load_cifar10("train", source=archive, md5=None, cache_dir=tmp_path)
    i, y, x = 1, 5, 17  # image 1 of batch 2 is image 5 overall
    for c in range(3):
        assert images[4 + i, y, x, c] == batch[b"data"][i, c * 1024 + y * 32 + x]


def test_extracted_folder_is_a_source(tmp_path, small):
    archive = _official(tmp_path / "mine.tar.gz", small)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    for src in (tmp_path / "x", tmp_path / "x" / "cifar-10-batches-py"):
        images, labels = load_cifar10("test", source=src, cache_dir=tmp_path / "cache")
        np.testing.assert_array_equal(images, small["test"][0])
        np.testing.assert_array_equal(labels, small["test"][1])


def test_cache_second_load_comes_from_npz(tmp_path, small, monkeypatch):
    _no_network(monkeypatch)
    root = tmp_path / "d"
    root.mkdir()
    _official(root / "cifar-10-python.tar.gz", small)
    first = load_cifar10("train", data_dir=root, md5=None)
    assert _files(root) == {"cifar-10-python.tar.gz", "cifar10-official-train.npz"}  # no temp files
    assert locate_cifar10("train", data_dir=root) == (
        "official", root / "cifar10-official-train.npz", True
    )

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar10, "_read_official", no_decoding)
    (root / "cifar-10-python.tar.gz").unlink()  # the cache alone is enough
    second = load_cifar10("train", data_dir=root, md5=None)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_interrupted_cache_write_leaves_no_file(tmp_path, small, monkeypatch):
    archive = _official(tmp_path / "mine.tar.gz", small)
    cache = tmp_path / "cache"

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cifar10.np, "savez", disk_full)
    with pytest.warns(UserWarning, match="could not write the CIFAR-10 cache"):
        images, _ = load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    np.testing.assert_array_equal(images, small["test"][0])  # the data still comes back
    assert list(cache.iterdir()) == []

    def interrupted(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cifar10.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_explicit_source_gets_its_own_cache(tmp_path, small, monkeypatch):
    archive = _official(tmp_path / "mine.tar.gz", small)
    cache = tmp_path / "cache"
    load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    (npz,) = cache.iterdir()
    assert npz.name.startswith("cifar10-official-test-") and npz.suffix == ".npz"
    monkeypatch.setattr(cifar10, "_read_official", lambda *a: pytest.fail("not cached"))
    images, _ = load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    np.testing.assert_array_equal(images, small["test"][0])


def test_read_only_data_dirs_cache_elsewhere_each_under_its_own_name(tmp_path, small, monkeypatch):
    """Two read-only data directories with different images: each load returns its own (the
    second used to get the first one's images from a shared cache name)."""
    repo = tmp_path / "repo"
    monkeypatch.setattr(cifar10.config, "repo_root", lambda: repo)
    shared = [tmp_path / "shared1", tmp_path / "shared2"]
    data = [small["test"], _random_split(N_TEST, 7)]
    for d, (images, labels) in zip(shared, data):
        d.mkdir()
        write_image_folder(d / "cifar10-png.tar.gz", images, labels, "test")
        d.chmod(0o555)
    try:
        for _ in range(2):  # decoded, then from the caches
            for d, (images, labels) in zip(shared, data):
                got, _ = load_cifar10("test", data_dir=d, download=False)
                np.testing.assert_array_equal(got, images[np.argsort(labels, kind="stable")])
                assert _files(d) == {"cifar10-png.tar.gz"}
        names = _files(repo / "data")
        assert len(names) == 2 and all(n.startswith("cifar10-imagefolder-test-") for n in names)
        assert all(locate_cifar10("test", data_dir=d).cached for d in shared)
    finally:
        for d in shared:
            d.chmod(0o755)


def test_an_image_folder_cache_does_not_hide_a_new_official_archive(tmp_path, small, monkeypatch):
    _no_network(monkeypatch)
    root = tmp_path / "d"
    root.mkdir()
    folder = write_image_folder(root / "cifar10-png.zip", *_random_split(N_TEST, 5), "test")
    load_cifar10("test", data_dir=root, download=False)
    folder.unlink()
    assert locate_cifar10("test", data_dir=root).cached  # only the cache is left: it is enough
    _official(root / "cifar-10-python.tar.gz", small)
    assert locate_cifar10("test", data_dir=root) == ("official", root / "cifar-10-python.tar.gz", False)
    images, _ = load_cifar10("test", data_dir=root, md5=None, download=False)
    np.testing.assert_array_equal(images, small["test"][0])


def test_a_foreign_cache_is_rebuilt_with_a_warning(tmp_path, small, monkeypatch):
    _no_network(monkeypatch)
    root = tmp_path / "d"
    root.mkdir()
    foreign = root / "cifar10-official-test.npz"
    np.savez(foreign, images=np.zeros((3, 32, 32, 3), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match=r"not found.*Not used: the CIFAR-10 cache .*cifar10-official-test\.npz "
                                        r"records no source"), pytest.warns(UserWarning, match="not using it"):
        load_cifar10("test", data_dir=root, download=False)  # no source: refused, never returned
    _official(root / "cifar-10-python.tar.gz", small)
    with pytest.warns(UserWarning, match=r"cifar10-official-test\.npz records no source .*; not using it; "
                                         r"rebuilding it"):
        images, _ = load_cifar10("test", data_dir=root, md5=None, download=False)
    np.testing.assert_array_equal(images, small["test"][0])
    assert locate_cifar10("test", data_dir=root) == ("official", foreign, True)  # rebuilt in place


def test_a_cache_of_a_changed_source_is_rebuilt(tmp_path, small, monkeypatch):
    _no_network(monkeypatch)
    archive = _official(tmp_path / "mine.tar.gz", small)
    cache = tmp_path / "cache"
    load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    other = {"train": small["train"], "test": _random_split(N_TEST, 9)}
    _official(archive, other)
    os.utime(archive, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    with pytest.warns(UserWarning, match=r"was made from .*mine\.tar\.gz before it changed"):
        images, _ = load_cifar10("test", source=archive, md5=None, cache_dir=cache)
    np.testing.assert_array_equal(images, other["test"][0])
    assert len(list(cache.iterdir())) == 1


def test_an_official_cache_verified_against_the_md5_needs_the_official_count(tmp_path, small):
    from course_lib.engine import cifar10_cache

    archive = _official(tmp_path / "cifar-10-python.tar.gz", small)
    path = tmp_path / "c.npz"
    cifar10_cache._save_cache(path, *small["test"], kind="official", split="test", source=archive,
                              md5=cifar10.MD5)
    assert cifar10_cache.cache_problem(path, "official", "test", archive) == (
        "holds 6 images, but the official test split has 10000")
    cifar10_cache._save_cache(path, *small["test"], kind="official", split="test", source=archive, md5=None)
    assert cifar10_cache.cache_problem(path, "official", "test", archive) is None
    assert "expected 'official' 'train'" in cifar10_cache.cache_problem(path, "official", "train", archive)


_KILLED_CACHE_WRITER = """
import sys, time
import numpy as np
from course_lib.engine import cifar10
def slow(f, **arrays):
    f.write(b"PK" + bytes(1000))
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez = slow
cifar10.load_cifar10("test", source=sys.argv[1], md5=None, cache_dir=sys.argv[2])
"""


def test_sigkill_during_a_cache_write_then_a_rerun(tmp_path, small):
    import signal
    import subprocess
    import sys

    archive = _official(tmp_path / "mine.tar.gz", small)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CACHE_WRITER, str(archive), str(cache)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    (left,) = cache.iterdir()
    assert left.name.startswith(".cifar10-official-test-") and left.name.endswith(".tmp")
    images, _ = load_cifar10("test", source=archive, md5=None, cache_dir=cache)  # the rerun
    np.testing.assert_array_equal(images, small["test"][0])
    (npz,) = cache.iterdir()  # the leftover is gone, the cache is complete
    assert npz.suffix == ".npz"
    assert locate_cifar10("test", source=archive, cache_dir=cache).cached


def test_download_uses_official_url_and_md5(tmp_path, small, monkeypatch):
    import pooch

    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash, fname))
        return str(_official(Path(path) / fname, small))

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    root = tmp_path / "d"
    images, labels = load_cifar10("test", data_dir=root)
    assert calls == [(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
        "cifar-10-python.tar.gz",
    )]  # fmt: skip
    np.testing.assert_array_equal(images, small["test"][0])
    assert _files(root) == {"cifar-10-python.tar.gz", "cifar10-official-test.npz"}


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DataError, match="no route to host.*COURSE_DATA_DIR"):
        load_cifar10("test", data_dir=tmp_path)


def test_no_data_and_no_download_says_how_to_get_it(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(DataError) as info:
        load_cifar10("train", data_dir=tmp_path, download=False)
    message = str(info.value)
    for needle in ("cifar-10-python.tar.gz", str(tmp_path), "COURSE_DATA_DIR", "download=True"):
        assert needle in message
    assert list(tmp_path.iterdir()) == []


def test_unknown_split():
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_cifar10("val")


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_verify_md5(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert verify_md5(f, "900150983cd24fb0d6963f7d28e17f72") == "900150983cd24fb0d6963f7d28e17f72"
    with pytest.raises(DataError, match="f.bin.*expected 0+, got 900150983cd24fb0d6963f7d28e17f72"):
        verify_md5(f, "0" * 32)


def test_wrong_checksum_names_the_file(tmp_path, small):
    _official(tmp_path / "cifar-10-python.tar.gz", small)
    official_md5 = "c58f30108f718f92721af3b95e74349a"
    with pytest.raises(DataError, match=rf"cifar-10-python\.tar\.gz.*expected {official_md5}"):
        load_cifar10("train", data_dir=tmp_path, download=False)
    assert _files(tmp_path) == {"cifar-10-python.tar.gz"}


def test_truncated_archive(tmp_path, small):
    whole = _official(tmp_path / "whole.tar.gz", small).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"cut\.tar\.gz.*(truncated|corrupt)"):
        load_cifar10("test", source=cut, md5=None, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_corrupt_gzip_stream(tmp_path, small):
    whole = bytearray(_official(tmp_path / "whole.tar.gz", small).read_bytes())
    whole[len(whole) // 2 : len(whole) // 2 + 64] = bytes(64)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(whole))
    with pytest.raises(DataError, match=r"bad\.tar\.gz"):
        load_cifar10("train", source=bad, md5=None, cache_dir=tmp_path / "cache")


def test_missing_batch_is_named(tmp_path, small):
    whole = _official(tmp_path / "whole.tar.gz", small)
    holey = _rewrite_tar(whole, tmp_path / "holey.tar.gz", drop="data_batch_3")
    with pytest.raises(DataError, match=r"holey\.tar\.gz.*missing data_batch_3"):
        load_cifar10("train", source=holey, md5=None, cache_dir=tmp_path / "cache")
    # the test split is still complete
    images, _ = load_cifar10("test", source=holey, md5=None, cache_dir=tmp_path / "cache")
    assert len(images) == N_TEST


def test_batch_of_wrong_shape(tmp_path, small):
    import pickle

    whole = _official(tmp_path / "whole.tar.gz", small)
    bad_batch = {b"batch_label": b"x", b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8),
                 b"filenames": [b"a", b"b"]}  # fmt: skip
    replace = {"test_batch": pickle.dumps(bad_batch)}
    bad = _rewrite_tar(whole, tmp_path / "bad.tar.gz", replace=replace)
    with pytest.raises(DataError, match=r"bad\.tar\.gz: test_batch.*\(2, 3000\).*3072"):
        load_cifar10("test", source=bad, md5=None, cache_dir=tmp_path / "cache")


def test_label_out_of_range_names_the_batch_file(tmp_path, small):
    import pickle

    whole = _official(tmp_path / "whole.tar.gz", small)
    bad_batch = {b"batch_label": b"x", b"labels": [0, 12], b"data": np.zeros((2, 3072), np.uint8),
                 b"filenames": [b"a", b"b"]}  # fmt: skip
    bad = _rewrite_tar(whole, tmp_path / "bad.tar.gz", replace={"data_batch_4": pickle.dumps(bad_batch)})
    with pytest.raises(DataError, match=r"bad\.tar\.gz: data_batch_4: labels outside 0\.\.9 \(e\.g\. 12, 1 of 2\)"):
        load_cifar10("train", source=bad, md5=None, cache_dir=tmp_path / "cache")


def _python2_pickle(obj) -> bytes:
    """A pickle as Python 2's cPickle wrote the official batches: protocol 2, byte strings as
    BINSTRING opcodes, numpy arrays through numpy.core.multiarray._reconstruct."""
    import pickle
    import struct

    class Py2Pickler(pickle._Pickler):
        def save_bytes(self, b):
            if len(b) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
            self.memoize(b)

        dispatch = dict(pickle._Pickler.dispatch)
        dispatch[bytes] = save_bytes

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    return raw


def test_python2_style_batch(tmp_path, small):
    whole = _official(tmp_path / "whole.tar.gz", small)
    images, labels = small["test"]
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        b"filenames": [b"x_%d.png" % i for i in range(len(images))],
    }
    py2 = _rewrite_tar(whole, tmp_path / "py2.tar.gz", replace={"test_batch": _python2_pickle(batch)})
    got, got_labels = load_cifar10("test", source=py2, md5=None, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_foreign_pickle_is_refused(tmp_path, small):
    import pickle

    whole = _official(tmp_path / "whole.tar.gz", small)
    evil = pickle.dumps({b"data": os.getcwd, b"labels": []})  # a global outside numpy
    bad = _rewrite_tar(whole, tmp_path / "bad.tar.gz", replace={"test_batch": evil})
    with pytest.raises(DataError, match="not allowed"):
        load_cifar10("test", source=bad, md5=None, cache_dir=tmp_path / "cache")


def test_image_of_wrong_size(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "folder"
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_image_folder(folder, images, [0, 1, 2], "train")
    Image.fromarray(np.zeros((32, 33, 3), np.uint8)).save(folder / "train" / "bird" / "0007.png")
    with pytest.raises(DataError, match=r"train/bird/0007\.png.*33x32.*expected 32x32"):
        load_cifar10("train", source=folder, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_unknown_class_folder(tmp_path):
    folder = tmp_path / "folder"
    write_image_folder(folder, np.zeros((2, 32, 32, 3), np.uint8), [0, 1], "test")
    (folder / "test" / "kitten").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "test" / "kitten" / "0.png")
    with pytest.raises(DataError, match=r"folder.*unknown class folder 'kitten'.*airplane"):
        load_cifar10("test", source=folder, cache_dir=tmp_path / "cache")


def test_split_without_images(tmp_path, small):
    archive = write_image_folder(tmp_path / "only-train.zip", *small["train"], "train")
    with pytest.raises(DataError, match=r"only-train\.zip: no images for the test split"):
        load_cifar10("test", source=archive, cache_dir=tmp_path / "cache")


def test_undecodable_image(tmp_path):
    folder = tmp_path / "folder"
    (folder / "test" / "dog").mkdir(parents=True)
    (folder / "test" / "dog" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"test/dog/0\.jpg.*cannot decode"):
        load_cifar10("test", source=folder, cache_dir=tmp_path / "cache")


def test_corrupt_cache(tmp_path):
    (tmp_path / "cifar10-official-test.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cifar10-official-test\.npz is unreadable .*delete it"), \
            pytest.warns(UserWarning, match="is unreadable"):
        load_cifar10("test", data_dir=tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pngs", "pngs.zip", "pngs.tar.gz", "pngs.tar"])
def test_image_folder_round_trip(tmp_path, small, name):
    src = tmp_path / name
    for split in ("train", "test"):
        write_image_folder(src, *small[split], split)
    for split in ("train", "test"):
        images, labels = load_cifar10(split, source=src, cache_dir=tmp_path / "cache")
        order = np.argsort(small[split][1], kind="stable")  # grouped by class, stable within
        np.testing.assert_array_equal(images, small[split][0][order])
        np.testing.assert_array_equal(labels, small[split][1][order])
    assert {p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".npz")} == set()


def test_image_folder_under_a_top_folder_found_in_data_dir(tmp_path, small):
    """A cifar10-*.tar.gz in the data directory is used, here with a top-level folder, natural
    file order (2 before 10), mixed formats and stray files ignored."""
    images, labels = small["train"]
    root = tmp_path / "d"
    root.mkdir()
    archive = root / "cifar10-mine.tar.gz"
    order = np.argsort(labels, kind="stable")
    counts: dict[int, int] = {}
    with tarfile.open(archive, "w:gz") as tf:
        for k in order:
            c = int(labels[k])
            counts[c] = counts.get(c, 0) + 1
            buf = io.BytesIO()
            Image.fromarray(images[k]).save(buf, format="PNG")
            info = tarfile.TarInfo(f"top/train/{CLASSES[c]}/{counts[c] * 5}.png")  # 5, 10, 15, ...
            info.size = len(buf.getvalue())
            tf.addfile(info, io.BytesIO(buf.getvalue()))
        for stray in ("top/README.txt", "top/train/cat/.DS_Store", "top/train/cat/._0.png"):
            info = tarfile.TarInfo(stray)
            tf.addfile(info, io.BytesIO(b""))
    assert max(counts.values()) >= 2  # so that file 10 has to come after file 5
    assert locate_cifar10("train", data_dir=root) == ("imagefolder", archive, False)
    got, got_labels = load_cifar10("train", data_dir=root, download=False)
    np.testing.assert_array_equal(got, images[order])
    np.testing.assert_array_equal(got_labels, labels[order])
    assert _files(root) == {"cifar10-mine.tar.gz", "cifar10-imagefolder-train.npz"}


def test_official_comes_before_an_image_folder(tmp_path, small):
    root = tmp_path / "d"
    root.mkdir()
    write_image_folder(root / "cifar10-jpeg.zip", *small["test"], "test", fmt="jpg")
    _official(root / "cifar-10-python.tar.gz", small)
    assert locate_cifar10("test", data_dir=root).kind == "official"


def test_jpeg_image_folder_is_close(tmp_path, small):
    smooth = np.repeat(np.repeat(np.arange(0, 256, 32, dtype=np.uint8), 4)[None, :, None], 32, 0)
    images = np.broadcast_to(smooth, (3, 32, 32, 3)).copy()
    archive = write_image_folder(tmp_path / "j.tgz", images, [4, 4, 4], "train", fmt="jpg")
    got, labels = load_cifar10("train", source=archive, cache_dir=tmp_path)
    assert got.shape == (3, 32, 32, 3) and list(labels) == [4, 4, 4]
    assert np.abs(got.astype(int) - images).mean() < 8


def test_grayscale_png_becomes_rgb(tmp_path):
    folder = tmp_path / "g"
    (folder / "train" / "ship").mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 77, np.uint8), "L").save(folder / "train" / "ship" / "0.png")
    images, labels = load_cifar10("train", source=folder, cache_dir=tmp_path)
    assert images.shape == (1, 32, 32, 3) and (images == 77).all() and list(labels) == [8]


# ---------------------------------------------------------------------------------------------
# subsets
# ---------------------------------------------------------------------------------------------


def _toy(n_per_class=30):
    labels = np.tile(np.arange(10), n_per_class)
    images = np.arange(len(labels))  # image i is just its index
    return images, labels


def test_class_balanced_subset():
    images, labels = _toy()
    x, y = class_balanced_subset(images, labels, per_class=7, seed=3)
    assert np.bincount(y, minlength=10).tolist() == [7] * 10
    assert (np.diff(x) > 0).all()  # original relative order, no repeats
    np.testing.assert_array_equal(labels[x], y)
    x2, _ = class_balanced_subset(images, labels, per_class=7, seed=3)
    x3, _ = class_balanced_subset(images, labels, per_class=7, seed=4)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, x3)
    with pytest.raises(ValueError, match="fewer"):
        class_balanced_subset(images, labels, per_class=31)


def test_train_val_split():
    images, labels = _toy()
    tx, ty, vx, vy = train_val_split(images, labels, val_fraction=0.2, seed=1)
    assert np.bincount(vy, minlength=10).tolist() == [6] * 10
    assert np.bincount(ty, minlength=10).tolist() == [24] * 10
    assert set(tx).isdisjoint(vx) and len(tx) + len(vx) == len(images)
    assert (np.diff(tx) > 0).all() and (np.diff(vx) > 0).all()
    np.testing.assert_array_equal(labels[vx], vy)
    again = train_val_split(images, labels, val_fraction=0.2, seed=1)
    for a, b in zip((tx, ty, vx, vy), again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(vx, train_val_split(images, labels, 0.2, seed=2)[2])
    with pytest.raises(ValueError):
        train_val_split(images, labels, val_fraction=1.0)


# ---------------------------------------------------------------------------------------------
# the real shared copy, when the project's data directory (COURSE_DATA_DIR or data/) holds it
# ---------------------------------------------------------------------------------------------

_SHARED = str(config.data_dir())  # read at import, before the fixture above isolates each test


@pytest.mark.skipif(
    not (Path(_SHARED) / "cifar10-jpeg.tar.gz").is_file(),
    reason="the data directory (COURSE_DATA_DIR or data/) does not hold cifar10-jpeg.tar.gz, "
    "the JPEG copy of CIFAR-10",
)
def test_shared_jpeg_copy_test_split(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    images, labels = load_cifar10(
        "test", data_dir=_SHARED, download=False, cache_dir=tmp_path, progress=False
    )
    assert images.shape == (10_000, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert (np.diff(labels) >= 0).all()  # grouped by class
    assert 100 < images.mean() < 140  # real photos, not noise or zeros
    (name,) = _files(tmp_path)  # a cache outside the data directory: named after it
    assert name.startswith("cifar10-imagefolder-test-") and name.endswith(".npz")
