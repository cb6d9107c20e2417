"""Data that lives on the device: images as uint8, batches by index, normalised on the device.

The images are moved to the device once, as uint8 (50,000 CIFAR-10 images take 150 MB); each
step indexes a batch, converts and normalises it on the device and optionally augments it
(:mod:`course_lib.engine.augment`). There is no DataLoader and no host-to-device copy inside the
training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .. import config
from . import cifar10

__all__ = ["DeviceData", "cifar10_on_device"]

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
    images, labels = cifar10.load_cifar10("train", data_dir=data_dir)
    if train_per_class is not None:
        images, labels = cifar10.class_balanced_subset(images, labels, train_per_class, seed=seed)
    tx, ty, vx, vy = cifar10.train_val_split(images, labels, val_fraction=val_fraction, seed=seed)
    out = {"train": DeviceData.from_numpy(tx, ty, device)}
    out["val"] = DeviceData.from_numpy(vx, vy, device, stats=out["train"].stats)
    if with_test:
        images, labels = cifar10.load_cifar10("test", data_dir=data_dir)
        if test_per_class is not None:
            images, labels = cifar10.class_balanced_subset(images, labels, test_per_class, seed=seed)
        out["test"] = DeviceData.from_numpy(images, labels, device, stats=out["train"].stats)
    return out
