"""The training loop: train any torch-style optimizer on device-resident data, and evaluate.

:func:`train` takes any torch-style optimizer (``course_lib.optim`` or ``torch.optim``) and an
optional scheduler, records per-step losses and per-epoch metrics with wall time
(:class:`History`), and stops cleanly, marking the run diverged, when the loss stops being
finite. Each step is the six lines chapter 01 writes out by hand::

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

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import config
from .augment import shift
from .device_data import DeviceData

__all__ = ["EpochRecord", "History", "steps_per_epoch", "train", "evaluate", "tta_logits", "autocast",
           "to_memory_format"]

@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float  # wall time since the start of training, at the end of this epoch
    lr: float


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

    def time_to(self, metric: str, target: float) -> float | None:
        """Wall time at the end of the first epoch where ``metric`` reached ``target`` (None if never)."""
        for e in self.epochs:
            value = getattr(e, metric)
            if value is not None and value >= target:
                return e.seconds
        return None


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
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 1000, tta: int = 0) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data`` (eval mode, no augmentation;
    ``tta`` > 0 averages the logits over test-time augmentations, see :func:`tta_logits`)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.device)
        x, y = data.batch(index)
        with autocast(data.device):
            logits = tta_logits(model, x, tta)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(data), correct / len(data)


def steps_per_epoch(n: int, batch_size: int) -> int:
    r"""Optimizer steps in one epoch over ``n`` examples: :math:`\lceil n / B \rceil` (the last batch may be short)."""
    return -(-n // batch_size)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: DeviceData,
    *,
    epochs: int,
    batch_size: int,
    val_data: DeviceData | None = None,
    scheduler=None,
    scheduler_interval: str = "step",
    augment: Callable[..., Tensor] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    penalty: Callable[[nn.Module], Tensor] | None = None,
    seed: int = 0,
    progress: bool | None = None,
    desc: str = "training",
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Each epoch visits the training set once in a fresh random order (``seed`` fixes it);
    ``batch_size=len(train_data)`` gives full-batch gradient descent. ``loss_fn(logits, y)``
    defaults to cross-entropy; a loss that also needs the (augmented) inputs, such as a
    distillation loss asking a teacher about the same batch, sets the attribute
    ``uses_inputs = True`` and is called as ``loss_fn(logits, y, x)``. ``penalty(model)`` is
    added to the loss (e.g. an L2 or L1 term).
    ``scheduler.step()`` is called after every optimizer step (``scheduler_interval="step"``)
    or every epoch (``"epoch"``). On CUDA the forward pass runs under bf16 autocast in
    channels-last layout. A non-finite loss ends the run with ``history.diverged = True``.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
    loss_fn = loss_fn or F.cross_entropy
    device = train_data.device
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)
    n = len(train_data)
    batches = steps_per_epoch(n, batch_size)
    history = History()
    bar = tqdm(total=epochs * batches, desc=desc, disable=not config.show_progress(progress), leave=False)
    start = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        epoch_losses, correct = [], torch.zeros((), device=device)
        for i in range(batches):
            index = order[i * batch_size : (i + 1) * batch_size]
            x, y = train_data.batch(index, augment=augment, generator=generator)
            with autocast(device):
                logits = model(to_memory_format(x))
            loss = loss_fn(logits.float(), y, x) if getattr(loss_fn, "uses_inputs", False) else loss_fn(logits.float(), y)
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            epoch_losses.append(loss.detach())
            correct += (logits.detach().argmax(1) == y).sum()
            bar.update()
        losses = torch.stack(epoch_losses).float().cpu()
        finite = torch.isfinite(losses)
        if not finite.all():  # keep the losses up to the first non-finite one, then stop
            history.step_loss.extend(losses[: int((~finite).nonzero()[0])].tolist())
            history.diverged = True
            break
        history.step_loss.extend(losses.tolist())
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        val_loss, val_acc = evaluate(model, val_data) if val_data is not None else (None, None)
        history.epochs.append(EpochRecord(
            epoch=epoch, train_loss=losses.mean().item(), train_acc=correct.item() / n,
            val_loss=val_loss, val_acc=val_acc, seconds=time.perf_counter() - start,
            lr=optimizer.param_groups[0]["lr"],
        ))  # fmt: skip
        bar.set_postfix(loss=f"{history.epochs[-1].train_loss:.3f}",
                        **({"val_acc": f"{val_acc:.3f}"} if val_acc is not None else {}))  # fmt: skip
    bar.close()
    history.seconds = time.perf_counter() - start
    return history

def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_memory_format(x: Tensor) -> Tensor:
    """``x`` in channels-last layout on CUDA (faster convolutions there), unchanged elsewhere."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
