r"""Layer-wise trust ratios for large batches: LARS and LAMB scale each layer's step by :math:`\|\theta\|/\|u\|`.

With a very large batch the learning rate grows (linear scaling), and a single global rate
can be far too large for some layers and too small for others: the ratio of a layer's update to
its weights, :math:`\|u_\ell\|/\|\theta_\ell\|`, differs between layers by orders of magnitude.
LARS (You, Gitman and Ginsburg, 2017) gives layer :math:`\ell` its own rate

.. math:: \eta_\ell = \eta \cdot \tau\, \frac{\|\theta_\ell\|}{\|g_\ell\| + \lambda \|\theta_\ell\|}

(:func:`lars_trust_ratio`, :math:`\tau` the trust coefficient, :math:`\lambda` the weight
decay), then takes a momentum-SGD step on :math:`g_\ell + \lambda\theta_\ell`. LAMB (You et al.,
2020) does the same to Adam: with :math:`u_\ell` Adam's update plus :math:`\lambda\theta_\ell`,
it steps :math:`\theta_\ell \leftarrow \theta_\ell - \eta\, \frac{\|\theta_\ell\|}{\|u_\ell\|}\, u_\ell`
(:func:`lamb_trust_ratio`), so every layer moves by the same *relative* amount
:math:`\eta` per step whatever the scale of its gradient. A layer whose weights or update are
zero gets ratio 1 (both papers; torch-style implementations do the same).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lars_trust_ratio", "lamb_trust_ratio", "apply_trust_ratio"]


def lars_trust_ratio(weight: Tensor, grad: Tensor, trust_coefficient: float = 1e-3, weight_decay: float = 0.0,
                     eps: float = 0.0) -> Tensor:  # fmt: skip
    r"""LARS's factor :math:`\tau\|\theta\|/(\|g\| + \lambda\|\theta\| + \epsilon)`, or 1 where a norm is zero (0-d tensor)."""
    w, g = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(grad)
    ratio = trust_coefficient * w / (g + weight_decay * w + eps)
    return torch.where((w > 0) & (g > 0), ratio, torch.ones_like(ratio))


def lamb_trust_ratio(weight: Tensor, update: Tensor) -> Tensor:
    r"""LAMB's factor :math:`\|\theta\|/\|u\|` for the update :math:`u` (Adam's step plus :math:`\lambda\theta`), or 1 where a norm is zero."""
    w, u = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(update)
    return torch.where((w > 0) & (u > 0), w / u.clamp_min(torch.finfo(u.dtype).tiny), torch.ones_like(w))


def apply_trust_ratio(weight: Tensor, update: Tensor, lr: float, ratio: Tensor) -> None:
    r"""In place: :math:`\theta \leftarrow \theta - \eta \cdot r \cdot u`, one layer's step scaled by its trust ratio."""
    weight.add_(update * ratio, alpha=-lr)
