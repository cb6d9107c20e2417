"""The CIFAR-10 optimizer study: a fair comparison of SGD, Momentum, Nesterov, AdaGrad, RMSProp,
Adam and AdamW, resumable and shardable.

Protocol
--------
1. **Search.** For every optimizer, every learning rate of its log grid is trained once (seed 0)
   on the training split; the validation split, carved from the *training* set, picks the
   learning rate with the best final validation accuracy. The test set plays no part in it.
2. **Final.** The chosen setting is re-run with seeds 1, 2, ... (seed 0 is the search run
   itself, which used the same data and initial weights), and reported on the test set as
   mean +- std over the seeds, with the time to reach a target validation accuracy.

Within a seed every optimizer starts from the same initial weights and sees the same batches;
all share the epoch budget, the batch size and the schedule (linear warm-up for the first
tenth of the steps, then linear decay to zero).

Results
-------
Every finished run is appended at once, atomically (written to a temporary file that then
replaces the results file), to ``<out>/results.jsonl``, or ``results-<i>-of-<n>.jsonl`` for a
shard. Running the same study again skips the runs already there, so an interrupted study
loses at most the run in progress. ``--shard i/n`` runs every n-th run of the grid, starting at
the i-th, so array jobs on a cluster can share the work; ``merge`` joins the shard files.

Command line
------------
::

    python -m course_lib.study run --mode fast --out results/study-fast
    python -m course_lib.study run --mode full --out results/study-full --phase search --shard 1/4
    python -m course_lib.study merge --out results/study-full
    python -m course_lib.study summary --out results/study-full

On Slurm: an array job of n tasks runs ``run --phase search --shard $((SLURM_ARRAY_TASK_ID+1))/n``,
then ``merge``; then the same for ``--phase final``; then ``summary``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import config, data, models, optim, plots, schedules, train
from .files import atomic_write_text
from .regularization import flip_and_translate

__all__ = [
    "OPTIMIZERS",
    "StudyConfig",
    "fast_config",
    "full_config",
    "load_config",
    "RunSpec",
    "ResultStore",
    "search_runs",
    "final_runs",
    "run_study",
    "chosen_learning_rates",
    "summarize",
    "curves",
    "lr_sensitivity",
    "save_figures",
    "merge",
    "run_extra",
    "provenance",
    "main",
]

# name -> (optimizer class, fixed keyword arguments). The learning rate is the searched axis.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "SGD": (optim.SGD, {}),
    "Momentum": (optim.SGD, {"momentum": 0.9}),
    "Nesterov": (optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "AdaGrad": (optim.Adagrad, {}),
    "RMSProp": (optim.RMSprop, {}),
    "Adam": (optim.Adam, {}),
    "AdamW": (optim.AdamW, {"weight_decay": 0.05}),
}

# log grids, a factor of about 3 apart, centred on each method's usual range
LR_GRIDS: dict[str, tuple[float, ...]] = {
    "SGD": (0.03, 0.1, 0.3, 1.0),
    "Momentum": (0.003, 0.01, 0.03, 0.1),
    "Nesterov": (0.003, 0.01, 0.03, 0.1),
    "AdaGrad": (0.003, 0.01, 0.03, 0.1),
    "RMSProp": (0.0003, 0.001, 0.003, 0.01),
    "Adam": (0.0003, 0.001, 0.003, 0.01),
    "AdamW": (0.0003, 0.001, 0.003, 0.01),
}


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; its fingerprint keys the results."""

    mode: str
    model: str  # "small_cnn" or "airbench"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 512
    train_per_class: int | None = None  # None: all 5,000 per class
    test_per_class: int | None = None  # None: all 1,000 per class
    val_fraction: float = 0.1
    final_seeds: int = 3
    target_accuracy: float = 0.5
    warmup_fraction: float = 0.1
    augment: bool = True
    whiten: bool = False  # airbench stem initialised as a frozen patch-whitening layer
    label_smoothing: float = 0.0  # of the training loss (the reported losses are plain cross-entropy)
    tta: int = 0  # test-time augmentation level of the reported test accuracy (train.tta_logits)
    lr_grids: dict = field(default_factory=lambda: dict(LR_GRIDS))
    optimizers: tuple = tuple(OPTIMIZERS)

    def __post_init__(self):
        unknown = set(self.optimizers) - set(OPTIMIZERS)
        if unknown:
            raise ValueError(f"unknown optimizers {sorted(unknown)}; choose from {list(OPTIMIZERS)}")
        if self.model not in ("small_cnn", "airbench"):
            raise ValueError(f"model must be 'small_cnn' or 'airbench', got {self.model!r}")
        if self.final_seeds < 1 or self.epochs < 1:
            raise ValueError("final_seeds and epochs must be at least 1")
        if self.whiten and self.model != "airbench":
            raise ValueError("whiten=True needs the airbench model (its 2x2 stem is the whitening layer)")

    def fingerprint(self) -> str:
        """A short hash of the settings that differ from their defaults: it keys the results.

        Leaving default values out means that a setting added later, whose default keeps the
        old behaviour, does not change the fingerprints of studies already run.
        """

        def canonical(value) -> str:
            return json.dumps(value, sort_keys=True, default=str)

        settings = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                settings[f.name] = value
                continue
            if canonical(value) != canonical(default):
                settings[f.name] = value
        return hashlib.sha256(canonical(settings).encode()).hexdigest()[:12]

    def make_model(self) -> torch.nn.Module:
        return (models.small_cnn if self.model == "small_cnn" else models.airbench_net)(**self.model_kwargs)


def fast_config() -> StudyConfig:
    """CPU: a class-balanced subset, the small CNN, a few epochs, four learning rates each.

    The grids are the full study's shifted up by one step: the small network on few images
    prefers larger rates (with only the upper three rates of the full grids, Momentum, Adam and
    AdamW chose their largest, so the best rate may have lain outside the grid).

    200 training images per class, of which a fifth (400 images) is the validation split, and
    200 test images per class: the standard error of an accuracy near 0.35 is about 0.024 on the
    validation split and 0.011 on the test set. About 1.5 minutes on two CPU cores.
    """
    grids = {name: grid[1:] + (float(f"{grid[-1] * 3:.1g}"),) for name, grid in LR_GRIDS.items()}
    return StudyConfig(mode="fast", model="small_cnn", model_kwargs={"widths": (8, 16, 32)}, epochs=4,
                       batch_size=64, train_per_class=200, val_fraction=0.2, test_per_class=200,
                       final_seeds=3, target_accuracy=0.3, lr_grids=grids)  # fmt: skip


def full_config() -> StudyConfig:
    """GPU: all of CIFAR-10, the airbench-style net, 10 epochs, four learning rates each.

    The airbench training recipe is shared by every optimizer: whitening stem, label smoothing
    0.2 and test-time augmentation (six views) of the reported test accuracy.
    """
    return StudyConfig(mode="full", model="airbench", epochs=10, batch_size=512, target_accuracy=0.9,
                       whiten=True, label_smoothing=0.2, tta=2)  # fmt: skip


def load_config(out: str | os.PathLike) -> StudyConfig:
    """The configuration a study in ``out`` ran with (its ``study-config.json``).

    Read results with the configuration that made them, not with today's defaults, which may
    have changed since: the fingerprint of the loaded configuration matches the stored results.
    """
    path = Path(out) / "study-config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: no study has been run in {out}")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a study configuration ({exc.msg})") from exc
    fields["optimizers"] = tuple(fields["optimizers"])  # JSON has no tuples: restore them
    fields["model_kwargs"] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields["model_kwargs"].items()}
    fields["lr_grids"] = {name: tuple(grid) for name, grid in fields["lr_grids"].items()}
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{path}: unknown fields {sorted(unknown)} (written by a newer course_lib?)")
    return StudyConfig(**fields)


@dataclass(frozen=True)
class RunSpec:
    phase: str  # "search" or "final"
    optimizer: str
    lr: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.optimizer}/lr={self.lr:g}/seed={self.seed}"


def search_runs(cfg: StudyConfig) -> list[RunSpec]:
    """The learning-rate grid, one run per (optimizer, lr), seed 0."""
    return [RunSpec("search", name, lr, 0) for name in cfg.optimizers for lr in cfg.lr_grids[name]]


def final_runs(cfg: StudyConfig, chosen: dict[str, float]) -> list[RunSpec]:
    """Seeds 1 .. final_seeds-1 of each chosen setting (seed 0 is its search run)."""
    return [RunSpec("final", name, chosen[name], seed) for name in cfg.optimizers for seed in range(1, cfg.final_seeds)]


def shard(runs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Every ``count``-th run starting at the ``index``-th (1-based): ``--shard index/count``."""
    if not 1 <= index <= count:
        raise ValueError(f"shard must be i/n with 1 <= i <= n, got {index}/{count}")
    return runs[index - 1 :: count]


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


def _loss_fn(cfg: StudyConfig):
    if not cfg.label_smoothing:
        return None  # train's default, plain cross-entropy
    return functools.partial(torch.nn.functional.cross_entropy, label_smoothing=cfg.label_smoothing)


def _history_record(history: train.History) -> dict:
    return {
        "step_loss": history.step_loss,
        "epochs": [dataclasses.asdict(e) for e in history.epochs],
        "diverged": history.diverged,
        "seconds": history.seconds,
    }


def train_one(cfg: StudyConfig, spec: RunSpec, data: dict[str, train.DeviceData], progress: bool | None = None,
              optimizer: tuple[type[torch.optim.Optimizer], dict] | None = None) -> dict:  # fmt: skip
    """Train one run of the study and return its record (history, test accuracy, provenance).

    ``data``: ``{"train", "test"}`` :class:`~course_lib.train.DeviceData`, and ``"val"`` for the
    per-epoch validation metrics (without it they are None). ``optimizer`` = (class, fixed kwargs)
    overrides the study's entry for ``spec.optimizer``. The schedule is
    :func:`~course_lib.schedules.warmup_linear_decay` over the whole run.
    """
    optimizer_cls, fixed = optimizer if optimizer is not None else OPTIMIZERS[spec.optimizer]
    torch.manual_seed(spec.seed)  # the same initial weights for every optimizer within a seed
    model = cfg.make_model().to(data["train"].device)
    if cfg.whiten:  # from (at most) the first 5,000 training images, the same for every run
        sample = data["train"].batch(torch.arange(min(5000, len(data["train"])), device=data["train"].device))[0]
        models.init_whitening_(model[0], sample)
    opt = optimizer_cls([p for p in model.parameters() if p.requires_grad], lr=spec.lr, **fixed)
    steps_total = cfg.epochs * -(-len(data["train"]) // cfg.batch_size)
    warmup = min(max(1, round(cfg.warmup_fraction * steps_total)), steps_total - 1)
    # the first step already moves: the warm-up starts at 1/warmup of the peak rate
    sched = schedules.ScheduledLR(opt, schedules.warmup_linear_decay, warmup_steps=warmup,
                                  total_steps=steps_total, start_factor=1 / max(1, warmup))  # fmt: skip
    history = train.train(model, opt, data["train"], val_data=data.get("val"), epochs=cfg.epochs,
                          batch_size=cfg.batch_size, scheduler=sched, seed=spec.seed,
                          augment=flip_and_translate if cfg.augment else None, progress=progress,
                          loss_fn=_loss_fn(cfg), desc=spec.key)  # fmt: skip
    test_loss, test_acc = ((float("nan"), float("nan")) if history.diverged
                           else train.evaluate(model, data["test"], tta=cfg.tta))  # fmt: skip
    return {
        "key": spec.key, "fingerprint": cfg.fingerprint(), **dataclasses.asdict(spec),
        "test_loss": test_loss, "test_acc": test_acc,
        "final_val_acc": (history.epochs[-1].val_acc if history.epochs and not history.diverged
                          and history.epochs[-1].val_acc is not None else float("nan")),
        "time_to_target": history.time_to("val_acc", cfg.target_accuracy),
        "history": _history_record(history), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(data["train"].device),
    }  # fmt: skip


def _selection_score(record: dict) -> tuple[float, float]:
    if record["history"]["diverged"] or not record["history"]["epochs"]:
        return (-1.0, -np.inf)
    last = record["history"]["epochs"][-1]
    return (last["val_acc"], -last["val_loss"])


def chosen_learning_rates(cfg: StudyConfig, records: list[dict]) -> dict[str, float]:
    """Per optimizer, the searched lr with the best final validation accuracy.

    Ties go to the lower final validation loss; a diverged run is never chosen over a finished one.
    """
    chosen = {}
    for name in cfg.optimizers:
        runs = [r for r in records if r["phase"] == "search" and r["optimizer"] == name
                and r["fingerprint"] == cfg.fingerprint()]  # fmt: skip
        if len(runs) < len(cfg.lr_grids[name]):
            raise RuntimeError(f"the learning-rate search for {name} is incomplete "
                               f"({len(runs)} of {len(cfg.lr_grids[name])} runs); run or merge the search phase first")  # fmt: skip
        chosen[name] = max(runs, key=_selection_score)["lr"]
    return chosen


def load_data(cfg: StudyConfig, device=None, data_dir=None) -> dict[str, train.DeviceData]:
    return train.cifar10_on_device(train_per_class=cfg.train_per_class, val_fraction=cfg.val_fraction,
                                   with_test=True, test_per_class=cfg.test_per_class, seed=0,
                                   device=device, data_dir=data_dir)  # fmt: skip


def run_study(cfg: StudyConfig, out: str | os.PathLike, *, phase: str = "all", shard_spec: tuple[int, int] = (1, 1),
              data: dict[str, train.DeviceData] | None = None, progress: bool | None = None,
              command: str = "course_lib.study.run_study", log=print) -> ResultStore:  # fmt: skip
    """Run (or resume) the study; return the store its results went to.

    With ``data=None`` CIFAR-10 is loaded from the data directory and the invocation (``command``,
    device, library versions, data variant, date) is appended to ``<out>/provenance.json``.
    """
    if phase not in ("search", "final", "all"):
        raise ValueError(f"phase must be 'search', 'final' or 'all', got {phase!r}")
    index, count = shard_spec
    out = Path(out)
    store = ResultStore(out / ("results.jsonl" if count == 1 else f"results-{index}-of-{count}.jsonl"))
    _write_config(cfg, out)
    if data is None:
        data = load_data(cfg)
        record_provenance(out, provenance(cfg, command, str(data["train"].device), data_variant()))
    phases = ["search", "final"] if phase == "all" else [phase]
    for current in phases:
        if current == "search":
            runs = search_runs(cfg)
        else:
            merged = ResultStore(out / "results.jsonl").load() if count > 1 else store.load()
            runs = final_runs(cfg, chosen_learning_rates(cfg, merged))
        todo = [r for r in shard(runs, index, count) if r.key not in store.done(cfg.fingerprint())]
        log(f"{current}: {len(runs)} runs in the grid, {len(todo)} to do in this shard")
        bar = tqdm(todo, desc=f"study ({current})", unit="run", disable=not config.show_progress(progress))
        for i, spec in enumerate(bar, start=1):
            bar.set_postfix_str(spec.key)
            record = train_one(cfg, spec, data, progress=False)
            store.append(record)
            log(f"  [{i}/{len(todo)}] {spec.key}: val acc {record['final_val_acc']:.3f}, "
                f"test acc {record['test_acc']:.3f}, {record['history']['seconds']:.1f} s"
                + (" (diverged)" if record["history"]["diverged"] else ""))  # fmt: skip
    return store


def run_extra(cfg: StudyConfig, out: str | os.PathLike, data: dict[str, train.DeviceData], label: str,
              optimizer: tuple[type[torch.optim.Optimizer], dict], lr: float, *, seed: int = 0,
              batch_size: int | None = None, progress: bool | None = None) -> dict:  # fmt: skip
    """One run outside the grid (a momentum or batch-size variant), stored in ``<out>/extra.jsonl``.

    Same protocol as the study's runs (initial weights from ``seed``, same schedule and budget);
    a run already in the file is returned without training again.
    """
    run_cfg = cfg if batch_size is None else dataclasses.replace(cfg, batch_size=batch_size)
    spec = RunSpec("extra", label, lr, seed)
    store = ResultStore(Path(out) / "extra.jsonl")
    for record in store.load():
        if record["key"] == spec.key and record["fingerprint"] == run_cfg.fingerprint():
            return record
    record = train_one(run_cfg, spec, data, progress=progress, optimizer=optimizer)
    store.append(record)
    return record


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


def final_records(cfg: StudyConfig, records: list[dict]) -> dict[str, list[dict]]:
    """Per optimizer, the runs of its chosen setting (seed 0's search run and the final seeds)."""
    chosen = chosen_learning_rates(cfg, records)
    out = {}
    for name in cfg.optimizers:
        out[name] = sorted(
            (r for r in records if r["fingerprint"] == cfg.fingerprint() and r["optimizer"] == name
             and r["lr"] == chosen[name] and (r["phase"] == "final" or r["seed"] == 0)),
            key=lambda r: r["seed"],
        )  # fmt: skip
    return out


def summarize(cfg: StudyConfig, records: list[dict]) -> list[dict]:
    """One row per optimizer: chosen lr, test accuracy mean and std over seeds, time to target.

    ``lr_at_edge`` is "smallest" or "largest" when the chosen rate is at that end of its grid
    (the best rate may then lie outside the grid: widen it), else "".
    """
    rows = []
    for name, runs in final_records(cfg, records).items():
        grid = cfg.lr_grids[name]
        lr = runs[0]["lr"] if runs else float("nan")
        edge = "" if len(grid) < 2 else "smallest" if lr == min(grid) else "largest" if lr == max(grid) else ""
        acc = np.array([r["test_acc"] for r in runs], dtype=float)
        ok = acc[~np.isnan(acc)]
        times = [r["time_to_target"] for r in runs if r["time_to_target"] is not None]
        rows.append({
            "optimizer": name, "lr": lr, "lr_at_edge": edge, "seeds": len(runs),
            "test_acc_mean": float(ok.mean()) if ok.size else float("nan"),
            "test_acc_std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
            "diverged": int(np.isnan(acc).sum()),
            "reached_target": f"{len(times)}/{len(runs)}",
            "time_to_target_s": float(np.mean(times)) if times else float("nan"),
        })  # fmt: skip
    return rows


def curves(cfg: StudyConfig, records: list[dict], metric: str = "val_acc") -> dict[str, np.ndarray]:
    """Per optimizer, a seeds x epochs array of a per-epoch metric of its chosen setting.

    A diverged run is padded with NaN after its last finished epoch.
    """
    out = {}
    for name, runs in final_records(cfg, records).items():
        rows = np.full((len(runs), cfg.epochs), np.nan)
        for i, r in enumerate(runs):
            values = [e[metric] for e in r["history"]["epochs"]]
            rows[i, : len(values)] = values
        out[name] = rows
    return out


def lr_sensitivity(cfg: StudyConfig, records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Per optimizer, (learning rates, final validation accuracy) of the search runs."""
    out = {}
    for name in cfg.optimizers:
        runs = sorted((r for r in records if r["phase"] == "search" and r["optimizer"] == name
                       and r["fingerprint"] == cfg.fingerprint()), key=lambda r: r["lr"])  # fmt: skip
        out[name] = ([r["lr"] for r in runs], [r["final_val_acc"] for r in runs])
    return out


def save_figures(cfg: StudyConfig, records: list[dict], out: str | os.PathLike) -> list[Path]:
    """Write curves.png (train loss and val accuracy with seed bands) and lr_sensitivity.png."""
    import matplotlib.pyplot as plt

    out = Path(out)
    epochs = np.arange(1, cfg.epochs + 1)
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    plots.plot_curves_with_band(epochs, curves(cfg, records, "train_loss"), ax=axes[0], xlabel="epoch",
                                ylabel="training loss")  # fmt: skip
    plots.plot_curves_with_band(epochs, curves(cfg, records, "val_acc"), ax=axes[1], xlabel="epoch",
                                ylabel="validation accuracy")  # fmt: skip
    paths = [out / "curves.png", out / "lr_sensitivity.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    plt.close(fig)
    ax = plots.plot_lr_sensitivity(lr_sensitivity(cfg, records), chosen=chosen_learning_rates(cfg, records))
    ax.figure.savefig(paths[1], bbox_inches="tight")
    plt.close(ax.figure)
    return paths


def summary_markdown(rows: list[dict], target: float) -> str:
    lines = [f"| optimizer | lr | test accuracy (mean ± std) | seeds | diverged | time to {target:.0%} val acc (s) |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lr = f"{r['lr']:g}" + (f" ({r['lr_at_edge']} in grid)" if r.get("lr_at_edge") else "")
        lines.append(f"| {r['optimizer']} | {lr} | {r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} | "
                     f"{r['seeds']} | {r['diverged']} | {r['time_to_target_s']:.1f} ({r['reached_target']} runs) |")  # fmt: skip
    if any(r.get("lr_at_edge") for r in rows):
        lines.append("\nA rate at the end of its grid may not be the best one: the best may lie outside the grid.")
    return "\n".join(lines)


def summary_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


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
    from . import __version__

    root = Path(__file__).resolve().parent.parent  # the checkout, for an editable install
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


def data_variant(data_dir=None) -> str:
    """Which CIFAR-10 the data directory serves: the official pixels or an image-folder copy."""
    source = data.locate_cifar10("train", data_dir=data_dir)
    if source is None:
        return "CIFAR-10 (not found)"
    if source.kind == "official":
        return f"CIFAR-10 (official; {source.path.name})"
    return f"CIFAR-10 (image-folder copy, e.g. the JPEG copy; {source.path.name})"


def record_provenance(out: Path, entry: dict) -> None:
    """Append one invocation's provenance to ``<out>/provenance.json`` (atomically)."""
    path = out / "provenance.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries.append(entry)
    atomic_write_text(path, json.dumps(entries, indent=2, default=str))


def _write_config(cfg: StudyConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study-config.json"
    text = json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True, default=str)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def _config_for(mode: str) -> StudyConfig:
    return {"fast": fast_config, "full": full_config}[mode]()


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 2/4; got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 1 <= i <= n; got {text!r}")
    return i, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("run", "run or resume the study"), ("merge", "join shard result files"),
                       ("summary", "write summary.md and summary.csv")]:  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--out", required=True, help="directory for results, summary and figures")
        if name == "summary":
            p.add_argument("--mode", choices=("fast", "full"), default=None,
                           help="default: the configuration the study in --out was run with")
        else:
            p.add_argument("--mode", choices=("fast", "full"), default="fast" if config.is_fast() else "full")
        if name == "run":
            p.add_argument("--phase", choices=("search", "final", "all"), default="all")
            p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="I/N")
            p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "summary" and args.mode is None:
        cfg = load_config(args.out) if (Path(args.out) / "study-config.json").exists() else _config_for("full")
    else:
        cfg = _config_for(args.mode)
    if args.command == "run":
        run_study(cfg, args.out, phase=args.phase, shard_spec=args.shard,
                  progress=False if args.no_progress else None,
                  command="python -m course_lib.study " + " ".join(argv if argv is not None else sys.argv[1:]))  # fmt: skip
        return 0
    if args.command == "merge":
        store = merge(args.out)
        print(f"merged {len(store.load())} records into {store.path}")
        return 0
    records = ResultStore(Path(args.out) / "results.jsonl").load()
    if not records:
        print(f"error: no results in {args.out}/results.jsonl; run the study first", file=sys.stderr)
        return 1
    rows = summarize(cfg, records)
    out = Path(args.out)
    atomic_write_text(out / "summary.md", summary_markdown(rows, cfg.target_accuracy) + "\n")
    atomic_write_text(out / "summary.csv", summary_csv(rows))
    figures = save_figures(cfg, records, out)
    print(summary_markdown(rows, cfg.target_accuracy))
    print("wrote " + ", ".join(str(p) for p in [out / "summary.md", out / "summary.csv", *figures]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
