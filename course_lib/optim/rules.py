r"""The optimizers' update rules: one small function per method, in the chapters' symbols.

Each rule takes a parameter tensor :math:`\theta`, its gradient :math:`g` (already sign-flipped
for ``maximize``), the parameter's state dict and the hyperparameters as keywords, and updates
:math:`\theta` and the state in place. The first call on a parameter finds ``state`` empty and
fills it. A rule accepts exactly its own hyperparameters: a misspelt keyword is a ``TypeError``.

=========  =================================================================================
SGD        :math:`g \leftarrow g + \lambda\theta`; momentum (torch's form)
           :math:`b \leftarrow \mu b + (1-\tau) g`, or (EMA form) :math:`v \leftarrow \beta v +
           (1-\beta) g`; :math:`\theta \leftarrow \theta - \eta\, b`
Adagrad    :math:`G \leftarrow G + g^2`;
           :math:`\theta \leftarrow \theta - \eta_t\, g / (\sqrt{G} + \epsilon)`
RMSprop    :math:`v \leftarrow \alpha v + (1-\alpha) g^2`;
           :math:`\theta \leftarrow \theta - \eta\, g / (\sqrt{v} + \epsilon)`
Adam       :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
           :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`;
           :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)`
AdamW      Adam, with the decay taken out of :math:`g`: :math:`\theta \leftarrow \theta -
           \eta\lambda\theta` before the Adam step
=========  =================================================================================

The EWMA steps are :func:`course_lib.optim.ewma.ewma_step_` and
:func:`~course_lib.optim.ewma.ewma_square_step_`, the very functions the EWMA chapter teaches.
:mod:`course_lib.optim.optimizers` wraps each rule in a ``torch.optim.Optimizer``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .ewma import bias_correction_factor, ewma_square_step_, ewma_step, ewma_step_

__all__ = ["State", "sgd_rule", "adagrad_rule", "rmsprop_rule", "adam_rule"]

State = dict[str, Any]

def _scalar_dtype() -> torch.dtype:
    """dtype of the ``step`` counters: float64 when that is torch's default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _zero_step() -> Tensor:
    return torch.tensor(0.0, dtype=_scalar_dtype())


def _count_step(state: State) -> float:
    """Advance the state's step counter :math:`t` (a tensor, as in torch) and return it."""
    state["step"] += 1
    return state["step"].item()


def sgd_rule(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    ema_momentum: bool = False,
) -> None:
    r"""SGD with optional momentum, Nesterov look-ahead and L2 weight decay.

    .. math::
        g &\leftarrow g + \lambda\theta \\
        b &\leftarrow \mu b + (1-\tau) g \quad (b_1 = g)
            \qquad\text{or, EMA form,}\qquad v \leftarrow \beta v + (1-\beta) g \quad (v_0 = 0) \\
        d &= b, \text{ or with Nesterov } d = g + \mu b
            \quad(\text{EMA form: } d = \beta v + (1-\beta) g) \\
        \theta &\leftarrow \theta - \eta d

    Nesterov's look-ahead, in this form (Sutskever et al. 2013, as torch does it), applies the
    momentum step once more to the freshly updated buffer: the step already includes the
    part of the *next* step that momentum will take anyway.
    """
    # [weight decay]
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    # [momentum]
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if ema_momentum:
            if buf is None:
                buf = state["momentum_buffer"] = torch.zeros_like(param)
            ewma_step_(buf, grad, momentum)
            grad = ewma_step(buf, grad, momentum) if nesterov else buf
        else:
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
    # [step]
    param.add_(grad, alpha=-lr)


def adagrad_rule(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    initial_accumulator_value: float,
    eps: float,
) -> None:
    r"""Adagrad: per-coordinate steps shrink with the accumulated squared gradients.

    .. math::
        g &\leftarrow g + \lambda\theta, \qquad
        \eta_t = \frac{\eta}{1 + (t-1)\,\text{lr\_decay}} \\
        G &\leftarrow G + g^2 \quad (G_0 = \text{initial\_accumulator\_value}) \\
        \theta &\leftarrow \theta - \eta_t\, \frac{g}{\sqrt{G} + \epsilon}
    """
    if not state:
        state["step"] = _zero_step()
        state["sum"] = torch.full_like(param, initial_accumulator_value, memory_format=torch.preserve_format)
    t = _count_step(state)
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    lr_t = lr / (1 + (t - 1) * lr_decay)
    G = state["sum"]
    G.addcmul_(grad, grad, value=1)
    param.addcdiv_(grad, G.sqrt().add_(eps), value=-lr_t)


def rmsprop_rule(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None:
    r"""RMSprop: Adagrad's sum of squares replaced by an EWMA of squares (second moment only).

    .. math::
        g &\leftarrow g + \lambda\theta \\
        v &\leftarrow \alpha v + (1-\alpha) g^2 \\
        \text{centered: } \bar g &\leftarrow \alpha \bar g + (1-\alpha) g, \quad
            s = \sqrt{v - \bar g^2}, \text{ else } s = \sqrt{v} \\
        \theta &\leftarrow \theta - \eta\, \frac{g}{s + \epsilon}
            \quad\text{or, with momentum, } b \leftarrow \mu b + \frac{g}{s+\epsilon},\;
            \theta \leftarrow \theta - \eta b

    :math:`\epsilon` is added *outside* the square root, as in torch.
    """
    if not state:
        state["step"] = _zero_step()
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if momentum > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if centered:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    _count_step(state)
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    v = ewma_square_step_(state["square_avg"], grad, alpha)
    if centered:
        g_bar = ewma_step_(state["grad_avg"], grad, alpha)
        denom = v.addcmul(g_bar, g_bar, value=-1).sqrt_()
    else:
        denom = v.sqrt()
    denom.add_(eps)
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf.mul_(momentum).addcdiv_(grad, denom)
        param.add_(buf, alpha=-lr)
    else:
        param.addcdiv_(grad, denom, value=-lr)


def adam_rule(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    decoupled_weight_decay: bool,
) -> None:
    r"""Adam (Momentum + RMSprop, bias-corrected), with L2 or decoupled (AdamW) weight decay.

    .. math::
        \text{Adam + L2: } g &\leftarrow g + \lambda\theta
            \qquad \text{AdamW: } \theta \leftarrow \theta - \eta\lambda\theta \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2
            \quad(\text{AMSGrad: } v_{\max} \leftarrow \max(v_{\max}, v)) \\
        \hat m &= \frac{m}{1-\beta_1^t}, \qquad \hat v = \frac{v}{1-\beta_2^t} \\
        \theta &\leftarrow \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon}
    """
    beta1, beta2 = betas
    # [state]
    if not state:
        state["step"] = _zero_step()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    t = _count_step(state)
    # [weight decay]
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    # [moments]
    m = ewma_step_(state["exp_avg"], grad, beta1)
    v = ewma_square_step_(state["exp_avg_sq"], grad, beta2)
    if amsgrad:
        v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
    # [step] m_hat / (sqrt(v_hat) + eps) with the corrections folded into scalars, as torch does
    step_size = lr / bias_correction_factor(beta1, t)
    denom = (v.sqrt() / bias_correction_factor(beta2, t) ** 0.5).add_(eps)
    param.addcdiv_(m, denom, value=-step_size)
