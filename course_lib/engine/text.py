"""Text for the second test bed: the tiny-Shakespeare corpus, characters as tokens, windows as examples.

The corpus is ``data/tinyshakespeare/input.txt`` of the public repository karpathy/char-rnn
(about 40,000 lines of Shakespeare's plays, 1,115,394 bytes). The entry point::

    from course_lib.engine.text import load_shakespeare, text_on_device
    corpus = load_shakespeare()              # Corpus: tokens (uint8), vocabulary (65 characters)
    data = text_on_device(corpus, context=64)  # {"train", "val"}: TextData on the device

**Where it comes from**, first match wins: ``source=`` (any path); in the data directory
(``config.data_dir()``: the ``data_dir`` argument, else ``COURSE_DATA_DIR``, else the
repository's ``data/``) the file ``tinyshakespeare.txt`` or ``tinyshakespeare/input.txt``; else a
download of :data:`URL` with pooch, SHA-256 checked. Every copy of tiny Shakespeare is checked
against its size and SHA-256 before it is used; a wrong size (a truncated file), a wrong
checksum, or a file that is not UTF-8 raises :class:`DataError` naming the file and what was
expected. :func:`load_corpus` reads any UTF-8 text file the same way (own corpora, tests).

**Tokens.** The vocabulary is the sorted set of the corpus's characters (65 for tiny
Shakespeare); token ``i`` is ``vocabulary[i]``. The encoded array is cached next to the data as
``<name>.tokens.npz``, with the SHA-256 of the text it was made from: a cache made from other
text (a changed or replaced file) is rebuilt, never used; it is written atomically, and the
temporary file of a writer that was killed is removed by the next load.

**Examples.** A language model on a corpus of tokens :math:`c_0 c_1 \\dots` learns to predict
:math:`c_{s+1} \\dots c_{s+T}` from :math:`c_s \\dots c_{s+T-1}` at every position of a window of
``context`` :math:`T` characters. :class:`TextData` holds a split's tokens on the device as
integers and treats every window start :math:`s` as one example: the training loop's random
permutation of the examples (drawn from its explicit generator) is a random choice of windows,
and an "epoch" visits every start once. The splits are contiguous (the first 90% train, the
last 10% validation), so no validation window overlaps a training window.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import config
from ..files import atomic_write, is_writable_dir, remove_stale_temporaries
from .cifar10_formats import DataError

__all__ = ["URL", "SHA256", "SIZE", "FILE_NAMES", "DataError", "Corpus", "TextData", "load_corpus",
           "load_shakespeare", "locate_shakespeare", "text_on_device", "bits_per_character"]  # fmt: skip

log = logging.getLogger(__name__)

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SIZE = 1_115_394
FILE_NAMES = ("tinyshakespeare.txt", "tinyshakespeare/input.txt")  # in the data directory, first match wins


def bits_per_character(loss: float) -> float:
    r"""A cross-entropy in nats per character as bits per character: :math:`L / \ln 2`."""
    return loss / math.log(2)


@dataclass(frozen=True)
class Corpus:
    """A text as tokens: ``tokens[i]`` is the index of the i-th character in ``vocabulary``."""

    tokens: np.ndarray  # 1-D unsigned integers
    vocabulary: str  # the sorted distinct characters
    source: Path

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``; a character outside the vocabulary raises ValueError."""
        index = {ch: i for i, ch in enumerate(self.vocabulary)}
        try:
            return np.array([index[ch] for ch in text], dtype=self.tokens.dtype)
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the corpus's vocabulary") from None

    def decode(self, tokens) -> str:
        """The text of a sequence of token ids."""
        return "".join(self.vocabulary[int(t)] for t in np.asarray(tokens).ravel())

    def split(self, *fractions: float) -> list[np.ndarray]:
        """Contiguous pieces: ``split(0.1)`` -> [first 90%, last 10%]; ``split(0.1, 0.1)`` ->
        [first 80%, next 10%, last 10%]. Each fraction is of the whole corpus."""
        if not fractions or any(not 0 < f < 1 for f in fractions) or sum(fractions) >= 1:
            raise ValueError(f"split fractions must lie in (0, 1) and sum to less than 1, got {fractions}")
        n = len(self.tokens)
        sizes = [round(f * n) for f in fractions]
        bounds = np.cumsum([n - sum(sizes), *sizes])
        return np.split(self.tokens, bounds[:-1])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_text(path: Path, sha256: str | None, size: int | None) -> tuple[str, str]:
    """The file's text and its SHA-256, after the checks; DataError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if size is not None and len(data) != size:
        what = "truncated" if len(data) < size else "longer than expected"
        raise DataError(f"{path}: {len(data):,} bytes, expected {size:,} ({what}); delete it to download it again")
    digest = _sha256(data)
    if sha256 is not None and digest != sha256:
        raise DataError(f"{path}: SHA-256 {digest}, expected {sha256}; the file is damaged or another text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None
    if not text:
        raise DataError(f"{path}: the file is empty")
    return text, digest


def _cache_path(source: Path, cache_dir: Path) -> Path:
    return cache_dir / f"{source.stem}.tokens.npz"


def _load_cache(path: Path, digest: str) -> Corpus | None:
    """The cached corpus if ``path`` holds one made from the text with SHA-256 ``digest``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            made_from, tokens = str(z["source_sha256"]), z["tokens"]
            vocabulary, source = str(z["vocabulary"]), Path(str(z["source"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        log.warning("%s: unreadable token cache; rebuilding it", path)
        return None
    if made_from != digest:
        log.warning("%s was made from other text (SHA-256 %s, the source now has %s); rebuilding it",
                    path, made_from[:12], digest[:12])  # fmt: skip
        return None
    if tokens.ndim != 1 or (len(tokens) and int(tokens.max()) >= len(vocabulary)):
        log.warning("%s: tokens do not fit its vocabulary; rebuilding it", path)
        return None
    return Corpus(tokens, vocabulary, source)


def _encode(text: str, source: Path) -> Corpus:
    vocabulary = "".join(sorted(set(text)))
    dtype = np.uint8 if len(vocabulary) <= 256 else np.uint32
    lookup = np.zeros(max(map(ord, vocabulary)) + 1, dtype=dtype)
    lookup[[ord(ch) for ch in vocabulary]] = np.arange(len(vocabulary), dtype=dtype)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return Corpus(lookup[codes], vocabulary, source)


def load_corpus(path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
                cache_dir: str | os.PathLike | None = None) -> Corpus:  # fmt: skip
    """Read the UTF-8 text file ``path`` as a character-level :class:`Corpus`.

    ``sha256`` and ``size``, when given, are checked first (:class:`DataError` otherwise). The
    encoded tokens are cached as ``<stem>.tokens.npz`` in ``cache_dir`` (default: the file's
    directory if writable, else the repository's ``data/``), tied to the text's SHA-256.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text, digest = _read_text(path, sha256, size)
    cache_root = Path(cache_dir) if cache_dir is not None else (
        path.parent if is_writable_dir(path.parent) else config.repo_root() / "data")  # fmt: skip
    cache = _cache_path(path, cache_root)
    remove_stale_temporaries(cache_root, cache.name)  # what a killed cache writer left
    cached = _load_cache(cache, digest)
    if cached is not None:
        return Corpus(cached.tokens, cached.vocabulary, path)
    corpus = _encode(text, path)
    try:
        atomic_write(cache, lambda f: np.savez(f, tokens=corpus.tokens, vocabulary=np.array(corpus.vocabulary),
                                               source=np.array(str(path)), source_sha256=np.array(digest)))  # fmt: skip
    except OSError as exc:
        log.warning("could not write the token cache %s: %s", cache, exc)
    return corpus


def locate_shakespeare(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The tiny-Shakespeare file in the data directory (:data:`FILE_NAMES`), or None."""
    root = config.data_dir(data_dir)
    for name in FILE_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def load_shakespeare(data_dir: str | os.PathLike | None = None, *, source: str | os.PathLike | None = None,
                     download: bool = True, progress: bool | None = None) -> Corpus:  # fmt: skip
    """Tiny Shakespeare as a :class:`Corpus` (1,115,394 characters, 65 distinct), checked against
    its size and SHA-256; downloaded with pooch into the data directory when not found."""
    path = Path(source).expanduser() if source is not None else locate_shakespeare(data_dir)
    if path is None:
        root = config.data_dir(data_dir)
        if not download:
            raise DataError(f"tiny Shakespeare not found: looked for {' and '.join(FILE_NAMES)} in {root}. To get it: "
                            f"download {URL} (SHA-256 {SHA256}) there as {FILE_NAMES[0]}, or call "
                            f"load_shakespeare(download=True), or point COURSE_DATA_DIR at a directory that holds it")  # fmt: skip
        path = _download(root, config.show_progress(progress))
    return load_corpus(path, sha256=SHA256, size=SIZE)


def _download(directory: Path, progress: bool) -> Path:
    import pooch

    try:
        fetched = pooch.retrieve(URL, known_hash=f"sha256:{SHA256}", fname=FILE_NAMES[0], path=directory,
                                 progressbar=progress)  # fmt: skip
    except Exception as exc:  # network errors, a hash mismatch (ValueError), a full disk...
        raise DataError(f"could not download {URL} into {directory}: {exc}. Put the file there as "
                        f"{FILE_NAMES[0]} (SHA-256 {SHA256}), or point COURSE_DATA_DIR at a directory "
                        f"that holds it") from exc  # fmt: skip
    return Path(fetched)


@dataclass
class TextData:
    """A split of a corpus on the device as integers, with the window starts that are its examples.

    Example ``i`` is the window starting at ``s = starts[i]``: inputs ``tokens[s : s+T]`` and
    targets ``tokens[s+1 : s+T+1]`` (the next character at every position), ``T = context``.
    Same interface as :class:`~course_lib.engine.device_data.DeviceData`: ``len``, ``device``,
    ``batch(index)``.
    """

    tokens: Tensor  # 1-D int64
    starts: Tensor  # 1-D int64 window starts
    context: int

    @classmethod
    def from_tokens(cls, tokens: np.ndarray, context: int, *, stride: int = 1, max_windows: int | None = None,
                    device: torch.device | str | None = None, name: str = "split") -> "TextData":  # fmt: skip
        """Every window of ``context`` + 1 tokens starting at a multiple of ``stride``
        (1: every position, for training; ``context``: non-overlapping, for evaluation);
        ``max_windows`` keeps that many, evenly spaced over the split."""
        if context < 1 or stride < 1:
            raise ValueError(f"context and stride must be positive, got {context} and {stride}")
        if len(tokens) < context + 1:
            raise DataError(f"the {name} split has {len(tokens):,} characters, fewer than one window of "
                            f"context + 1 = {context + 1}; use a shorter context or a larger split")  # fmt: skip
        dev = torch.device(device) if device is not None else config.device()
        starts = torch.arange(0, len(tokens) - context, stride)
        if max_windows is not None and max_windows < len(starts):
            starts = starts[torch.linspace(0, len(starts) - 1, max_windows).round().long()]
        return cls(torch.as_tensor(np.asarray(tokens, dtype=np.int64)).to(dev), starts.to(dev), context)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    def batch(self, index: Tensor, augment=None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Inputs and targets (each ``len(index)`` x T, int64) of the windows ``index``."""
        if augment is not None:
            raise ValueError("text windows have no augmentation; pass augment=None")
        positions = self.starts[index][:, None] + torch.arange(self.context + 1, device=self.device)
        window = self.tokens[positions]
        return window[:, :-1], window[:, 1:]


def text_on_device(corpus: Corpus, context: int, *, val_fraction: float = 0.1, with_test: bool = False,
                   test_fraction: float = 0.1, val_windows: int | None = None,
                   device: torch.device | str | None = None) -> dict[str, TextData]:  # fmt: skip
    """Contiguous splits of ``corpus`` on the device as ``{"train", "val"[, "test"]}`` :class:`TextData`.

    Without a test split: the first ``1 - val_fraction`` train, the rest validation (90/10 by
    default). ``with_test``: the last ``test_fraction`` is held out as the test split and the
    validation split is the ``val_fraction`` before it. Training examples are all windows;
    validation and test are non-overlapping windows (``val_windows`` of them at most, evenly
    spaced, for a cheaper evaluation).
    """
    parts = corpus.split(val_fraction, test_fraction) if with_test else corpus.split(val_fraction)
    names = ["train", "val", "test"][: len(parts)]
    out = {}
    for name, tokens in zip(names, parts):
        if name == "train":
            out[name] = TextData.from_tokens(tokens, context, device=device, name=name)
        else:
            out[name] = TextData.from_tokens(tokens, context, stride=context, max_windows=val_windows, device=device,
                                             name=name)  # fmt: skip
    return out
