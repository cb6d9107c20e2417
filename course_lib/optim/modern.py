r"""The modern optimizers as drop-in ``torch.optim`` classes: Lion, Adafactor, Muon (alone and
with AdamW for the rest of a model), schedule-free AdamW and SGD, NAdam and RAdam.

Each class is the thin :class:`~course_lib.optim.optimizers.RuleOptimizer` shell around a rule of
:mod:`course_lib.optim.modern_rules`, with its reference's signature, defaults, ``ValueError``
messages, parameter-group keys and state keys, so state dicts load across in both directions
and ``torch.optim.lr_scheduler`` drives them:

=====================  ===================================  =====================================
class                  reference                            agreement (CPU, tests/test_modern_optim.py)
=====================  ===================================  =====================================
:class:`Muon`          ``torch.optim.Muon``                 bit-identical (float32, float64)
:class:`Adafactor`     ``torch.optim.Adafactor``            bit-identical
:class:`NAdam`         ``torch.optim.NAdam``                bit-identical
:class:`RAdam`         ``torch.optim.RAdam``                bit-identical
:class:`Lion`          ``lion_pytorch.Lion`` 0.2.5          within 1e-12 (float64): the EWMA is a
                                                            ``lerp``, lion-pytorch's ``mul_/add_``
:class:`ScheduleFreeAdamW`  ``schedulefree.AdamWScheduleFree`` 1.4.1  bit-identical
:class:`ScheduleFreeSGD`    ``schedulefree.SGDScheduleFree`` 1.4.1    bit-identical
=====================  ===================================  =====================================

Differences from the references, on purpose:

- torch's single-tensor path only (``foreach=True`` is refused, as in
  :mod:`~course_lib.optim.optimizers`); the schedule-free classes default to ``foreach=None``
  where ``schedulefree`` defaults to ``True`` (same results on CPU);
- the schedule-free classes start in train mode, so ``step()`` works in a training loop that
  never calls ``optimizer.train()``; ``schedulefree``'s raise until ``train()`` is called. Call
  ``eval()`` before evaluating or saving (the parameters then hold the average :math:`x`) and
  ``train()`` before the next step, as with the reference. Batch-norm statistics collected at
  :math:`y` do not belong to :math:`x`: recompute them after ``eval()``;
- :func:`~course_lib.optim.modern_rules.newton_schulz` works on a copy; torch's normalises a
  bfloat16 input in place, so for bfloat16 parameters with ``nesterov=False`` torch's Muon
  also rescales its momentum buffer (a bug this implementation does not copy);
- Adafactor with ``eps=(None, ...)`` takes the machine epsilon of each parameter's dtype; torch
  takes that of the first parameter of the group for the whole group (equal unless one group
  mixes dtypes).

:class:`MuonWithAdamW` is Muon the way it is meant to be used: one optimizer object, Muon for the
hidden weight matrices (conv filters flattened to matrices), AdamW for embeddings, biases,
norms and the output layer, split by :func:`muon_param_groups`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from .modern_rules import (MUON_EPS, MUON_NS_COEFFICIENTS, MUON_NS_STEPS, adafactor_rule, lion_rule, muon_rule,
                           nadam_rule, radam_rule, schedule_free_adamw_rule, schedule_free_coefficients,
                           schedule_free_sgd_rule)  # fmt: skip
from .optimizers import RuleOptimizer, _as_float, _check_lr, _check_reference_path, _hyperparameters
from .rules import adam_rule

__all__ = ["Lion", "Adafactor", "Muon", "MuonWithAdamW", "muon_param_groups", "muon_split", "NAdam", "RAdam",
           "ScheduleFreeAdamW", "ScheduleFreeSGD", "state_bytes", "state_bytes_per_parameter"]  # fmt: skip


class _ModernOptimizer(RuleOptimizer):
    """The shell's step with one difference: a group without ``maximize`` (Muon's, schedule-free's)
    is not maximized, and a subclass may pick the rule and add keywords per group."""

    def _rule(self, group: dict[str, Any]) -> Callable[..., None]:
        return type(self).rule

    def _rule_kwargs(self, group: dict[str, Any], rule: Callable[..., None]) -> dict[str, Any]:
        return {k: group[k] for k in _hyperparameters(rule) if k in group}

    def _apply(self, p: Tensor, grad: Tensor, rule: Callable[..., None], kwargs: dict[str, Any]) -> None:
        state = self.state.get(p)
        if state is None:  # do not let the defaultdict make state for a parameter that gets none
            state = {}
        rule(p, grad, state, **kwargs)
        if state:
            self.state[p] = state

    def _params_with_grad(self, group: dict[str, Any]) -> Iterable[tuple[Tensor, Tensor]]:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse or p.is_complex():
                raise RuntimeError(f"{type(self).__name__} from course_lib supports dense real tensors only")
            yield p, (-p.grad if group.get("maximize", False) else p.grad)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Apply the update rule once to every parameter that has a gradient; return ``closure()``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._check_group(group)
            rule = self._rule(group)
            kwargs = self._rule_kwargs(group, rule)
            for p, grad in self._params_with_grad(group):
                self._apply(p, grad, rule, kwargs)
        return loss

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_reference_path(group)


def _check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


# ---- Lion ---------------------------------------------------------------------------------


class Lion(_ModernOptimizer):
    """Lion (Chen et al. 2023), their Algorithm 2 with decoupled weight decay; see :func:`lion_rule`.

    The same steps as ``lion_pytorch.Lion`` (with its default ``decoupled_weight_decay=False``:
    the decay is :math:`\\eta\\lambda\\theta`, as in AdamW). Typical settings: a learning rate
    3-10x smaller than AdamW's and a weight decay 3-10x larger.
    """

    rule = staticmethod(lion_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_betas(betas)
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=_as_float(lr), betas=tuple(betas), weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach)  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(maximize=False, foreach=None)


# ---- Adafactor ----------------------------------------------------------------------------


class Adafactor(_ModernOptimizer):
    """Adafactor, equal to ``torch.optim.Adafactor``; see :func:`adafactor_rule`."""

    rule = staticmethod(adafactor_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=_as_float(lr), beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize)  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(foreach=None, maximize=False)


# ---- Muon ---------------------------------------------------------------------------------


def _check_muon(lr, momentum, weight_decay, adjust_lr_fn, ns_dtype=torch.bfloat16) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if not 0.0 <= momentum:
        raise ValueError(f"momentum should be >= 0 but is: {momentum}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
    if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
    if not isinstance(ns_dtype, torch.dtype) or not ns_dtype.is_floating_point:
        raise ValueError(f"ns_dtype must be a floating-point torch.dtype, got {ns_dtype!r}")


class Muon(_ModernOptimizer):
    """Muon, equal to ``torch.optim.Muon``: for 2-D parameters only; see :func:`muon_rule`.

    One keyword torch's lacks: ``ns_dtype``, the dtype of the Newton–Schulz iteration (torch's
    bfloat16 by default; ``torch.float32`` is several times faster on a CPU without bfloat16
    arithmetic, e.g. 0.5 ms instead of 18 ms for a 256 x 64 matrix on an AVX2 laptop core).

    Use it for the hidden weight matrices of a network and AdamW for the rest, e.g. with
    :class:`MuonWithAdamW` (one object) or ``Muon(groups[0]["params"])`` and
    ``AdamW(groups[1]["params"])`` with ``groups = muon_param_groups(model)`` (a pair; conv
    filters then need :class:`MuonWithAdamW`, which flattens them).
    """

    rule = staticmethod(muon_rule)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
        eps: float = MUON_EPS,
        ns_steps: int = MUON_NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        _check_muon(lr, momentum, weight_decay, adjust_lr_fn, ns_dtype)
        defaults = dict(lr=_as_float(lr), weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                        ns_dtype=ns_dtype)  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}")

    def _group_defaults(self) -> dict[str, Any]:
        return dict(ns_dtype=torch.bfloat16)


class MuonWithAdamW(_ModernOptimizer):
    r"""Muon for the hidden weight matrices, AdamW for everything else, as one optimizer.

    ``params`` is a model (split by :func:`muon_param_groups`), the groups that function returns
    (each with ``"use_muon"`` True or False, and any per-group setting), or a plain list of
    tensors, which is split by dimension only: matrices and conv filters to Muon, the rest to
    AdamW (a plain list cannot tell an embedding or the output layer from a hidden matrix:
    pass the model for that).

    Muon's groups run :func:`muon_rule` on each parameter viewed as a matrix (a conv filter
    :math:`C_{out}\times C_{in}\times k\times k` as :math:`C_{out}\times C_{in}k^2`; its
    momentum buffer keeps that matrix shape); AdamW's run :func:`~course_lib.optim.rules.adam_rule`
    with decoupled weight decay, ``betas`` and ``adamw_eps``. Both use the group's ``lr`` and
    ``weight_decay``: with the default ``adjust_lr_fn="match_rms_adamw"`` Muon's steps have the
    RMS of AdamW's, so one learning rate and one weight decay serve both (Liu et al. 2025,
    "Muon is scalable for LLM training"); give a group its own ``lr`` to set them apart.
    A study or :class:`~course_lib.engine.compare.Variant` that finds :meth:`param_groups_for`
    on the class hands it the model's split.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
        eps: float = MUON_EPS,
        ns_steps: int = MUON_NS_STEPS,
        adjust_lr_fn: str | None = "match_rms_adamw",
        *,
        betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        maximize: bool = False,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        _check_muon(lr, momentum, weight_decay, adjust_lr_fn, ns_dtype)
        _check_betas(betas)
        if not 0.0 <= adamw_eps:
            raise ValueError(f"Invalid epsilon value: {adamw_eps}")
        if isinstance(params, nn.Module):
            params = muon_param_groups(params)
        else:
            params = list(params)
            if params and not isinstance(params[0], dict):
                params = [{"params": [p for p in params if p.ndim >= 2], "use_muon": True},
                          {"params": [p for p in params if p.ndim < 2], "use_muon": False}]  # fmt: skip
                params = [g for g in params if g["params"]]
        defaults = dict(lr=_as_float(lr), weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                        betas=tuple(betas), adamw_eps=adamw_eps, maximize=maximize, use_muon=True,
                        ns_dtype=ns_dtype)  # fmt: skip
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["use_muon"]:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"a Muon group (use_muon=True) takes matrices and conv filters only; found a "
                                     f"parameter with size {tuple(p.size())}: put it in a group with use_muon=False")  # fmt: skip

    @staticmethod
    def param_groups_for(model: nn.Module) -> list[dict[str, Any]]:
        """The parameter groups this optimizer wants for ``model``: :func:`muon_param_groups`."""
        return muon_param_groups(model)

    def _rule(self, group: dict[str, Any]) -> Callable[..., None]:
        return muon_rule if group["use_muon"] else adam_rule

    def _rule_kwargs(self, group: dict[str, Any], rule: Callable[..., None]) -> dict[str, Any]:
        if rule is muon_rule:
            return super()._rule_kwargs(group, rule)
        return dict(lr=group["lr"], betas=group["betas"], eps=group["adamw_eps"], weight_decay=group["weight_decay"],
                    amsgrad=False, decoupled_weight_decay=True)  # fmt: skip

    def _apply(self, p: Tensor, grad: Tensor, rule: Callable[..., None], kwargs: dict[str, Any]) -> None:
        if rule is muon_rule and p.ndim > 2:  # a conv filter, as a C_out x (C_in k k) matrix
            state = self.state.get(p) or {}
            rule(p.view(p.size(0), -1), grad.reshape(grad.size(0), -1), state, **kwargs)
            if state:
                self.state[p] = state
        else:
            super()._apply(p, grad, rule, kwargs)


def _classify(model: nn.Module) -> list[tuple[str, nn.Parameter, bool]]:
    """(name, parameter, goes to Muon) for every trainable parameter of ``model``, in order."""
    embedding_params = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding))
              or (not list(m.children()) and any(p.ndim >= 2 for p in m.parameters(recurse=False)))]  # fmt: skip
    output_params = {id(p) for p in layers[-1].parameters()} if layers else set()
    out = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        to_muon = p.ndim >= 2 and id(p) not in embedding_params and id(p) not in output_params
        out.append((name, p, to_muon))
    return out


def muon_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    r"""Split a model's trainable parameters the way Muon is meant to be used.

    Returns ``[{"params": [...], "use_muon": True}, {"params": [...], "use_muon": False}]`` (a
    group left empty is left out):

    - **Muon**: the hidden weight matrices: every weight with two or more dimensions (linear
      layers, attention projections, conv filters, which Muon sees as :math:`C_{out} \times
      C_{in}k^2` matrices);
    - **AdamW**: embeddings (``nn.Embedding``), biases and norm gains (anything with fewer than
      two dimensions) and the output layer (the last ``Linear``/``Conv``/``Embedding`` module
      in the model's order; with tied weights it is the embedding).

    The input layer of a CNN (its first conv) is a hidden matrix here, as in Keller Jordan's
    CIFAR-10 runs. Parameters with ``requires_grad=False`` (a frozen whitening stem) are left
    out. Feed the groups to :class:`MuonWithAdamW`, or the two lists to ``Muon`` (2-D only) and
    ``AdamW``. :func:`muon_split` names who goes where.
    """
    classified = _classify(model)
    groups = [{"params": [p for _, p, m in classified if m], "use_muon": True},
              {"params": [p for _, p, m in classified if not m], "use_muon": False}]  # fmt: skip
    return [g for g in groups if g["params"]]


def muon_split(model: nn.Module) -> dict[str, list[str]]:
    """The parameter names :func:`muon_param_groups` gives to Muon and to AdamW:
    ``{"muon": [...], "adamw": [...]}``."""
    classified = _classify(model)
    return {"muon": [n for n, _, m in classified if m], "adamw": [n for n, _, m in classified if not m]}


# ---- schedule-free ------------------------------------------------------------------------


class _ScheduleFree(_ModernOptimizer):
    """The shared part: train/eval switch and the per-group averaging weights."""

    def _beta(self, group: dict[str, Any]) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def eval(self) -> None:
        r"""Put :math:`x` (the average, the point to evaluate and save) into the parameters:
        :math:`x = (y - (1-\beta) z)/\beta`, computed as ``y.lerp_(z, 1 - 1/beta)``."""
        for group in self.param_groups:
            if group["train_mode"]:
                beta = self._beta(group)
                for p in group["params"]:
                    state = self.state.get(p, {})
                    if "z" in state:
                        p.lerp_(end=state["z"].to(p.device), weight=1 - 1 / beta)
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        r"""Put :math:`y = (1-\beta) z + \beta x` (where gradients are taken) back into the parameters."""
        for group in self.param_groups:
            if not group["train_mode"]:
                beta = self._beta(group)
                for p in group["params"]:
                    state = self.state.get(p, {})
                    if "z" in state:
                        p.lerp_(end=state["z"].to(p.device), weight=1 - beta)
                group["train_mode"] = True

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """One schedule-free step for every parameter with a gradient (train mode only)."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError("Optimizer was not in train mode when step is called. Please insert .train() and "
                               ".eval() calls on the optimizer. See documentation for details.")  # fmt: skip
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rule = type(self).rule
        for group in self.param_groups:
            self._check_group(group)
            lr, ckp1 = schedule_free_coefficients(group)
            kwargs = {**self._rule_kwargs(group, rule), "lr": lr, "ckp1": ckp1}
            for p, grad in self._params_with_grad(group):
                self._apply(p, grad, rule, kwargs)
            group["k"] = group["k"] + 1
        return loss

    def _group_defaults(self) -> dict[str, Any]:
        return dict(foreach=None, train_mode=True)


class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-free AdamW (Defazio et al. 2024), equal to ``schedulefree.AdamWScheduleFree``;
    see :func:`schedule_free_adamw_rule`. No learning-rate schedule: ``warmup_steps`` is built in.
    Starts in train mode; call ``eval()`` before evaluating and ``train()`` before training."""

    rule = staticmethod(schedule_free_adamw_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = None,
    ) -> None:
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        _check_betas(betas)
        if betas[0] == 0.0:
            raise ValueError("Invalid beta parameter at index 0: 0.0 (eval() divides by beta1)")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_warmup(warmup_steps)
        defaults = dict(lr=_as_float(lr), betas=tuple(betas), eps=eps, r=r, k=0, warmup_steps=warmup_steps,
                        train_mode=True, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0,
                        weight_lr_power=weight_lr_power, weight_decay=weight_decay, foreach=foreach)  # fmt: skip
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["betas"][0]


class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-free SGD (Defazio et al. 2024), equal to ``schedulefree.SGDScheduleFree``;
    see :func:`schedule_free_sgd_rule`. Starts in train mode; call ``eval()`` before evaluating
    and ``train()`` before training."""

    rule = staticmethod(schedule_free_sgd_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = None,
    ) -> None:
        if lr < 0.0:
            raise ValueError("Invalid learning rate: {}".format(lr))
        if weight_decay < 0.0:
            raise ValueError("Invalid weight_decay value: {}".format(weight_decay))
        if momentum <= 0 or momentum >= 1:
            raise ValueError("Momentum must be between 0 and 1 exclusive: {}".format(momentum))
        _check_warmup(warmup_steps)
        defaults = dict(lr=_as_float(lr), momentum=momentum, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay, foreach=foreach)  # fmt: skip
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["momentum"]


def _check_warmup(warmup_steps) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"Invalid warmup_steps value: {warmup_steps} (a whole number >= 0)")


# ---- NAdam and RAdam ----------------------------------------------------------------------


def _check_adam_like(lr, betas, eps, weight_decay) -> None:
    _check_lr(lr)
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    _check_betas(betas)
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class NAdam(_ModernOptimizer):
    """NAdam, equal to ``torch.optim.NAdam``; see :func:`nadam_rule`."""

    rule = staticmethod(nadam_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_adam_like(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=_as_float(lr), betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable)  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(maximize=False, foreach=None, capturable=False, differentiable=False,
                    decoupled_weight_decay=False)  # fmt: skip


class RAdam(_ModernOptimizer):
    """RAdam, equal to ``torch.optim.RAdam``; see :func:`radam_rule`."""

    rule = staticmethod(radam_rule)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_adam_like(lr, betas, eps, weight_decay)
        defaults = dict(lr=_as_float(lr), betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)  # fmt: skip
        super().__init__(params, defaults)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(foreach=None, maximize=False, differentiable=False, decoupled_weight_decay=False,
                    capturable=False)  # fmt: skip


# ---- memory -------------------------------------------------------------------------------


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state``: every tensor of every parameter's state (step counters
    included), each counted once. Measure it after a step: state is made on the first one."""
    seen: set[int] = set()
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, Tensor) and id(value) not in seen:
                seen.add(id(value))
                total += value.numel() * value.element_size()
    return total


def state_bytes_per_parameter(optimizer: torch.optim.Optimizer) -> float:
    """:func:`state_bytes` divided by the number of parameters (scalars) the optimizer updates:
    e.g. 8.0 for Adam in float32 (two averages of 4 bytes), 0.0 for plain SGD."""
    n = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    return state_bytes(optimizer) / n if n else 0.0
