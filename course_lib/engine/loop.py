"""The training loop: train any torch-style optimizer on device-resident data, and evaluate.

:func:`train` takes any torch-style optimizer (``course_lib.optim`` or ``torch.optim``) and an
optional scheduler, trains for a number of epochs or of steps, records per-step losses and,
per epoch or evaluation interval, metrics with the step count and wall time (:class:`History`),
and stops cleanly, marking the run diverged, when the loss stops being finite or rises far above
its start (:mod:`course_lib.optim.divergence`). It trains image classifiers on
:class:`~course_lib.engine.device_data.DeviceData` and language models on
:class:`~course_lib.engine.text.TextData` alike. Each step is the six lines chapter 01 writes
out by hand::

    x, y = train_data.batch(index, augment=augment, generator=generator)
    logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

On CUDA the forward pass runs under bf16 autocast (:func:`autocast`) in channels-last layout
(:func:`to_memory_format`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import config
from ..optim.divergence import first_divergent_step
from .augment import shift
from .device_data import DeviceData

if TYPE_CHECKING:
    from .text import TextData

__all__ = ["EpochRecord", "History", "steps_per_epoch", "train", "evaluate", "example_accuracies", "tta_logits",
           "at_reported_point", "autocast", "to_memory_format"]

@dataclass
class EpochRecord:
    """One row of a run's history: the end of an epoch, or of an evaluation interval.

    ``train_loss``/``train_acc``: means over the steps since the previous row (accuracy per
    prediction: per image, or per character of a text window); ``val_*``: on the whole
    validation set at this point; ``epoch``: epochs done (a fraction between epoch ends);
    ``step``: optimizer steps done; ``seconds``: wall time since the start of training.
    """

    epoch: float
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float
    lr: float
    step: int = 0


@dataclass
class History:
    """What a run recorded. ``step_loss[i]`` is the mini-batch loss of step ``i``."""

    step_loss: list[float] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0

    def column(self, name: str) -> np.ndarray:
        """One per-epoch quantity as an array, e.g. ``history.column("val_acc")``."""
        return np.array([getattr(e, name) for e in self.epochs], dtype=float)

    def _first_reaching(self, metric: str, target: float, lower_is_better: bool) -> EpochRecord | None:
        for e in self.epochs:
            value = getattr(e, metric)
            if value is not None and (value <= target if lower_is_better else value >= target):
                return e
        return None

    def time_to(self, metric: str, target: float, *, lower_is_better: bool = False) -> float | None:
        """Wall time at the first row where ``metric`` reached ``target`` (None if never).

        Seconds depend on the machine and its load; :meth:`steps_to` is the reproducible measure.
        ``lower_is_better`` for a loss (reached means at or below the target).
        """
        row = self._first_reaching(metric, target, lower_is_better)
        return None if row is None else row.seconds

    def steps_to(self, metric: str, target: float, *, lower_is_better: bool = False) -> int | None:
        """Optimizer steps done at the first row where ``metric`` reached ``target`` (None if never)."""
        row = self._first_reaching(metric, target, lower_is_better)
        return None if row is None else row.step


def tta_logits(model: nn.Module, x: Tensor, level: int = 0) -> Tensor:
    """Logits averaged over test-time augmentations (TTA) of the batch ``x``.

    level 0: the images as they are; level 1: the mean over each image and its mirror image;
    level 2: the mean over six views: the image and its mirror, each also shifted by one pixel
    down-right and up-left. The views are the augmentations the network was trained on, so each
    is a fair input, and averaging their logits cancels part of the model's view-to-view noise.
    """
    if level not in (0, 1, 2):
        raise ValueError(f"TTA level must be 0, 1 or 2, got {level}")
    views = [x] if level == 0 else [x, x.flip(-1)]
    if level == 2:
        views += [shift(v, s, s) for s in (1, -1) for v in views[:2]]
    return torch.stack([model(to_memory_format(v)).float() for v in views]).mean(0)


@torch.no_grad()
def _logits_by_batch(model: nn.Module, data: DeviceData, batch_size: int, tta: int):
    """Yield ``(logits, targets)`` for ``data`` in order, ``batch_size`` examples at a time, with
    ``model`` in eval mode (its mode is restored afterwards) and ``tta`` as in :func:`tta_logits`."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), batch_size):
            index = torch.arange(start, min(start + batch_size, len(data)), device=data.device)
            x, y = data.batch(index)
            if tta and x.ndim != 4:
                raise ValueError(f"test-time augmentation is for batches of images (N x C x H x W), got shape "
                                 f"{tuple(x.shape)}; use tta=0")  # fmt: skip
            with autocast(data.device):
                logits = tta_logits(model, x, tta)
            yield logits, y
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 1000, tta: int = 0) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, per prediction (per image,
    or per character of every text window), in eval mode without augmentation. ``tta`` > 0
    averages an image model's logits over test-time augmentations (:func:`tta_logits`)."""
    total_loss, correct, count = 0.0, 0, 0
    for logits, y in _logits_by_batch(model, data, batch_size, tta):
        total_loss += F.cross_entropy(logits.float().flatten(0, -2), y.flatten(), reduction="sum").item()
        correct += _count_correct(logits, y).item()
        count += y.numel()
    return total_loss / count, correct / count


def example_accuracies(model: nn.Module, data: DeviceData, batch_size: int = 1000, tta: int = 0) -> np.ndarray:
    """The accuracy of ``model`` on each example of ``data``: 0 or 1 for an image, the fraction of
    its positions predicted right for a text window (eval mode, as :func:`evaluate`).

    Their mean is :func:`evaluate`'s accuracy (for windows of equal length), and their spread
    gives its standard error, s / sqrt(n): the example is the unit that is drawn independently.
    A window's characters are not (neighbours share context), so counting them as n·T
    independent trials would understate the error, and counting a window as one 0/1 trial
    would overstate it."""
    out = []
    for logits, y in _logits_by_batch(model, data, batch_size, tta):
        right = (logits.argmax(-1) == y).float()
        out.append(right.flatten(1).mean(1) if right.ndim > 1 else right)
    return torch.cat(out).cpu().double().numpy()


def steps_per_epoch(n: int, batch_size: int) -> int:
    r"""Optimizer steps in one epoch over ``n`` examples: :math:`\lceil n / B \rceil` (the last batch may be short)."""
    return -(-n // batch_size)


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over every prediction: one per image (N x C logits) or one per
    position of a sequence (N x T x V logits, N x T targets)."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


def _count_correct(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(-1) == y).sum()


def _evaluation_steps(total: int, per_epoch: int, eval_every: int | None) -> set[int]:
    """The step counts after which the loop records a row of its history."""
    if eval_every is not None:
        if eval_every < 1:
            raise ValueError(f"eval_every must be positive, got {eval_every}")
        points = set(range(eval_every, total + 1, eval_every))
    else:
        points = set(range(per_epoch, total + 1, per_epoch))
    return points | {total}


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: DeviceData | TextData,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int,
    val_data: DeviceData | None = None,
    eval_every: int | None = None,
    scheduler=None,
    scheduler_interval: str = "step",
    augment: Callable[..., Tensor] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    penalty: Callable[[nn.Module], Tensor] | None = None,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
    desc: str = "training",
) -> History:
    r"""Train ``model`` in place and return its :class:`History`.

    **Budget.** ``epochs`` passes over the training set, or ``steps`` optimizer steps (give one
    of them). Each epoch visits the training set once in a fresh random order (``seed`` fixes
    it); a run of ``steps`` goes on through as many epochs as it needs. ``batch_size=len(train_data)``
    gives full-batch gradient descent. The training data is any object with ``len()``, a
    ``device`` and ``batch(index, augment=None, generator=None) -> (x, y)``: images
    (:class:`~course_lib.engine.device_data.DeviceData`) or windows of text
    (:class:`~course_lib.engine.text.TextData`, whose examples are the window positions).

    **History.** A row (:class:`EpochRecord`) is recorded at the end of every epoch, or every
    ``eval_every`` steps when given, and at the end: the mean training loss and accuracy since
    the previous row, the validation loss and accuracy (:func:`evaluate`), the wall time, the
    learning rate, the step count.

    **Loss.** ``loss_fn(logits, y)`` defaults to the cross-entropy over every prediction (one
    per image, or one per position of a sequence). A loss that also needs the (augmented)
    inputs, such as a distillation loss asking a teacher about the same batch, sets the
    attribute ``uses_inputs = True`` and is called as ``loss_fn(logits, y, x)``.
    ``penalty(model)`` is added to the loss (e.g. an L2 or L1 term). ``clip_grad_norm``
    rescales the gradient so that its global norm :math:`\|g\|_2` is at most that value
    (``torch.nn.utils.clip_grad_norm_``) before each optimizer step.

    **Randomness.** The order of the examples comes from a generator seeded with ``seed``; the
    augmentation draws from a second generator of its own (also fixed by ``seed``), so a run
    with augmentation sees the same examples in the same order as a run without.

    **Schedule.** ``scheduler.step()`` is called after every optimizer step
    (``scheduler_interval="step"``) or at the end of every epoch (``"epoch"``).

    **Evaluation point.** An optimizer with ``eval()``/``train()`` (the schedule-free methods) is
    evaluated at the point it reports, between ``optimizer.eval()`` and ``optimizer.train()``.

    **Divergence.** When a row is recorded, the losses since the previous row are checked with
    :func:`course_lib.optim.divergence.first_divergent_step` against the first step's loss (a
    loss that is not finite, or more than ten times the initial loss); a diverged run stops
    there, keeps its losses up to the first divergent step, and has ``history.diverged = True``.
    On CUDA the forward pass runs under bf16 autocast in channels-last layout.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give either epochs or steps (the training budget), not both and not neither")
    budget = epochs if epochs is not None else steps
    if budget < 1 or batch_size < 1:
        raise ValueError(f"the budget (epochs or steps) and batch_size must be positive, got {budget} and "
                         f"{batch_size}")  # fmt: skip
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")
    loss_fn = loss_fn or _cross_entropy
    uses_inputs = getattr(loss_fn, "uses_inputs", False)
    device = train_data.device
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    order_generator = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator().manual_seed(_augmentation_seed(seed))
    n = len(train_data)
    per_epoch = steps_per_epoch(n, batch_size)
    total = epochs * per_epoch if epochs is not None else steps
    record_at = _evaluation_steps(total, per_epoch, eval_every)
    history = History()
    bar = tqdm(total=total, desc=desc, disable=not config.show_progress(progress), leave=False)
    start = time.perf_counter()
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    initial_loss: float | None = None
    block_losses: list[Tensor] = []
    correct, count = torch.zeros((), device=device), 0
    order = None
    for step in range(total):
        i = step % per_epoch
        if i == 0:
            order = torch.randperm(n, generator=order_generator).to(device)
        index = order[i * batch_size : (i + 1) * batch_size]
        x, y = train_data.batch(index, augment=augment, generator=augment_generator)
        with autocast(device):
            logits = model(to_memory_format(x))
        loss = loss_fn(logits.float(), y, x) if uses_inputs else loss_fn(logits.float(), y)
        if penalty is not None:
            loss = loss + penalty(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        optimizer.step()
        if scheduler is not None and scheduler_interval == "step":
            scheduler.step()
        block_losses.append(loss.detach())
        correct += _count_correct(logits.detach(), y)
        count += y.numel()
        bar.update()
        done = step + 1
        if done not in record_at:
            continue
        losses = torch.stack(block_losses).float().cpu()
        if initial_loss is None:
            initial_loss = float(losses[0])
        bad = first_divergent_step(losses.tolist(), initial=initial_loss)
        if bad is not None:  # keep the losses before the first divergent step, then stop
            history.step_loss.extend(losses[:bad].tolist())
            history.diverged = True
            break
        history.step_loss.extend(losses.tolist())
        if scheduler is not None and scheduler_interval == "epoch" and done % per_epoch == 0:
            scheduler.step()
        val_loss, val_acc = _evaluate_at_reported_point(model, optimizer, val_data)
        history.epochs.append(EpochRecord(
            epoch=done // per_epoch if done % per_epoch == 0 else done / per_epoch,
            train_loss=losses.mean().item(), train_acc=correct.item() / count,
            val_loss=val_loss, val_acc=val_acc, seconds=time.perf_counter() - start,
            lr=optimizer.param_groups[0]["lr"], step=done,
        ))  # fmt: skip
        bar.set_postfix(loss=f"{history.epochs[-1].train_loss:.3f}",
                        **({"val_acc": f"{val_acc:.3f}"} if val_acc is not None else {}))  # fmt: skip
        block_losses, correct, count = [], torch.zeros((), device=device), 0
    bar.close()
    history.seconds = time.perf_counter() - start
    return history


@contextlib.contextmanager
def at_reported_point(optimizer):
    """Inside, the model's weights are those ``optimizer`` reports: an optimizer with
    ``eval()``/``train()`` switches (schedule-free methods, whose training point differs from the
    averaged point they return) is switched to ``eval()`` and back to ``train()`` on leaving;
    any other optimizer is left alone."""
    switch = callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))
    if switch:
        optimizer.eval()
    try:
        yield
    finally:
        if switch:
            optimizer.train()


def _evaluate_at_reported_point(model: nn.Module, optimizer, val_data) -> tuple[float | None, float | None]:
    """Validation loss and accuracy at the point the optimizer reports (:func:`at_reported_point`)."""
    if val_data is None:
        return None, None
    with at_reported_point(optimizer):
        return evaluate(model, val_data)


def _augmentation_seed(seed: int) -> int:
    """The augmentation generator's seed: derived from ``seed``, different from the order's."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_memory_format(x: Tensor) -> Tensor:
    """A batch of images (4-D) in channels-last layout on CUDA (faster convolutions there);
    anything else (CPU tensors, token sequences) unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.ndim == 4 else x
