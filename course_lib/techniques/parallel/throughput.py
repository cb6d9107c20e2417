r"""Speed: the machine's ceiling for parallel work, and DDP's throughput against it.

:func:`machine_ceiling` measures what :math:`W` processes can gain on this machine at all: the
same single-thread job run by one process alone, then by all :math:`W` at once. If each of them
then takes :math:`k` times longer, :math:`W` processes do at most :math:`W/k` times the work of
one (:attr:`Ceiling.speedup`); on a machine with :math:`W` free cores :math:`k \approx 1`, on
cores shared with other programs (or hyper-threads, or one memory bus) :math:`k` is larger. No
data-parallel or pipelined run can beat that ceiling, so their speed-ups are judged against it.

:func:`ddp_throughputs` times DDP training steps for several ``(processes, threads per
process)`` configurations in one launch of gloo processes (:func:`~.launch.spawn`), and the bare
all-reduce of a gradient-sized tensor that DDP adds to every step. :func:`speed_measurements`
runs the ceiling, an all-reduce sweep and the DDP timings in one launch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from ... import optim
from ...engine import models
from .launch import Workers, run_on

__all__ = ["Ceiling", "ceiling_worker", "machine_ceiling", "Throughput", "ddp_throughputs", "speed_measurements"]


@dataclass
class Ceiling:
    """Seconds of the same job run by each process alone (``alone[r]``) and by all at once (``together[r]``).

    The fastest of the repeats is kept for each; ``job`` says what was run.
    """

    world_size: int
    alone: list[float]
    together: list[float]
    job: str

    @property
    def slowdown(self) -> float:
        """How many times longer a job takes when all processes run at once (mean over the ranks)."""
        return sum(t / a for t, a in zip(self.together, self.alone)) / self.world_size

    @property
    def speedup(self) -> float:
        """The most work per second ``world_size`` processes can do, in units of one process alone."""
        return self.world_size / self.slowdown


def _ceiling_job(steps: int, width: int) -> float:
    """Forward + backward of a 4-block MLP (``width`` units, batch 64), ``steps`` times; seconds."""
    g = torch.Generator().manual_seed(0)
    layers = [nn.Linear(width, width) for _ in range(4)]
    model = nn.Sequential(*[m for layer in layers for m in (layer, nn.ReLU())])
    x = torch.randn(64, width, generator=g)
    t0 = time.perf_counter()
    for _ in range(steps):
        model(x).square().mean().backward()
    return time.perf_counter() - t0


def ceiling_worker(rank: int, world_size: int, steps: int, width: int, repeats: int) -> dict:
    """What every rank runs for :func:`machine_ceiling`: the job alone (turn by turn), then all at once."""
    torch.set_num_threads(1)
    _ceiling_job(1, width)  # warm-up
    alone, together = [], []
    for _ in range(repeats):
        for r in range(world_size):  # one at a time; the others wait in a barrier (gloo sleeps there)
            dist.barrier()
            if r == rank:
                alone.append(_ceiling_job(steps, width))
        dist.barrier()
        together.append(_ceiling_job(steps, width))
    dist.barrier()
    return dict(alone=min(alone), together=min(together))


def machine_ceiling(world_size: int = 2, *, steps: int = 20, width: int = 256, repeats: int = 3,
                    workers: Workers | None = None, timeout: float = 120.0) -> Ceiling:  # fmt: skip
    """The same single-thread job (``steps`` forward + backward passes of an MLP) alone and on all ranks at once.

    ``world_size`` gloo processes (``workers``, or :func:`~.launch.spawn`) with one intra-op thread each; each
    rank runs the job alone while the others wait, then all run it together, ``repeats`` times;
    the fastest time of each kind is kept. :attr:`Ceiling.speedup` is the best any parallel
    scheme of ``world_size`` processes can reach on this machine now.
    """
    if world_size < 1 or steps < 1 or repeats < 1:
        raise ValueError(f"world_size, steps and repeats must be at least 1, got {world_size}, {steps}, {repeats}")
    res = run_on(workers, ceiling_worker, world_size, (steps, width, repeats), timeout=timeout)
    return Ceiling(world_size=world_size, alone=[r["alone"] for r in res], together=[r["together"] for r in res],
                   job=f"{steps} forward + backward passes of a 4 x {width} MLP, batch 64, one thread")  # fmt: skip


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


def _checked_configs(configs, total_batch: int, model: str) -> list[tuple[int, int]]:
    """``(processes, threads)`` pairs as ints, each at least 1 and the processes dividing
    ``total_batch``, and a known ``model``; else ``ValueError`` (in the parent, before any start)."""
    configs = [(int(p), int(t)) for p, t in configs]
    for procs, threads in configs:
        if procs < 1 or threads < 1 or total_batch % procs:
            raise ValueError(f"bad configuration {(procs, threads)} for a total batch of {total_batch}")
    _throughput_model(model)
    return configs


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
                    workers: Workers | None = None, timeout: float = 300.0) -> list[Throughput]:  # fmt: skip
    """Samples/second of DDP training for several ``(processes, threads per process)`` configurations.

    In each configuration, every one of the ``processes`` gloo processes runs ``threads``
    intra-op threads and trains ``model`` (``"small_cnn"`` or ``"mlp"``, on random 3 x 32 x 32
    inputs) on ``total_batch // processes`` examples per step; ``steps`` steps are timed after
    ``warmup`` untimed ones (rank 0's wall time between two barriers). One process goes through
    the same code (DDP with a world of one), so the comparison is only about the split.
    ``comm_seconds`` times ``steps`` bare all-reduces of a gradient-sized tensor afterwards.

    All configurations run in one launch of ``max(processes)`` gloo processes (starting
    processes is the slow part): configuration by configuration, the first ``processes`` ranks
    train in a DDP group of their own while the other ranks wait, blocked, in a barrier.
    """
    configs = _checked_configs(configs, total_batch, model)
    world = max(p for p, _ in configs)
    res = run_on(workers, _throughput_worker, world, (configs, model, total_batch, steps, warmup, seed),
                 timeout=timeout)  # fmt: skip
    return [Throughput(world_size=procs, threads_per_process=threads, total_batch=total_batch, steps=steps,
                       seconds=r["seconds"], comm_seconds=r["comm"], model=model)
            for (procs, threads), r in zip(configs, res[0])]  # fmt: skip


def _speed_worker(rank: int, world_size: int, ceiling_args: tuple, sweep_args: tuple, throughput_args: tuple) -> dict:
    """:func:`ceiling_worker`, :func:`~.communication.allreduce_worker` and the DDP timings, in one process group."""
    from .communication import allreduce_worker

    return dict(ceiling=ceiling_worker(rank, world_size, *ceiling_args),
                sweep=allreduce_worker(rank, world_size, *sweep_args),
                throughput=_throughput_worker(rank, world_size, *throughput_args))  # fmt: skip


def speed_measurements(configs: Sequence[tuple[int, int]] = ((1, 1), (1, 2), (2, 1)), *, total_batch: int = 256,
                       steps: int = 10, ceiling_steps: int = 20, ceiling_repeats: int = 3,
                       sweep_sizes: Sequence[int] = (4_096, 262_144, 4_194_304), sweep_repeats: int = 10,
                       model: str = "small_cnn", seed: int = 0, workers: Workers | None = None,
                       timeout: float = 300.0):  # fmt: skip
    """:func:`machine_ceiling`, :func:`~.communication.allreduce_sweep` and :func:`ddp_throughputs` in one launch.

    Starting processes is the slow part on a small machine, so the three measurements share
    one task on ``max(processes)`` (at least 2) gloo processes, in that order (on ``workers``,
    a :class:`~.launch.Workers` of that many ranks, when given). Returns
    ``(Ceiling, (sizes, seconds, AllReduceFit), list[Throughput])``, as the three functions do.
    """
    from .communication import fit_allreduce

    configs = _checked_configs(configs, total_batch, model)
    world = max(2, max(p for p, _ in configs))
    sizes = [int(s) for s in sweep_sizes]
    res = run_on(workers, _speed_worker, world, ((ceiling_steps, 256, ceiling_repeats), (sizes, sweep_repeats),
                                                 (configs, model, total_batch, steps, 2, seed)), timeout=timeout)  # fmt: skip
    ceiling = Ceiling(world_size=world, alone=[r["ceiling"]["alone"] for r in res],
                      together=[r["ceiling"]["together"] for r in res],
                      job=f"{ceiling_steps} forward + backward passes of a 4 x 256 MLP, batch 64, one thread")  # fmt: skip
    sweep = (sizes, res[0]["sweep"], fit_allreduce(sizes, res[0]["sweep"], world))
    throughputs = [Throughput(world_size=procs, threads_per_process=threads, total_batch=total_batch, steps=steps,
                              seconds=r["seconds"], comm_seconds=r["comm"], model=model)
                   for (procs, threads), r in zip(configs, res[0]["throughput"])]  # fmt: skip
    return ceiling, sweep, throughputs
