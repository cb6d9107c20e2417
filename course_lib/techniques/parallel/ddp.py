r"""DDP gradient checks: the averaged gradient is the big batch's gradient, and when it is not.

:math:`W` processes ("ranks") hold identical copies of the model; each takes its own shard of
the batch. With a mean-reduced loss, rank :math:`r` (shard of :math:`n_r` examples) computes
:math:`g_r`, and :class:`~torch.nn.parallel.DistributedDataParallel` all-reduces the gradients
during ``backward`` and divides by :math:`W`: every rank ends with :math:`\bar g = \frac1W \sum_r g_r`.
:func:`ddp_gradient_checks` runs real gloo processes (:func:`~.launch.spawn`) and compares that
with one process on the combined batch; :func:`ddp_check_worker` is what every rank runs.
:func:`weighted_gradient_average`, :func:`flat_grad` and :func:`flat_params` are the small
pieces of maths the checks (and the pipeline) use.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from ... import optim
from ...engine import models
from .launch import Workers, run_on

__all__ = ["weighted_gradient_average", "flat_grad", "flat_params", "DDPCheck", "ddp_check_worker",
           "ddp_gradient_checks"]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Small pieces of maths
# --------------------------------------------------------------------------------------------


def weighted_gradient_average(grads: Sequence[Tensor], sizes: Sequence[int]) -> Tensor:
    r"""The gradient of the combined batch from per-shard mean gradients: :math:`\sum_r n_r g_r / \sum_r n_r`.

    ``grads[r]`` is the gradient of the *mean* loss over shard ``r`` (``sizes[r]`` examples).
    With equal sizes this is the plain mean :math:`\frac1W \sum_r g_r` that DDP computes.
    """
    if len(grads) != len(sizes) or not grads:
        raise ValueError(f"need one size per gradient, got {len(grads)} gradients and {len(sizes)} sizes")
    if any(n < 0 for n in sizes) or sum(sizes) == 0:
        raise ValueError(f"sizes must be non-negative with a positive sum, got {list(sizes)}")
    total = sum(sizes)
    return sum(g * (n / total) for g, n in zip(grads, sizes))


def flat_grad(modules: nn.Module | Sequence[nn.Module]) -> Tensor:
    """All parameter gradients of ``modules`` concatenated into one vector (zeros where None)."""
    params = _params(modules)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).cpu()
                      for p in params])  # fmt: skip


def flat_params(modules: nn.Module | Sequence[nn.Module]) -> Tensor:
    """All parameters of ``modules`` concatenated into one vector (a copy, on the CPU)."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in _params(modules)])


def _params(modules) -> list[Tensor]:
    if isinstance(modules, nn.Module):
        modules = [modules]
    return [p for m in modules for p in m.parameters()]


# --------------------------------------------------------------------------------------------
# DDP: the gradient is the big batch's gradient
# --------------------------------------------------------------------------------------------

_CHECK_IMAGE = (3, 8, 8)  # tiny images: the check is about arithmetic, not about learning


def _check_model(name: str) -> nn.Module:
    if name == "mlp":
        return models.mlp(hidden=16, in_features=math.prod(_CHECK_IMAGE))
    if name == "small_cnn":  # has batch norm: statistics of the local shard only
        return models.small_cnn(widths=(4, 8, 8))
    raise ValueError(f"model must be 'mlp' or 'small_cnn', got {name!r}")


def _check_batch(step: int, size: int, seed: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The combined batch of ``step``: the same on every rank and in the parent."""
    g = torch.Generator().manual_seed(seed * 1000 + step)
    x = torch.randn(size, *_CHECK_IMAGE, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (size,), generator=g)
    return x, y


def _shard_bounds(sizes: Sequence[int], rank: int) -> tuple[int, int]:
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


@dataclass
class DDPCheck:
    """What :func:`ddp_gradient_checks` measured for one case (gradients and parameters as flat CPU vectors).

    - ``ddp_grad``: the gradient on rank 0 after DDP's all-reduce (first step, before any update);
    - ``full_grad``: one process, the combined batch, the same initial weights;
    - ``local_grads[r]``: rank ``r``'s gradient of the mean loss over its own shard, before averaging;
    - ``rank_params[r]``: rank ``r``'s parameters after ``steps`` optimizer steps;
    - ``single_params``: one process taking the same steps on the combined batches;
    - ``rank_checksums[r][t]``: sum of rank ``r``'s parameters after step ``t + 1``.
    """

    model: str
    world_size: int
    shard_sizes: list[int]
    reweight: bool
    steps: int
    dtype: str
    ddp_grad: Tensor
    full_grad: Tensor
    local_grads: list[Tensor]
    rank_params: list[Tensor]
    single_params: Tensor
    rank_checksums: list[list[float]]

    @property
    def grad_max_abs_diff(self) -> float:
        """max |DDP gradient - combined-batch gradient| over all parameters."""
        return (self.ddp_grad - self.full_grad).abs().max().item()

    @property
    def grad_rel_diff(self) -> float:
        """``grad_max_abs_diff`` relative to the largest gradient entry."""
        return self.grad_max_abs_diff / max(self.full_grad.abs().max().item(), 1e-300)

    @property
    def rank_param_spread(self) -> float:
        """max |parameters of rank r - parameters of rank 0| over ranks and parameters (0 = in sync)."""
        return max((p - self.rank_params[0]).abs().max().item() for p in self.rank_params)

    @property
    def train_max_diff(self) -> float:
        """max |rank 0's parameters after the steps - one process's on the combined batches|."""
        return (self.rank_params[0] - self.single_params).abs().max().item()


def ddp_check_worker(rank: int, world_size: int, cases: list[dict]) -> list[dict]:
    """What every rank runs for :func:`ddp_gradient_checks`: DDP training steps on its own shard.

    For each case (a dict made by ``_check_case``) the rank seeds torch, builds the model (the
    same initial weights on every rank), wraps it in ``DistributedDataParallel`` with
    ``optim.SGD`` (momentum 0.9), and takes ``steps`` steps; each step draws the combined batch
    (the same on every rank) and keeps this rank's slice of ``shard_sizes[rank]`` examples.
    ``reweight`` scales the loss by :math:`W n_r / N`. Returns, per case: this rank's own
    gradient of the first step before any averaging (``local_grad``, from a private copy of the
    model, no communication), the gradient after DDP's all-reduce (``ddp_grad``, rank 0 only),
    the parameters after the last step (``params``) and their sum after every step
    (``checksums``). Runs inside a process group started by :func:`~.launch.spawn`.
    """
    out = []
    for case in cases:
        dtype = getattr(torch, case["dtype"])
        torch.manual_seed(case["seed"])
        model = _check_model(case["model"]).to(dtype)
        ddp = DDP(model)  # broadcasts rank 0's weights; the seed made them equal anyway
        sizes, n = case["shard_sizes"], sum(case["shard_sizes"])
        lo, hi = _shard_bounds(sizes, rank)
        # the weight that turns the local mean into this shard's share of the global mean,
        # *after* DDP divides the sum by the world size
        scale = world_size * sizes[rank] / n if case["reweight"] else 1.0
        opt = optim.SGD(ddp.parameters(), lr=case["lr"], momentum=0.9)
        checksums, local_grad, ddp_grad = [], None, None
        for step in range(case["steps"]):
            x, y = _check_batch(step, n, case["seed"], dtype)
            x, y = x[lo:hi], y[lo:hi]
            if step == 0:  # this rank's own gradient: a private copy, no DDP, no communication
                own = copy.deepcopy(model)
                loss = F.cross_entropy(own(x), y)
                local_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(own.parameters()))])
            loss = F.cross_entropy(ddp(x), y) * scale
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces the gradients here
            if step == 0:
                ddp_grad = flat_grad(model)
            opt.step()
            checksums.append(sum(p.detach().sum().item() for p in model.parameters()))
        out.append(dict(local_grad=local_grad.detach(), ddp_grad=ddp_grad if rank == 0 else None,
                        params=flat_params(model), checksums=checksums))  # fmt: skip
    return out


def _single_process(case: dict) -> tuple[Tensor, Tensor]:
    """Gradient on the combined first batch, and parameters after the same steps, in one process."""
    dtype = getattr(torch, case["dtype"])
    torch.manual_seed(case["seed"])
    model = _check_model(case["model"]).to(dtype)
    opt = optim.SGD(model.parameters(), lr=case["lr"], momentum=0.9)
    n = sum(case["shard_sizes"])
    grad = None
    for step in range(case["steps"]):
        x, y = _check_batch(step, n, case["seed"], dtype)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if step == 0:
            grad = flat_grad(model)
        opt.step()
    return grad, flat_params(model)


def _check_case(world_size: int, batch_size: int = 32, shard_sizes: Sequence[int] | None = None,
                model: str = "mlp", reweight: bool = False, steps: int = 3, lr: float = 0.05,
                dtype: torch.dtype = torch.float64, seed: int = 0) -> dict:  # fmt: skip
    if shard_sizes is None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
        shard_sizes = [batch_size // world_size] * world_size
    shard_sizes = [int(s) for s in shard_sizes]
    if len(shard_sizes) != world_size or min(shard_sizes) < 1:
        raise ValueError(f"need {world_size} positive shard sizes, got {shard_sizes}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    _check_model(model)  # fail early, in the parent, on a bad name
    return dict(model=model, shard_sizes=shard_sizes, reweight=bool(reweight), steps=int(steps),
                lr=float(lr), dtype=str(dtype).replace("torch.", ""), seed=int(seed))  # fmt: skip


def ddp_gradient_checks(cases: Mapping[str, Mapping[str, Any]], world_size: int = 2, *,
                        workers: Workers | None = None, timeout: float = 120.0) -> dict[str, DDPCheck]:  # fmt: skip
    """DDP on ``world_size`` gloo processes against one process on the combined batch, per case.

    ``cases``: label -> keyword arguments, any of ``batch_size`` (32), ``shard_sizes`` (equal
    shards of ``batch_size`` by default), ``model`` (``"mlp"``), ``reweight`` (False), ``steps``
    (3), ``lr`` (0.05), ``dtype`` (``torch.float64``), ``seed`` (0). Every step draws one batch of
    random 3 x 8 x 8 "images" (the same on every rank); rank ``r`` keeps its slice of
    ``shard_sizes[r]`` examples (:func:`ddp_check_worker`). Rank 0 reports the all-reduced
    gradient of the first step; every rank reports its own local gradient and its parameters
    after ``steps`` steps of ``course_lib.optim.SGD`` (momentum 0.9). The parent computes the same
    in one process on the whole batches, so each returned :class:`DDPCheck` can assert that they
    agree (float64 by default: to ~1e-16).

    ``model``: ``"mlp"`` (DDP equals the big batch) or ``"small_cnn"`` (batch norm: each rank
    normalises with its own shard's statistics, so it does not). ``reweight=True`` scales each
    rank's loss by :math:`W n_r / N`, which makes DDP's plain mean the correctly weighted one for
    unequal shards. Starting processes is the slow part (each imports torch), so all cases run
    in one task, on ``workers`` (a :class:`~.launch.Workers` of ``world_size`` ranks) when given.
    """
    specs = {label: _check_case(world_size, **kw) for label, kw in cases.items()}
    per_rank = run_on(workers, ddp_check_worker, world_size, (list(specs.values()),), timeout=timeout)
    out = {}
    for i, (label, spec) in enumerate(specs.items()):
        full_grad, single_params = _single_process(spec)
        out[label] = DDPCheck(
            model=spec["model"], world_size=world_size, shard_sizes=spec["shard_sizes"],
            reweight=spec["reweight"], steps=spec["steps"], dtype=spec["dtype"],
            ddp_grad=per_rank[0][i]["ddp_grad"], full_grad=full_grad,
            local_grads=[r[i]["local_grad"] for r in per_rank],
            rank_params=[r[i]["params"] for r in per_rank], single_params=single_params,
            rank_checksums=[r[i]["checksums"] for r in per_rank],
        )  # fmt: skip
    return out
