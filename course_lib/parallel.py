r"""Parallel training: data parallelism on ``torch.distributed``, and pipelined model parallelism.

Data parallelism (DDP)
----------------------
:math:`W` processes ("ranks") hold identical copies of the model; each takes its own shard of
the batch. With a mean-reduced loss, rank :math:`r` (shard of :math:`n_r` examples) computes

.. math:: g_r = \frac{1}{n_r} \sum_{i \in \text{shard } r} \nabla_\theta \ell_i(\theta),

and :class:`~torch.nn.parallel.DistributedDataParallel` all-reduces (sums) the gradients during
``backward`` and divides by :math:`W`, so every rank ends with :math:`\bar g = \frac1W \sum_r g_r`.
With equal shards :math:`n_r = N/W` this is exactly the gradient of the whole batch of
:math:`N`, :math:`\frac1N \sum_i \nabla_\theta \ell_i`; each rank then takes the same optimizer
step, so the copies stay identical. With unequal shards the correct average is weighted,
:math:`\sum_r n_r g_r / \sum_r n_r` (:func:`weighted_gradient_average`); and a layer that
mixes examples (batch norm) sees only its own shard, so DDP differs from one big batch there.

- :func:`spawn`: run a worker function on ``world_size`` local processes (spawned, free port,
  timeouts, clear errors, clean shutdown) with a process group initialised.
- :func:`ddp_gradient_check` / :func:`ddp_gradient_checks`: the DDP-averaged gradient against the
  single-process gradient of the combined batch, and the parameters of every rank after
  several optimizer steps against one process training on the combined batches.
- :func:`ddp_throughput` / :func:`ddp_throughputs`: samples per second for a fixed total batch,
  1 vs several processes (and threads).
- :func:`main`: data-parallel CIFAR-10 training with the course's engine (:func:`course_lib.train.train`
  on each rank's shard, the model wrapped in DDP), run with ``torchrun``::

      torchrun --standalone --nproc_per_node=2 -m course_lib.parallel --epochs 10 --batch-size 512

  :func:`run_torchrun` starts it from Python (a notebook, a test) and returns rank 0's results.

Pipeline (model) parallelism
----------------------------
A network too large for one device is cut into :math:`S` consecutive stages on :math:`S`
devices; stage :math:`s` hands its output activation to stage :math:`s+1` and, in the backward
pass, receives the gradient of that activation back (:func:`handoff`). With one batch only one
stage works at a time. GPipe (Huang et al., 2019) splits the batch into :math:`M`
micro-batches that flow through the stages one after another; with the same time per
micro-batch on every stage, each stage is idle for a fraction

.. math:: \text{bubble} = \frac{S-1}{M+S-1}

of the step (:func:`bubble_fraction`). :func:`gpipe_schedule` simulates that ideal schedule;
:func:`run_pipeline` really runs it, one thread per stage (each with one intra-op thread, as
stand-ins for devices), records every stage's busy intervals and measures the bubble;
:func:`plot_pipeline_timeline` draws the timelines.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from . import config, models, optim, train

__all__ = [
    "WorkerError",
    "free_port",
    "spawn",
    "weighted_gradient_average",
    "flat_grad",
    "flat_params",
    "DDPCheck",
    "ddp_gradient_check",
    "ddp_gradient_checks",
    "Throughput",
    "ddp_throughput",
    "ddp_throughputs",
    "bubble_fraction",
    "Interval",
    "PipelineTimeline",
    "PipelineRun",
    "gpipe_schedule",
    "pipeline_mlp",
    "split_stages",
    "handoff",
    "run_pipeline",
    "measure_pipeline",
    "sequential_seconds",
    "plot_pipeline_timeline",
    "TorchrunResult",
    "torchrun_command",
    "run_torchrun",
    "main",
]


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


def bubble_fraction(stages: int, micro_batches: int) -> float:
    r"""Idle fraction of each stage in a GPipe step: :math:`(S-1)/(M+S-1)`.

    ``stages`` = :math:`S`, ``micro_batches`` = :math:`M`, assuming every stage takes the same
    time per micro-batch (forward and backward). :math:`M=1` gives :math:`(S-1)/S`: naive model
    parallelism, one stage busy at a time.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be at least 1, got {stages} and {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)


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
# Launching local processes
# --------------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process failed (its traceback is in the message), died, or timed out."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_env() -> dict[str, str]:
    """Make gloo talk over the loopback interface (all ranks are on this machine).

    Otherwise gloo picks the interface the host name resolves to, which in some containers
    is not reachable. An explicit ``GLOO_SOCKET_IFNAME`` is left alone.
    """
    if "GLOO_SOCKET_IFNAME" in os.environ or not Path("/sys/class/net/lo").exists():
        return {}
    return {"GLOO_SOCKET_IFNAME": "lo"}


def _process_entry(rank: int, world_size: int, port: int, backend: str, threads: int,
                   timeout: float, worker: Callable, args: tuple, results) -> None:  # fmt: skip
    """Body of each spawned process: set up, join the group, run ``worker``, report, shut down."""
    try:
        torch.set_num_threads(threads)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), **_loopback_env())  # fmt: skip
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))  # fmt: skip
        try:
            out = worker(rank, world_size, *args)
            dist.barrier()  # nobody leaves while another rank still needs it
        finally:
            dist.destroy_process_group()
        # plain pickle copies tensor data into the message; the queue's own pickler would share
        # it through file descriptors, which vanish when this process exits
        results.put((rank, True, pickle.dumps(out)))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        results.put((rank, False, traceback.format_exc()))


def spawn(worker: Callable, world_size: int = 2, args: tuple = (), *, threads: int = 1,
          backend: str = "gloo", timeout: float = 120.0) -> list:  # fmt: skip
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` new processes; return their results.

    Each process is started with the ``spawn`` method (so this works from a notebook; ``worker``
    must be a module-level function, importable by name), limits torch to ``threads`` intra-op
    threads, and joins a process group (``backend``, ``MASTER_ADDR=127.0.0.1``, a free port) before
    calling ``worker``; afterwards the group is destroyed. The return values come back through a
    queue, ordered by rank. If a worker raises, dies, or the whole run takes longer than
    ``timeout`` seconds, every process is stopped and :class:`WorkerError` is raised (with the
    worker's traceback): no hangs, no leftover processes. If another program took the free port
    before rank 0 could listen on it, the launch is retried once on a new port.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if getattr(worker, "__module__", None) == "__main__" and not hasattr(sys.modules["__main__"], "__file__"):
        raise ValueError(f"spawn needs a worker the new processes can import; {worker.__name__} was defined "
                         "interactively (a notebook cell): move it into a module")  # fmt: skip
    try:
        return _spawn_once(worker, world_size, args, threads, backend, timeout)
    except WorkerError as exc:
        if "EADDRINUSE" not in str(exc) and "address already in use" not in str(exc).lower():
            raise
    return _spawn_once(worker, world_size, args, threads, backend, timeout)


_ECHOES = ("connection closed by peer", "connection reset by peer", "broken pipe")


def _failure_message(failed: dict[int, str], world_size: int, name: str) -> str:
    """The traceback of the rank that failed first-hand, then one line for each other failure."""
    def is_echo(tb: str) -> bool:
        return any(e in tb.lower() for e in _ECHOES)

    order = sorted(failed, key=lambda r: (is_echo(failed[r]), r))
    first = order[0]
    lines = [f"rank {first} of {world_size} failed in {name}:\n{failed[first]}"]
    for r in order[1:]:
        last = failed[r].strip().splitlines()[-1]
        lines.append(f"(rank {r} failed too: {last[:300]})")
    return "\n".join(lines)


def _spawn_once(worker: Callable, world_size: int, args: tuple, threads: int, backend: str, timeout: float) -> list:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_process_entry, name=f"course-rank{rank}", daemon=True,
                         args=(rank, world_size, port, backend, threads, timeout, worker, args, results))
             for rank in range(world_size)]  # fmt: skip
    got: dict[int, Any] = {}
    failed: dict[int, str] = {}
    ok = False
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        dead_since: dict[int, float] = {}
        grace = math.inf  # set when the first failure arrives
        while len(got) + len(failed) < world_size:
            try:
                rank, success, payload = results.get(timeout=0.1)
            except queue_module.Empty:
                now = time.monotonic()
                if failed:  # the others are echoing it or stuck: stop waiting after the grace period
                    if now > grace:
                        break
                    continue
                for rank, p in enumerate(procs):
                    if rank not in got and rank not in failed and p.exitcode is not None:
                        # its report may still be in the pipe: give it a moment before giving up
                        if now - dead_since.setdefault(rank, now) > 2.0:
                            raise WorkerError(f"rank {rank} of {world_size} exited with code {p.exitcode} "
                                              "without reporting a result (an error before the worker "
                                              "started is printed on the process's stderr; a script "
                                              "that calls spawn needs `if __name__ == '__main__':`)") from None  # fmt: skip
                if now > deadline:
                    missing = sorted(set(range(world_size)) - set(got) - set(failed))
                    raise WorkerError(f"timed out after {timeout:.0f} s waiting for rank(s) {missing} "
                                      f"of {worker.__name__}") from None  # fmt: skip
                continue
            if success:
                got[rank] = pickle.loads(payload)
            else:
                # a failing rank breaks the collectives of the others: wait a moment for the
                # other reports, so that the original error can be told from its echoes
                failed[rank] = payload
                grace = min(grace, time.monotonic() + 3.0)
        if failed:
            raise WorkerError(_failure_message(failed, world_size, worker.__name__))
        ok = True
    finally:
        for p in procs:
            if p.pid is None:
                continue
            p.join(timeout=10.0 if ok else 0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    return [got[rank] for rank in range(world_size)]


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
    """What :func:`ddp_gradient_check` measured (gradients and parameters as flat CPU vectors).

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


def _check_worker(rank: int, world_size: int, cases: list[dict]) -> list[dict]:
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
                        timeout: float = 120.0) -> dict[str, DDPCheck]:  # fmt: skip
    """Several :func:`ddp_gradient_check` cases (label -> keyword arguments) in one launch.

    Starting processes is the slow part (each imports torch), so the notebook runs all its
    cases in one group of ``world_size`` gloo processes.
    """
    specs = {label: _check_case(world_size, **kw) for label, kw in cases.items()}
    per_rank = spawn(_check_worker, world_size, (list(specs.values()),), timeout=timeout)
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


def ddp_gradient_check(world_size: int = 2, *, batch_size: int = 32, shard_sizes: Sequence[int] | None = None,
                       model: str = "mlp", reweight: bool = False, steps: int = 3, lr: float = 0.05,
                       dtype: torch.dtype = torch.float64, seed: int = 0, timeout: float = 120.0) -> DDPCheck:  # fmt: skip
    """DDP on ``world_size`` gloo processes against one process on the combined batch.

    Every step draws one batch of ``batch_size`` random 3 x 8 x 8 "images" (the same on every
    rank); rank ``r`` keeps its slice of ``shard_sizes[r]`` examples (equal shards by default).
    Rank 0 reports the all-reduced gradient of the first step; every rank reports its own local
    gradient and its parameters after ``steps`` steps of ``course_lib.optim.SGD`` (momentum 0.9).
    The parent computes the same in one process on the whole batches, so the returned
    :class:`DDPCheck` can assert that they agree (float64 by default: to ~1e-16).

    ``model``: ``"mlp"`` (DDP equals the big batch) or ``"small_cnn"`` (batch norm: each rank
    normalises with its own shard's statistics, so it does not). ``reweight=True`` scales each
    rank's loss by :math:`W n_r / N`, which makes DDP's plain mean the correctly weighted one for
    unequal shards.
    """
    case = dict(batch_size=batch_size, shard_sizes=shard_sizes, model=model, reweight=reweight,
                steps=steps, lr=lr, dtype=dtype, seed=seed)  # fmt: skip
    return ddp_gradient_checks({"check": case}, world_size, timeout=timeout)["check"]


# --------------------------------------------------------------------------------------------
# DDP: throughput
# --------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Training speed for a fixed total batch: ``samples_per_second`` over ``steps`` timed steps.

    ``comm_seconds``: time of ``steps`` bare all-reduces of a gradient-sized float32 tensor
    (the communication DDP adds per step; 0 for one process).
    """

    world_size: int
    threads_per_process: int
    total_batch: int
    steps: int
    seconds: float
    comm_seconds: float
    model: str

    @property
    def samples_per_second(self) -> float:
        return self.total_batch * self.steps / self.seconds

    @property
    def step_ms(self) -> float:
        return 1000 * self.seconds / self.steps


def _throughput_model(name: str) -> nn.Module:
    if name == "small_cnn":
        return models.small_cnn()
    if name == "mlp":
        return models.mlp(hidden=512)
    raise ValueError(f"model must be 'small_cnn' or 'mlp', got {name!r}")


def _throughput_worker(rank: int, world_size: int, configs: list[tuple[int, int]], model_name: str,
                       total_batch: int, steps: int, warmup: int, seed: int) -> list[dict]:  # fmt: skip
    """Time each (processes, threads) configuration in turn; ranks beyond its size wait."""
    out = []
    for procs, threads in configs:
        group = dist.new_group(list(range(procs)))  # every rank must take part in making it
        if rank < procs:
            out.append(_time_training(rank, procs, threads, group, model_name, total_batch, steps, warmup, seed))
        dist.barrier()  # the other ranks sleep here (gloo waits without spinning)
    return out


def _time_training(rank: int, procs: int, threads: int, group, model_name: str, total_batch: int,
                   steps: int, warmup: int, seed: int) -> dict:  # fmt: skip
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = _throughput_model(model_name)
    ddp = DDP(model, process_group=group)
    opt = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed + 1 + rank)
    per_rank = total_batch // procs
    x = torch.randn(per_rank, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (per_rank,), generator=g)
    for i in range(warmup + steps):
        if i == warmup:
            dist.barrier(group=group)
            start = time.perf_counter()
        loss = F.cross_entropy(ddp(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # the all-reduce of the gradients happens in here
        opt.step()
    dist.barrier(group=group)
    seconds = time.perf_counter() - start
    comm = 0.0
    if procs > 1:
        buf = torch.zeros(models.count_parameters(model))
        dist.barrier(group=group)
        t0 = time.perf_counter()
        for _ in range(steps):
            dist.all_reduce(buf, group=group)
        comm = time.perf_counter() - t0
    return dict(seconds=seconds, comm=comm)


def ddp_throughputs(configs: Sequence[tuple[int, int]] = ((1, 1), (1, 2), (2, 1)), *, total_batch: int = 256,
                    steps: int = 10, warmup: int = 2, model: str = "small_cnn", seed: int = 0,
                    timeout: float = 300.0) -> list[Throughput]:  # fmt: skip
    """:func:`ddp_throughput` for several ``(processes, threads per process)`` configurations.

    All of them run in one launch of ``max(processes)`` gloo processes (starting processes is
    the slow part): configuration by configuration, the first ``processes`` ranks train in a
    DDP group of their own while the other ranks wait, blocked, in a barrier.
    """
    configs = [(int(p), int(t)) for p, t in configs]
    for procs, threads in configs:
        if procs < 1 or threads < 1 or total_batch % procs:
            raise ValueError(f"bad configuration {(procs, threads)} for a total batch of {total_batch}")
    _throughput_model(model)
    world = max(p for p, _ in configs)
    res = spawn(_throughput_worker, world, (configs, model, total_batch, steps, warmup, seed), timeout=timeout)
    return [Throughput(world_size=procs, threads_per_process=threads, total_batch=total_batch, steps=steps,
                       seconds=r["seconds"], comm_seconds=r["comm"], model=model)
            for (procs, threads), r in zip(configs, res[0])]  # fmt: skip


def ddp_throughput(world_size: int = 2, *, threads_per_process: int = 1, total_batch: int = 256,
                   steps: int = 10, warmup: int = 2, model: str = "small_cnn", seed: int = 0,
                   timeout: float = 300.0) -> Throughput:  # fmt: skip
    """Samples/second of DDP training with ``world_size`` processes and a fixed total batch.

    Each of the ``world_size`` gloo processes runs ``threads_per_process`` intra-op threads and
    trains ``model`` (``"small_cnn"`` or ``"mlp"``, on random 3 x 32 x 32 inputs) on
    ``total_batch // world_size`` examples per step; ``steps`` steps are timed after ``warmup``
    untimed ones (rank 0's wall time between two barriers). One process goes through the same
    code (DDP with a world of one), so the comparison is only about the split.
    ``comm_seconds`` times ``steps`` bare all-reduces of a gradient-sized tensor afterwards.
    """
    return ddp_throughputs([(world_size, threads_per_process)], total_batch=total_batch, steps=steps,
                           warmup=warmup, model=model, seed=seed, timeout=timeout)[0]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Pipeline parallelism: schedules, timelines, bubbles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """One piece of work on a stage: ``kind`` "F" (forward) or "B" (backward) of ``micro_batch``."""

    stage: int
    kind: str
    micro_batch: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class PipelineTimeline:
    r"""Busy intervals of every stage during one pipelined step (simulated or measured).

    The step lasts from the first start to the last end (``makespan``). Stage :math:`s` is busy
    for :math:`b_s` (sum of its intervals); its utilisation is :math:`b_s/\text{makespan}` and its
    bubble (idle fraction) :math:`1 - b_s/\text{makespan}`.
    """

    stages: int
    micro_batches: int
    intervals: list[Interval]
    unit: str = "s"

    @property
    def start(self) -> float:
        return min(i.start for i in self.intervals)

    @property
    def makespan(self) -> float:
        return max(i.end for i in self.intervals) - self.start

    @property
    def busy(self) -> list[float]:
        return [sum(i.duration for i in self.intervals if i.stage == s) for s in range(self.stages)]

    @property
    def utilisation(self) -> list[float]:
        return [b / self.makespan for b in self.busy]

    @property
    def bubble(self) -> list[float]:
        """Idle fraction of each stage."""
        return [1 - u for u in self.utilisation]

    @property
    def mean_bubble(self) -> float:
        """Idle fraction of all stages together: 1 - total busy / (stages x makespan)."""
        return 1 - sum(self.busy) / (self.stages * self.makespan)

    @property
    def theory(self) -> float:
        """:func:`bubble_fraction` for this many stages and micro-batches."""
        return bubble_fraction(self.stages, self.micro_batches)


def gpipe_schedule(stages: int, micro_batches: int, forward_time: float = 1.0,
                   backward_time: float = 2.0) -> PipelineTimeline:  # fmt: skip
    r"""The ideal GPipe timeline: every stage takes ``forward_time`` / ``backward_time`` per micro-batch.

    Forward of micro-batch :math:`m` on stage :math:`s` starts when stage :math:`s-1` has
    finished it and stage :math:`s` has finished micro-batch :math:`m-1`; after the last forward
    (the "flush"), the backward passes run in reverse order, from the last stage to the first.
    Its bubble equals :func:`bubble_fraction` exactly.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be at least 1, got {stages} and {micro_batches}")
    f_end = np.zeros((stages, micro_batches))
    intervals = []
    for s in range(stages):
        for m in range(micro_batches):
            start = max(f_end[s - 1, m] if s else 0.0, f_end[s, m - 1] if m else 0.0)
            f_end[s, m] = start + forward_time
            intervals.append(Interval(s, "F", m, start, f_end[s, m]))
    b_end = np.zeros((stages, micro_batches))
    order = list(reversed(range(micro_batches)))
    for s in reversed(range(stages)):
        prev = f_end[s, -1]
        for m in order:
            start = max(prev, b_end[s + 1, m] if s < stages - 1 else 0.0)
            b_end[s, m] = prev = start + backward_time
            intervals.append(Interval(s, "B", m, start, b_end[s, m]))
    return PipelineTimeline(stages, micro_batches, intervals, unit="units")


def pipeline_mlp(width: int = 1024, depth: int = 8, in_features: int | None = None, classes: int = 10) -> nn.Sequential:
    """A deep MLP to pipeline: ``depth`` Linear+ReLU blocks of ``width`` units, then a linear head.

    The input has ``in_features`` (default ``width``) features, so with an even ``depth`` the
    blocks are equal and :func:`split_stages` cuts the network into two stages of equal cost.
    """
    layers: list[nn.Module] = [nn.Linear(in_features or width, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def split_stages(model: nn.Sequential, stages: int = 2) -> list[nn.Sequential]:
    """Cut a Sequential into ``stages`` consecutive parts with about equal parameter counts.

    The cuts are placed after a layer (parameter-free layers such as ReLU stay with the layer
    before them); the parts share the modules (and weights) of ``model``.
    """
    layers = list(model)
    if not 1 <= stages <= len(layers):
        raise ValueError(f"cannot cut {len(layers)} layers into {stages} stages")
    counts = np.array([sum(p.numel() for p in layer.parameters()) for layer in layers], dtype=float)
    cum = np.cumsum(counts)
    cuts, begin = [], 0
    for k in range(1, stages):
        target = cum[-1] * k / stages
        # candidate cut points: after layer i, before a layer that has parameters
        candidates = [i + 1 for i in range(begin, len(layers) - (stages - k))
                      if i + 1 < len(layers) and counts[i + 1] > 0] or [begin + 1]  # fmt: skip
        cut = min(candidates, key=lambda c: abs(cum[c - 1] - target))
        cuts.append(cut)
        begin = cut
    bounds = [0, *cuts, len(layers)]
    return [nn.Sequential(*layers[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def handoff(activation: Tensor, device: torch.device | str | None = None) -> Tensor:
    """What crosses a stage boundary: the activation's values, moved to the next device.

    The receiving stage gets a new leaf (``requires_grad=True``): its autograd graph starts
    here. After the next stage's backward, ``received.grad`` is the gradient of the loss with
    respect to this activation; the sending stage continues with
    ``activation.backward(received.grad)``.
    """
    out = activation.detach()
    if device is not None:
        out = out.to(device)
    return out.requires_grad_(True)


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class PipelineRun:
    """One measured pipelined step: its ``timeline`` (seconds), the mean ``loss``, the gradient."""

    timeline: PipelineTimeline
    loss: float
    grad: Tensor = field(repr=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage_thread(s: int, stage: nn.Module, device: torch.device, inputs: list[Tensor] | None,
                  targets: list[Tensor] | None, weights: list[float], fwd_in: list, bwd_in: list,
                  record: list, loss_out: list, errors: list, timeout: float) -> None:  # fmt: skip
    S, M = len(fwd_in), len(weights)
    last = s == S - 1
    try:
        received, outputs = [], []
        for m in range(M):  # forward of every micro-batch, in order
            x = inputs[m].to(device) if s == 0 else fwd_in[s].get(timeout=timeout)
            _sync(device)
            t0 = time.perf_counter()
            out = stage(x)
            if last:
                out = F.cross_entropy(out, targets[m].to(device)) * weights[m]
            _sync(device)
            record.append(Interval(s, "F", m, t0, time.perf_counter()))
            received.append(x)
            outputs.append(out)
            if not last:
                fwd_in[s + 1].put(handoff(out, None))  # the receiver moves it to its device
        for m in reversed(range(M)):  # then the backward passes, last micro-batch first
            grad = None if last else bwd_in[s].get(timeout=timeout)
            _sync(device)
            t0 = time.perf_counter()
            outputs[m].backward(grad)
            _sync(device)
            record.append(Interval(s, "B", m, t0, time.perf_counter()))
            if s > 0:
                bwd_in[s - 1].put(received[m].grad)
            if last:
                loss_out.append(outputs[m].item())
            outputs[m] = received[m] = None  # free the activations
    except BaseException as exc:  # reported by run_pipeline
        errors.append((s, exc, traceback.format_exc()))


def run_pipeline(stages: Sequence[nn.Module], x: Tensor, y: Tensor, micro_batches: int, *,
                 devices: Sequence[torch.device | str] | None = None, threads_per_stage: int = 1,
                 timeout: float = 60.0) -> PipelineRun:  # fmt: skip
    r"""One training step (forward and backward, no update) of a GPipe pipeline, measured.

    ``x``, ``y``: the batch, split into ``micro_batches`` near-equal micro-batches. Each stage
    runs in its own thread (torch ops release the GIL, so stages overlap like devices would);
    activations go forward and their gradients backward through queues (:func:`handoff`). The
    loss of micro-batch :math:`m` is weighted by :math:`n_m/N`, so the accumulated gradient is
    the gradient of the mean loss over the whole batch, whatever :math:`M` is.
    ``devices[s]``: where stage ``s`` lives (default: where its parameters are). Torch runs
    ``threads_per_stage`` intra-op threads during the step (a process-wide setting, restored
    afterwards). Gradients accumulate into the stages' ``.grad``: zero them before a step;
    :attr:`PipelineRun.grad` holds a copy.
    """
    S = len(stages)
    if devices is None:
        devices = [next(st.parameters()).device for st in stages]
    devices = [torch.device(d) for d in devices]
    xs, ys = torch.tensor_split(x, micro_batches), torch.tensor_split(y, micro_batches)
    if any(len(c) == 0 for c in xs):
        raise ValueError(f"a batch of {len(x)} cannot be split into {micro_batches} micro-batches")
    weights = [len(c) / len(x) for c in xs]

    class _Inbox(queue_module.Queue):  # moves an incoming activation / gradient to this stage's device
        def __init__(self, device):
            super().__init__()
            self.device = device

        def get(self, timeout=None):
            try:
                item = super().get(timeout=timeout)
            except queue_module.Empty:
                raise TimeoutError("a pipeline stage waited too long for its neighbour") from None
            return item.to(self.device).requires_grad_(item.requires_grad)

    fwd_in = [_Inbox(devices[s]) for s in range(S)]
    bwd_in = [_Inbox(devices[s]) for s in range(S)]
    records: list[list[Interval]] = [[] for _ in range(S)]
    losses: list[float] = []
    errors: list = []
    with _intra_op_threads(threads_per_stage):
        threads = [threading.Thread(target=_stage_thread, daemon=True, name=f"stage{s}",
                                    args=(s, stages[s], devices[s], xs if s == 0 else None,
                                          ys if s == S - 1 else None, weights, fwd_in, bwd_in,
                                          records[s], losses, errors, timeout))
                   for s in range(S)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=timeout * 2)
    if errors:
        s, exc, tb = errors[0]
        raise RuntimeError(f"pipeline stage {s} failed:\n{tb}") from exc
    if any(t.is_alive() for t in threads):
        raise TimeoutError("a pipeline stage did not finish in time")
    intervals = sorted((i for r in records for i in r), key=lambda i: i.start)
    t0 = intervals[0].start
    intervals = [Interval(i.stage, i.kind, i.micro_batch, i.start - t0, i.end - t0) for i in intervals]
    return PipelineRun(PipelineTimeline(S, micro_batches, intervals), loss=sum(losses), grad=flat_grad(stages))


def measure_pipeline(stages: Sequence[nn.Module], x: Tensor, y: Tensor,
                     micro_batch_counts: Sequence[int] = (1, 4, 8), *, repeats: int = 3,
                     **kwargs) -> dict[int, PipelineRun]:  # fmt: skip
    """:func:`run_pipeline` for each number of micro-batches, the fastest of ``repeats`` runs each.

    One untimed warm-up run comes first. Keeping the fastest run filters out interruptions by
    other programs; gradients are zeroed before every run, so each run's ``grad`` is one step's.
    """
    def step(m):
        for st in stages:
            st.zero_grad(set_to_none=True)
        return run_pipeline(stages, x, y, m, **kwargs)

    step(micro_batch_counts[0])
    return {m: min((step(m) for _ in range(repeats)), key=lambda r: r.timeline.makespan)
            for m in micro_batch_counts}  # fmt: skip


def sequential_seconds(stages: Sequence[nn.Module], x: Tensor, y: Tensor, *, repeats: int = 3,
                       threads: int = 1) -> float:  # fmt: skip
    """Fastest wall time of one forward + backward of the whole model in a single thread (no pipeline)."""
    model = nn.Sequential(*stages)
    times = []
    with _intra_op_threads(threads):
        for _ in range(repeats + 1):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            F.cross_entropy(model(x), y).backward()
            times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return min(times[1:])  # the first run is a warm-up


def plot_pipeline_timeline(timelines: PipelineTimeline | Mapping[str, PipelineTimeline], ax=None, *,
                           title: str | None = None, sharex: bool = True):  # fmt: skip
    """Gantt chart of a pipelined step: one row per stage, forward and backward boxes, idle gaps.

    Each box is labelled with its micro-batch; the grey band behind a row is the whole step, so
    every grey gap is idle time (bubble). The title gives the measured mean bubble next to
    :math:`(S-1)/(M+S-1)`. ``timelines`` may be a dict label -> timeline: one panel each, stacked
    (sharing the time axis when ``sharex``). Returns the Axes (a list of them for a dict);
    measured timelines are drawn in milliseconds.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .plots import COLORS, course_style

    with course_style():
        if isinstance(timelines, Mapping):
            n = len(timelines)
            fig, axes = plt.subplots(n, 1, sharex=sharex, figsize=(9.0, 1.0 + 1.5 * n), squeeze=False)
            axes = list(axes[:, 0])
            for a, (label, tl) in enumerate(timelines.items()):
                plot_pipeline_timeline(tl, axes[a], title=label)
                if a:
                    axes[a].get_legend().remove()
            if not sharex:
                return axes
            for a in axes[:-1]:
                a.set_xlabel("")
            return axes
        if ax is None:
            _, ax = plt.subplots(figsize=(9.0, 1.2 + 0.6 * timelines.stages))
        tl = timelines
        scale, unit = (1000.0, "ms") if tl.unit == "s" else (1.0, tl.unit)
        t0, span = tl.start, tl.makespan
        colors = {"F": COLORS[0], "B": COLORS[1]}
        for s in range(tl.stages):
            ax.broken_barh([(0, span * scale)], (s - 0.45, 0.9), facecolors="#e6e6e6", zorder=1)
            for iv in (i for i in tl.intervals if i.stage == s):
                left, width = (iv.start - t0) * scale, iv.duration * scale
                ax.broken_barh([(left, width)], (s - 0.4, 0.8), facecolors=colors[iv.kind],
                               edgecolors="white", linewidth=0.8, zorder=2)  # fmt: skip
                if width > span * scale / 45:
                    ax.text(left + width / 2, s, str(iv.micro_batch + 1), ha="center", va="center",
                            color="white", fontsize=9, zorder=3)  # fmt: skip
        ax.set_yticks(range(tl.stages), [f"stage {s + 1}" for s in range(tl.stages)])
        ax.set_ylim(tl.stages - 0.5, -0.5)
        ax.set_xlabel(f"time ({unit})")
        ax.grid(axis="y", visible=False)
        head = f"{title}: " if title else ""
        ax.set_title(f"{head}S={tl.stages}, M={tl.micro_batches}, bubble {tl.mean_bubble:.0%} "
                     f"(theory {tl.theory:.0%})", fontsize=12)  # fmt: skip
        handles = [Patch(color=COLORS[0], label="forward"), Patch(color=COLORS[1], label="backward"),
                   Patch(color="#e6e6e6", label="idle")]  # fmt: skip
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=10, frameon=False)
        return ax


# --------------------------------------------------------------------------------------------
# Data-parallel CIFAR-10 training under torchrun
# --------------------------------------------------------------------------------------------

_MODELS = {
    "small_cnn": lambda: models.small_cnn(),
    "mlp": lambda: models.mlp(),
    "airbench": lambda: models.airbench_net(),
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="torchrun --standalone --nproc_per_node=N -m course_lib.parallel",
        description="Data-parallel CIFAR-10 training with the course's engine: every rank runs "
        "course_lib.train.train on its own shard with the model wrapped in DDP; rank 0 evaluates.",
    )
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set (default 10; --fast: 1)")
    p.add_argument("--batch-size", type=int, default=512, help="global batch (split evenly over the ranks)")
    p.add_argument("--train-per-class", type=int, default=None,
                   help="class-balanced subset of the training set (default: all; --fast: 50)")
    p.add_argument("--model", choices=sorted(_MODELS), default="small_cnn")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="course_lib.optim.SGD (Nesterov momentum 0.9) or course_lib.optim.Adam")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.02 for SGD, 2e-3 for Adam)")
    p.add_argument("--data", choices=["cifar10", "synthetic"], default="cifar10",
                   help="synthetic: random learnable images, no download (tests)")
    p.add_argument("--backend", choices=["auto", "nccl", "gloo"], default="auto",
                   help="auto: NCCL when every rank has a GPU, else gloo (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per rank "
                   "(default: CPU cores / local ranks)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a collective may wait")
    p.add_argument("--fast", action="store_true", help="tiny run: 1 epoch on 50 images per class")
    p.add_argument("--output", type=str, default=None, help="rank 0 writes its results here as JSON")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.fast else 10
    if args.train_per_class is None and args.fast:
        args.train_per_class = 50
    if args.lr is None:
        args.lr = 0.02 if args.optimizer == "sgd" else 2e-3
    return args


def _synthetic_cifar(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 32 x 32 images with a faint class template added: learnable, like a toy CIFAR-10."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 2, (10, 32, 32, 3)) * 60
    labels = np.repeat(np.arange(10), per_class)
    images = rng.integers(0, 160, (len(labels), 32, 32, 3)) + templates[labels]
    return images.astype(np.uint8), labels.astype(np.int64)


def _load_data(args, device) -> dict[str, train.DeviceData]:
    if args.data == "synthetic":
        from . import data as data_module

        images, labels = _synthetic_cifar(args.train_per_class or 50, args.seed)
        tx, ty, vx, vy = data_module.train_val_split(images, labels, val_fraction=0.2, seed=args.seed)
        out = {"train": train.DeviceData.from_numpy(tx, ty, device)}
        out["val"] = train.DeviceData.from_numpy(vx, vy, device, stats=out["train"].stats)
        return out
    return train.cifar10_on_device(train_per_class=args.train_per_class, seed=args.seed, device=device)


def _shard(data: train.DeviceData, rank: int, world_size: int) -> train.DeviceData:
    """Every ``world_size``-th example starting at ``rank``: disjoint shards of equal size.

    The tail that does not divide evenly is dropped, so every rank takes the same number of
    steps (DDP needs every rank in every all-reduce). Normalisation stays the full set's.
    """
    n = len(data) - len(data) % world_size
    index = torch.arange(rank, n, world_size, device=data.device)
    return train.DeviceData(data.images[index], data.labels[index], data.mean, data.std)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Entry point of ``torchrun ... -m course_lib.parallel``; returns rank 0's results (others: None).

    Without torchrun (no ``RANK`` in the environment) it runs as a world of one process.
    """
    args = _parse_args(argv)
    if "RANK" not in os.environ:  # plain `python -m course_lib.parallel` (or a call): a world of one
        single = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))  # fmt: skip
        os.environ.update(single)
        try:
            return main(argv)
        finally:
            for key in single:
                os.environ.pop(key, None)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    backend = args.backend
    if backend == "auto":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        backend = "nccl" if dist.is_nccl_available() and gpus >= local_world else "gloo"
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout),
                            **({"device_id": device} if backend == "nccl" else {}))  # fmt: skip
    try:
        return _train_ddp(args, rank, world_size, backend, device)
    finally:
        dist.destroy_process_group()
        torch.set_num_threads(threads_before)


def _train_ddp(args, rank: int, world_size: int, backend: str, device: torch.device) -> dict | None:
    if args.batch_size % world_size:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by the {world_size} ranks")
    config.seed_everything(args.seed)
    # the same split on every rank (same seed); rank 0 first, so that only one process downloads
    # or builds the cache, and the others then read it
    data = _load_data(args, device) if rank == 0 else None
    dist.barrier()
    data = data or _load_data(args, device)
    shard = _shard(data["train"], rank, world_size)
    torch.manual_seed(args.seed)
    model = _MODELS[args.model]().to(device)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over all ranks
        model = model.to(memory_format=torch.channels_last)  # as train.train does, but before DDP
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.optimizer == "sgd":
        opt = optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    else:
        opt = optim.Adam(ddp.parameters(), lr=args.lr)
    per_rank_batch = args.batch_size // world_size
    history = train.train(ddp, opt, shard, epochs=args.epochs, batch_size=per_rank_batch, seed=args.seed,
                          progress=False)  # fmt: skip
    # the mean training loss of each epoch over all ranks, and a fingerprint of every rank's weights
    losses = torch.tensor(history.column("train_loss"), dtype=torch.float64, device=device)
    dist.all_reduce(losses)
    losses /= world_size
    checksum = torch.tensor([float(flat_params(model).double().sum())], dtype=torch.float64, device=device)
    checksums = [torch.zeros_like(checksum) for _ in range(world_size)]
    dist.all_gather(checksums, checksum)
    result = None
    if rank == 0:  # evaluate the plain module: no collectives, the other ranks just wait
        val_loss, val_acc = train.evaluate(model, data["val"])
        result = dict(
            world_size=world_size, backend=backend, device=str(device), model=args.model, data=args.data,
            epochs=args.epochs, global_batch=args.batch_size, per_rank_batch=per_rank_batch,
            train_examples=len(data["train"]), shard_examples=len(shard), val_examples=len(data["val"]),
            train_loss=losses.tolist(), val_loss=val_loss, val_acc=val_acc, seconds=history.seconds,
            samples_per_second=len(shard) * world_size * args.epochs / history.seconds,
            rank_checksums=[c.item() for c in checksums], diverged=history.diverged,
        )  # fmt: skip
        for e, loss in enumerate(result["train_loss"], 1):
            print(f"epoch {e:3d}  train loss {loss:.4f}")
        print(f"{world_size} rank(s), {backend} on {device}: {len(shard)} training images per rank, "
              f"batch {per_rank_batch} per rank ({args.batch_size} global)")  # fmt: skip
        print(f"val accuracy {val_acc:.3f}  val loss {val_loss:.4f}  "
              f"{result['samples_per_second']:.0f} images/s  {history.seconds:.1f} s")  # fmt: skip
        same = max(result["rank_checksums"]) == min(result["rank_checksums"])
        print(f"parameters identical on every rank: {'yes' if same else 'no'}")
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=1))
    dist.barrier()
    return result


# --------------------------------------------------------------------------------------------
# Starting torchrun from Python
# --------------------------------------------------------------------------------------------


@dataclass
class TorchrunResult:
    """A finished ``torchrun`` run: the ``command``, rank 0's printed ``stdout`` and its ``result``."""

    command: list[str]
    stdout: str
    stderr: str
    result: dict
    seconds: float

    @property
    def command_line(self) -> str:
        return " ".join(self.command)


def torchrun_command(script_args: Sequence[str] = (), nproc_per_node: int = 2) -> list[str]:
    """The command that launches :func:`main` on ``nproc_per_node`` local processes.

    ``python -m torch.distributed.run`` is the ``torchrun`` executable, called through the current
    interpreter (so the same environment is used).
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "course_lib.parallel", *map(str, script_args)]  # fmt: skip


def run_torchrun(script_args: Sequence[str] = (), nproc_per_node: int = 2, *, timeout: float = 300.0,
                 threads_per_process: int = 1) -> TorchrunResult:  # fmt: skip
    """Run :func:`torchrun_command` as a subprocess and return rank 0's results.

    ``OMP_NUM_THREADS`` is set to ``threads_per_process`` (torchrun would set 1 and warn). On a
    non-zero exit, or after ``timeout`` seconds (the whole process group is killed then), a
    :class:`WorkerError` carries the end of the output.
    """
    with tempfile.TemporaryDirectory(prefix="course-torchrun-") as tmp:
        out_file = Path(tmp) / "result.json"
        cmd = torchrun_command([*script_args, "--output", str(out_file)], nproc_per_node)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process), PYTHONUNBUFFERED="1")
        env.update(_loopback_env())
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise WorkerError(f"torchrun timed out after {timeout:.0f} s; its output ended with:\n"
                              f"{(stdout + stderr)[-3000:]}") from None  # fmt: skip
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out_file.exists():
            raise WorkerError(f"torchrun exited with code {proc.returncode}; its output ended with:\n"
                              f"{(stdout + stderr)[-3000:]}")  # fmt: skip
        result = json.loads(out_file.read_text())
    shown = [c if c != sys.executable else "python" for c in cmd[:-2]]
    return TorchrunResult(command=shown, stdout=stdout, stderr=stderr, result=result, seconds=seconds)


if __name__ == "__main__":
    main()
