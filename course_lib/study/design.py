"""What a study is: its configuration (with the optimizers' fixed settings), grids and runs.

A study runs on one of two test beds (its ``task``): ``"cifar10"``, a CNN on CIFAR-10 images,
or ``"shakespeare"``, a small GPT-style transformer predicting the next character of tiny
Shakespeare. Each task has its own learning-rate grids (:data:`LR_GRIDS`, :data:`TEXT_LR_GRIDS`).

Every setting that changes a result is a field of :class:`StudyConfig`, so it is part of the
fingerprint that keys the results: nothing that :func:`~course_lib.study.protocol.train_one`
reads lives in module state. The optimizer classes are looked up by name in
:data:`OPTIMIZER_CLASSES`; each of the study's optimizers is a class name with fixed keyword
arguments (:data:`OPTIMIZER_SETTINGS`, the default of ``StudyConfig.optimizer_settings``);
the learning rate is the searched axis (:data:`LR_GRIDS`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import optim
from ..engine import models

__all__ = ["OPTIMIZER_CLASSES", "OPTIMIZER_SETTINGS", "CLASSIC_OPTIMIZERS", "COMPARED_OPTIMIZERS", "PROTOCOL",
           "with_optimizers", "select_optimizers", "LR_GRIDS", "reference_config", "text_reference_config", "is_schedule_free",
           "TEXT_LR_GRIDS", "TASKS", "StudyConfig",
           "fast_config", "full_config", "text_fast_config", "text_full_config", "config_for", "optimizer_for",
           "RunSpec", "search_runs", "final_runs", "final_seeds", "SEARCH_SEED", "shard"]  # fmt: skip

# task -> the models it can train
TASKS: dict[str, tuple[str, ...]] = {"cifar10": ("small_cnn", "airbench"), "shakespeare": ("transformer",)}

# class name -> optimizer class: course_lib's from-scratch optimizers, and torch's under "torch."
OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "SGD": optim.SGD,
    "Adagrad": optim.Adagrad,
    "RMSprop": optim.RMSprop,
    "Adam": optim.Adam,
    "AdamW": optim.AdamW,
    **{f"torch.{cls.__name__}": cls for cls in (torch.optim.SGD, torch.optim.Adagrad, torch.optim.RMSprop,
                                                 torch.optim.Adam, torch.optim.AdamW)},
    # the modern optimizers of chapter 12 (MuonWithAdamW: Muon for hidden matrices, AdamW for the rest)
    **{cls.__name__: cls for cls in (optim.Lion, optim.Adafactor, optim.MuonWithAdamW, optim.NAdam, optim.RAdam,
                                     optim.ScheduleFreeAdamW, optim.ScheduleFreeSGD)},
    **{f"torch.{cls.__name__}": cls for cls in (torch.optim.Adafactor, torch.optim.NAdam, torch.optim.RAdam)},
}  # fmt: skip

# the study's optimizers: name -> (class name in OPTIMIZER_CLASSES, fixed keyword arguments). No
# entry holds a weight decay: the study gives every optimizer the same one (StudyConfig.weight_decay)
OPTIMIZER_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD": ("SGD", {}),
    "Momentum": ("SGD", {"momentum": 0.9}),
    "Nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "AdaGrad": ("Adagrad", {}),
    "RMSProp": ("RMSprop", {}),
    "Adam": ("Adam", {}),
    "AdamW": ("AdamW", {"weight_decay": 0.0}),  # its decay is the study's: AdamW's rule is then Adam's
    # modern (chapter 12), not in the default list: add them with with_optimizers(cfg, "Lion", ...).
    # Muon shares AdamW's lr through adjust_lr_fn="match_rms_adamw" (MuonWithAdamW's default)
    "Lion": ("Lion", {}),
    "Adafactor": ("Adafactor", {}),
    "Muon": ("MuonWithAdamW", {"weight_decay": 0.0}),  # its class decays by 0.1 unless told
    "NAdam": ("NAdam", {}),
    "RAdam": ("RAdam", {}),
    "ScheduleFreeAdamW": ("ScheduleFreeAdamW", {}),
    "ScheduleFreeSGD": ("ScheduleFreeSGD", {}),
}

# the capstone's seven: the registry's classic names
CLASSIC_OPTIMIZERS: tuple[str, ...] = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW")

# what the configurations compare by default: the classic seven less AdamW. AdamW is Adam with
# decoupled weight decay; the study gives every optimizer the same decay (StudyConfig.weight_decay),
# so under the study's protocol AdamW's rule *is* Adam's and a run of it would repeat Adam's
COMPARED_OPTIMIZERS: tuple[str, ...] = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam")

# the version of the protocol (part of every fingerprint): 2 = fresh final seeds (the search seed
# is not in the reported mean), no test accuracy in the search, grids extended at their ends, one
# weight decay for all, schedule-free optimizers at a constant rate with their own warm-up
PROTOCOL = 2

# log grids, a factor of about 3 apart, centred on each method's usual range
LR_GRIDS: dict[str, tuple[float, ...]] = {
    "SGD": (0.03, 0.1, 0.3, 1.0),
    "Momentum": (0.003, 0.01, 0.03, 0.1),
    "Nesterov": (0.003, 0.01, 0.03, 0.1),
    "AdaGrad": (0.003, 0.01, 0.03, 0.1),
    "RMSProp": (0.0003, 0.001, 0.003, 0.01),
    "Adam": (0.0003, 0.001, 0.003, 0.01),
    "AdamW": (0.0003, 0.001, 0.003, 0.01),
    # modern: placed by analogy with the methods above (Lion about 10x below AdamW; Adafactor's lr is
    # its largest relative step; schedule-free at and above its base method), not yet swept
    "Lion": (0.00003, 0.0001, 0.0003, 0.001),
    "Adafactor": (0.003, 0.01, 0.03, 0.1),
    "Muon": (0.0003, 0.001, 0.003, 0.01),
    "NAdam": (0.0003, 0.001, 0.003, 0.01),
    "RAdam": (0.0003, 0.001, 0.003, 0.01),
    "ScheduleFreeAdamW": (0.001, 0.003, 0.01, 0.03),
    "ScheduleFreeSGD": (0.1, 0.3, 1.0, 3.0),
}

# the transformer on text: log grids a factor of about 3 apart, centred on each method's best peak
# rate for the fast model under the study's warm-up and linear decay (150 steps): first placed
# from a constant-rate sweep (200 steps), then moved up one step for Adam and Momentum, whose
# best rate sat at the top of that grid once the schedule was added
TEXT_LR_GRIDS: dict[str, tuple[float, ...]] = {
    "SGD": (0.1, 0.3, 1.0),
    "Momentum": (0.1, 0.3, 1.0),
    "Nesterov": (0.1, 0.3, 1.0),
    "AdaGrad": (0.003, 0.01, 0.03),
    "RMSProp": (0.0003, 0.001, 0.003),
    "Adam": (0.003, 0.01, 0.03),
    "AdamW": (0.003, 0.01, 0.03),
    # modern: by analogy with Adam's grid, as for LR_GRIDS (not yet swept)
    "Lion": (0.0003, 0.001, 0.003),
    "Adafactor": (0.01, 0.03, 0.1),
    "Muon": (0.003, 0.01, 0.03),
    "NAdam": (0.003, 0.01, 0.03),
    "RAdam": (0.003, 0.01, 0.03),
    "ScheduleFreeAdamW": (0.003, 0.01, 0.03),
    "ScheduleFreeSGD": (0.3, 1.0, 3.0),
}


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; its fingerprint keys the results."""

    mode: str
    model: str  # "small_cnn" or "airbench" (task cifar10), "transformer" (task shakespeare)
    model_kwargs: dict = field(default_factory=dict)
    epochs: int | None = 10  # the budget in epochs, or None when ``steps`` is
    steps: int | None = None  # the budget in optimizer steps (the text task)
    eval_every: int | None = None  # steps between validation rows of the history (None: every epoch)
    task: str = "cifar10"  # "cifar10" or "shakespeare"
    context: int = 64  # characters per window (task shakespeare)
    eval_windows: int | None = None  # validation/test windows at most (task shakespeare; None: all)
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
    tta: int = 0  # test-time augmentation level of the reported test accuracy (engine.loop.tta_logits)
    lr_grids: dict = field(default_factory=lambda: _classic(LR_GRIDS))
    optimizers: tuple = COMPARED_OPTIMIZERS
    # name -> (class name in OPTIMIZER_CLASSES, fixed keyword arguments); the lr is searched
    optimizer_settings: dict = field(default_factory=lambda: copy.deepcopy(_classic(OPTIMIZER_SETTINGS)))
    # decoupled weight decay, the same for every optimizer: each step shrinks the weights by the
    # fraction weight_decay * (lr_t / lr), lr_t / lr the schedule's factor (0: no decay for any)
    weight_decay: float = 0.0
    grid_extensions: int = 2  # at most this many rates added beyond each end of a grid
    final_seeds_from: int = 1  # the final seeds are final_seeds_from, +1, ...; the search's seed is 0
    protocol: int = PROTOCOL  # the protocol's version: always part of the fingerprint

    def __post_init__(self):
        if self.protocol != PROTOCOL:
            raise ValueError(f"StudyConfig: protocol {self.protocol} is not run by this course_lib (it runs "
                             f"protocol {PROTOCOL}: fresh final seeds, no test accuracy in the search, grids "
                             f"extended at their ends, one weight decay for all)")  # fmt: skip
        if self.final_seeds_from < 1:
            raise ValueError(f"StudyConfig: final_seeds_from must be at least 1 (seed 0 is the search's: "
                             f"the reported mean uses fresh seeds), got {self.final_seeds_from!r}")  # fmt: skip
        unknown = set(self.optimizers) - set(self.optimizer_settings)
        if unknown:
            raise ValueError(f"unknown optimizers {sorted(unknown)}; choose from {list(self.optimizer_settings)}")
        for name, (class_name, fixed) in self.optimizer_settings.items():
            if class_name not in OPTIMIZER_CLASSES:
                raise ValueError(f"optimizer {name}: unknown class {class_name!r}; choose from "
                                 f"{list(OPTIMIZER_CLASSES)}")  # fmt: skip
            if "lr" in fixed:
                raise ValueError(f"optimizer {name}: the learning rate is searched (lr_grids), not a fixed setting")
            if fixed.get("weight_decay", 0) != 0:
                raise ValueError(f"optimizer {name}: a weight decay of its own ({fixed['weight_decay']}) would "
                                 f"compare decay with no decay; set StudyConfig.weight_decay, the same for all")  # fmt: skip
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if self.model not in TASKS[self.task]:
            raise ValueError(f"the {self.task} task trains {' or '.join(map(repr, TASKS[self.task]))}, "
                             f"got model {self.model!r}")  # fmt: skip
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"give the budget as epochs or as steps, not both and not neither "
                             f"(got epochs={self.epochs}, steps={self.steps})")  # fmt: skip
        budget = self.epochs if self.epochs is not None else self.steps
        if self.final_seeds < 1 or budget < 1:
            raise ValueError(f"final_seeds and the budget (epochs or steps) must be at least 1, got "
                             f"{self.final_seeds} and {budget}")  # fmt: skip
        if self.steps is not None and (self.eval_every is None or not 1 <= self.eval_every <= self.steps):
            raise ValueError(f"a budget in steps needs eval_every between 1 and steps={self.steps}, "
                             f"got {self.eval_every}")  # fmt: skip
        if self.task == "shakespeare" and (self.augment or self.tta):
            raise ValueError("the text task has no augmentation and no test-time augmentation: "
                             "set augment=False and tta=0")  # fmt: skip
        if self.whiten and self.model != "airbench":
            raise ValueError("whiten=True needs the airbench model (its 2x2 stem is the whitening layer)")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every number in its range and a grid for every optimizer, checked when the
        configuration is made, so that a wrong setting fails at once, not after training."""

        def whole(name: str, value, minimum: int = 1, optional: bool = False) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"StudyConfig: {name} must be a whole number >= {minimum}"
                                 f"{' or None' if optional else ''}, got {value!r}")  # fmt: skip

        whole("batch_size", self.batch_size)
        whole("final_seeds", self.final_seeds)
        whole("epochs", self.epochs, optional=True)
        whole("steps", self.steps, optional=True)
        whole("train_per_class", self.train_per_class, optional=True)
        whole("test_per_class", self.test_per_class, optional=True)
        whole("context", self.context)
        whole("grid_extensions", self.grid_extensions, minimum=0)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or not (
                0 <= self.weight_decay < 1):  # fmt: skip
            raise ValueError(f"StudyConfig: weight_decay must satisfy 0 <= weight_decay < 1 (a fraction per "
                             f"step), got {self.weight_decay!r}")  # fmt: skip
        whole("eval_windows", self.eval_windows, optional=True)
        for name, low, high, closed in [("val_fraction", 0.0, 1.0, False), ("warmup_fraction", 0.0, 1.0, True),
                                        ("label_smoothing", 0.0, 1.0, True), ("target_accuracy", 0.0, 1.0, False)]:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (low <= value < high) if closed else (low < value < high or (name == "target_accuracy" and value == 1)))
            if not ok:
                rule = f"{low:g} <= {name} < {high:g}" if closed else (
                    f"0 < {name} <= 1" if name == "target_accuracy" else f"0 < {name} < 1")
                raise ValueError(f"StudyConfig: {name} must satisfy {rule}, got {value!r}")
        if self.tta not in (0, 1, 2) or isinstance(self.tta, bool):
            raise ValueError(f"StudyConfig: tta must be a test-time augmentation level 0, 1 or 2 "
                             f"(engine.loop.tta_logits), got {self.tta!r}")  # fmt: skip
        missing = [name for name in self.optimizers if name not in self.lr_grids]
        if missing:
            raise ValueError(f"StudyConfig: no learning-rate grid for {', '.join(missing)}: lr_grids has "
                             f"{', '.join(self.lr_grids) or 'none'}; give one for every optimizer listed")  # fmt: skip
        for name in self.optimizers:
            grid = self.lr_grids[name]
            if (not isinstance(grid, (tuple, list)) or not grid
                    or not all(isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < float("inf")
                               for lr in grid)):  # fmt: skip
                raise ValueError(f"StudyConfig: lr_grids[{name!r}] must be a non-empty sequence of positive "
                                 f"learning rates, got {grid!r}")  # fmt: skip
            if len(set(grid)) != len(grid):
                raise ValueError(f"StudyConfig: lr_grids[{name!r}] repeats a learning rate: {grid!r}")

    def fingerprint(self) -> str:
        """A short hash of the settings that differ from their defaults: it keys the results.

        Leaving default values out means that a setting added later, whose default keeps the
        old behaviour, does not change the fingerprints of studies already run. The protocol's
        version is always in: a study run under another protocol never shares its results.
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
            if canonical(value) != canonical(default) or f.name == "protocol":
                settings[f.name] = value
        return hashlib.sha256(canonical(settings).encode()).hexdigest()[:12]

    def make_model(self) -> torch.nn.Module:
        if self.model == "transformer":
            return models.transformer(context=self.context, **self.model_kwargs)
        return (models.small_cnn if self.model == "small_cnn" else models.airbench_net)(**self.model_kwargs)

    def history_axis(self) -> tuple[np.ndarray, str]:
        """Where the rows of a run's history lie, and the unit: epochs 1..E, or the steps of
        the validation points (every ``eval_every`` steps and the last, for a text run, whose
        budget is shorter than one epoch)."""
        if self.epochs is not None:
            return np.arange(1, self.epochs + 1), "epoch"
        return np.array(sorted(set(range(self.eval_every, self.steps + 1, self.eval_every)) | {self.steps})), "step"


def _classic(registry: dict) -> dict:
    """The entries of the seven classic optimizers: what the configurations hold by default (so
    that adding a modern method to the registries changes no stored study's fingerprint)."""
    return {name: registry[name] for name in CLASSIC_OPTIMIZERS}


def with_optimizers(cfg: StudyConfig, *names: str) -> StudyConfig:
    """``cfg`` with the study's optimizers ``names`` added (e.g. ``"Lion"``, ``"Muon"``, ``"Adafactor"``,
    ``"ScheduleFreeAdamW"``): their fixed settings from :data:`OPTIMIZER_SETTINGS` and their
    learning-rate grids from the task's registry (:data:`LR_GRIDS` or :data:`TEXT_LR_GRIDS`, as
    given there: the fast and full configurations' shifts of the classic grids are not applied).
    A name the configuration already has keeps its settings and grid. The result is another
    study, with its own fingerprint.

    Schedule-free optimizers (:func:`is_schedule_free`) run at a constant learning rate with
    their own warm-up over the study's warm-up steps (no warm-up and decay on top: they are
    meant to run without a decay), and are evaluated at the point they report (their average,
    between ``optimizer.eval()`` and ``optimizer.train()``), validation and test alike.
    """
    unknown = [name for name in names if name not in cfg.optimizer_settings and name not in OPTIMIZER_SETTINGS]
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {list(OPTIMIZER_SETTINGS)}")
    grids = TEXT_LR_GRIDS if cfg.task == "shakespeare" else LR_GRIDS
    settings, lr_grids = dict(cfg.optimizer_settings), dict(cfg.lr_grids)
    for name in names:
        settings.setdefault(name, copy.deepcopy(OPTIMIZER_SETTINGS[name]))
        lr_grids.setdefault(name, grids[name])
    optimizers = tuple(cfg.optimizers) + tuple(n for n in dict.fromkeys(names) if n not in cfg.optimizers)
    return dataclasses.replace(cfg, optimizers=optimizers, optimizer_settings=settings, lr_grids=lr_grids)


def select_optimizers(cfg: StudyConfig, names) -> StudyConfig:
    """``cfg`` comparing exactly ``names`` (in that order; the command line's ``--optimizers``):
    names it lacks come in as :func:`with_optimizers` adds them, the others' settings and grids
    are dropped."""
    names = tuple(dict.fromkeys(names))
    if not names:
        raise ValueError("name at least one optimizer")
    cfg = with_optimizers(cfg, *names)
    return dataclasses.replace(cfg, optimizers=names,
                               optimizer_settings={n: cfg.optimizer_settings[n] for n in names},
                               lr_grids={n: cfg.lr_grids[n] for n in names})  # fmt: skip


def is_schedule_free(optimizer_cls: type) -> bool:
    """Whether the class is a schedule-free optimizer: it has ``eval()``/``train()`` switches
    between the point it trains at and the averaged point it reports."""
    return callable(getattr(optimizer_cls, "eval", None)) and callable(getattr(optimizer_cls, "train", None))


def optimizer_for(cfg: StudyConfig, name: str) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The optimizer class and fixed keyword arguments of the study's optimizer ``name``."""
    class_name, fixed = cfg.optimizer_settings[name]
    return OPTIMIZER_CLASSES[class_name], dict(fixed)


def fast_config() -> StudyConfig:
    """CPU: a class-balanced subset, the small CNN, a few epochs, four learning rates each.

    The grids are the full study's shifted up by one step: the small network on few images
    prefers larger rates; a chosen rate at either end of its grid extends the grid (at most
    ``grid_extensions`` rates beyond each end).

    200 training images per class, of which a fifth (400 images) is the validation split, and
    200 test images per class: the standard error of an accuracy near 0.35 is about 0.024 on the
    validation split and 0.011 on the test set. Three epochs of batch 64 (75 steps), then three
    fresh seeds per chosen rate. Six optimizers (:data:`COMPARED_OPTIMIZERS`), no weight decay for
    any: 43 runs (one grid extension), 3,225 optimizer steps in all.

    Measured on 2026-12-02 on the two CPU cores of the development machine, quiet (load average
    below 1 at the start): about 1 s per run, and notebook 11 in fast mode (this study, its claim
    runs and the text study) 123 s from scratch (the cells' times; 3 min 46 s of CPU on the two
    cores); under a load average of 6-10 the same notebook took 1,093 s.
    """
    grids = {name: grid[1:] + (float(f"{grid[-1] * 3:.1g}"),) for name, grid in _classic(LR_GRIDS).items()}
    return StudyConfig(mode="fast", model="small_cnn", model_kwargs={"widths": (8, 16, 32)}, epochs=3,
                       batch_size=64, train_per_class=200, val_fraction=0.2, test_per_class=200,
                       final_seeds=3, target_accuracy=0.3, lr_grids=grids)  # fmt: skip


def reference_config() -> StudyConfig:
    """CPU reference: sized so that its verdicts separate differences of about 1.5 points.

    2,500 training images per class, a fifth of them the validation split: 20,000 training and
    5,000 validation images (standard error of an accuracy near 0.6: sqrt(0.24 / 5000) = 0.0069),
    the full test set of 10,000 (0.0049); the small CNN (8, 16, 32), batch 64, 7 epochs (2,184
    steps); the six compared optimizers, four rates each (grids extended at their ends), then
    five fresh seeds each; no weight decay for any. About 60 runs of 140,000 images each: hours
    of CPU (``python -m course_lib.study run --mode reference --out reference/study-cpu``).
    """
    return StudyConfig(mode="reference", model="small_cnn", model_kwargs={"widths": (8, 16, 32)}, epochs=7,
                       batch_size=64, train_per_class=2500, val_fraction=0.2, test_per_class=None,
                       final_seeds=5, target_accuracy=0.5)  # fmt: skip


def text_reference_config() -> StudyConfig:
    """CPU reference on the text test bed, at a budget comparable to :func:`reference_config`'s.

    The transformer of size "fast" (2 layers, width 64, 4 heads) on windows of 64 characters,
    1,200 steps of batch 32 (2.5M characters, about 2.5 passes over the training split), the
    six compared optimizers with :data:`TEXT_LR_GRIDS` (extended at their ends), five fresh
    final seeds. Validation and test: 512 windows each (32,768 characters). About a minute a run
    on one CPU core, some 55 runs: about an hour (``python -m course_lib.study run --mode
    reference --task shakespeare --out reference/study-cpu-shakespeare``).
    """
    return StudyConfig(mode="reference", task="shakespeare", model="transformer", model_kwargs={"size": "fast"},
                       epochs=None, steps=1200, eval_every=100, batch_size=32, context=64, eval_windows=512,
                       augment=False, final_seeds=5, target_accuracy=0.4, lr_grids=_classic(TEXT_LR_GRIDS))  # fmt: skip


def full_config() -> StudyConfig:
    """GPU: all of CIFAR-10, the airbench-style net, 10 epochs, four learning rates each.

    The airbench training recipe is shared by every optimizer: whitening stem, label smoothing
    0.2 and test-time augmentation (six views) of the reported test accuracy.
    """
    return StudyConfig(mode="full", model="airbench", epochs=10, batch_size=512, target_accuracy=0.9,
                       whiten=True, label_smoothing=0.2, tta=2)  # fmt: skip


def text_fast_config() -> StudyConfig:
    """CPU: the transformer of size "fast" (2 layers, width 64, 4 heads, about 0.1M parameters) on
    windows of 32 characters, 150 steps of batch 32 (153,600 characters, a seventh of the
    training split), three learning rates each. A few seconds per run on two CPU cores. To fit
    the CPU budget it compares four optimizers, one of each kind: plain SGD, SGD with momentum
    (Nesterov behaves alike), RMSProp and Adam (AdamW differs from Adam only by its weight
    decay); the full configuration compares all seven.

    Validation and test: 256 non-overlapping windows each (8,192 characters), from the last 10%
    of the corpus (test) and the 10% before it (validation).
    """
    return StudyConfig(mode="fast", task="shakespeare", model="transformer", model_kwargs={"size": "fast"},
                       epochs=None, steps=150, eval_every=25, batch_size=32, context=32, eval_windows=256,
                       augment=False, final_seeds=3, target_accuracy=0.27, lr_grids=_classic(TEXT_LR_GRIDS),
                       optimizers=("SGD", "Momentum", "RMSProp", "Adam"))  # fmt: skip


def text_full_config() -> StudyConfig:
    """GPU: the transformer of size "full" (6 layers, width 384, 6 heads, about 10.8M
    parameters) on windows of 256 characters, 5,000 steps of batch 64, dropout 0.2, with
    gradient-norm clipping left off so that the optimizers differ only in their rule."""
    return StudyConfig(mode="full", task="shakespeare", model="transformer",
                       model_kwargs={"size": "full", "dropout": 0.2}, epochs=None, steps=5000, eval_every=250,
                       batch_size=64, context=256, augment=False, final_seeds=3, target_accuracy=0.5,
                       lr_grids={name: tuple(lr / 3 for lr in grid) for name, grid in _classic(TEXT_LR_GRIDS).items()})  # fmt: skip


def config_for(mode: str, task: str = "cifar10") -> StudyConfig:
    """The configuration of a task (``"cifar10"`` or ``"shakespeare"``) in a mode (``"fast"``: CPU,
    ``"full"``: GPU, ``"reference"``: the CPU reference): :func:`fast_config`, :func:`full_config`,
    :func:`reference_config`, :func:`text_fast_config`, :func:`text_full_config`,
    :func:`text_reference_config`."""
    makers = {("fast", "cifar10"): fast_config, ("full", "cifar10"): full_config,
              ("reference", "cifar10"): reference_config,
              ("fast", "shakespeare"): text_fast_config, ("full", "shakespeare"): text_full_config,
              ("reference", "shakespeare"): text_reference_config}  # fmt: skip
    if (mode, task) not in makers:
        raise ValueError(f"mode must be 'fast', 'full' or 'reference' and task one of {list(TASKS)}, "
                         f"got {mode!r} and {task!r}")
    return makers[mode, task]()


@dataclass(frozen=True)
class RunSpec:
    phase: str  # "search" or "final" ("extra" for a run outside the grid)
    optimizer: str
    lr: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.optimizer}/lr={self.lr:g}/seed={self.seed}"


SEARCH_SEED = 0  # the one seed of the learning-rate search; never one of the final seeds


def search_runs(cfg: StudyConfig) -> list[RunSpec]:
    """The learning-rate grids as given, one run per (optimizer, lr), seed 0 (the rates that
    extend a grid at its ends come later: :func:`course_lib.study.protocol.search_plan`)."""
    return [RunSpec("search", name, lr, SEARCH_SEED) for name in cfg.optimizers for lr in cfg.lr_grids[name]]


def final_seeds(cfg: StudyConfig) -> list[int]:
    """The seeds of the final runs: ``final_seeds`` fresh ones, none of them the search's."""
    return list(range(cfg.final_seeds_from, cfg.final_seeds_from + cfg.final_seeds))


def final_runs(cfg: StudyConfig, chosen: dict[str, float]) -> list[RunSpec]:
    """The final runs: each chosen setting with every seed of :func:`final_seeds` (fresh: the
    search run is not one of them, so the reported mean is not biased by the choice)."""
    return [RunSpec("final", name, chosen[name], seed) for name in cfg.optimizers for seed in final_seeds(cfg)]


def shard(runs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Every ``count``-th run starting at the ``index``-th (1-based): ``--shard index/count``."""
    if not 1 <= index <= count:
        raise ValueError(f"shard must be i/n with 1 <= i <= n, got {index}/{count}")
    return runs[index - 1 :: count]
