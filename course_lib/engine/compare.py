"""Fair comparisons: every variant starts from the same initial weights and sees the same batches.

A comparison of optimizers, schedules, regularizers or distillation losses changes *one* thing
between runs and keeps everything else equal. This module is the one place where that is made
true:

- the model is built once, inside :func:`course_lib.config.seeded` (so the caller's global
  generator is left as it was), and its initial ``state_dict`` is loaded into a fresh model
  for every variant (:func:`initial_weights`);
- every run shuffles and augments with a generator seeded with the same ``seed`` (the training
  loop's), so the batches are the same, in the same order, with the same augmentation;
- every run draws its dropout masks from the global generator seeded with ``seed`` again.

A :class:`Variant` records what may differ: the optimizer and its settings, a schedule, the
loss, a penalty, an augmentation, the model's keyword arguments and which parameters the
optimizer gets (e.g. weight decay on weights only). :func:`compare_variants` trains one run per variant
and returns a :class:`Run` (model, history, optimizer) for each; :func:`train_variant` trains one given
model. :func:`compare_optimizers` and :func:`compare_schedules` are the two common shapes of a
comparison, written as variants.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .. import config
from ..optim.schedules import Schedule, ScheduledLR
from .device_data import DeviceData
from .loop import History, train

__all__ = ["Variant", "Run", "initial_weights", "train_variant", "compare_variants", "compare_optimizers",
           "compare_schedules"]


@dataclass(frozen=True)
class Variant:
    """What one run of a comparison may change; everything else is shared between the runs.

    - ``optimizer``: a torch-style optimizer class (``course_lib.optim`` or ``torch.optim``),
      built as ``optimizer(parameters, **optimizer_kwargs)``;
    - ``parameters(model)``: what the optimizer is given, e.g. parameter groups with weight decay
      on the weights only; by default every parameter with ``requires_grad``;
    - ``schedule``: a schedule function ``f(step)`` (:mod:`course_lib.optim.schedules`), applied
      by a :class:`~course_lib.optim.schedules.ScheduledLR` stepped after every optimizer step;
      None keeps the rate constant;
    - ``loss_fn``, ``penalty``, ``augment``: as in :func:`course_lib.engine.loop.train`;
    - ``model_kwargs``: keyword arguments of the model function for this run (the parameters
      must keep their shapes, e.g. a dropout probability);
    - ``before_run``: called just before the run starts (e.g. rewinding a replay memory);
    - ``clip_grad_norm``: the largest global gradient norm before each step (None: no clipping).
    """

    optimizer: type
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None
    loss_fn: Callable[..., Tensor] | None = None
    penalty: Callable[[nn.Module], Tensor] | None = None
    augment: Callable[..., Tensor] | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    parameters: Callable[[nn.Module], Iterable] | None = None
    before_run: Callable[[], None] | None = None
    clip_grad_norm: float | None = None


@dataclass
class Run:
    """One trained variant: the model (trained in place), what its run recorded, and its
    optimizer (whose state, e.g. Adam's averages, can be read after the run)."""

    model: nn.Module
    history: History
    optimizer: torch.optim.Optimizer


def initial_weights(model_fn: Callable[..., nn.Module], seed: int) -> dict[str, Tensor]:
    """A copy of the ``state_dict`` of ``model_fn()`` built with the global generator seeded with
    ``seed`` (inside :func:`course_lib.config.seeded`: the caller's generator is untouched)."""
    with config.seeded(seed):
        return copy.deepcopy(model_fn().state_dict())


def train_variant(model: nn.Module, variant: Variant, train_data: DeviceData, *, batch_size: int,
                  epochs: int | None = None, steps: int | None = None, eval_every: int | None = None,
                  val_data: DeviceData | None = None, seed: int = 0, progress: bool | None = None,
                  desc: str = "training") -> Run:  # fmt: skip
    """Train ``model`` in place as ``variant`` says, on batches fixed by ``seed``; return the :class:`Run`.

    The budget is ``epochs`` or ``steps`` (:func:`course_lib.engine.loop.train`), with a row of
    history every epoch or every ``eval_every`` steps.
    The optimizer gets ``variant.parameters(model)`` (default: the trainable parameters, or the
    groups of the optimizer class's own ``param_groups_for(model)`` where it has one, e.g.
    :class:`course_lib.optim.MuonWithAdamW`'s split of hidden matrices and the rest); a
    schedule is stepped after every optimizer step. The run's global-generator draws (dropout
    masks) come from a generator seeded with ``seed`` inside :func:`course_lib.config.seeded`.
    """
    if variant.parameters is not None:
        params = variant.parameters(model)
    elif hasattr(variant.optimizer, "param_groups_for"):  # an optimizer that splits a model itself
        params = variant.optimizer.param_groups_for(model)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = variant.optimizer(params, **dict(variant.optimizer_kwargs))
    scheduler = ScheduledLR(optimizer, variant.schedule) if variant.schedule is not None else None
    if variant.before_run is not None:
        variant.before_run()
    with config.seeded(seed):
        history = train(model, optimizer, train_data, epochs=epochs, steps=steps, batch_size=batch_size,
                        val_data=val_data, eval_every=eval_every, scheduler=scheduler, scheduler_interval="step",
                        augment=variant.augment, loss_fn=variant.loss_fn, penalty=variant.penalty,
                        clip_grad_norm=variant.clip_grad_norm, seed=seed, progress=progress, desc=desc)  # fmt: skip
    return Run(model, history, optimizer)


def compare_variants(model_fn: Callable[..., nn.Module], variants: Mapping[str, Variant], train_data: DeviceData,
                     *, batch_size: int, epochs: int | None = None, steps: int | None = None,
                     eval_every: int | None = None, val_data: DeviceData | None = None, seed: int = 0,
                     init_seed: int | None = None, progress: bool | None = None) -> dict[str, Run]:  # fmt: skip
    """Train one fresh model per variant (label -> :class:`Variant`); return label -> :class:`Run`.

    Every model starts from the initial weights of ``model_fn()`` built with ``init_seed``
    (default: ``seed``) and is trained by :func:`train_variant` on the batches fixed by ``seed``:
    only what the variants set differs between the runs.
    """
    initial = initial_weights(model_fn, seed if init_seed is None else init_seed)
    runs = {}
    for label, variant in variants.items():
        with config.seeded(seed):  # the throwaway initialisation does not touch the caller's generator
            model = model_fn(**dict(variant.model_kwargs))
        model.load_state_dict(initial)
        model.to(train_data.device)
        runs[label] = train_variant(model, variant, train_data, epochs=epochs, steps=steps, eval_every=eval_every,
                                    batch_size=batch_size, val_data=val_data, seed=seed, progress=progress,
                                    desc=label)  # fmt: skip
    return runs


def compare_optimizers(model_fn: Callable[[], nn.Module], runs: Mapping[str, tuple[type, Mapping[str, Any]]],
                       train_data: DeviceData, *, seed: int = 0, augment: Callable[..., Tensor] | None = None,
                       **train_kwargs: Any) -> dict[str, History]:  # fmt: skip
    """Train one fresh model per optimizer (label -> ``(optimizer class, its kwargs)``).

    :func:`compare_variants` with one :class:`Variant` per entry: same initial weights, same batches, only
    the optimizer differs. ``train_kwargs``: ``epochs`` or ``steps``, ``eval_every``, ``batch_size``,
    ``val_data``, ``progress``. Returns label -> History.
    """
    variants = {label: Variant(cls, kwargs, augment=augment) for label, (cls, kwargs) in runs.items()}
    return {label: run.history for label, run in compare_variants(model_fn, variants, train_data, seed=seed,
                                                                  **train_kwargs).items()}  # fmt: skip


def compare_schedules(model_fn: Callable[[], nn.Module], optimizer_cls: type, optimizer_kwargs: Mapping[str, Any],
                      schedules: Mapping[str, Schedule | None], train_data: DeviceData, *, seed: int = 0,
                      augment: Callable[..., Tensor] | None = None, **train_kwargs: Any) -> dict[str, History]:  # fmt: skip
    """Train one fresh model per schedule (label -> ``f(step)``, or None for a constant rate).

    :func:`compare_variants` with one :class:`Variant` per schedule: same initial weights, same batches,
    same optimizer and settings; only the schedule (stepped after every optimizer step)
    differs. ``train_kwargs`` as in :func:`compare_optimizers`. Returns label -> History.
    """
    variants = {label: Variant(optimizer_cls, optimizer_kwargs, schedule=schedule, augment=augment)
                for label, schedule in schedules.items()}  # fmt: skip
    return {label: run.history for label, run in compare_variants(model_fn, variants, train_data, seed=seed,
                                                                  **train_kwargs).items()}  # fmt: skip
