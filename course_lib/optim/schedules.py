r"""Learning-rate schedules as pure functions of the step number, and one adapter for optimizers.

Every schedule maps the 0-based step index :math:`t` (the index of the optimizer step the value
is used for) to a **factor** :math:`f(t)`; the learning rate of a parameter group is
:math:`\eta_t = \eta \cdot f(t)`, with :math:`\eta` the group's initial learning rate.
:func:`one_cycle` also returns a momentum (or Adam :math:`\beta_1`) value, as a pair.

==========================  ===============================================================
:func:`constant`            :math:`f(t) = 1`
:func:`step_decay`          :math:`f(t) = \gamma^{\lfloor t / s \rfloor}`
:func:`multistep_decay`     multiply by :math:`\gamma` at each milestone step
:func:`exponential_decay`   :math:`f(t) = \gamma^{t}`
:func:`cosine_annealing`    :math:`f(t) = f_{\min} + (1 - f_{\min})\,\tfrac12\,(1 + \cos(\pi t / T))`
:func:`linear_warmup`       :math:`f(t) = f_0 + (f_1 - f_0)\,\min(t, W) / W`
:func:`warmup_cosine`       linear warm-up over :math:`W` steps, then cosine down to step :math:`T`
:func:`warmup_linear_decay` linear warm-up over :math:`W` steps, then a straight line down to 0 at :math:`T`
:func:`warmup_stable_decay` warm-up, a long flat (stable) phase, then a short cool-down to 0 (WSD)
:func:`inverse_time_decay`  :math:`f(t) = 1 / (1 + t/k)` (the :math:`1/t` rate of stochastic approximation)
:func:`inverse_sqrt_decay`  linear warm-up, then :math:`f(t) = \sqrt{W / t}` (the original transformer's)
:func:`cosine_warm_restarts` cosine over cycles of :math:`T_0, T_0 m, T_0 m^2, \dots` steps (SGDR)
:func:`one_cycle`           up from :math:`1/d`, down to :math:`1/(d\,d_f)`; momentum mirrored
:func:`radam_rectification` RAdam's variance rectification of Adam's step, read as a warm-up factor
==========================  ===============================================================

The conventions are torch's: ``f(0)`` is the value a ``torch.optim.lr_scheduler`` scheduler sets
when it is built, and ``f(k)`` the value after ``k`` calls of its ``step()``. The unit tests
check each function against the matching torch scheduler to within 1e-12.

:class:`ScheduledLR` drives any torch-style optimizer (``course_lib.optim`` or ``torch.optim``)
with one of these functions; :func:`run_scheduler` records what a scheduler sets, step by step
(:func:`course_lib.optim.parity.max_schedule_difference` compares two).

Where torch surprises (each is shown by a unit test):

- ``CosineAnnealingLR`` does not stop at ``eta_min`` after ``T_max`` steps: the learning rate
  climbs back up along the same cosine, which has period :math:`2T_{\max}`, and is back at the
  initial value at step :math:`2T_{\max}`. :func:`cosine_annealing` does the same (it is the
  same formula for every :math:`t`); stop training at :math:`T_{\max}`, or use
  :func:`warmup_cosine`'s ``total_steps`` equal to the run length.
- ``CosineAnnealingLR`` computes the rate *recursively* from the previous one. On the way down
  it agrees with the closed form to about 1e-14 (relative). On the way back up the rounding
  error of ``eta_min`` at the bottom is multiplied by about :math:`(2T_{\max}/\pi)^2`: the
  drift is about ``eta_min`` :math:`\cdot 2^{-52} (2T_{\max}/\pi)^2` (e.g. 1e-11 for
  :math:`T_{\max}` = 1000, ``eta_min`` = 0.3), and none when ``eta_min`` = 0. The closed form
  here has no such drift.
- ``OneCycleLR`` is defined for steps :math:`0, \dots, T-1` of its ``total_steps`` :math:`T`.
  The :math:`T`-th ``step()`` (the one after the last optimizer step of a run) still succeeds,
  but it *extrapolates* the last phase: with cosine annealing the rate jumps back up (to about
  1% of ``max_lr`` for :math:`T` = 20) and the momentum back down, with linear annealing
  the rate becomes **negative** and the momentum exceeds ``max_momentum``. One more
  ``step()`` raises ``ValueError``. (:func:`course_lib.engine.loop.train` records the rate after
  each epoch's last ``step()``, so a history then shows that extrapolated rate.)
  :func:`one_cycle` holds the final values (:math:`1/(d\,d_f)`, ``max_momentum``) for
  :math:`t \ge T` instead.
- ``OneCycleLR`` divides by zero when ``pct_start * total_steps == 1`` (a one-step first
  phase); :func:`one_cycle` then starts at the peak.
- ``LinearLR`` refuses ``start_factor=0`` (its recursive update could never leave 0), so torch
  cannot express the common warm-up "from 0"; :func:`linear_warmup` allows it.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable

import numpy as np
import torch

__all__ = [
    "constant",
    "step_decay",
    "multistep_decay",
    "exponential_decay",
    "cosine_annealing",
    "linear_warmup",
    "warmup_cosine",
    "warmup_linear_decay",
    "warmup_stable_decay",
    "inverse_time_decay",
    "inverse_sqrt_decay",
    "cosine_warm_restarts",
    "one_cycle",
    "radam_rho",
    "radam_rectification",
    "untuned_warmup_steps",
    "factors",
    "ScheduledLR",
    "run_scheduler",
]

Schedule = Callable[[int], "float | tuple[float, float]"]


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an integer, got {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_warmup_then(step, warmup_steps, total_steps) -> tuple[int, int]:
    """Validate the arguments of a warm-up-then-decay schedule; return ``(step, total_steps)``."""
    t = _check_step(step)
    total_steps = _check_positive_int("total_steps", total_steps)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps), got {warmup_steps!r}")
    return t, total_steps


def _half_cosine(t: float, period: float) -> float:
    r""":math:`\tfrac12(1 + \cos(\pi t / T))`: 1 at :math:`t=0`, 0 at :math:`t=T`."""
    return (1 + math.cos(math.pi * t / period)) / 2


# --------------------------------------------------------------------------------------------
# The schedules: pure functions of the step
# --------------------------------------------------------------------------------------------


def constant(step: int) -> float:
    r"""No schedule: :math:`f(t) = 1`."""
    _check_step(step)
    return 1.0


def step_decay(step: int, step_size: int, gamma: float = 0.1) -> float:
    r"""Step decay: multiply by :math:`\gamma` every ``step_size`` :math:`= s` steps.

    .. math:: f(t) = \gamma^{\lfloor t / s \rfloor}

    Same values as ``torch.optim.lr_scheduler.StepLR(step_size=s, gamma=γ)``.
    """
    t = _check_step(step)
    step_size = _check_positive_int("step_size", step_size)
    return gamma ** (t // step_size)


def multistep_decay(step: int, milestones, gamma: float = 0.1) -> float:
    r"""Multiply by :math:`\gamma` at each milestone: :math:`f(t) = \gamma^{\#\{m_i \le t\}}`.

    ``multistep_decay(t, milestones=(T // 2, 3 * T // 4))`` drops to 10% at half the run and to
    1% at three quarters, the common placement. Same values as
    ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma=γ)``.
    """
    t = _check_step(step)
    marks = sorted(_check_positive_int("a milestone", m) for m in milestones)
    return gamma ** sum(1 for m in marks if m <= t)


def exponential_decay(step: int, gamma: float) -> float:
    r"""Exponential decay: multiply by :math:`\gamma` every step.

    .. math:: f(t) = \gamma^{t}

    Same values as ``torch.optim.lr_scheduler.ExponentialLR(gamma=γ)``.
    """
    return gamma ** _check_step(step)


def cosine_annealing(step: int, T_max: int, min_factor: float = 0.0) -> float:
    r"""Cosine annealing from 1 down to ``min_factor`` :math:`= f_{\min}` over ``T_max`` steps.

    .. math:: f(t) = f_{\min} + (1 - f_{\min})\, \tfrac12 \left(1 + \cos\frac{\pi t}{T_{\max}}\right)

    It only decreases on :math:`0 \le t \le T_{\max}`: it has no rising part (a "first rises,
    then falls" curve is :func:`warmup_cosine`). Past :math:`T_{\max}` the formula, like
    torch's ``CosineAnnealingLR(T_max, eta_min=f_min·η)``, climbs again: the cosine has period
    :math:`2T_{\max}`, so :math:`f(2T_{\max}) = 1`. Torch computes the same values recursively
    (see the module notes on its rounding drift).
    """
    t = _check_step(step)
    T_max = _check_positive_int("T_max", T_max)
    return min_factor + (1 - min_factor) * _half_cosine(t, T_max)


def linear_warmup(step: int, warmup_steps: int, start_factor: float = 0.0, end_factor: float = 1.0) -> float:
    r"""Linear warm-up from ``start_factor`` :math:`f_0` to ``end_factor`` :math:`f_1` over :math:`W` steps, then flat.

    .. math:: f(t) = f_0 + (f_1 - f_0)\, \frac{\min(t, W)}{W}

    With the default :math:`f_0 = 0` the first step uses learning rate 0 (the usual "warm-up
    from zero"). For :math:`f_0 > 0` these are the values of torch's
    ``LinearLR(start_factor=f0, end_factor=f1, total_iters=W)``, which refuses :math:`f_0 = 0`.
    ``warmup_steps=0`` means no warm-up: :math:`f(t) = f_1`.
    """
    t = _check_step(step)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    if warmup_steps == 0:
        return float(end_factor)
    return start_factor + (end_factor - start_factor) * min(t, warmup_steps) / warmup_steps


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.0,
                  min_factor: float = 0.0) -> float:  # fmt: skip
    r"""Linear warm-up over :math:`W` steps, then cosine annealing that reaches ``min_factor`` at step :math:`T`.

    .. math::
        f(t) = \begin{cases}
            f_0 + (1 - f_0)\, t / W & t < W \\
            f_{\min} + (1 - f_{\min})\, \tfrac12 \left(1 + \cos\dfrac{\pi (t - W)}{T - W}\right) & t \ge W
        \end{cases}

    This is the curve that "first rises, then falls". For a run of :math:`T` optimizer steps
    the last one (:math:`t = T-1`) uses a small, nonzero rate and :math:`f(T) = f_{\min}`.
    Same values as torch's ``SequentialLR([LinearLR(start_factor=f0, total_iters=W),
    CosineAnnealingLR(T_max=T-W, eta_min=f_min·η)], milestones=[W])`` (for :math:`f_0 > 0`);
    past :math:`T` it climbs again like :func:`cosine_annealing`.
    """
    t, total_steps = _check_warmup_then(step, warmup_steps, total_steps)
    if t < warmup_steps:
        return linear_warmup(t, warmup_steps, start_factor, 1.0)
    return cosine_annealing(t - warmup_steps, total_steps - warmup_steps, min_factor)


def warmup_linear_decay(step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.0) -> float:
    r"""Linear warm-up over :math:`W` steps, then linear decay that reaches 0 at step :math:`T`.

    .. math::
        f(t) = \begin{cases}
            f_0 + (1 - f_0)\, t / W & t < W \\
            (T - t) / (T - W) & W \le t \le T \\
            0 & t > T
        \end{cases}

    The schedule of the CIFAR-10 study and of fast "speed-run" training recipes. Same values
    as torch's ``SequentialLR([LinearLR(start_factor=f0, total_iters=W), LinearLR(start_factor=1,
    end_factor=0, total_iters=T-W)], milestones=[W])`` for :math:`f_0 > 0`, up to step :math:`T`.
    """
    t, total_steps = _check_warmup_then(step, warmup_steps, total_steps)
    if t < warmup_steps:
        return linear_warmup(t, warmup_steps, start_factor, 1.0)
    return max(0.0, (total_steps - t) / (total_steps - warmup_steps))


def warmup_stable_decay(step: int, warmup_steps: int, decay_start: int, total_steps: int,
                        start_factor: float = 0.0, min_factor: float = 0.0, cooldown: str = "linear") -> float:  # fmt: skip
    r"""Warm-up, stable, decay (WSD; Hägele et al. 2024): warm up over :math:`W` steps, hold the
    peak until step :math:`S` (``decay_start``), then cool down to ``min_factor`` at step :math:`T`.

    .. math::
        f(t) = \begin{cases}
            f_0 + (1 - f_0)\, t / W & t < W \\
            1 & W \le t < S \\
            f_{\min} + (1 - f_{\min})\, c\!\left(\frac{t - S}{T - S}\right) & S \le t \le T \\
            f_{\min} & t > T
        \end{cases}
        \qquad c(u) = 1 - u \;\; (\text{linear}), \quad c(u) = 1 - \sqrt{u} \;\; (\text{"1-sqrt"}).

    The schedule does not need the run length until the cool-down starts: every run with the
    same :math:`W` shares the steps :math:`t < S`, so a cool-down of any length can branch
    from a checkpoint of the stable phase. With ``cooldown="linear"`` and :math:`f_0 > 0` the
    values equal torch's ``SequentialLR([LinearLR(start_factor=f0, total_iters=W),
    ConstantLR(factor=1, total_iters=0), LinearLR(start_factor=1, end_factor=f_min,
    total_iters=T-S)], milestones=[W, S])`` up to step :math:`T`.
    """
    t = _check_step(step)
    total_steps = _check_positive_int("total_steps", total_steps)
    if isinstance(decay_start, bool) or not isinstance(decay_start, numbers.Integral) or not 0 <= decay_start < total_steps:
        raise ValueError(f"decay_start must be an integer in [0, total_steps), got {decay_start!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or not 0 <= warmup_steps <= decay_start:
        raise ValueError(f"warmup_steps must be an integer in [0, decay_start], got {warmup_steps!r}")
    if cooldown not in ("linear", "1-sqrt"):
        raise ValueError(f"cooldown must be 'linear' or '1-sqrt', got {cooldown!r}")
    if t < warmup_steps:
        return linear_warmup(t, warmup_steps, start_factor, 1.0)
    if t < decay_start:
        return 1.0
    u = min(1.0, (t - decay_start) / (total_steps - decay_start))
    return min_factor + (1 - min_factor) * (1 - u if cooldown == "linear" else 1 - math.sqrt(u))


def inverse_time_decay(step: int, k: float) -> float:
    r"""The :math:`1/t` decay of stochastic approximation (Robbins & Monro): :math:`f(t) = 1/(1 + t/k)`.

    Halves the rate after :math:`k` steps, then keeps falling like :math:`k/t`: slowly enough
    that the steps add up to infinity (the iterate can still travel anywhere), fast enough that
    the squared steps add up to a finite number (the gradient noise averages out).
    """
    t = _check_step(step)
    if not k > 0:
        raise ValueError(f"k must be positive, got {k!r}")
    return 1.0 / (1.0 + t / k)


def inverse_sqrt_decay(step: int, warmup_steps: int) -> float:
    r"""Linear warm-up over :math:`W` steps, then :math:`f(t) = \sqrt{W / t}` (Vaswani et al. 2017).

    .. math:: f(t) = \min\!\left(\frac{t}{W}, \sqrt{\frac{W}{t}}\right), \quad f(0) = 0

    Like WSD, it needs no run length; unlike it, the rate never reaches 0.
    """
    t = _check_step(step)
    W = _check_positive_int("warmup_steps", warmup_steps)
    if t == 0:
        return 0.0
    return min(t / W, math.sqrt(W / t))


def cosine_warm_restarts(step: int, T_0: int, T_mult: int = 1, min_factor: float = 0.0) -> float:
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    Cycle :math:`i = 0, 1, \dots` lasts :math:`T_i = T_0\, m^i` steps (:math:`m` = ``T_mult``)
    and starts at step :math:`S_i = T_0 (m^i - 1)/(m - 1)` (:math:`S_i = i\,T_0` for
    :math:`m = 1`). Inside it, with :math:`T_{cur} = t - S_i`:

    .. math:: f(t) = f_{\min} + (1 - f_{\min})\, \tfrac12 \left(1 + \cos\frac{\pi\, T_{cur}}{T_i}\right)

    so the factor jumps back to 1 at every :math:`S_i`. Same values as torch's
    ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min=f_min·η)`` stepped once per step.
    """
    t = _check_step(step)
    T_0 = _check_positive_int("T_0", T_0)
    T_mult = _check_positive_int("T_mult", T_mult)
    if T_mult == 1:
        T_cur, T_i = t % T_0, T_0
    else:
        start, T_i = 0, T_0
        while t >= start + T_i:
            start, T_i = start + T_i, T_i * T_mult
        T_cur = t - start
    return min_factor + (1 - min_factor) * _half_cosine(T_cur, T_i)


def _anneal(start: float, end: float, pct: float, how: str) -> float:
    if how == "cos":  # torch's OneCycleLR._annealing_cos, term by term
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle(
    step: int,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> tuple[float, float]:
    r"""The one-cycle policy (Smith 2018): the pair (learning-rate factor, momentum) at step :math:`t`.

    The factor is relative to the *peak* rate (the group's ``lr`` is ``max_lr``). With
    :math:`T` = ``total_steps``, :math:`p` = ``pct_start``, :math:`d` = ``div_factor``,
    :math:`d_f` = ``final_div_factor``, the phases end at steps :math:`e_1 = pT - 1` and
    :math:`e_2 = T - 1` (three-phase: :math:`e_1 = pT - 1`, :math:`e_2 = 2pT - 2`,
    :math:`e_3 = T - 1`). Inside a phase from :math:`e_{k-1}` to :math:`e_k` (:math:`e_0 = 0`),
    with :math:`u = (t - e_{k-1})/(e_k - e_{k-1})`, a value moves from :math:`a` to :math:`b` as

    .. math::
        \text{cos: } b + \tfrac12 (a - b)(1 + \cos \pi u), \qquad \text{linear: } a + (b - a)\,u.

    ==========  =====================================  =======================================
    phase       factor                                 momentum (:math:`\mu` or :math:`\beta_1`)
    ==========  =====================================  =======================================
    1 (up)      :math:`1/d \to 1`                      ``max_momentum`` → ``base_momentum``
    2 (down)    :math:`1 \to 1/(d\,d_f)`               ``base_momentum`` → ``max_momentum``
    ==========  =====================================  =======================================

    Three-phase: phase 2 goes back down to :math:`1/d` (momentum back up), a third phase
    anneals :math:`1/d \to 1/(d\,d_f)` with momentum held at ``max_momentum``.

    Same values as torch's ``OneCycleLR(max_lr=η, total_steps=T, ...)`` for
    :math:`0 \le t < T`, including the momentum it writes into the optimizer. For
    :math:`t \ge T` this function holds the final values; torch extrapolates at :math:`t = T`
    and raises at :math:`t > T` (see the module notes).
    """
    t = _check_step(step)
    total_steps = _check_positive_int("total_steps", total_steps)
    if not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"pct_start must be in [0, 1], got {pct_start!r}")
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
    initial, peak = 1.0 / div_factor, 1.0
    final = initial / final_div_factor
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, initial, peak, max_momentum, base_momentum),
            (float(2 * pct_start * total_steps) - 2, peak, initial, base_momentum, max_momentum),
            (total_steps - 1, initial, final, max_momentum, max_momentum),
        ]
    else:
        phases = [
            (float(pct_start * total_steps) - 1, initial, peak, max_momentum, base_momentum),
            (total_steps - 1, peak, final, base_momentum, max_momentum),
        ]
    if t >= total_steps:
        return final, max_momentum
    start = 0.0
    for i, (end, lr_a, lr_b, mom_a, mom_b) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            pct = (t - start) / (end - start) if end != start else 1.0
            return _anneal(lr_a, lr_b, pct, anneal), _anneal(mom_a, mom_b, pct, anneal)
        start = end
    raise AssertionError("unreachable")


def radam_rho(step: int, beta2: float) -> float:
    r"""RAdam's :math:`\rho` for optimizer step ``step`` (0-based; Liu et al. 2020).

    :math:`\rho_\infty = 2/(1-\beta_2) - 1` and, at Adam's step :math:`t = \text{step} + 1`,

    .. math:: \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},

    the number of degrees of freedom of the simple moving average that Adam's bias-corrected
    :math:`\hat v_t` approximates: :math:`\rho_1 = 1`, and :math:`\rho_t \to \rho_\infty`.
    """
    t = _check_step(step) + 1
    if not 0.0 < beta2 < 1.0:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2!r}")
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return rho_inf - 2.0 * t * beta2**t / (1.0 - beta2**t)


def radam_rectification(step: int, beta2: float = 0.999) -> float:
    r"""RAdam's rectification factor :math:`r_t` of Adam's adaptive step, 0 while :math:`\rho_t \le 5`.

    .. math:: r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\,\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\,\rho_t}}

    The variance of Adam's adaptive rate :math:`1/\sqrt{\hat v_t}` is infinite for
    :math:`\rho_t \le 4` and large for a while after; RAdam takes un-adapted momentum steps
    while :math:`\rho_t \le 5` (the threshold of the authors' code and of ``torch.optim.RAdam``;
    the first five steps for any :math:`\beta_2` near 1), and afterwards :math:`r_t` scales the adaptive step so that its variance is that of the long-run
    average. Read as a schedule factor it is a warm-up: it rises from 0 towards 1 over about
    :math:`2/(1-\beta_2)` steps (Ma & Yarats 2021; :func:`untuned_warmup_steps`).
    """
    rho = radam_rho(step, beta2)
    if rho <= 5.0:
        return 0.0
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


def untuned_warmup_steps(beta2: float) -> int:
    r"""Ma & Yarats' (2021) rule of thumb for Adam's linear warm-up: :math:`2/(1-\beta_2)` steps
    (2,000 for :math:`\beta_2 = 0.999`), twice the window of :math:`\hat v`'s average."""
    if not 0.0 < beta2 < 1.0:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2!r}")
    return round(2.0 / (1.0 - beta2))


def factors(schedule: Schedule, steps: int, **kwargs: Any) -> np.ndarray:
    """``schedule(t, **kwargs)`` for ``t = 0, ..., steps - 1`` as an array (for plots and tables).

    Shape ``(steps,)``, or ``(steps, 2)`` for a schedule returning (factor, momentum) pairs.
    """
    return np.array([schedule(t, **kwargs) for t in range(steps)], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    r"""Drive an optimizer with a schedule function: group ``lr`` :math:`= \eta \cdot f(t)`.

    ``ScheduledLR(optimizer, schedules.warmup_cosine, warmup_steps=50, total_steps=500)``
    (keyword arguments are bound to the schedule) or ``ScheduledLR(optimizer, f)`` with any
    ``f(step)``. :math:`\eta` is each group's initial learning rate (``group["initial_lr"]``,
    set from ``group["lr"]`` when the scheduler is made, as torch's schedulers do). Call
    ``step()`` after each ``optimizer.step()``; the :math:`k`-th call sets :math:`f(k)`.

    A schedule that returns a pair ``(factor, momentum)`` (:func:`one_cycle`) also sets each
    group's momentum: ``betas[0]`` when the group has ``betas`` (Adam, AdamW), else
    ``momentum`` (SGD, RMSprop); ``cycle_momentum=False`` leaves momentum alone.

    It is a ``torch.optim.lr_scheduler.LRScheduler``, so ``get_last_lr()``, ``last_epoch``
    and ``course_lib.engine.loop.train(..., scheduler=..., scheduler_interval="step")`` work as
    with torch's own. ``state_dict()`` holds the step count but, like ``LambdaLR``, not the
    schedule function: rebuild the scheduler with the same schedule, then load the state.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, *, cycle_momentum: bool = True,
                 last_epoch: int = -1, **schedule_kwargs: Any) -> None:  # fmt: skip
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {schedule!r}")
        self.schedule = functools.partial(schedule, **schedule_kwargs) if schedule_kwargs else schedule
        self.cycle_momentum = cycle_momentum
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The rates for step ``last_epoch`` (sets the momentum too, for a pair-valued schedule)."""
        value = self.schedule(self.last_epoch)
        if isinstance(value, tuple):
            factor, momentum = value
            if self.cycle_momentum:
                for group in self.optimizer.param_groups:
                    _set_momentum(group, momentum)
        else:
            factor = value
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state without the optimizer and the schedule function."""
        return {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "schedule")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (the schedule function stays this object's)."""
        self.__dict__.update({key: value for key, value in state_dict.items() if key != "schedule"})


def _set_momentum(group: dict[str, Any], momentum: float) -> None:
    if "betas" in group:
        group["betas"] = (momentum, *group["betas"][1:])
    elif "momentum" in group:
        group["momentum"] = momentum
    else:
        raise ValueError("the schedule returns a momentum, but this parameter group has neither "
                         "'betas' nor 'momentum' (pass cycle_momentum=False)")  # fmt: skip


def _group_momentum(group: dict[str, Any]) -> float:
    if "betas" in group:
        return float(group["betas"][0])
    return float(group.get("momentum", math.nan))


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------


def run_scheduler(make_scheduler: Callable[[torch.optim.Optimizer], Any], steps: int,
                  optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD, lr: float = 0.1,
                  **optimizer_kwargs: Any) -> dict[str, np.ndarray]:  # fmt: skip
    """What a scheduler sets, step by step, on a throwaway optimizer of one parameter.

    ``make_scheduler(optimizer)`` builds the scheduler (torch's or :class:`ScheduledLR`); the
    optimizer is ``optimizer_cls([p], lr=lr, **optimizer_kwargs)``. The loop is the real one
    (``optimizer.step()``, then ``scheduler.step()``), so torch prints no order warning.
    Returns ``{"lr": ..., "momentum": ...}``, arrays of length ``steps``: entry ``t`` is what
    optimizer step ``t`` uses (momentum is ``betas[0]`` for Adam-like groups, NaN if none).
    """
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = optimizer_cls([param], lr=lr, **optimizer_kwargs)
    scheduler = make_scheduler(optimizer)
    lrs, momenta = [], []
    for t in range(steps):
        group = optimizer.param_groups[0]
        lrs.append(float(group["lr"]))
        momenta.append(_group_momentum(group))
        if t < steps - 1:
            optimizer.step()  # no gradient: a no-op that counts as "optimizer.step() was called"
            scheduler.step()
    return {"lr": np.array(lrs), "momentum": np.array(momenta)}
