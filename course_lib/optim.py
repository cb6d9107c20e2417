r"""From-scratch optimizers that are drop-in replacements for ``torch.optim``.

Each method is one short **update rule**: a function that takes a parameter tensor
:math:`\theta`, its gradient :math:`g`, the parameter's state dict and the hyperparameters, and
updates :math:`\theta` and the state in place. The symbols are the course's:

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

The EWMA steps are :func:`course_lib.ewma.ewma_step_` and :func:`~course_lib.ewma.ewma_square_step_`,
the very functions the EWMA chapter teaches.

One thin :class:`torch.optim.Optimizer` subclass, :class:`RuleOptimizer`, runs a rule over
every parameter that has a gradient. The five public classes have torch's class names,
constructor signatures, defaults, ``ValueError`` messages, parameter-group keys and state keys,
so state dicts load across in both directions and ``torch.optim.lr_scheduler`` drives them.
They perform the same floating-point operations in the same order as torch's single-tensor
(default CPU) implementation, so results agree to the last bit.

Differences from torch, on purpose:

- only the single-tensor reference path: ``foreach=True``, ``fused=True``, ``capturable=True``
  and ``differentiable=True`` raise ``NotImplementedError``; sparse and complex gradients are
  not supported;
- state is made lazily, on a parameter's first step with a gradient; a parameter whose ``grad``
  is ``None`` is skipped and gets no state (torch's ``Adagrad`` makes state for every
  parameter in its constructor);
- ``Adagrad`` honours a per-group ``initial_accumulator_value``; torch's fills every group's
  accumulator with the constructor's value;
- ``SGD`` takes one extra keyword, ``ema_momentum``: the EMA form of momentum
  :math:`v \leftarrow \beta v + (1-\beta) g`. Since :math:`v_t = (1-\beta)\, b_t` exactly (with
  :math:`b` torch's buffer), SGD with ``ema_momentum=True`` and learning rate :math:`\eta` takes
  the very same steps as torch's SGD with learning rate :math:`\eta(1-\beta)`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .ewma import bias_correction_factor, ewma_square_step_, ewma_step, ewma_step_

__all__ = [
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "RuleOptimizer",
    "sgd_rule",
    "adagrad_rule",
    "rmsprop_rule",
    "adam_rule",
    "ema_equivalent_lr",
    "max_difference",
]

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


# --------------------------------------------------------------------------------------------
# Update rules. Each updates `param` (and `state`) in place; `grad` is already sign-flipped for
# `maximize`. The first call on a parameter finds `state` empty and fills it.
# --------------------------------------------------------------------------------------------


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
    **_: Any,
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
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
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
    **_: Any,
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
    **_: Any,
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
    **_: Any,
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
    if not state:
        state["step"] = _zero_step()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    t = _count_step(state)
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    m = ewma_step_(state["exp_avg"], grad, beta1)
    v = ewma_square_step_(state["exp_avg_sq"], grad, beta2)
    if amsgrad:
        v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
    # m_hat / (sqrt(v_hat) + eps) with the corrections folded into scalars, as torch does
    step_size = lr / bias_correction_factor(beta1, t)
    denom = (v.sqrt() / bias_correction_factor(beta2, t) ** 0.5).add_(eps)
    param.addcdiv_(m, denom, value=-step_size)


# --------------------------------------------------------------------------------------------
# The one optimizer shell
# --------------------------------------------------------------------------------------------

_REFERENCE_PATH_ONLY = ("foreach", "fused", "capturable", "differentiable")


class RuleOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that applies one update rule to each parameter with a gradient.

    Subclasses set ``rule`` (a function like :func:`adam_rule`) and pass their hyperparameters
    as ``defaults``; every parameter group's entries are handed to the rule as keywords.
    """

    rule: Callable[..., None]

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        _check_reference_path(defaults)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # groups saved by torch (or an older version) lack keys that are ours: use defaults
        for group in self.param_groups:
            for key, value in self._group_defaults().items():
                group.setdefault(key, value)

    def _group_defaults(self) -> dict[str, Any]:
        return {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _check_reference_path(param_group)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Apply the update rule once to every parameter that has a gradient; return ``closure()``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rule = type(self).rule
        for group in self.param_groups:
            _check_reference_path(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse or p.is_complex():
                    raise RuntimeError(f"{type(self).__name__} from course_lib supports dense real tensors only")
                grad = -p.grad if group["maximize"] else p.grad
                state = self.state.get(p)
                if state is None:  # do not let the defaultdict make state for a rule that needs none
                    state = {}
                rule(p, grad, state, **group)
                if state:
                    self.state[p] = state
        return loss


def _check_reference_path(options: dict[str, Any]) -> None:
    for key in _REFERENCE_PATH_ONLY:
        if options.get(key):
            raise NotImplementedError(
                f"course_lib optimizers implement torch's single-tensor path only; got {key}=True "
                f"(use {key}=None/False here, or torch.optim for the {key} implementation)"
            )


def _check_lr(lr) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_nonnegative(**values: float) -> None:
    labels = {"eps": "epsilon"}
    for name, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {labels.get(name, name)} value: {value}")


def _as_float(x):
    """Hyperparameters given as 1-element tensors are used as Python floats."""
    return x.item() if isinstance(x, Tensor) else x


class SGD(RuleOptimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum; see :func:`sgd_rule`.

    ``ema_momentum=True`` uses :math:`v \\leftarrow \\beta v + (1-\\beta) g` with
    :math:`\\beta` = ``momentum``: the same steps as torch's form with ``lr * (1 - momentum)``.
    """

    rule = staticmethod(sgd_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        ema_momentum: bool = False,
    ) -> None:
        _check_lr(lr)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(
            lr=_as_float(lr), momentum=momentum, dampening=dampening,
            weight_decay=_as_float(weight_decay), nesterov=nesterov, maximize=maximize,
            foreach=foreach, differentiable=differentiable, fused=fused,
            ema_momentum=ema_momentum,
        )  # fmt: skip
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if ema_momentum and dampening != 0:
            raise ValueError("ema_momentum sets the dampening itself (to momentum); leave dampening=0")
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(nesterov=False, maximize=False, foreach=None, differentiable=False, fused=False,
                    ema_momentum=False)  # fmt: skip


class Adagrad(RuleOptimizer):
    """Adagrad; see :func:`adagrad_rule`."""

    rule = staticmethod(adagrad_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_nonnegative(lr_decay=lr_decay, weight_decay=weight_decay,
                           initial_accumulator_value=initial_accumulator_value, eps=eps)  # fmt: skip
        defaults = dict(
            lr=_as_float(lr), lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, foreach=foreach,
            maximize=maximize, differentiable=differentiable, fused=fused,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(foreach=None, maximize=False, differentiable=False, fused=None)


class RMSprop(RuleOptimizer):
    """RMSprop; see :func:`rmsprop_rule`."""

    rule = staticmethod(rmsprop_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonnegative(eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = dict(
            lr=_as_float(lr), momentum=momentum, alpha=alpha, eps=eps, centered=centered,
            weight_decay=weight_decay, capturable=capturable, foreach=foreach,
            maximize=maximize, differentiable=differentiable,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(momentum=0, centered=False, foreach=None, maximize=False, differentiable=False,
                    capturable=False)  # fmt: skip


class Adam(RuleOptimizer):
    """Adam (and, with ``decoupled_weight_decay=True``, AdamW); see :func:`adam_rule`."""

    rule = staticmethod(adam_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonnegative(eps=eps)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        _check_nonnegative(weight_decay=weight_decay)
        if not (all(isinstance(b, float) for b in betas) or all(isinstance(b, Tensor) for b in betas)):
            raise ValueError("betas must be either both floats or both Tensors")
        for i, beta in enumerate(betas):
            if isinstance(beta, Tensor) and beta.numel() != 1:
                raise ValueError(f"Tensor betas[{i}] must be 1-element")
        defaults = dict(
            lr=_as_float(lr), betas=tuple(_as_float(b) for b in betas), eps=eps,
            weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable, fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(amsgrad=False, maximize=False, foreach=None, capturable=False,
                    differentiable=False, decoupled_weight_decay=False, fused=None)  # fmt: skip


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay :math:`\\theta \\leftarrow \\theta - \\eta\\lambda\\theta`."""

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
            capturable=capturable, differentiable=differentiable, fused=fused,
            decoupled_weight_decay=True,
        )  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def ema_equivalent_lr(lr: float, beta: float) -> float:
    r"""Learning rate that makes torch's momentum form take the EMA form's steps: :math:`\eta(1-\beta)`."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    return lr * (1 - beta)



def max_difference(
    optimizer_a: type[torch.optim.Optimizer],
    optimizer_b: type[torch.optim.Optimizer],
    steps: int = 100,
    shapes: tuple[tuple[int, ...], ...] = ((10, 5), (5,)),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **kwargs: Any,
) -> float:
    """Largest absolute difference between the parameters two optimizer classes reach.

    Both get the same initial parameters (standard normal) and the same ``steps`` pre-generated
    gradients, and the same ``kwargs``; e.g. ``max_difference(course_lib.optim.Adam,
    torch.optim.Adam, lr=0.01)`` is 0.0 when the two take bit-identical steps.
    """
    gen = torch.Generator().manual_seed(seed)
    start = [torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes]
    grads = [[torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes] for _ in range(steps)]
    finals = []
    for cls in (optimizer_a, optimizer_b):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = cls(params, **kwargs)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
        finals.append(params)
    return max((a - b).abs().max().item() for a, b in zip(*finals))
