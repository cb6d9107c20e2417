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

A study committed to a repository keeps its size down with :func:`thin` (``python -m
course_lib.study thin --out DIR --every 10``): each run's per-step loss keeps every 10th step.

**Nothing lost, nothing mixed.** A process that writes a results file holds its lock
(:meth:`ResultStore.lock`, ``results.jsonl.lock``: pid, host, start, command; a second writer
waits or is refused with a message naming the holder; the lock of a process that died is
taken over). A run is never recorded twice (:meth:`ResultStore.append`), and readers count each
run once even in a file that has duplicates (:func:`dedupe`). A study directory holds one
configuration: :func:`check_config` refuses another one, naming both fingerprints and the
settings that differ; :func:`move_aside` moves the old results into a ``previous-*`` folder
(``--force-new``), never deleting them. Records are standard JSON: a value that is not a finite
number (a diverged run's NaN loss) is written as ``null`` and named in the record's
``"nonfinite"`` entry (``{"test_acc": "nan"}``); :meth:`ResultStore.load` restores it.
Reading needs no lock.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..engine import cifar10, text
from ..files import FileLock, LockHeld, atomic_write_text, remove_stale_temporaries
from .design import StudyConfig

__all__ = ["ResultStore", "merge", "write_config", "load_config", "provenance", "record_provenance",
           "data_variant", "StudyError", "ConfigMismatch", "IncompleteStudy", "LockHeld", "dedupe", "run_identity",
           "check_config", "move_aside"]  # fmt: skip


class StudyError(RuntimeError):
    """The study cannot go on as asked; the message is one line for the user (the command
    line prints it and exits with status 2)."""


class ConfigMismatch(StudyError):
    """The study directory holds results of another configuration (:func:`check_config`)."""


class IncompleteStudy(StudyError):
    """A phase or summary needs runs that are not there yet (search before final)."""


def run_identity(record: dict) -> tuple:
    """What makes a run one run: (fingerprint, task, phase, optimizer, lr, seed)."""
    return (record["fingerprint"], record.get("task", "cifar10"), record["phase"], record["optimizer"],
            float(record["lr"]), int(record["seed"]))  # fmt: skip


def dedupe(records: Iterable[dict]) -> tuple[list[dict], int]:
    """Each run once: the first record of each :func:`run_identity`, in file order, and the
    number of duplicates left out (two processes writing one file, or a merge of overlapping
    shards, could leave them)."""
    seen, unique, total = set(), [], 0
    for r in records:
        total += 1
        ident = run_identity(r)
        if ident not in seen:
            seen.add(ident)
            unique.append(r)
    return unique, total - len(unique)


_NONFINITE = "nonfinite"


def _encode(record: dict) -> dict:
    """``record`` with every non-finite float replaced by None and listed under ``"nonfinite"``
    (path -> ``"nan"``, ``"inf"`` or ``"-inf"``; the path joins keys and list indices with ``/``)."""
    flagged: dict[str, str] = {}

    def walk(value, path: str):
        if isinstance(value, float) and not math.isfinite(value):
            flagged[path] = "nan" if value != value else ("inf" if value > 0 else "-inf")
            return None
        if isinstance(value, dict):
            return {k: walk(v, f"{path}/{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        return value

    out = walk({k: v for k, v in record.items() if k != _NONFINITE}, "")
    if flagged:
        out[_NONFINITE] = flagged
    return out


def _decode(record: dict) -> dict:
    """The inverse of :func:`_encode`: the flagged nulls become floats again."""
    flagged = record.pop(_NONFINITE, None)
    for path, kind in (flagged or {}).items():
        *parents, last = path.split("/")
        node = record
        try:
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if isinstance(node, list):
                node[int(last)] = float(kind)
            else:
                node[last] = float(kind)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a flag that no longer fits (edited by hand): leave the null
    return record


class ResultStore:
    """One JSON object per finished run, in a JSON-lines file, rewritten atomically per run.

    Writers hold :meth:`lock` for as long as they write; :meth:`load` needs no lock.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def lock(self, *, wait: float = 0.0, command: str | None = None) -> FileLock:
        """The exclusive lock of this results file (a context manager): held, or :class:`LockHeld`
        naming the process that holds it, after waiting ``wait`` seconds."""
        return FileLock(self.lock_path, wait=wait, command=command, what=f"the study results {self.path}",
                        hint="Let it finish (run with --wait SECONDS to wait for it) or use another --out")  # fmt: skip

    def load(self) -> list[dict]:
        """Every record in the file, in order (non-finite numbers restored, duplicates kept)."""
        if not self.path.exists():
            return []
        records = []
        for n, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(_decode(json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}, line {n}: not a JSON record ({exc.msg})") from exc
        return records

    def done(self, fingerprint: str) -> set[str]:
        return {r["key"] for r in self.load() if r["fingerprint"] == fingerprint}

    def append(self, record: dict) -> bool:
        """Add ``record`` unless the file already has that run (:func:`run_identity`); True when
        added. The file is read again first, so a run another writer added meanwhile counts."""
        records = self.load()
        ident = run_identity(record)
        if any(run_identity(r) == ident for r in records):
            return False
        self.write(records + [record])
        return True

    def write(self, records: Iterable[dict]) -> None:
        """Replace the file with ``records`` (atomically; standard JSON, see the module docstring);
        temporaries that killed writers of this file left behind are removed first."""
        remove_stale_temporaries(self.path.parent, self.path.name)
        atomic_write_text(self.path, "".join(json.dumps(_encode(r), sort_keys=True, allow_nan=False) + "\n"
                                             for r in records))  # fmt: skip


def merge(out: str | os.PathLike, *, wait: float = 0.0) -> ResultStore:
    """Join ``results.jsonl`` and every ``results-*-of-*.jsonl`` in ``out`` (later copies of a
    run win; each run once), holding the lock of ``results.jsonl`` while it writes."""
    out = Path(out)
    target = ResultStore(out / "results.jsonl")
    with target.lock(wait=wait):
        by_run = {run_identity(r): r for r in target.load()}
        for part in sorted(out.glob("results-*-of-*.jsonl")):
            for r in ResultStore(part).load():
                by_run[run_identity(r)] = r
        target.write(by_run.values())
    return target


def thin_step_loss(record: dict, every: int) -> dict:
    """``record`` with its per-step loss thinned to every ``every``-th step (steps 1, 1 + every, ...).

    ``history.step_loss_every`` says how far apart the kept steps are (absent: 1); thinning a
    record already thinned by ``k`` keeps every ``every / k``-th of its values, so ``every`` must
    be a multiple of ``k``. Nothing else in the record changes: every reported number comes from
    the per-epoch entries. A copy is returned; ``record`` is not modified.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    history = record.get("history") or {}
    k = int(history.get("step_loss_every", 1))
    if every % k:
        raise ValueError(f"run {record.get('key')} is already thinned to every {k}th step; "
                         f"every must be a multiple of {k}, got {every}")  # fmt: skip
    if every == k or "step_loss" not in history:
        return record
    return {**record, "history": {**history, "step_loss": history["step_loss"][:: every // k],
                                  "step_loss_every": every}}  # fmt: skip


def thin(out: str | os.PathLike, every: int, *, wait: float = 0.0) -> tuple[int, int]:
    """Thin the per-step loss of every run in ``out``'s ``results.jsonl`` (:func:`thin_step_loss`),
    holding its lock; for a study committed to a repository, where the file's size matters.
    Returns (runs thinned, runs in the file). A missing results file is refused before anything
    is written (no lock file, no directory left behind)."""
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    store = ResultStore(Path(out) / "results.jsonl")
    if not store.path.exists():
        raise IncompleteStudy(f"no results in {store.path}")
    with store.lock(wait=wait):
        records = store.load()
        if not records:
            raise IncompleteStudy(f"no results in {store.path}")
        thinned = [thin_step_loss(r, every) for r in records]
        changed = sum(a is not b for a, b in zip(records, thinned))
        if changed:
            store.write(thinned)
    return changed, len(records)


_STUDY_FILES = ("results.jsonl", "results-*-of-*.jsonl", "study-config.json", "provenance.json", "extra.jsonl",
                "summary.md", "summary.csv", "curves.png", "lr_sensitivity.png")  # fmt: skip


def _settings_text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _differences(old: dict, new: dict) -> list[str]:
    """``name old -> new`` for each setting that differs (JSON text, so tuples equal lists)."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, "(unset)"), new.get(name, "(unset)")
        if _settings_text(a) != _settings_text(b):
            a_text, b_text = (t if len(t) <= 60 else t[:57] + "..." for t in (_settings_text(a), _settings_text(b)))
            out.append(f"{name} {a_text} -> {b_text}")
    return out


def check_config(cfg: StudyConfig, out: str | os.PathLike) -> None:
    """Raise :class:`ConfigMismatch` when ``out`` holds a study of another configuration than
    ``cfg``: its ``study-config.json`` has another fingerprint (the message names both
    fingerprints and the settings that differ), or, without that file, a results file holds
    records of another fingerprint. Nothing is written."""
    out = Path(out)
    path = out / "study-config.json"
    new_fp = cfg.fingerprint()
    how = (f"Use another --out, or --force-new to move the old results aside into {out}/previous-<date>-<fingerprint>/ "
           f"(nothing is deleted).")  # fmt: skip
    if path.exists():
        try:
            stored = load_config(out)
        except (ValueError, TypeError) as exc:
            raise ConfigMismatch(f"{path} cannot be read as a study configuration ({exc}); " + how) from exc
        old_fp = stored.fingerprint()
        if old_fp != new_fp:
            differ = _differences(dataclasses.asdict(stored), dataclasses.asdict(cfg))
            raise ConfigMismatch(
                f"{out} holds a study with fingerprint {old_fp} (its study-config.json), but this configuration "
                f"has fingerprint {new_fp}; settings that differ: {'; '.join(differ) or '(none visible)'}. " + how)
        return
    foreign = sorted({r["fingerprint"] for part in sorted(out.glob("results*.jsonl"))
                      for r in ResultStore(part).load()} - {new_fp})  # fmt: skip
    if foreign:
        raise ConfigMismatch(f"{out} holds results of fingerprint {', '.join(foreign)} (and no study-config.json), "
                             f"but this configuration has fingerprint {new_fp}. " + how)  # fmt: skip


def move_aside(out: str | os.PathLike) -> Path | None:
    """Move the study files in ``out`` (results, configuration, provenance, extra runs, summary,
    figures) into a new folder ``out/previous-<UTC date and time>-<fingerprint>/`` and return it
    (None when there was nothing to move). Nothing is deleted; other files are left alone."""
    out = Path(out)
    files = sorted({p for pattern in _STUDY_FILES for p in out.glob(pattern) if p.is_file()})
    if not files:
        return None
    try:
        fingerprint = load_config(out).fingerprint()
    except (OSError, ValueError, TypeError):
        fingerprint = "unknown"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = out / f"previous-{stamp}-{fingerprint}"
    n = 1
    while target.exists():
        n += 1
        target = out / f"previous-{stamp}-{fingerprint}-{n}"
    target.mkdir()
    for f in files:
        os.replace(f, target / f.name)
    return target


def write_config(cfg: StudyConfig, out: str | os.PathLike) -> None:
    """Write ``<out>/study-config.json`` (creating ``out``), unless it already holds ``cfg``.

    Raises :class:`ConfigMismatch` (see :func:`check_config`) instead of replacing the
    configuration of another study: results of two configurations never share a directory.
    Temporaries in ``out`` whose writer has died (:func:`course_lib.files.remove_stale_temporaries`)
    are removed first.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # what killed writers of this study's files left behind
    check_config(cfg, out)
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
    # a file without a protocol was written under protocol 1 (search seed in the final mean, test
    # accuracy in the search): StudyConfig refuses it, so its results are never read as protocol 2's
    fields.setdefault("protocol", 1)
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
    """What produced a results file: device, machine (processor) and its cores, versions
    (course_lib's git commit too, with ``-dirty`` when the working tree had uncommitted changes),
    data variant, date, exact command. When the invocation ends, the study adds its wall time
    (``wall_s``) and how far it got (``status``, e.g. "partial: 12 of 61 runs")."""
    return {
        "command": command, "device": device, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data_variant, "course_lib": _code_version(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "machine": _machine(), "cores": os.cpu_count(),
        "config": dataclasses.asdict(cfg),
        "fingerprint": cfg.fingerprint(),
    }  # fmt: skip


def _machine() -> str:
    """The processor's name (from /proc/cpuinfo where there is one) and the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    origin = source.path.name
    if source.path.suffix == ".npz":  # a cache: it names the archive or folder it was decoded from
        try:
            with np.load(source.path, allow_pickle=False) as z:
                origin = Path(json.loads(str(z["meta"]))["source"]["path"]).name
        except (OSError, KeyError, ValueError, TypeError):
            pass
    if "jpeg" in origin.lower() or "jpg" in origin.lower():
        return f"CIFAR-10 (JPEG copy; {origin})"
    return f"CIFAR-10 (image-folder copy, e.g. the JPEG copy; {source.path.name})"


def record_provenance(out: str | os.PathLike, entry: dict, *, update_last: bool = False) -> None:
    """Append one invocation's provenance to ``<out>/provenance.json`` (atomically); with
    ``update_last``, add ``entry``'s items to the last entry instead (the wall time and status an
    invocation writes when it ends, finished or interrupted)."""
    path = Path(out) / "provenance.json"
    with FileLock(path.with_name("provenance.json.lock"), wait=60, what=f"{path}"):  # shards share the file
        entries = json.loads(path.read_text()) if path.exists() else []
        if update_last and entries:
            entries[-1].update(entry)
        else:
            entries.append(entry)
        atomic_write_text(path, json.dumps([_encode(e) for e in entries], indent=2, default=str,
                                           allow_nan=False))  # fmt: skip
