r"""From-scratch optimizers that are drop-in replacements for ``torch.optim``.

One thin :class:`torch.optim.Optimizer` subclass, :class:`RuleOptimizer`, runs an update rule
(:mod:`course_lib.optim.rules`) over every parameter that has a gradient, handing it the
parameter group's entries that the rule names. The five public classes have torch's class names,
constructor signatures, defaults, ``ValueError`` messages, parameter-group keys and state keys,
so state dicts load across in both directions and ``torch.optim.lr_scheduler`` drives them.
They perform the same floating-point operations in the same order as torch's single-tensor
(default CPU) implementation, so results agree to the last bit
(:func:`course_lib.optim.parity.max_difference` measures it).

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

import functools
import inspect
from typing import Any, Callable

import torch
from torch import Tensor

from .rules import adagrad_rule, adam_rule, rmsprop_rule, sgd_rule

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RuleOptimizer", "ema_equivalent_lr"]

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
                rule(p, grad, state, **{k: group[k] for k in _hyperparameters(rule) if k in group})
                if state:
                    self.state[p] = state
        return loss


@functools.lru_cache(maxsize=None)
def _hyperparameters(rule: Callable[..., None]) -> tuple[str, ...]:
    """The keyword-only parameters of an update rule: the group entries it is handed."""
    return tuple(name for name, p in inspect.signature(rule).parameters.items() if p.kind is p.KEYWORD_ONLY)


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
        if ema_momentum and not momentum < 1.0:
            raise ValueError(f"ema_momentum=True needs 0 <= momentum < 1, got momentum={momentum}: the average "
                             f"v <- momentum*v + (1-momentum)*g would never move from its first value")
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
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), got {betas!r}")
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
