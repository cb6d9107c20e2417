r"""Pipeline parallelism on torch's engine, ``torch.distributed.pipelining``, across real processes.

Rank :math:`s` of :math:`S` processes holds stage :math:`s` of :func:`~.pipeline.pipeline_mlp`
(cut by :func:`~.pipeline.split_stages`) in a ``PipelineStage``; a schedule splits the batch
into :math:`M` micro-batches and sends activations forward and their gradients backward
between the processes (gloo on CPUs, NCCL on GPUs: the same code).

- **GPipe** (``ScheduleGPipe``; Huang et al., 2019): all :math:`M` forwards, then all backwards.
  Each stage holds the activations of all :math:`M` micro-batches at the end of the forwards.
- **1F1B** (``Schedule1F1B``): PipeDream-Flush (Narayanan et al., 2021), also called DAPPLE
  (Fan et al., 2021): stage :math:`s` runs :math:`\min(M, S-s)` forwards, then alternates one
  backward and one forward, then drains. It holds at most :math:`S-s` micro-batches (at most
  :math:`S`), and its bubble equals GPipe's: it reorders the work, it does not remove idle time.

With equal stages and free hand-offs each stage idles a fraction :math:`(S-1)/(M+S-1)` of the
step (:func:`~.pipeline.bubble_fraction`); Megatron-LM writes the same idle time relative to the
*useful* time, :math:`(S-1)/M`. Zero-bubble schedules (Qi et al., 2023: ``ScheduleInterleavedZeroBubble``,
``ScheduleZBVZeroBubble`` in the same package) split each backward into the input-gradient part,
which the previous stage waits for, and the weight-gradient part, which can fill the bubble.

:func:`pipeline_runs` runs the schedules and measures, per stage: when it computes (forward and
backward of each micro-batch, with ``time.perf_counter``, the same clock in every process on one
host), the micro-batches in flight, and the bytes of activations saved for backward
(:class:`~.memory.SavedActivations`). It also returns the pipelined gradient next to one
process's gradient on the whole batch, and the time of the whole model in one process.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F

from .ddp import flat_grad
from .launch import Workers, run_on
from .memory import SavedActivations
from .pipeline import Interval, PipelineTimeline, bubble_fraction, pipeline_mlp, split_stages

__all__ = ["SCHEDULES", "in_flight_limit", "PipelineRun", "pipeline_worker", "pipeline_runs"]

SCHEDULES = ("gpipe", "1f1b")


def in_flight_limit(schedule: str, stage: int, stages: int, micro_batches: int) -> int:
    r"""The most micro-batches whose activations stage ``stage`` (from 0) holds at once.

    GPipe: all :math:`M`. 1F1B: :math:`\min(M, S - s)`, its warm-up forwards; afterwards every
    forward follows a backward.
    """
    if schedule == "gpipe":
        return micro_batches
    if schedule == "1f1b":
        return min(micro_batches, stages - stage)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


@dataclass
class PipelineRun:
    r"""One schedule measured on ``stages`` processes: the fastest of its timed steps, and the step's maths.

    - ``timeline``: busy intervals of every stage (seconds) in the step with the shortest makespan;
    - ``timelines``: every timed step (the spread shows how busy the machine was);
    - ``peak_in_flight[s]``: most micro-batches stage ``s`` held (forwards done minus backwards done);
    - ``peak_bytes[s]``: most bytes of activations stage ``s`` kept for backward at once;
    - ``micro_batch_bytes[s]``: bytes stage ``s`` keeps for one micro-batch (its forward alone);
    - ``grad``, ``loss``: the pipelined gradient (stages concatenated) and mean loss;
      ``single_grad``, ``single_loss``: one process, the whole model, the whole batch;
    - ``single_seconds``: fastest forward + backward of the whole model on the whole batch in
      one process with one thread (the other ranks idle meanwhile).
    """

    schedule: str
    stages: int
    micro_batches: int
    batch: int
    width: int
    dtype: str
    timeline: PipelineTimeline
    timelines: list[PipelineTimeline] = field(repr=False)
    peak_in_flight: list[int]
    peak_bytes: list[int]
    micro_batch_bytes: list[int]
    loss: float
    single_loss: float
    grad: Tensor = field(repr=False)
    single_grad: Tensor = field(repr=False)
    single_seconds: float

    @property
    def theory_bubble(self) -> float:
        """GPipe's :math:`(S-1)/(M+S-1)` (also 1F1B's)."""
        return bubble_fraction(self.stages, self.micro_batches)

    @property
    def megatron_bubble(self) -> float:
        """Megatron-LM's convention: idle time over useful time, :math:`(S-1)/M`."""
        return (self.stages - 1) / self.micro_batches

    @property
    def predicted_in_flight(self) -> list[int]:
        return [in_flight_limit(self.schedule, s, self.stages, self.micro_batches) for s in range(self.stages)]

    @property
    def predicted_bytes(self) -> list[int]:
        """(micro-batches in flight, predicted) x (bytes of one micro-batch, measured alone)."""
        return [k * b for k, b in zip(self.predicted_in_flight, self.micro_batch_bytes)]

    @property
    def grad_max_abs_diff(self) -> float:
        return (self.grad - self.single_grad).abs().max().item()

    @property
    def grad_rel_diff(self) -> float:
        return self.grad_max_abs_diff / max(self.single_grad.abs().max().item(), 1e-300)

    @property
    def speedup(self) -> float:
        """One process's step time over the pipeline's (fastest steps of each)."""
        return self.single_seconds / self.timeline.makespan


class _Recorder:
    """Wraps a stage's ``forward_one_chunk`` / ``backward_one_chunk``: times them, counts micro-batches in flight."""

    def __init__(self, stage, index: int):
        self.index = index
        self.intervals: list[Interval] = []
        self.in_flight = self.peak = 0
        forward, backward = stage.forward_one_chunk, stage.backward_one_chunk

        def timed_forward(chunk, *args, **kwargs):
            t0 = time.perf_counter()
            out = forward(chunk, *args, **kwargs)
            self.intervals.append(Interval(index, "F", chunk, t0, time.perf_counter()))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return out

        def timed_backward(chunk, *args, **kwargs):
            t0 = time.perf_counter()
            out = backward(chunk, *args, **kwargs)
            self.intervals.append(Interval(index, "B", chunk, t0, time.perf_counter()))
            self.in_flight -= 1
            return out

        stage.forward_one_chunk, stage.backward_one_chunk = timed_forward, timed_backward

    def reset(self) -> None:
        self.intervals, self.in_flight, self.peak = [], 0, 0


def _batch(case: dict, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(case["seed"] + 1)
    x = torch.randn(case["batch"], case["width"], generator=g, dtype=dtype)
    return x, torch.randint(0, 10, (case["batch"],), generator=g)


def _run_case(rank: int, world_size: int, case: dict, device: torch.device) -> dict:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    dtype = getattr(torch, case["dtype"])
    torch.manual_seed(case["seed"])
    model = pipeline_mlp(width=case["width"], depth=case["depth"]).to(dtype)  # the same on every rank
    part = split_stages(model, world_size)[rank].to(device)
    x, y = _batch(case, dtype)
    M = case["micro_batches"]
    stage = PipelineStage(part, rank, world_size, device)
    schedule_class = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[case["schedule"]]
    schedule = schedule_class(stage, M, loss_fn=F.cross_entropy)  # mean per micro-batch; grads / M
    recorder = _Recorder(stage, rank)
    saved = SavedActivations(part)
    first, last = rank == 0, rank == world_size - 1
    repeats, losses = [], []
    for r in range(case["repeats"] + 1):  # the first step is a warm-up (it also exchanges shapes)
        part.zero_grad(set_to_none=True)
        recorder.reset()
        saved.reset()
        losses = []
        dist.barrier()
        # the warm-up step runs one extra forward to learn the shapes, whose graph the stage keeps:
        # it is not counted
        with saved if r else contextlib.nullcontext():
            if first:
                schedule.step(x.to(device))
            elif last:
                schedule.step(target=y.to(device), losses=losses)
            else:
                schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if r:
            repeats.append(dict(intervals=recorder.intervals, peak_in_flight=recorder.peak, peak_bytes=saved.peak))
    grad = flat_grad(part)
    # one micro-batch alone on this stage: the bytes it keeps for backward
    micro = torch.tensor_split(x, M)[0].to(device)
    with SavedActivations(part) as alone:
        with torch.no_grad():
            for before in split_stages(model, world_size)[:rank]:  # what this stage receives
                micro = before.to(device)(micro)
        out = part(micro.requires_grad_(not first))
        if last:  # the last stage keeps what the loss saves, too
            out = F.cross_entropy(out, torch.tensor_split(y, M)[0].to(device))
    micro_bytes = alone.live
    del out
    # the whole model in one process, one thread: rank 0 times it while the others wait
    single_seconds = float("nan")
    dist.barrier()
    if first:
        whole = model.to(device)
        times = []
        for _ in range(case["repeats"] + 1):
            whole.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            F.cross_entropy(whole(x.to(device)), y.to(device)).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        single_seconds = min(times[1:])
    dist.barrier()
    return dict(repeats=repeats, grad=grad, micro_bytes=micro_bytes, single_seconds=single_seconds,
                loss=sum(v.item() for v in losses) / M if last else None)  # fmt: skip


def pipeline_worker(rank: int, world_size: int, cases: list[dict], device_type: str = "cpu") -> list[dict]:
    """What every rank runs for :func:`pipeline_runs`: its stage of each case, timed and measured.

    ``device_type`` ``"cuda"`` puts rank ``r`` on ``cuda:r`` (the NCCL path); ``"cpu"`` uses gloo.
    """
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return [_run_case(rank, world_size, case, device) for case in cases]


def _single_process(case: dict) -> tuple[Tensor, float]:
    dtype = getattr(torch, case["dtype"])
    torch.manual_seed(case["seed"])
    model = pipeline_mlp(width=case["width"], depth=case["depth"]).to(dtype)
    x, y = _batch(case, dtype)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return flat_grad(model), loss.item()


def _case(schedule: str = "gpipe", micro_batches: int = 4, batch: int = 64, width: int = 64, depth: int = 4,
          dtype: torch.dtype = torch.float64, repeats: int = 3, seed: int = 0) -> dict:  # fmt: skip
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if micro_batches < 1 or batch % micro_batches:
        raise ValueError(f"a batch of {batch} does not split into {micro_batches} equal micro-batches")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    return dict(schedule=schedule, micro_batches=int(micro_batches), batch=int(batch), width=int(width),
                depth=int(depth), dtype=str(dtype).replace("torch.", ""), repeats=int(repeats), seed=int(seed))  # fmt: skip


def pipeline_runs(cases: Mapping[str, Mapping[str, Any]], stages: int = 2, *, device_type: str = "cpu",
                  workers: Workers | None = None, timeout: float = 120.0) -> dict[str, PipelineRun]:  # fmt: skip
    """Each case on ``stages`` processes with ``torch.distributed.pipelining``, measured (:class:`PipelineRun`).

    ``cases``: label -> keyword arguments, any of ``schedule`` (``"gpipe"`` or ``"1f1b"``),
    ``micro_batches`` (4), ``batch`` (64), ``width`` (64), ``depth`` (4 blocks of Linear + ReLU,
    then a head), ``dtype`` (``torch.float64``), ``repeats`` (3 timed steps after a warm-up),
    ``seed`` (0). Every rank builds the same model from the seed and keeps its stage; the batch
    is random and the same everywhere. The processes run one intra-op thread each, gloo on the
    CPU or (``device_type="cuda"``) NCCL with one GPU per rank. All cases run in one task, on
    ``workers`` (a :class:`~.launch.Workers` of ``stages`` ranks and that backend) when given.
    """
    specs = {label: _case(**kw) for label, kw in cases.items()}
    backend = "nccl" if device_type == "cuda" else "gloo"
    per_rank = run_on(workers, pipeline_worker, stages, (list(specs.values()), device_type), backend=backend,
                      timeout=timeout)  # fmt: skip
    out = {}
    for i, (label, spec) in enumerate(specs.items()):
        ranks = [r[i] for r in per_rank]
        timelines = []
        for k in range(spec["repeats"]):
            intervals = sorted((iv for r in ranks for iv in r["repeats"][k]["intervals"]), key=lambda iv: iv.start)
            t0 = intervals[0].start
            intervals = [Interval(iv.stage, iv.kind, iv.micro_batch, iv.start - t0, iv.end - t0) for iv in intervals]
            timelines.append(PipelineTimeline(stages, spec["micro_batches"], intervals))
        best = min(range(spec["repeats"]), key=lambda k: timelines[k].makespan)
        single_grad, single_loss = _single_process(spec)
        out[label] = PipelineRun(
            schedule=spec["schedule"], stages=stages, micro_batches=spec["micro_batches"], batch=spec["batch"],
            width=spec["width"], dtype=spec["dtype"], timeline=timelines[best], timelines=timelines,
            peak_in_flight=[r["repeats"][best]["peak_in_flight"] for r in ranks],
            peak_bytes=[r["repeats"][best]["peak_bytes"] for r in ranks],
            micro_batch_bytes=[r["micro_bytes"] for r in ranks],
            loss=ranks[-1]["loss"], single_loss=single_loss,
            grad=torch.cat([r["grad"] for r in ranks]), single_grad=single_grad,
            single_seconds=ranks[0]["single_seconds"],
        )  # fmt: skip
    return out
