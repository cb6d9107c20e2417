r"""Pipeline (model) parallelism, the maths: stages, hand-offs, GPipe's schedule and its bubble.

A network cut into :math:`S` consecutive stages (:func:`split_stages`) hands activations forward
and their gradients backward (:func:`handoff`). With :math:`M` micro-batches and equal stages,
each stage idles a fraction :math:`(S-1)/(M+S-1)` of a GPipe step (:func:`bubble_fraction`).
With unequal stages that take :math:`t_s` per micro-batch (forward and backward), the step lasts

.. math:: T = \sum_s t_s + (M-1) \max_s t_s

(:func:`gpipe_makespan`): the first micro-batch crosses every stage, the others follow at the
pace of the slowest. :func:`gpipe_schedule` simulates the schedule (per-stage times allowed) and
:func:`plot_pipeline_timeline` draws it, or the timelines that
:mod:`~course_lib.techniques.parallel.pipelining` measures on torch's pipeline engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["bubble_fraction", "gpipe_makespan", "Interval", "PipelineTimeline", "gpipe_schedule", "pipeline_mlp",
           "split_stages", "handoff", "plot_pipeline_timeline"]  # fmt: skip


def bubble_fraction(stages: int, micro_batches: int) -> float:
    r"""Idle fraction of each stage in a GPipe step: :math:`(S-1)/(M+S-1)`.

    ``stages`` = :math:`S`, ``micro_batches`` = :math:`M`, assuming every stage takes the same
    time per micro-batch (forward and backward). :math:`M=1` gives :math:`(S-1)/S`: naive model
    parallelism, one stage busy at a time.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be at least 1, got {stages} and {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)


def gpipe_makespan(stage_times: Sequence[float], micro_batches: int) -> float:
    r"""Length of a GPipe step whose stage :math:`s` takes ``stage_times[s]`` per micro-batch: :math:`\sum_s t_s + (M-1)\max_s t_s`.

    :math:`t_s` is forward plus backward of one micro-batch. Exact for :func:`gpipe_schedule`
    when the slowest stage is slowest in both directions (e.g. backward = 2 x forward on every
    stage). With equal :math:`t_s = t` it is :math:`(M+S-1)\,t`, whence :func:`bubble_fraction`.
    """
    if not stage_times or micro_batches < 1:
        raise ValueError(f"need at least one stage and one micro-batch, got {list(stage_times)} and {micro_batches}")
    return float(sum(stage_times) + (micro_batches - 1) * max(stage_times))


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


def gpipe_schedule(stages: int, micro_batches: int, forward_time: float | Sequence[float] = 1.0,
                   backward_time: float | Sequence[float] = 2.0) -> PipelineTimeline:  # fmt: skip
    r"""The ideal GPipe timeline: stage :math:`s` takes ``forward_time`` / ``backward_time`` per micro-batch.

    Each time is one number for every stage or a sequence, one per stage (unequal stages).

    Forward of micro-batch :math:`m` on stage :math:`s` starts when stage :math:`s-1` has
    finished it and stage :math:`s` has finished micro-batch :math:`m-1`; after the last forward
    (the "flush"), the backward passes run in reverse order, from the last stage to the first.
    With equal stages its bubble equals :func:`bubble_fraction` exactly; its length is
    :func:`gpipe_makespan`.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be at least 1, got {stages} and {micro_batches}")
    fwd = [float(t) for t in forward_time] if isinstance(forward_time, Sequence) else [float(forward_time)] * stages
    bwd = [float(t) for t in backward_time] if isinstance(backward_time, Sequence) else [float(backward_time)] * stages
    if len(fwd) != stages or len(bwd) != stages:
        raise ValueError(f"need one forward and one backward time per stage ({stages}), got {fwd} and {bwd}")
    f_end = np.zeros((stages, micro_batches))
    intervals = []
    for s in range(stages):
        for m in range(micro_batches):
            start = max(f_end[s - 1, m] if s else 0.0, f_end[s, m - 1] if m else 0.0)
            f_end[s, m] = start + fwd[s]
            intervals.append(Interval(s, "F", m, start, f_end[s, m]))
    b_end = np.zeros((stages, micro_batches))
    order = list(reversed(range(micro_batches)))
    for s in reversed(range(stages)):
        prev = f_end[s, -1]
        for m in order:
            start = max(prev, b_end[s + 1, m] if s < stages - 1 else 0.0)
            b_end[s, m] = prev = start + bwd[s]
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
