r"""Running the study: one run, the learning-rate choice, the whole study (resumable, shardable).

Protocol (version :data:`~course_lib.study.design.PROTOCOL`)
-------------------------------------------------------------
1. **Search.** For every optimizer, every learning rate of its log grid is trained once, with
   the search seed 0, on the training split; the validation split, carved from the *training*
   set, picks the learning rate with the best final validation accuracy (text: the lowest
   validation loss). A search run evaluates no test data: its record holds no test numbers.
   The validation accuracy :math:`\hat p` of a rate has the standard error :math:`s/\sqrt{n_{val}}`,
   :math:`s` the spread of the per-example accuracies: :math:`\sqrt{\hat p(1-\hat p)/n_{val}}`
   for images; a text window's accuracy is the fraction of its characters predicted, and the
   window is the independent unit (:func:`search_table` states it).
2. **Grid extension.** A chosen rate at either end of its grid adds one more rate beyond that
   end, at the grid's ratio there (:math:`\eta_1^2/\eta_2` below, :math:`\eta_k^2/\eta_{k-1}`
   above), and the search goes on until the chosen rate is interior or ``grid_extensions``
   rates were added at that end (:func:`lr_search`); then it says so.
3. **Final.** The chosen rate is re-run on ``final_seeds`` **fresh** seeds (1, 2, ...: the
   search seed is never in the reported mean, which would otherwise favour the rate that was
   chosen because its seed-0 run was lucky) and reported on the test set.

Within a seed every optimizer starts from the same initial weights and sees the same batches
(:func:`train_one` trains through :func:`course_lib.engine.compare.train_variant`); all share
the budget, the batch size, the weight decay (``cfg.weight_decay``: the same decoupled decay
for all, :func:`decoupled_weight_decay`) and the schedule: linear warm-up for the first tenth of
the steps, then linear decay to zero. A schedule-free optimizer runs at a constant rate with
its own warm-up over the same steps (it is built to run without a decay) and is evaluated at
the point it reports.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
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
from ..engine.loop import History, at_reported_point, evaluate, example_accuracies, steps_per_epoch
from ..engine.text import TextData, load_shakespeare, text_on_device
from ..optim.schedules import warmup_linear_decay
from .design import SEARCH_SEED, RunSpec, StudyConfig, final_runs, is_schedule_free, optimizer_for, search_runs, shard
from .store import (IncompleteStudy, ResultStore, data_variant, move_aside, provenance, record_provenance,
                    write_config)

__all__ = ["train_one", "chosen_learning_rates", "load_data", "run_study", "run_extra", "LrSearch", "lr_search",
           "search_plan", "search_table", "decoupled_weight_decay", "validation_se", "mean_se", "study_status",
           "total_steps"]


def _loss_fn(cfg: StudyConfig):
    if not cfg.label_smoothing:
        return None  # the training loop's default, plain cross-entropy
    return functools.partial(torch.nn.functional.cross_entropy, label_smoothing=cfg.label_smoothing)


def total_steps(cfg: StudyConfig, train_size: int) -> int:
    """The optimizer steps of one run: ``cfg.steps``, or epochs x batches per epoch."""
    return cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch(train_size, cfg.batch_size)


def _warmup_steps(cfg: StudyConfig, train_size: int) -> int:
    steps_total = total_steps(cfg, train_size)
    return min(max(1, round(cfg.warmup_fraction * steps_total)), steps_total - 1)


def _schedule(cfg: StudyConfig, train_size: int, optimizer_cls: type | None = None):
    """Linear warm-up over the first ``warmup_fraction`` of the steps, then linear decay to zero;
    None (a constant rate) for a schedule-free optimizer, which warms up by itself."""
    if optimizer_cls is not None and is_schedule_free(optimizer_cls):
        return None
    steps_total = total_steps(cfg, train_size)
    warmup = _warmup_steps(cfg, train_size)
    # the first step already moves: the warm-up starts at 1/warmup of the peak rate
    return functools.partial(warmup_linear_decay, warmup_steps=warmup, total_steps=steps_total,
                             start_factor=1 / max(1, warmup))  # fmt: skip


def decoupled_weight_decay(optimizer_cls: type[torch.optim.Optimizer], weight_decay: float) -> type:
    r"""``optimizer_cls`` with decoupled weight decay: before each of its steps, every parameter
    shrinks by the fraction :math:`\lambda\,\eta_t/\eta` (``weight_decay`` times the schedule's
    factor, :math:`\eta` the rate the optimizer was built with):
    :math:`\theta \leftarrow (1 - \lambda\eta_t/\eta)\,\theta`, then the optimizer's own step.

    The shrink does not scale with the optimizer's rate (AdamW's :math:`\eta\lambda_{AdamW}` would:
    the same :math:`\lambda_{AdamW}` would then decay SGD at rate 0.3 a hundred times faster than
    Adam at 0.003), so every optimizer of a study loses the same fraction of its weights per step.
    For Adam it is AdamW with :math:`\lambda_{AdamW} = \lambda/\eta`. ``weight_decay == 0``
    returns the class itself.
    """
    if weight_decay == 0:
        return optimizer_cls

    class Decayed(optimizer_cls):
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            for group in self.param_groups:
                group.setdefault("peak_lr", float(group["lr"]))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                shrink = weight_decay * float(group["lr"]) / group["peak_lr"] if group["peak_lr"] else 0.0
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1 - shrink)
            return super().step(closure)

    Decayed.__name__ = Decayed.__qualname__ = f"{optimizer_cls.__name__}WithDecay"
    return Decayed


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
    :func:`~course_lib.optim.schedules.warmup_linear_decay` over the whole run (a schedule-free
    optimizer: a constant rate and its own ``warmup_steps``); every optimizer gets the study's
    :func:`decoupled_weight_decay`. A search run (``spec.phase == "search"``) is not evaluated on
    the test set: its record has no ``test_loss``/``test_acc``. The initial
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
    if is_schedule_free(optimizer_cls) and "warmup_steps" not in fixed:  # its own warm-up, the study's length
        fixed = {**fixed, "warmup_steps": _warmup_steps(cfg, len(train_data))}
    # Variant's default parameters are the trainable ones: a frozen whitening stem is left out
    variant = Variant(decoupled_weight_decay(optimizer_cls, cfg.weight_decay), {"lr": spec.lr, **fixed},
                      schedule=_schedule(cfg, len(train_data), optimizer_cls), loss_fn=_loss_fn(cfg),
                      augment=flip_and_translate if cfg.augment else None)  # fmt: skip
    run = train_variant(model, variant, train_data, epochs=cfg.epochs, steps=cfg.steps, batch_size=cfg.batch_size,
                        eval_every=cfg.eval_every, val_data=data.get("val"), seed=spec.seed, progress=progress,
                        desc=spec.key)  # fmt: skip
    history = run.history
    record = {"key": spec.key, "fingerprint": cfg.fingerprint(), **dataclasses.asdict(spec)}
    if spec.phase != "search":  # the search never sees the test set: its records hold no test numbers
        with at_reported_point(run.optimizer):
            test_loss, test_acc = ((float("nan"), float("nan")) if history.diverged
                                   else evaluate(model, data["test"], tta=cfg.tta))  # fmt: skip
        record.update(test_loss=test_loss, test_acc=test_acc)
    val = data.get("val")
    val_acc_se = float("nan")
    if val is not None and not history.diverged:  # where the loop validated: the reported point
        with at_reported_point(run.optimizer):
            val_acc_se = mean_se(example_accuracies(model, val))
    return {
        **record,
        "val_acc_se": val_acc_se,
        "final_val_acc": (history.epochs[-1].val_acc if history.epochs and not history.diverged
                          and history.epochs[-1].val_acc is not None else float("nan")),
        "val_size": len(val) if val is not None else 0,
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


def validation_se(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` images: sqrt(p(1 - p) / n).

    Right for images (each a 0/1 trial). For text windows, use :func:`mean_se` of the
    per-window accuracies: with the window as one trial this formula overstates the error."""
    if not n or not math.isfinite(accuracy):
        return float("nan")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def mean_se(values) -> float:
    """The standard error of the mean of independent ``values``: s / sqrt(n) (sample standard
    deviation s, ddof 1); nan for fewer than two. Of 0/1 values it is
    sqrt(p(1 - p) / (n - 1)), :func:`validation_se` up to n / (n - 1)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float("nan")
    return float(v.std(ddof=1) / math.sqrt(v.size))


@dataclasses.dataclass(frozen=True)
class LrSearch:
    """Where the learning-rate search of one optimizer stands.

    ``grid``: the rates searched so far or to search now (the configured grid and its
    extensions), ascending; ``missing``: those without a run yet; ``chosen``: the best rate
    (None while ``missing``); ``added``: the rates the extension added below and above;
    ``at_bound``: "smallest"/"largest" when the chosen rate is still at that end after
    ``grid_extensions`` rates were added there (the best may lie beyond), else "".
    """

    optimizer: str
    grid: tuple[float, ...]
    missing: tuple[float, ...]
    chosen: float | None
    added: tuple[tuple[float, ...], tuple[float, ...]]
    at_bound: str

    @property
    def complete(self) -> bool:
        return not self.missing


def _beyond(grid: list[float], end: str) -> float:
    """One rate beyond ``end`` of the ascending ``grid``, at the grid's ratio there (3 digits)."""
    ratio = grid[1] / grid[0] if end == "smallest" else grid[-1] / grid[-2]
    lr = grid[0] / ratio if end == "smallest" else grid[-1] * ratio
    return float(f"{lr:.3g}")


def lr_search(cfg: StudyConfig, name: str, records: list[dict]) -> LrSearch:
    """The search of optimizer ``name`` as ``records`` have it, with the grid extension of the
    protocol: while the best rate is at an end of the grid and fewer than ``cfg.grid_extensions``
    rates were added there, one more rate beyond that end is needed. A grid of one rate is not
    extended (it has no ratio); a search whose runs all diverged is not extended either."""
    runs = {}
    for r in records:  # the first record of each rate counts (duplicates are one run)
        if r["phase"] == "search" and r["optimizer"] == name and r["fingerprint"] == cfg.fingerprint():
            runs.setdefault(float(r["lr"]), r)
    grid = sorted(float(lr) for lr in cfg.lr_grids[name])
    added = {"smallest": [], "largest": []}
    while True:
        missing = tuple(lr for lr in grid if lr not in runs)
        if missing:
            return LrSearch(name, tuple(grid), missing, None, (tuple(added["smallest"]), tuple(added["largest"])), "")
        best = max(grid, key=lambda lr: _selection_score(runs[lr], cfg.task))
        end = "" if len(grid) < 2 else "smallest" if best == grid[0] else "largest" if best == grid[-1] else ""
        if not end or not np.isfinite(_selection_score(runs[best], cfg.task)[0]):
            return LrSearch(name, tuple(grid), (), best, (tuple(added["smallest"]), tuple(added["largest"])), "")
        if len(added[end]) >= cfg.grid_extensions:
            return LrSearch(name, tuple(grid), (), best, (tuple(added["smallest"]), tuple(added["largest"])), end)
        lr = _beyond(grid, end)
        added[end].append(lr)
        grid = sorted(grid + [lr])


def search_plan(cfg: StudyConfig, records: list[dict]) -> list[RunSpec]:
    """Every search run the protocol needs as far as ``records`` tell: the configured grids
    first (in :func:`~course_lib.study.design.search_runs`'s order, so shards keep their share),
    then the extension rates, optimizer by optimizer. Done runs are included: filter them out."""
    runs = search_runs(cfg)
    listed = {r.key for r in runs}
    for name in cfg.optimizers:
        for lr in lr_search(cfg, name, records).grid:
            spec = RunSpec("search", name, lr, SEARCH_SEED)
            if spec.key not in listed:
                runs.append(spec)
                listed.add(spec.key)
    return runs


def chosen_learning_rates(cfg: StudyConfig, records: list[dict]) -> dict[str, float]:
    """Per optimizer, the searched lr with the best final validation accuracy (for the text task:
    the lowest final validation loss), after the grid extension of :func:`lr_search`.

    Ties go to the lower final validation loss; a diverged run is never chosen over a finished
    one. Raises :class:`~course_lib.study.store.IncompleteStudy` while a rate is missing.
    """
    chosen = {}
    for name in cfg.optimizers:
        search = lr_search(cfg, name, records)
        if not search.complete:
            raise IncompleteStudy(f"the learning-rate search for {name} is incomplete "
                                  f"({len(search.grid) - len(search.missing)} of {len(search.grid)} learning rates "
                                  f"done); run or merge the search phase first")  # fmt: skip
        chosen[name] = search.chosen
    return chosen


def _search_se(record: dict | None, accuracy: float) -> float:
    """A search run's validation standard error: the one its record keeps (:func:`mean_se` of
    the per-example accuracies), else, for records written before it was kept,
    :func:`validation_se` (right for images; for text windows an overstatement)."""
    if record is None:
        return float("nan")
    if record.get("val_acc_se") is not None:
        return float(record["val_acc_se"])
    return validation_se(accuracy, record.get("val_size", 0))


def search_table(cfg: StudyConfig, records: list[dict]) -> list[dict]:
    """One row per search run (ascending rates per optimizer): its final validation accuracy
    and loss, the accuracy's standard error (over the validation examples: :func:`mean_se`),
    whether it is the chosen rate, and whether the extension added it. No test numbers: the
    search has none."""
    rows = []
    for name in cfg.optimizers:
        search = lr_search(cfg, name, records)
        added = set(search.added[0]) | set(search.added[1])
        done = {}
        for r in records:
            if r["phase"] == "search" and r["optimizer"] == name and r["fingerprint"] == cfg.fingerprint():
                done.setdefault(float(r["lr"]), r)
        for lr in search.grid:
            r = done.get(lr)
            last = r["history"]["epochs"][-1] if r and r["history"]["epochs"] and not r["history"]["diverged"] else {}
            acc = r["final_val_acc"] if r else float("nan")
            rows.append({"optimizer": name, "lr": lr, "val_acc": acc,
                         "val_acc_se": _search_se(r, acc),
                         "val_loss": last.get("val_loss", float("nan")), "diverged": bool(r and r["history"]["diverged"]),
                         "chosen": lr == search.chosen, "added": lr in added, "done": r is not None,
                         "at_bound": search.at_bound if lr == search.chosen else ""})  # fmt: skip
    return rows


def study_status(cfg: StudyConfig, records: list[dict]) -> dict:
    """How far the study in ``records`` is: ``runs_done`` of ``runs_needed`` (the search as far
    as its grid extensions are known, plus ``final_seeds`` runs per optimizer) and a ``label``,
    ``"complete: n of n runs"`` or ``"partial: k of n runs"`` (``"of at least n"`` while the
    search may still extend a grid)."""
    mine = [r for r in records if r["fingerprint"] == cfg.fingerprint()]
    keys = {r["key"] for r in mine}
    plan = search_plan(cfg, mine)
    searches = [lr_search(cfg, name, mine) for name in cfg.optimizers]
    search_done = sum(spec.key in keys for spec in plan)
    try:
        finals = final_runs(cfg, chosen_learning_rates(cfg, mine))
        final_done = sum(spec.key in keys for spec in finals)
    except IncompleteStudy:
        final_done = len({r["key"] for r in mine if r["phase"] == "final"})
    needed = len(plan) + len(cfg.optimizers) * cfg.final_seeds
    done = search_done + final_done
    settled = all(s.complete for s in searches)
    label = (f"complete: {done} of {needed} runs" if done == needed and settled else
             f"partial: {done} of {'' if settled else 'at least '}{needed} runs")  # fmt: skip
    return {"runs_done": done, "runs_needed": needed, "complete": done == needed and settled, "label": label}


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
    provenance_written = data is None
    if data is None:
        data = load_data(cfg)
        record_provenance(out, provenance(cfg, command, str(data["train"].device), data_variant(task=cfg.task)))
    phases = ["search", "final"] if phase == "all" else [phase]
    merged_path = out / "results.jsonl"
    start = time.perf_counter()
    try:
        for current in phases:
            while True:
                # the runs needed as far as the results tell; a shard decides from the merged file
                # only, so that every shard computes the same list
                known = ResultStore(merged_path).load() if count > 1 else store.load()
                runs = (search_plan(cfg, known) if current == "search"
                        else final_runs(cfg, chosen_learning_rates(cfg, known)))  # fmt: skip
                done = store.done(cfg.fingerprint())
                todo = [r for r in shard(runs, index, count) if r.key not in done]
                log(f"{current}: {len(runs)} runs in the grid, {len(todo)} to do in this shard")
                if not todo:
                    break
                bar = tqdm(todo, desc=f"study ({current})", unit="run", disable=not config.show_progress(progress))
                for i, spec in enumerate(bar, start=1):
                    bar.set_postfix_str(spec.key)
                    record = train_one(cfg, spec, data, progress=False)
                    store.append(record)
                    tested = f", test acc {record['test_acc']:.3f}" if "test_acc" in record else ""
                    log(f"  [{i}/{len(todo)}] {spec.key}: val acc {record['final_val_acc']:.3f}{tested}, "
                        f"{record['history']['seconds']:.1f} s" + (" (diverged)" if record["history"]["diverged"] else ""))  # fmt: skip
                if count > 1 or current == "final":
                    break  # a shard's new runs count only once merged; the final runs are known at once
    finally:
        if provenance_written:
            record_provenance(out, {"wall_s": round(time.perf_counter() - start, 1),
                                    "status": study_status(cfg, store.load() if count == 1 else
                                                           ResultStore(merged_path).load() + store.load())},
                              update_last=True)  # fmt: skip
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
