r"""Optimizer state and sharding: bytes per parameter, ZeRO's stages, ``ZeroRedundancyOptimizer`` and FSDP2.

**State per parameter.** Besides the parameter :math:`\theta` and its gradient :math:`g`, an
optimizer keeps state: SGD none, momentum, AdaGrad and RMSProp one buffer (:math:`b`, :math:`G`,
:math:`v`), Adam and AdamW two (:math:`m`, :math:`v`). :func:`state_bytes_per_parameter_table`
measures it from the state tensors after one step (float32: 4 bytes per buffer per parameter).
With mixed precision (Micikevicius et al., 2018; the ZeRO paper's accounting, Rajbhandari et al.,
2020) Adam needs :math:`2 + 2 + 12 = 16` bytes per parameter: 16-bit weights and gradients, and
:math:`K = 12` bytes of optimizer state (a float32 master copy of the weights, :math:`m` and :math:`v`).

**ZeRO** splits that memory over the :math:`W` data-parallel ranks (:func:`zero_bytes_per_parameter`):
stage 1 shards the optimizer state (:math:`4 + K/W`), stage 2 the gradients too
(:math:`2 + (2+K)/W`), stage 3 the parameters as well (:math:`(2+2+K)/W`), gathering each layer's
parameters just before it is used. torch's ``ZeroRedundancyOptimizer`` is stage 1: every rank
keeps the state of whole parameters, assigned greedily (largest first, to the rank with the
fewest elements so far), updates those and broadcasts them. FSDP2's ``fully_shard`` is stage 3:
every parameter becomes a ``DTensor`` holding :math:`1/W` of its rows on each rank, and an
optimizer built on it keeps state of that shard only.

:func:`sharding_runs` trains the same network with DDP, with ``ZeroRedundancyOptimizer`` and with
``fully_shard``, all three with ``course_lib.optim.Adam``, on :math:`W` gloo processes, and
measures bytes of parameters, gradients and optimizer state on every rank, and the final weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from ... import optim
from .launch import Workers, run_on
from .pipeline import pipeline_mlp

__all__ = ["COURSE_OPTIMIZERS", "state_bytes_per_parameter_table", "zero_bytes_per_parameter", "local_bytes",
           "ShardingRun", "sharding_worker", "sharding_runs", "METHODS"]  # fmt: skip

COURSE_OPTIMIZERS: dict[str, Callable] = {
    "SGD": lambda p: optim.SGD(p, lr=0.1),
    "SGD + momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    "Adagrad": lambda p: optim.Adagrad(p, lr=0.1),
    "RMSprop": lambda p: optim.RMSprop(p, lr=0.01),
    "Adam": lambda p: optim.Adam(p, lr=1e-3),
    "AdamW": lambda p: optim.AdamW(p, lr=1e-3, weight_decay=0.01),
}

METHODS = ("DDP", "ZeRO-1 (ZeroRedundancyOptimizer)", "FSDP2 (fully_shard)")


def state_bytes_per_parameter_table(model: nn.Module | None = None,
                                    optimizers: Mapping[str, Callable] | None = None) -> dict[str, float]:  # fmt: skip
    """Bytes of optimizer state per parameter for each optimizer, measured from its state tensors after one step.

    ``optimizers``: name -> constructor taking the parameters (default :data:`COURSE_OPTIMIZERS`);
    ``model``: what they optimise (default a small float32 MLP). Counts every tensor of the state
    (:func:`course_lib.optim.modern.state_bytes_per_parameter`), so 0-d step counters add a little
    (a few bytes per parameter *tensor*, not per parameter).
    """
    from ...optim.modern import state_bytes_per_parameter

    out = {}
    for name, make in (optimizers or COURSE_OPTIMIZERS).items():
        torch.manual_seed(0)
        net = model if model is not None else pipeline_mlp(width=64, depth=2)
        saved = {k: v.clone() for k, v in net.state_dict().items()}
        opt = make(net.parameters())
        net(torch.randn(8, net[0].in_features)).square().mean().backward()
        opt.step()
        out[name] = state_bytes_per_parameter(opt)
        net.zero_grad(set_to_none=True)
        net.load_state_dict(saved)
    return out


def zero_bytes_per_parameter(stage: int, world_size: int, k: int = 12, weight_bytes: int = 2,
                             grad_bytes: int = 2) -> float:  # fmt: skip
    r"""Bytes per parameter on each rank under ZeRO ``stage`` (0 = plain data parallelism) with mixed-precision Adam.

    16-bit weights and gradients (``weight_bytes``, ``grad_bytes``) and :math:`K` = ``k`` bytes of
    optimizer state (float32 master weights, :math:`m`, :math:`v`): stage 0 keeps
    :math:`2+2+K = 16`, stage 1 :math:`2+2+K/W`, stage 2 :math:`2+(2+K)/W`, stage 3 :math:`(2+2+K)/W`.
    """
    W = world_size
    if W < 1 or stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0-3 and world_size at least 1, got {stage} and {world_size}")
    sharded = [0, k, k + grad_bytes, k + grad_bytes + weight_bytes][stage]
    return weight_bytes + grad_bytes + k - sharded + sharded / W


def local_bytes(t: Tensor | None) -> int:
    """Bytes this rank holds of ``t``: a ``DTensor``'s local shard, any other tensor whole (0 for None)."""
    if t is None:
        return 0
    if hasattr(t, "to_local"):
        t = t.to_local()
    return t.numel() * t.element_size()


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(local_bytes(v) for state in opt.state.values() for v in state.values() if isinstance(v, Tensor))


@dataclass
class ShardingRun:
    """One method on ``world_size`` ranks: bytes per rank of parameters, gradients, optimizer state; final weights.

    ``partition``: for ZeRO, (parameter name, number of elements, owning rank) in the order
    ZeRO assigned them; empty for the others. ``weights``: rank 0's full final weights, flat.
    ``parameters``: the number of scalars in the model.
    """

    method: str
    world_size: int
    parameters: int
    param_bytes: list[int]
    grad_bytes: list[int]
    state_bytes: list[int]
    partition: list[tuple[str, int, int]]
    weights: Tensor = field(repr=False)
    rank_weights_equal: bool = True


def _batch(step: int, n: int, width: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed * 1000 + step)
    return torch.randn(n, width, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def _train(method: str, rank: int, world_size: int, case: dict) -> dict:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(case["seed"])
    model = pipeline_mlp(width=case["width"], depth=case["depth"]).to(torch.float64)
    names = {id(p): n for n, p in model.named_parameters()}
    partition = []
    if method == METHODS[2]:
        for layer in model:
            if any(True for _ in layer.parameters()):
                fully_shard(layer)
        fully_shard(model)
        net, opt = model, optim.Adam(model.parameters(), lr=case["lr"])
    else:
        net = DDP(model)
        if method == METHODS[1]:
            opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=optim.Adam, lr=case["lr"])
            owner = {id(p): r for r, groups in enumerate(opt._partition_parameters()) for g in groups for p in g["params"]}
            order = sorted(model.parameters(), key=lambda t: t.numel(), reverse=True)
            partition = [(names[id(p)], p.numel(), owner[id(p)]) for p in order]
        else:
            opt = optim.Adam(net.parameters(), lr=case["lr"])
    per_rank = case["batch"] // world_size
    for step in range(case["steps"]):
        x, y = _batch(step, case["batch"], case["width"], case["seed"])
        x, y = x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    local_opt = opt.optim if method == METHODS[1] else opt
    params = list(model.parameters())
    full = torch.cat([(p.full_tensor() if hasattr(p, "full_tensor") else p.detach()).reshape(-1) for p in params])
    gathered = [torch.zeros_like(full) for _ in range(world_size)]
    dist.all_gather(gathered, full.contiguous())
    return dict(param_bytes=sum(local_bytes(p.data) for p in params), grad_bytes=sum(local_bytes(p.grad) for p in params),
                state_bytes=_state_bytes(local_opt), partition=partition, weights=full.detach().clone(),
                ranks_equal=all(torch.equal(g, gathered[0]) for g in gathered),
                parameters=sum(p.numel() for p in pipeline_mlp(width=case["width"], depth=case["depth"]).parameters()))  # fmt: skip


def sharding_worker(rank: int, world_size: int, case: dict) -> list[dict]:
    """What every rank runs for :func:`sharding_runs`: the same training with each of :data:`METHODS`."""
    return [_train(method, rank, world_size, case) for method in METHODS]


def sharding_runs(world_size: int = 2, *, width: int = 64, depth: int = 3, batch: int = 32, steps: int = 3,
                  lr: float = 1e-2, seed: int = 0, workers: Workers | None = None,
                  timeout: float = 120.0) -> dict[str, ShardingRun]:  # fmt: skip
    """DDP, ZeRO stage 1 and FSDP2, each with ``course_lib.optim.Adam``, on ``world_size`` gloo processes.

    Every method trains :func:`~.pipeline.pipeline_mlp` (``width``, ``depth``; float64) from the
    same seed for ``steps`` steps on the same random batches (``batch`` examples per step, split
    evenly over the ranks), so the final weights can be compared exactly. Returns
    method -> :class:`ShardingRun`. ``workers``: a :class:`~.launch.Workers` of ``world_size``
    ranks to run on (default: processes of its own).
    """
    if batch % world_size:
        raise ValueError(f"batch {batch} is not divisible by world_size {world_size}")
    case = dict(width=int(width), depth=int(depth), batch=int(batch), steps=int(steps), lr=float(lr), seed=int(seed))
    per_rank = run_on(workers, sharding_worker, world_size, (case,), timeout=timeout)
    out = {}
    for i, method in enumerate(METHODS):
        ranks = [r[i] for r in per_rank]
        out[method] = ShardingRun(method=method, world_size=world_size, parameters=ranks[0]["parameters"],
                                  param_bytes=[r["param_bytes"] for r in ranks], grad_bytes=[r["grad_bytes"] for r in ranks],
                                  state_bytes=[r["state_bytes"] for r in ranks], partition=ranks[0]["partition"],
                                  weights=ranks[0]["weights"], rank_weights_equal=all(r["ranks_equal"] for r in ranks))  # fmt: skip
    return out
