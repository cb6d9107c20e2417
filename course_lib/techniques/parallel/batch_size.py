r"""Batch size at scale: learning-rate scaling rules and the critical batch size (gradient noise scale).

Data parallelism over :math:`W` ranks multiplies the batch by :math:`W`. The step's noise shrinks
(its variance is :math:`\operatorname{tr}\Sigma / B` for per-example gradient covariance
:math:`\Sigma`), so the rate can grow:

- **linear scaling** (Goyal et al., 2017, for SGD): :math:`\eta = \eta_0 B/B_0`, with a warm-up
  (their 5 epochs) because the large rate is unstable early (:func:`linear_scaled_lr`);
- **square-root scaling** for Adam-type methods, whose step is normalised by :math:`\sqrt{v}`:
  :math:`\eta = \eta_0 \sqrt{B/B_0}` keeps the step's noise constant (:func:`sqrt_scaled_lr`);
- beyond that, layer-wise trust ratios (LARS, LAMB: :mod:`course_lib.optim.layerwise`).

None of these rules helps past the **critical batch size**. McCandlish et al. (2018) measure it
with the *simple noise scale* :math:`B_\text{simple} = \operatorname{tr}\Sigma / |G|^2` (noise
over signal): well below it, doubling the batch halves the steps needed; well above it, it
barely saves any. Both terms come from the squared norms of mean gradients at two batch sizes,
since :math:`\mathbb{E}|G_B|^2 = |G|^2 + \operatorname{tr}\Sigma / B`:

.. math:: |G|^2 \approx \frac{B_\text{big}|G_\text{big}|^2 - B_\text{small}|G_\text{small}|^2}{B_\text{big} - B_\text{small}},
          \qquad \operatorname{tr}\Sigma \approx \frac{|G_\text{small}|^2 - |G_\text{big}|^2}{1/B_\text{small} - 1/B_\text{big}}

(:func:`gradient_noise_scale`; each averaged over many batches before the ratio is taken).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["linear_scaled_lr", "sqrt_scaled_lr", "NoiseScale", "gradient_noise_scale"]


def linear_scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    r""":math:`\eta_0 B / B_0` (Goyal et al., 2017; use it with a warm-up)."""
    return base_lr * batch / base_batch


def sqrt_scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    r""":math:`\eta_0 \sqrt{B / B_0}` (for Adam-type optimizers)."""
    return base_lr * math.sqrt(batch / base_batch)


@dataclass
class NoiseScale:
    r"""Estimates of :math:`|G|^2` (``signal``), :math:`\operatorname{tr}\Sigma` (``noise``) and :math:`B_\text{simple}`."""

    small: int
    big: int
    pairs: int
    signal: float
    noise: float

    @property
    def b_simple(self) -> float:
        return self.noise / self.signal if self.signal > 0 else math.inf


def _mean_grad_sq(model: nn.Module, x, y) -> float:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return sum(float(p.grad.double().square().sum()) for p in model.parameters() if p.grad is not None)


def gradient_noise_scale(model: nn.Module, data, small: int = 32, big: int = 512, pairs: int = 8,
                         seed: int = 0) -> NoiseScale:  # fmt: skip
    """The simple noise scale of ``model`` at its current weights on ``data`` (anything with ``len`` and ``batch(index)``).

    ``pairs`` times, a random batch of ``big`` examples and one of ``small`` give
    :math:`|G_\\text{big}|^2` and :math:`|G_\\text{small}|^2` (mean cross-entropy, gradients of all
    parameters); the two averages give :math:`|G|^2` and :math:`\\operatorname{tr}\\Sigma`. The model
    runs in eval mode (batch norm with its running statistics), so that a batch's gradient is the
    mean of per-example gradients, as the estimator assumes; its gradients are cleared afterwards.
    """
    if not 0 < small < big <= len(data):
        raise ValueError(f"need 0 < small < big <= {len(data)}, got {small} and {big}")
    was_training = model.training
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    sq_small = sq_big = 0.0
    try:
        for _ in range(pairs):
            idx = torch.randperm(len(data), generator=g)[:big].to(data.device)
            sq_big += _mean_grad_sq(model, *data.batch(idx)) / pairs
            sq_small += _mean_grad_sq(model, *data.batch(idx[:small])) / pairs
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    signal = (big * sq_big - small * sq_small) / (big - small)
    noise = (sq_small - sq_big) / (1 / small - 1 / big)
    return NoiseScale(small=small, big=big, pairs=pairs, signal=signal, noise=noise)
