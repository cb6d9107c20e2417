"""Running the study: one run, the learning-rate choice, the whole study (resumable, shardable).

Protocol
--------
1. **Search.** For every optimizer, every learning rate of its log grid is trained once (seed 0)
   on the training split; the validation split, carved from the *training* set, picks the
   learning rate with the best final validation accuracy (:func:`chosen_learning_rates`). The
   test set plays no part in it.
2. **Final.** The chosen setting is re-run with seeds 1, 2, ... (seed 0 is the search run
   itself, which used the same data and initial weights), and reported on the test set as
   mean +- std over the seeds, with the time to reach a target validation accuracy.

Within a seed every optimizer starts from the same initial weights and sees the same batches
(:func:`train_one` trains through :func:`course_lib.engine.compare.train_variant`); all share
the epoch budget, the batch size and the schedule (linear warm-up for the first tenth of the
steps, then linear decay to zero).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import config
from ..engine import models
from ..engine.augment import flip_and_translate
from ..engine.compare import Variant, train_variant
from ..engine.device_data import DeviceData, cifar10_on_device
from ..engine.loop import History, evaluate, steps_per_epoch
from ..engine.text import TextData, load_shakespeare, text_on_device
from ..optim.schedules import warmup_linear_decay
from .design import RunSpec, StudyConfig, final_runs, optimizer_for, search_runs, shard
from .store import (IncompleteStudy, ResultStore, data_variant, move_aside, provenance, record_provenance,
                    write_config)

__all__ = ["train_one", "chosen_learning_rates", "load_data", "run_study", "run_extra"]


def _loss_fn(cfg: StudyConfig):
    if not cfg.label_smoothing:
        return None  # the training loop's default, plain cross-entropy
    return functools.partial(torch.nn.functional.cross_entropy, label_smoothing=cfg.label_smoothing)


def _total_steps(cfg: StudyConfig, train_size: int) -> int:
    return cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch(train_size, cfg.batch_size)


def _schedule(cfg: StudyConfig, train_size: int):
    """Linear warm-up over the first ``warmup_fraction`` of the steps, then linear decay to zero."""
    steps_total = _total_steps(cfg, train_size)
    warmup = min(max(1, round(cfg.warmup_fraction * steps_total)), steps_total - 1)
    # the first step already moves: the warm-up starts at 1/warmup of the peak rate
    return functools.partial(warmup_linear_decay, warmup_steps=warmup, total_steps=steps_total,
                             start_factor=1 / max(1, warmup))  # fmt: skip


def _history_record(history: History) -> dict:
    return {
        "step_loss": history.step_loss,
        "epochs": [dataclasses.asdict(e) for e in history.epochs],
        "diverged": history.diverged,
        "seconds": history.seconds,
    }


def train_one(cfg: StudyConfig, spec: RunSpec, data: dict[str, DeviceData], progress: bool | None = None,
              optimizer: tuple[type[torch.optim.Optimizer], dict] | None = None) -> dict:  # fmt: skip
    """Train one run of the study and return its record (history, test accuracy, provenance).

    ``data``: ``{"train", "test"}`` :class:`~course_lib.engine.device_data.DeviceData`, and
    ``"val"`` for the per-epoch validation metrics (without it they are None). ``optimizer`` =
    (class, fixed kwargs) overrides the configuration's entry for ``spec.optimizer``
    (``cfg.optimizer_settings``). The schedule is
    :func:`~course_lib.optim.schedules.warmup_linear_decay` over the whole run. The initial
    weights come from ``spec.seed`` (built inside :func:`course_lib.config.seeded`, so the
    caller's generator is left alone), the batches too.
    """
    optimizer_cls, fixed = optimizer if optimizer is not None else optimizer_for(cfg, spec.optimizer)
    if "lr" in fixed:
        raise ValueError("the learning rate comes from the run (spec.lr), not from the fixed settings")
    train_data = data["train"]
    with config.seeded(spec.seed):  # the same initial weights for every optimizer within a seed
        model = cfg.make_model()
    model.to(train_data.device)
    if cfg.whiten:  # from (at most) the first 5,000 training images, the same for every run
        sample = train_data.batch(torch.arange(min(5000, len(train_data)), device=train_data.device))[0]
        models.init_whitening_(model[0], sample)
    # Variant's default parameters are the trainable ones: a frozen whitening stem is left out
    variant = Variant(optimizer_cls, {"lr": spec.lr, **fixed}, schedule=_schedule(cfg, len(train_data)),
                      loss_fn=_loss_fn(cfg), augment=flip_and_translate if cfg.augment else None)  # fmt: skip
    history = train_variant(model, variant, train_data, epochs=cfg.epochs, steps=cfg.steps, batch_size=cfg.batch_size,
                            eval_every=cfg.eval_every, val_data=data.get("val"), seed=spec.seed, progress=progress,
                            desc=spec.key).history  # fmt: skip
    test_loss, test_acc = ((float("nan"), float("nan")) if history.diverged
                           else evaluate(model, data["test"], tta=cfg.tta))  # fmt: skip
    return {
        "key": spec.key, "fingerprint": cfg.fingerprint(), **dataclasses.asdict(spec),
        "test_loss": test_loss, "test_acc": test_acc,
        "final_val_acc": (history.epochs[-1].val_acc if history.epochs and not history.diverged
                          and history.epochs[-1].val_acc is not None else float("nan")),
        "time_to_target": history.time_to("val_acc", cfg.target_accuracy),
        "steps_to_target": history.steps_to("val_acc", cfg.target_accuracy),
        "history": _history_record(history), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(train_data.device),
    }  # fmt: skip


def _selection_score(record: dict, task: str = "cifar10") -> tuple[float, float]:
    """Higher is better: (validation accuracy, -validation loss) for images; for text the loss
    comes first, since a language model is judged by its loss (bits per character)."""
    if record["history"]["diverged"] or not record["history"]["epochs"]:
        return (-np.inf, -np.inf)
    last = record["history"]["epochs"][-1]
    if task == "shakespeare":
        return (-last["val_loss"], last["val_acc"])
    return (last["val_acc"], -last["val_loss"])


def chosen_learning_rates(cfg: StudyConfig, records: list[dict]) -> dict[str, float]:
    """Per optimizer, the searched lr with the best final validation accuracy (for the text task:
    the lowest final validation loss).

    Ties go to the lower final validation loss; a diverged run is never chosen over a finished one.
    """
    chosen = {}
    for name in cfg.optimizers:
        runs = [r for r in records if r["phase"] == "search" and r["optimizer"] == name
                and r["fingerprint"] == cfg.fingerprint()]  # fmt: skip
        grid = cfg.lr_grids[name]
        done = {float(r["lr"]) for r in runs} & {float(lr) for lr in grid}  # duplicates count once
        if len(done) < len(grid):
            raise IncompleteStudy(f"the learning-rate search for {name} is incomplete "
                                  f"({len(done)} of {len(grid)} learning rates done); run or merge the search phase first")  # fmt: skip
        chosen[name] = max(runs, key=lambda r: _selection_score(r, cfg.task))["lr"]
    return chosen


def load_data(cfg: StudyConfig, device=None, data_dir=None) -> dict[str, DeviceData | TextData]:
    """The task's data on the device as the study uses it: ``{"train", "val", "test"}``.

    CIFAR-10: the validation split is carved from the training set, the test set is the official
    one. Tiny Shakespeare: contiguous splits, the last 10% of the corpus held out as the test
    split and the 10% before it as the validation split (``cfg.eval_windows`` windows each).
    """
    if cfg.task == "shakespeare":
        corpus = load_shakespeare(data_dir)
        return text_on_device(corpus, cfg.context, val_fraction=cfg.val_fraction, with_test=True,
                              val_windows=cfg.eval_windows, device=device)  # fmt: skip
    return cifar10_on_device(train_per_class=cfg.train_per_class, val_fraction=cfg.val_fraction,
                             with_test=True, test_per_class=cfg.test_per_class, seed=0,
                             device=device, data_dir=data_dir)  # fmt: skip


def run_study(cfg: StudyConfig, out: str | os.PathLike, *, phase: str = "all", shard_spec: tuple[int, int] = (1, 1),
              data: dict[str, DeviceData] | None = None, progress: bool | None = None,
              command: str = "course_lib.study.run_study", log=print, force_new: bool = False,
              wait: float = 0.0) -> ResultStore:  # fmt: skip
    """Run (or resume) the study; return the store its results went to.

    Holds the lock of the results file it writes for the whole call (:meth:`ResultStore.lock`):
    a second process on the same ``out`` (and shard) waits ``wait`` seconds, then is refused
    with :class:`~course_lib.study.store.LockHeld` naming the holder. ``out`` holds one
    configuration: another one is refused (:class:`~course_lib.study.store.ConfigMismatch`)
    unless ``force_new``, which first moves the old study files into ``out/previous-*/``.
    The final phase is refused (:class:`~course_lib.study.store.IncompleteStudy`) before any
    data is loaded when the search is incomplete; an unusable ``COURSE_DEVICE`` or
    ``COURSE_DATA_DIR`` is reported before anything is written. See :func:`_run_study_locked` for the rest.
    """
    if phase not in ("search", "final", "all"):
        raise ValueError(f"phase must be 'search', 'final' or 'all', got {phase!r}")
    index, count = shard_spec
    out = Path(out)
    store = ResultStore(out / ("results.jsonl" if count == 1 else f"results-{index}-of-{count}.jsonl"))
    if data is None:
        config.device()  # raise ConfigError for an unusable COURSE_DEVICE or COURSE_DATA_DIR
        config.data_dir()  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with store.lock(wait=wait, command=command):
        if force_new:
            moved = move_aside(out)
            if moved is not None:
                log(f"moved the previous study's files into {moved}")
        write_config(cfg, out)  # refuses another configuration
        if phase == "final":
            merged = ResultStore(out / "results.jsonl").load() if count > 1 else store.load()
            chosen_learning_rates(cfg, merged)  # refuses an incomplete search before loading any data
        return _run_study_locked(cfg, out, phase=phase, shard_spec=shard_spec, data=data, progress=progress,
                                 command=command, log=log)  # fmt: skip


def _run_study_locked(cfg: StudyConfig, out: str | os.PathLike, *, phase: str = "all", shard_spec: tuple[int, int] = (1, 1),
              data: dict[str, DeviceData] | None = None, progress: bool | None = None,
              command: str = "course_lib.study.run_study", log=print) -> ResultStore:  # fmt: skip
    """:func:`run_study` once its lock is held and its configuration checked.

    Every finished run is appended at once, atomically, to ``<out>/results.jsonl``, or
    ``results-<i>-of-<n>.jsonl`` for shard ``shard_spec = (i, n)``; the runs already there are
    skipped, so an interrupted study loses at most the run in progress. With ``data=None``
    CIFAR-10 is loaded from the data directory and the invocation (``command``, device, library
    versions, data variant, date) is appended to ``<out>/provenance.json``.
    """
    if phase not in ("search", "final", "all"):
        raise ValueError(f"phase must be 'search', 'final' or 'all', got {phase!r}")
    index, count = shard_spec
    out = Path(out)
    store = ResultStore(out / ("results.jsonl" if count == 1 else f"results-{index}-of-{count}.jsonl"))
    write_config(cfg, out)
    if data is None:
        data = load_data(cfg)
        record_provenance(out, provenance(cfg, command, str(data["train"].device), data_variant(task=cfg.task)))
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


def run_extra(cfg: StudyConfig, out: str | os.PathLike, data: dict[str, DeviceData], label: str,
              optimizer: tuple[type[torch.optim.Optimizer], dict], lr: float, *, seed: int = 0,
              batch_size: int | None = None, progress: bool | None = None) -> dict:  # fmt: skip
    """One run outside the grid (a momentum or batch-size variant), stored in ``<out>/extra.jsonl``.

    Same protocol as the study's runs (initial weights from ``seed``, same schedule and budget);
    ``optimizer`` = (class, fixed kwargs), e.g. ``optimizer_for(cfg, "Adam")``. A run already in
    the file is returned without training again.
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
