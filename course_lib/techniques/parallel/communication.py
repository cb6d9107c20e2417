r"""The cost of an all-reduce: latency plus bytes over bandwidth, fitted from a sweep of sizes.

A ring all-reduce of :math:`\Psi` bytes over :math:`W` ranks is a reduce-scatter followed by an
all-gather: :math:`2(W-1)` steps, in each of which every rank sends and receives
:math:`\Psi/W` bytes, so every rank moves

.. math:: \text{bytes}(\Psi, W) = \frac{2(W-1)}{W}\,\Psi

(:func:`ring_allreduce_bytes`), nearly :math:`2\Psi` however many ranks there are. Its time is
modelled as :math:`T = \alpha + \text{bytes}/B`: a latency :math:`\alpha` (start-up, one message
per step) and a bandwidth :math:`B`. Small tensors are all latency, large ones all bandwidth.
:func:`allreduce_sweep` times ``all_reduce`` for a range of sizes on real processes and
:func:`fit_allreduce` fits :math:`\alpha` and :math:`B` by least squares; :meth:`AllReduceFit.seconds`
then predicts the all-reduce DDP adds to each step (one per gradient bucket, 25 MB by default;
on GPUs it overlaps with the rest of the backward pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .launch import Workers, run_on

__all__ = ["ring_allreduce_bytes", "AllReduceFit", "fit_allreduce", "allreduce_worker", "allreduce_sweep"]


def ring_allreduce_bytes(nbytes: float, world_size: int) -> float:
    r"""Bytes each rank sends (and receives) in a ring all-reduce of ``nbytes``: :math:`2(W-1)\Psi/W`."""
    if world_size < 1 or nbytes < 0:
        raise ValueError(f"need world_size >= 1 and nbytes >= 0, got {world_size} and {nbytes}")
    return 2 * (world_size - 1) / world_size * nbytes


@dataclass
class AllReduceFit:
    r"""The fitted model :math:`T(\Psi) = \alpha + \text{bytes}(\Psi, W)/B`: ``latency`` in s, ``bandwidth`` in bytes/s."""

    world_size: int
    latency: float
    bandwidth: float

    def seconds(self, nbytes: float, buckets: int = 1) -> float:
        """Predicted time to all-reduce ``nbytes`` in ``buckets`` separate all-reduces."""
        return buckets * self.latency + ring_allreduce_bytes(nbytes, self.world_size) / self.bandwidth


def fit_allreduce(sizes: Sequence[float], seconds: Sequence[float], world_size: int) -> AllReduceFit:
    """Least-squares fit of latency and bandwidth to measured all-reduce times of ``sizes`` bytes."""
    sizes, seconds = np.asarray(sizes, dtype=float), np.asarray(seconds, dtype=float)
    if len(sizes) < 2 or len(sizes) != len(seconds):
        raise ValueError("need at least two sizes, each with its time")
    moved = np.array([ring_allreduce_bytes(s, world_size) for s in sizes])
    A = np.stack([np.ones_like(moved), moved], axis=1)
    (alpha, inv_bw), *_ = np.linalg.lstsq(A, seconds, rcond=None)
    return AllReduceFit(world_size, float(alpha), float(1 / inv_bw) if inv_bw > 0 else float("inf"))


def allreduce_worker(rank: int, world_size: int, sizes: list[int], repeats: int) -> list[float]:
    """Median seconds of ``repeats`` all-reduces of a float32 tensor of each size (bytes), after a warm-up."""
    torch.set_num_threads(1)
    out = []
    for nbytes in sizes:
        buf = torch.zeros(max(1, nbytes // 4))
        dist.all_reduce(buf)
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t0)
        out.append(float(np.median(times)))
    return out


def allreduce_sweep(sizes: Sequence[int] = (4_096, 65_536, 1_048_576, 8_388_608), world_size: int = 2, *,
                    repeats: int = 10, workers: Workers | None = None,
                    timeout: float = 120.0) -> tuple[list[int], list[float], AllReduceFit]:  # fmt: skip
    """Time gloo all-reduces of each size (bytes) on ``world_size`` processes (``workers`` when given);
    return sizes, rank 0's median times, the fit."""
    sizes = [int(s) for s in sizes]
    times = run_on(workers, allreduce_worker, world_size, (sizes, int(repeats)), timeout=timeout)[0]
    return sizes, times, fit_allreduce(sizes, times, world_size)
