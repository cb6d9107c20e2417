r"""Pipeline (model) parallelism: stages, hand-offs, GPipe schedules, timelines and bubbles.

A network cut into :math:`S` consecutive stages (:func:`split_stages`) hands activations forward
and their gradients backward (:func:`handoff`). With :math:`M` micro-batches and equal stages,
each stage idles a fraction :math:`(S-1)/(M+S-1)` of a GPipe step (:func:`bubble_fraction`).
:func:`gpipe_schedule` simulates the ideal schedule, :func:`run_pipeline` and
:func:`measure_pipeline` run and time it (one thread per stage), :func:`sequential_seconds` is
the baseline without a pipeline, and :func:`plot_pipeline_timeline` draws the timelines.
"""

from __future__ import annotations

import contextlib
import queue as queue_module
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .ddp import flat_grad

__all__ = ["bubble_fraction", "Interval", "PipelineTimeline", "PipelineRun", "gpipe_schedule", "pipeline_mlp",
           "split_stages", "handoff", "run_pipeline", "measure_pipeline", "sequential_seconds",
           "plot_pipeline_timeline"]  # fmt: skip


def bubble_fraction(stages: int, micro_batches: int) -> float:
    r"""Idle fraction of each stage in a GPipe step: :math:`(S-1)/(M+S-1)`.

    ``stages`` = :math:`S`, ``micro_batches`` = :math:`M`, assuming every stage takes the same
    time per micro-batch (forward and backward). :math:`M=1` gives :math:`(S-1)/S`: naive model
    parallelism, one stage busy at a time.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be at least 1, got {stages} and {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)


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

    from ...plots import COLORS, course_style

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
