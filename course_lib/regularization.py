"""Regularization: data augmentations that run on the device (batches N x C x H x W).

Random numbers are drawn on the CPU from an explicit ``torch.Generator`` (a handful per image)
and moved to the batch's device, so an augmented run repeats exactly on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["random_flip", "random_translate", "flip_and_translate"]


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator)


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (_uniform(x.shape[0], generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_translate(x: Tensor, pad: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by a random (dy, dx) in [-pad, pad]^2, filling with reflected pixels.

    Equivalent to reflect-padding by ``pad`` and taking a random crop of the original size.
    """
    if pad == 0:
        return x
    if pad < 0:
        raise ValueError(f"pad must be non-negative, got {pad}")
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    rows = shifts[0, :, None] + torch.arange(h, device=x.device)  # n x h
    cols = shifts[1, :, None] + torch.arange(w, device=x.device)  # n x w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def flip_and_translate(x: Tensor, generator: torch.Generator | None = None, pad: int = 2) -> Tensor:
    """The standard CIFAR-10 augmentation: random horizontal flip, then random translate."""
    return random_translate(random_flip(x, generator), pad=pad, generator=generator)
