"""Training on data that lives on the device: batches by index, augmentation on the device.

The images are moved to the device once, as uint8 (50,000 CIFAR-10 images take 150 MB); each
step indexes a batch, converts and normalises it on the device, optionally augments it, and
takes one optimizer step. There is no DataLoader and no host-to-device copy inside the loop.

:func:`train` takes any torch-style optimizer (``course_lib.optim`` or ``torch.optim``) and an
optional scheduler, records per-step losses and per-epoch metrics with wall time, and stops
cleanly, marking the run diverged, when the loss stops being finite.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import config, data

__all__ = ["DeviceData", "EpochRecord", "History", "train", "evaluate", "tta_logits", "cifar10_on_device",
           "compare_optimizers"]


@dataclass
class DeviceData:
    """Images (N x 3 x H x W, uint8) and labels (N, int64) held on one device, plus the
    per-channel mean and std (in [0, 1] units) used to normalise a batch."""

    images: Tensor
    labels: Tensor
    mean: Tensor
    std: Tensor

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray, device: torch.device | str | None = None,
                   stats: tuple[Tensor, Tensor] | None = None) -> "DeviceData":  # fmt: skip
        """From ``load_cifar10``'s arrays (N x H x W x 3 uint8, N int64).

        ``stats``: the (mean, std) to normalise with; by default computed from these images.
        Pass the training set's stats when building the validation or test set.
        """
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be N x H x W x 3 uint8, got {images.shape} {images.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        dev = torch.device(device) if device is not None else config.device()
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(dev)
        y = torch.as_tensor(labels, dtype=torch.int64).to(dev)
        if stats is None:
            as_float = x.float() / 255
            stats = as_float.mean(dim=(0, 2, 3)), as_float.std(dim=(0, 2, 3))
        mean, std = (s.to(dev, torch.float32) for s in stats)
        return cls(x, y, mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def stats(self) -> tuple[Tensor, Tensor]:
        return self.mean, self.std

    def batch(self, index: Tensor, augment: Callable[..., Tensor] | None = None,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Normalised float batch ``(x, y)`` for the given indices, augmented if asked."""
        x = self.images[index].float().div_(255)
        x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        if augment is not None:
            x = augment(x, generator=generator)
        return x, self.labels[index]


def cifar10_on_device(
    *,
    train_per_class: int | None = None,
    val_fraction: float = 0.1,
    test_per_class: int | None = None,
    with_test: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    data_dir=None,
) -> dict[str, DeviceData]:
    """CIFAR-10 on the device as ``{"train", "val"[, "test"]}`` :class:`DeviceData`.

    The validation split is carved from the training set (stratified, ``val_fraction``), never
    from the test set. ``train_per_class`` first takes a class-balanced subset of the training
    set (fast mode); ``test_per_class`` does the same for the test set. All splits are
    normalised with the training split's channel statistics.
    """
    images, labels = data.load_cifar10("train", data_dir=data_dir)
    if train_per_class is not None:
        images, labels = data.class_balanced_subset(images, labels, train_per_class, seed=seed)
    tx, ty, vx, vy = data.train_val_split(images, labels, val_fraction=val_fraction, seed=seed)
    out = {"train": DeviceData.from_numpy(tx, ty, device)}
    out["val"] = DeviceData.from_numpy(vx, vy, device, stats=out["train"].stats)
    if with_test:
        images, labels = data.load_cifar10("test", data_dir=data_dir)
        if test_per_class is not None:
            images, labels = data.class_balanced_subset(images, labels, test_per_class, seed=seed)
        out["test"] = DeviceData.from_numpy(images, labels, device, stats=out["train"].stats)
    return out


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


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Translate a batch by (dy, dx) pixels, filling the uncovered border with reflected pixels."""
    pad = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


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
        views += [_shift(v, s, s) for s in (1, -1) for v in views[:2]]
    return torch.stack([model(_memory_format(v)).float() for v in views]).mean(0)


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
        with _autocast(data.device):
            logits = tta_logits(model, x, tta)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(data), correct / len(data)


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
    steps_per_epoch = math.ceil(n / batch_size)
    history = History()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not config.show_progress(progress), leave=False)
    start = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        epoch_losses, correct = [], torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            index = order[i * batch_size : (i + 1) * batch_size]
            x, y = train_data.batch(index, augment=augment, generator=generator)
            with _autocast(device):
                logits = model(_memory_format(x))
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


def compare_optimizers(
    model_fn: Callable[[], nn.Module],
    runs: Mapping[str, tuple[type, dict]],
    train_data: DeviceData,
    *,
    seed: int = 0,
    **train_kwargs,
) -> dict[str, History]:
    """Train one fresh model per entry of ``runs`` (label -> (optimizer class, its kwargs)).

    Every model starts from the *same* initial weights (made by ``model_fn`` after seeding with
    ``seed``) and sees the same batches in the same order; only the optimizer differs.
    ``train_kwargs`` go to :func:`train` (``epochs``, ``batch_size``, ``val_data``, ...).
    """
    torch.manual_seed(seed)
    initial = copy.deepcopy(model_fn().state_dict())
    histories = {}
    for label, (optimizer_cls, optimizer_kwargs) in runs.items():
        model = model_fn().to(train_data.device)
        model.load_state_dict(initial)
        optimizer = optimizer_cls(model.parameters(), **optimizer_kwargs)
        histories[label] = train(model, optimizer, train_data, seed=seed, desc=label, **train_kwargs)
    return histories


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _memory_format(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
