"""The course's environment, read in one place.

Every setting is read from the environment *when a function is called*, never cached in a
module-level global, so a notebook or test that changes ``os.environ`` sees the change.

=================  ===========================================  ==========================
variable           meaning                                      default
=================  ===========================================  ==========================
``COURSE_FAST``    ``1`` selects fast mode (CI, quick checks)   ``0`` (full mode)
``COURSE_DEVICE``  torch device string, e.g. ``cpu``, ``cuda``  CUDA when available, else CPU
``COURSE_DATA_DIR`` where downloads and caches live             the repository's ``data/``
``COURSE_PROGRESS`` ``0``/``1`` turns progress bars off/on      on in a terminal or kernel,
                                                                off under CI
=================  ===========================================  ==========================
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path
from typing import Iterator, TypeVar

import numpy as np
import torch

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_fast() -> bool:
    """True when ``COURSE_FAST`` asks for fast mode (``1``/``true``/``yes``/``on``)."""
    raw = os.environ.get("COURSE_FAST", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"COURSE_FAST must be 0 or 1 (or true/false), got {raw!r}")


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise: ``epochs = pick(full=20, fast=2)``."""
    return fast if is_fast() else full


def device() -> torch.device:
    """The device to compute on: ``COURSE_DEVICE`` if set, else CUDA when available, else CPU."""
    name = os.environ.get("COURSE_DEVICE", "").strip()
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"COURSE_DEVICE={name!r} but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def repo_root() -> Path:
    """The checkout the package was installed from (editable install), or the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Directory for downloads and caches, created if missing.

    Order of precedence: the ``path`` argument, ``COURSE_DATA_DIR``, the repository's ``data/``.
    """
    chosen = path or os.environ.get("COURSE_DATA_DIR") or repo_root() / "data"
    out = Path(chosen).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) so that CPU runs repeat exactly.

    Returns a ``torch.Generator`` seeded with ``seed`` for code that prefers an explicit one.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generator seeded with ``seed``, restoring it afterwards.

    For library code that must draw from the global generator (a model's initial weights made
    by ``nn.Linear``, ``nn.Dropout``'s masks): inside the block the draws repeat for a given
    ``seed``; outside it, the caller's generator state is exactly as it was (no hidden reseeding).
    CUDA generators are forked too when CUDA is available.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def show_progress(progress: bool | None = None) -> bool:
    """Whether long work shows a progress bar.

    An explicit ``progress`` wins; then ``COURSE_PROGRESS`` (``0``/``1``), which the test
    runner sets to ``0`` so that executed notebooks do not flood their output channel; by
    default bars are off when ``CI`` is set, and on when stderr is a terminal or the code runs
    in a Jupyter kernel.
    """
    if progress is not None:
        return bool(progress)
    forced = os.environ.get("COURSE_PROGRESS", "").strip().lower()
    if forced:
        if forced not in _TRUE | _FALSE:
            raise ValueError(f"COURSE_PROGRESS must be 0 or 1 (or true/false), got {forced!r}")
        return forced in _TRUE
    if os.environ.get("CI", "").strip().lower() not in _FALSE:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules
