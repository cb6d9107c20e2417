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


class ConfigError(ValueError, RuntimeError):
    """An environment variable of the course holds a value it cannot use.

    The message names the variable, the value and what is accepted. (A ``ValueError`` and,
    for the device, a ``RuntimeError``, as these settings raised before.)
    """


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_fast() -> bool:
    """True when ``COURSE_FAST`` asks for fast mode (``1``/``true``/``yes``/``on``)."""
    raw = os.environ.get("COURSE_FAST", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(
        f"COURSE_FAST={raw!r} is not a known value: use 1 (or true/yes/on) for fast mode, "
        f"0 (or false/no/off, or leave it unset) for full mode"
    )


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise: ``epochs = pick(full=20, fast=2)``."""
    return fast if is_fast() else full


def device() -> torch.device:
    """The device to compute on: ``COURSE_DEVICE`` if set, else CUDA when available, else CPU.

    Raises :class:`ConfigError`, naming the variable, when ``COURSE_DEVICE`` is not a device
    torch knows (``banana``) or one this machine does not have (``cuda`` without a GPU,
    ``cuda:3`` with two, ``mps`` off a Mac), so that a caller can check it before writing anything.
    """
    name = os.environ.get("COURSE_DEVICE", "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"COURSE_DEVICE={name!r} is not a device torch knows: use cpu, cuda, cuda:<index> or mps, "
            f"or leave it unset (CUDA when available, else CPU)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"COURSE_DEVICE={name!r} but CUDA is not available on this machine; "
                              f"use cpu or leave COURSE_DEVICE unset")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"COURSE_DEVICE={name!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"COURSE_DEVICE={name!r} but MPS (Apple GPU) is not available on this machine; "
                              f"use cpu or leave COURSE_DEVICE unset")
    elif dev.type != "cpu":
        module = getattr(torch, dev.type, None)
        available = getattr(module, "is_available", None)
        if not (callable(available) and available()):
            raise ConfigError(f"COURSE_DEVICE={name!r} but {dev.type} is not available on this machine; "
                              f"use cpu, cuda or mps, or leave COURSE_DEVICE unset")
    return dev


def repo_root() -> Path:
    """The checkout the package was installed from (editable install), or the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Directory for downloads and caches.

    Order of precedence: the ``path`` argument, ``COURSE_DATA_DIR``, the repository's ``data/``.
    The argument and the default are created when missing; ``COURSE_DATA_DIR`` must name an
    existing directory (a typo must not silently become a new directory that a 170 MB download
    then fills). Raises :class:`ConfigError` naming the variable (or ``data_dir``) when the
    path is a file, lies under a file, or (for the variable) does not exist.
    """
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    if path:
        chosen, what, create = Path(path), "data_dir", True
    elif env:
        chosen, what, create = Path(env), "COURSE_DATA_DIR", False
    else:
        chosen, what, create = repo_root() / "data", "the default data directory", True
    out = chosen.expanduser()
    label = f"{what}={str(chosen)!r}" if what != "the default data directory" else f"{what} {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{label} is a file, not a directory; point it at a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{label} lies under {str(parent)!r}, which is a file, not a directory")
            break
    if not out.exists():
        if not create:
            raise ConfigError(f"{label} does not exist; create it first (mkdir -p {out}) or correct the "
                              f"variable; nothing was created or downloaded")
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
