"""What a study leaves on disk: results, its configuration, and what produced them.

In a study's directory ``<out>``:

- ``results.jsonl`` (``results-<i>-of-<n>.jsonl`` for a shard): one JSON object per finished
  run, the whole file rewritten atomically after each run (:class:`ResultStore`); :func:`merge`
  joins the shard files;
- ``study-config.json``: the configuration the study ran with (:func:`write_config`,
  :func:`load_config`), so that results are read with the settings that made them;
- ``provenance.json``: one entry per invocation: command, device, versions (course_lib's git
  commit too), data variant, date (:func:`provenance`, :func:`record_provenance`);
- ``extra.jsonl``: runs outside the grid (:func:`~course_lib.study.protocol.run_extra`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..engine import cifar10, text
from ..files import atomic_write_text
from .design import StudyConfig

__all__ = ["ResultStore", "merge", "write_config", "load_config", "provenance", "record_provenance",
           "data_variant"]  # fmt: skip


class ResultStore:
    """One JSON object per finished run, in a JSON-lines file, rewritten atomically per run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for n, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}, line {n}: not a JSON record ({exc.msg})") from exc
        return records

    def done(self, fingerprint: str) -> set[str]:
        return {r["key"] for r in self.load() if r["fingerprint"] == fingerprint}

    def append(self, record: dict) -> None:
        self.write(self.load() + [record])

    def write(self, records: Iterable[dict]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def merge(out: str | os.PathLike) -> ResultStore:
    """Join ``results.jsonl`` and every ``results-*-of-*.jsonl`` in ``out`` (later copies of a key win)."""
    out = Path(out)
    target = ResultStore(out / "results.jsonl")
    by_key = {(r["fingerprint"], r["key"]): r for r in target.load()}
    for part in sorted(out.glob("results-*-of-*.jsonl")):
        for r in ResultStore(part).load():
            by_key[(r["fingerprint"], r["key"])] = r
    target.write(by_key.values())
    return target


def write_config(cfg: StudyConfig, out: str | os.PathLike) -> None:
    """Write ``<out>/study-config.json`` (creating ``out``), unless it already holds ``cfg``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study-config.json"
    text = json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True, default=str)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def load_config(out: str | os.PathLike) -> StudyConfig:
    """The configuration a study in ``out`` ran with (its ``study-config.json``).

    Read results with the configuration that made them, not with today's defaults, which may
    have changed since: the fingerprint of the loaded configuration matches the stored results.
    A file written before a setting existed gets that setting's default, which is what the
    study ran with.
    """
    path = Path(out) / "study-config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: no study has been run in {out}")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a study configuration ({exc.msg})") from exc
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{path}: unknown fields {sorted(unknown)} (written by a newer course_lib?)")
    # JSON has no tuples: restore them
    if "optimizers" in fields:
        fields["optimizers"] = tuple(fields["optimizers"])
    if "model_kwargs" in fields:
        fields["model_kwargs"] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields["model_kwargs"].items()}
    if "lr_grids" in fields:
        fields["lr_grids"] = {name: tuple(grid) for name, grid in fields["lr_grids"].items()}
    if "optimizer_settings" in fields:
        fields["optimizer_settings"] = {name: (cls, dict(fixed)) for name, (cls, fixed) in
                                        fields["optimizer_settings"].items()}  # fmt: skip
    return StudyConfig(**fields)


def provenance(cfg: StudyConfig, command: str, device: str, data_variant: str) -> dict:
    """What produced a results file: device, versions (course_lib's git commit too, with
    ``-dirty`` when the working tree had uncommitted changes), data variant, date, exact command."""
    return {
        "command": command, "device": device, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data_variant, "course_lib": _code_version(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "config": dataclasses.asdict(cfg),
        "fingerprint": cfg.fingerprint(),
    }  # fmt: skip


def _code_version() -> str:
    """``course_lib`` version and, in a git checkout, the commit (``+dirty`` if modified)."""
    from .. import __version__

    root = Path(__file__).resolve().parents[2]  # the checkout, for an editable install
    if not (root / "pyproject.toml").is_file():
        return __version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {commit}{'+dirty' if dirty else ''})"


def data_variant(data_dir=None, task: str = "cifar10") -> str:
    """Which data the task reads: for CIFAR-10, the official pixels or an image-folder copy; for
    tiny Shakespeare, the file (whose SHA-256 the loader checks)."""
    if task == "shakespeare":
        path = text.locate_shakespeare(data_dir)
        return f"tiny Shakespeare ({path.name}, SHA-256 {text.SHA256[:12]}...)" if path else "tiny Shakespeare (not found)"
    source = cifar10.locate_cifar10("train", data_dir=data_dir)
    if source is None:
        return "CIFAR-10 (not found)"
    if source.kind == "official":
        return f"CIFAR-10 (official; {source.path.name})"
    return f"CIFAR-10 (image-folder copy, e.g. the JPEG copy; {source.path.name})"


def record_provenance(out: str | os.PathLike, entry: dict) -> None:
    """Append one invocation's provenance to ``<out>/provenance.json`` (atomically)."""
    path = Path(out) / "provenance.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries.append(entry)
    atomic_write_text(path, json.dumps(entries, indent=2, default=str))
