r"""Exponentially weighted moving averages (EWMA): the spine of the course's optimizers.

One step of the average of a sequence :math:`x_1, x_2, \dots` with decay :math:`\beta \in [0, 1)`:

.. math::  v_t = \beta\, v_{t-1} + (1 - \beta)\, x_t

- **Zero start** (:math:`v_0 = 0`), what Adam and RMSProp use. Unrolled,
  :math:`v_t = (1-\beta) \sum_{k=0}^{t-1} \beta^k x_{t-k}`: the weights :math:`(1-\beta)\beta^k`
  sum to :math:`1 - \beta^t < 1`, so early averages are biased towards 0.
- **Bias correction** divides by that sum: :math:`\hat v_t = v_t / (1 - \beta^t)`.
- **First-value start** (:math:`v_1 = x_1`), what many tutorials use: no bias towards 0, but the
  first value gets weight :math:`\beta^{t-1}` instead of :math:`(1-\beta)\beta^{t-1}`.
- **Effective window**: the weights decay like :math:`\beta^k = e^{k \ln \beta}`; the
  average "remembers" about :math:`1/(1-\beta)` values (the weights' total mass divided by the
  first weight; also the mean age :math:`\sum_k k(1-\beta)\beta^k = \beta/(1-\beta)` plus one).

Momentum is an EWMA of gradients, RMSProp an EWMA of squared gradients, Adam both with bias
correction: :mod:`course_lib.optim.rules` calls :func:`ewma_step_`, :func:`ewma_square_step_` and
:func:`bias_correction_factor` from this module.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch

T = TypeVar("T", float, np.ndarray, torch.Tensor)

__all__ = [
    "bias_correction_factor",
    "effective_window",
    "ewma",
    "ewma_square_step_",
    "ewma_step",
    "ewma_step_",
    "ewma_weights",
    "mean_age",
    "variance_factor",
]


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")


def ewma_step(avg: T, value: T, beta: float) -> T:
    r"""One EWMA step, returning a new value: :math:`v \leftarrow \beta v + (1-\beta) x`.

    Works on floats, NumPy arrays and tensors alike.
    """
    return beta * avg + (1 - beta) * value


def ewma_step_(avg: torch.Tensor, value: torch.Tensor, beta: float) -> torch.Tensor:
    r"""The same step in place on a tensor: :math:`v \leftarrow \beta v + (1-\beta) x`.

    Written as ``avg.lerp_(value, 1 - beta)``, i.e. :math:`v + (1-\beta)(x - v)`, which is the
    same formula rearranged (and the exact operation ``torch.optim.Adam`` uses, so the two
    agree to the last bit).
    """
    return avg.lerp_(value, 1 - beta)


def ewma_square_step_(avg: torch.Tensor, value: torch.Tensor, beta: float) -> torch.Tensor:
    r"""EWMA of the elementwise square, in place: :math:`v \leftarrow \beta v + (1-\beta) x^2`.

    The same step as :func:`ewma_step_` applied to :math:`x \odot x`, with the product fused
    into the update (``mul_`` then ``addcmul_``) so no temporary :math:`x^2` tensor is made.
    """
    return avg.mul_(beta).addcmul_(value, value, value=1 - beta)


def bias_correction_factor(beta: float, t: int | float) -> float:
    r"""The total weight of a zero-started EWMA after ``t`` steps: :math:`1 - \beta^t`.

    Dividing :math:`v_t` by it gives the bias-corrected average :math:`\hat v_t`.
    """
    if t < 1:
        raise ValueError(f"the step count t starts at 1, got {t}")
    return 1 - beta**t


def ewma(
    values,
    beta: float,
    *,
    start: Literal["zero", "first"] = "zero",
    bias_correction: bool = False,
) -> np.ndarray:
    r"""EWMA of a 1-D sequence, every intermediate average returned (same length as ``values``).

    ``start="zero"``: :math:`v_0 = 0`, then :math:`v_t = \beta v_{t-1} + (1-\beta) x_t`; with
    ``bias_correction=True`` the result is :math:`\hat v_t = v_t / (1-\beta^t)`.

    ``start="first"``: :math:`v_1 = x_1`, then the same step. Bias correction does not apply to
    it (it has no bias towards zero) and asking for both raises ``ValueError``.

    Each step is :func:`ewma_step`, the same formula the optimizers use.
    """
    _check_beta(beta)
    if start not in ("zero", "first"):
        raise ValueError(f"start must be 'zero' or 'first', got {start!r}")
    if start == "first" and bias_correction:
        raise ValueError("bias correction only applies to the zero start")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be a 1-D sequence, got shape {x.shape}")
    out = np.empty_like(x)
    avg = 0.0
    for t, value in enumerate(x, start=1):
        avg = value if (start == "first" and t == 1) else ewma_step(avg, value, beta)
        out[t - 1] = avg / bias_correction_factor(beta, t) if bias_correction else avg
    return out


def ewma_weights(
    beta: float,
    n: int,
    *,
    start: Literal["zero", "first"] = "zero",
    bias_correction: bool = False,
) -> np.ndarray:
    r"""The weight each of the last ``n`` values carries in :math:`v_n`, newest first.

    Zero start: :math:`w_k = (1-\beta)\beta^k` for :math:`k = 0..n-1` (they sum to
    :math:`1-\beta^n`); bias-corrected, divided by that sum (they sum to 1). First-value start:
    the same, except the oldest value gets :math:`\beta^{n-1}` (they sum to 1).
    ``ewma(x, beta)[-1] == ewma_weights(beta, len(x)) @ x[::-1]``.
    """
    _check_beta(beta)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if start == "first" and bias_correction:
        raise ValueError("bias correction only applies to the zero start")
    w = (1 - beta) * beta ** np.arange(n, dtype=np.float64)
    if start == "first":
        w[-1] = beta ** (n - 1)
    elif bias_correction:
        w /= bias_correction_factor(beta, n)
    return w


def effective_window(beta: float) -> float:
    r"""How many recent values an EWMA effectively averages: :math:`1 / (1 - \beta)`.

    E.g. :math:`\beta = 0.9` averages about the last 10 values, :math:`\beta = 0.98` about 50.
    Values older than that carry at most :math:`\beta^{1/(1-\beta)} \approx 1/e` of the newest
    value's weight.
    """
    _check_beta(beta)
    return 1.0 / (1.0 - beta)


def mean_age(beta: float, t: int | None = None) -> float:
    r"""The mean age of the values in a bias-corrected EWMA after ``t`` values: its lag.

    The weights of :math:`\hat v_t` are :math:`\beta^k (1-\beta)/(1-\beta^t)` for the value
    :math:`k` steps old, so the mean age is

    .. math:: \frac{\beta}{1-\beta} - \frac{t\,\beta^t}{1-\beta^t},

    which tends to :math:`\beta/(1-\beta)` (``t=None``: the steady state). On a linear trend the
    average trails the trend by exactly this many steps (the average of a linear function is its
    value at the mean age). ``t = 1`` gives 0; :math:`\beta = 0` gives 0.
    """
    _check_beta(beta)
    if t is not None and t < 1:
        raise ValueError(f"t must be at least 1, got {t}")
    steady = beta / (1.0 - beta)
    if t is None or beta == 0.0:
        return steady
    return steady - t * beta**t / bias_correction_factor(beta, t)


def variance_factor(beta: float) -> float:
    r"""Steady-state variance of an EWMA of independent noise, as a fraction of the noise's:
    :math:`(1-\beta)/(1+\beta)`.

    :math:`\mathrm{Var}\,v = (1-\beta)^2 \sum_k \beta^{2k} \sigma^2 = \sigma^2 (1-\beta)/(1+\beta)`:
    about :math:`\sigma^2 / (2 \cdot \text{window})`, the variance of a plain mean of twice the
    effective window. This is the smoothness side of the trade-off whose other side is
    :func:`mean_age`.
    """
    _check_beta(beta)
    return (1.0 - beta) / (1.0 + beta)
