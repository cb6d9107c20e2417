"""Augmentations computed on the device, on normalised batches N x C x H x W.

Random numbers are drawn on the CPU from an explicit ``torch.Generator`` (a handful per image)
and moved to the batch's device, so an augmented run repeats exactly on any device. Every
random augmentation has the signature ``augment(x, generator=None)``, the one the training loop
calls. :func:`shift` is the fixed one-pixel translation of test-time augmentation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["random_flip", "random_translate", "flip_and_translate", "rotate", "random_rotate",
           "flip_translate_rotate", "shift"]

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


def rotate(x: Tensor, degrees: float | Tensor) -> Tensor:
    """Rotate each image counter-clockwise (as displayed, rows downwards) by ``degrees``.

    ``degrees`` is one number or one per image (shape N). The output pixel at centred
    coordinates :math:`p` (x to the right, y downwards, both in [-1, 1]) takes the input at
    :math:`R p` with :math:`R = \\begin{pmatrix}\\cos a & -\\sin a\\\\ \\sin a & \\cos a\\end{pmatrix}`
    (bilinear interpolation, ``affine_grid`` + ``grid_sample``, reflected at the border).
    For square images, 90 degrees equals ``torch.rot90(x, 1, dims=(-2, -1))``. (The coordinates
    are normalised per axis, so a non-square image would also be sheared; CIFAR's are square.)
    """
    n = x.shape[0]
    angle = torch.as_tensor(degrees, dtype=torch.float64).to(x.device).expand(n) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_rotate(x: Tensor, max_degrees: float = 10.0, generator: torch.Generator | None = None) -> Tensor:
    """Rotate each image by an angle drawn uniformly from [-max_degrees, max_degrees] (see :func:`rotate`)."""
    if max_degrees < 0:
        raise ValueError(f"max_degrees must be non-negative, got {max_degrees}")
    if max_degrees == 0:
        return x
    degrees = (2 * _uniform(x.shape[0], generator) - 1) * max_degrees
    return rotate(x, degrees)


def flip_translate_rotate(x: Tensor, generator: torch.Generator | None = None, pad: int = 2,
                          max_degrees: float = 10.0) -> Tensor:  # fmt: skip
    """:func:`flip_and_translate`, then :func:`random_rotate` by up to ``max_degrees``."""
    return random_rotate(flip_and_translate(x, generator, pad=pad), max_degrees, generator)

def shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Translate a batch by (dy, dx) pixels, filling the uncovered border with reflected pixels."""
    pad = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]
