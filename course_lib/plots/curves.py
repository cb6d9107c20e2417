"""Curves: runs with a band over seeds, smoothed sequences, training histories, learning-rate sensitivity."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.axes import Axes

from matplotlib.ticker import MaxNLocator

from .style import _axes, _clip_log_axis, _color, _colors, _legend, _styled

# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


@_styled
def plot_curves_with_band(
    x: Any,
    runs: Mapping[str, Any],
    ax: Axes | None = None,
    band: str = "minmax",
    log: bool = False,
    xlabel: str = "step",
    ylabel: str = "loss",
) -> Axes:
    """Draw, per label, the mean over seeds as a line and the spread as a shaded band.

    ``runs`` maps a label to a 2-D array (seeds x steps). ``band`` is ``"minmax"`` (from the
    lowest to the highest seed) or ``"std"`` (mean ± one standard deviation; on a log axis cut
    at the smallest positive value). ``x`` gives the x values (None: 0, 1, 2, ...). A seed with a
    value that is not finite (a diverged run) is left out of the mean and the band, and the
    legend says so: "(mean of 4; 1 diverged)"; when every seed diverged only the legend entry is
    drawn.
    """
    if band not in {"minmax", "std"}:
        raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    ax = _axes(ax)
    colors = _colors(list(runs))  # each method in its course-wide colour
    for i, (label, values) in enumerate(runs.items()):
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        xs = np.arange(values.shape[1]) if x is None else np.asarray(x)
        finite = np.isfinite(values).all(axis=1)
        diverged = int((~finite).sum())
        values = values[finite]
        if not len(values):
            ax.plot([], [], color=colors[i], label=f"{label} (all {diverged} diverged)")
            continue
        mean = values.mean(axis=0)
        if band == "minmax":
            low, high = values.min(axis=0), values.max(axis=0)
        else:
            std = values.std(axis=0)
            low, high = mean - std, mean + std
        if log:  # a band reaching zero or below would fill the log axis down to its bottom
            low = np.maximum(low, values[values > 0].min(initial=np.inf))
        note = f"; {diverged} diverged" if diverged else ""
        ax.plot(xs, mean, color=colors[i], label=f"{label} (mean of {len(values)}{note})")
        ax.fill_between(xs, low, high, color=colors[i], alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _legend(ax)
    return ax


@_styled
def plot_sequence_smoothing(
    days: Any,
    values: Any,
    smoothed: Mapping[str, Any],
    ax: Axes | None = None,
    xlabel: str = "day",
    ylabel: str = "temperature (°C)",
) -> Axes:
    """Draw a noisy sequence as grey dots and each smoothed version of it as a line.

    ``smoothed`` maps a label (e.g. ``"β = 0.9"``) to an array as long as ``values``.
    """
    ax = _axes(ax)
    ax.scatter(days, values, s=14, color="0.55", alpha=0.7, label="measured", zorder=2)
    for i, (label, curve) in enumerate(smoothed.items()):
        ax.plot(days, curve, color=_color(i), label=label, zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _legend(ax)
    return ax


_HISTORY_X = {"epoch": "epoch", "seconds": "wall time (s)", "step": "step"}


@_styled
def plot_histories(
    histories: Mapping[str, Any],
    metric: str = "train_loss",
    x: str = "epoch",
    ax: Axes | None = None,
    log: bool = False,
) -> Axes:
    """Draw one curve per training run (label -> :class:`course_lib.engine.loop.History`).

    ``metric`` is a per-epoch column (``"train_loss"``, ``"val_acc"``, ...) drawn against
    ``x = "epoch"`` or ``"seconds"`` (wall time), or ``"step_loss"`` drawn against
    ``x = "step"``. Diverged runs are marked in the legend.
    """
    if x not in _HISTORY_X:
        raise ValueError(f"x must be one of {sorted(_HISTORY_X)}, got {x!r}")
    if (metric == "step_loss") != (x == "step"):
        raise ValueError("the per-step loss is drawn against x='step', per-epoch metrics against 'epoch' or 'seconds'")
    ax = _axes(ax)
    colors = _colors(list(histories))
    for i, (label, history) in enumerate(histories.items()):
        if metric == "step_loss":
            ys = np.asarray(history.step_loss, dtype=float)
            xs = np.arange(1, len(ys) + 1)
        else:
            ys, xs = history.column(metric), history.column(x)
        ax.plot(xs, ys, color=colors[i], marker="o" if len(ys) <= 30 else None, markersize=4,
                label=label + (" (diverged)" if history.diverged else ""))  # fmt: skip
    if log:
        ax.set_yscale("log")
        _clip_log_axis(ax)
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(_HISTORY_X[x])
    ax.set_ylabel(metric.replace("_", " "))
    _legend(ax)
    return ax


@_styled
def plot_lr_sensitivity(
    results: Mapping[str, tuple[Any, Any]],
    ax: Axes | None = None,
    ylabel: str = "final validation accuracy",
    chosen: Mapping[str, float] | None = None,
) -> Axes:
    """Score against learning rate (log axis), one line per optimizer (label -> (lrs, scores)).

    Diverged runs should be given as NaN: they leave a gap. ``chosen`` (label -> lr) rings the
    selected learning rate of each optimizer.
    """
    ax = _axes(ax)
    colors = _colors(list(results))  # each method in its course-wide colour
    for i, (label, (lrs, scores)) in enumerate(results.items()):
        lrs, scores = np.asarray(lrs, dtype=float), np.asarray(scores, dtype=float)
        ax.plot(lrs, scores, marker="o", color=colors[i], label=label)
        if chosen and label in chosen:
            best = np.flatnonzero(lrs == chosen[label])
            ax.scatter(lrs[best], scores[best], s=160, facecolors="none", edgecolors=colors[i], linewidths=2)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    _legend(ax)
    return ax


@_styled
def plot_ranking(
    values: Mapping[str, tuple[float, float]],
    ax: Axes | None = None,
    xlabel: str = "test accuracy",
    lower_is_better: bool = False,
    title: str | None = None,
) -> Axes:
    """Methods ranked by a score, best at the top, each with an error bar of two standard errors.

    ``values``: label -> (mean, standard error). Bars that overlap a lot are differences the
    measurement cannot resolve. A NaN mean (every run diverged) is listed at the bottom, marked.
    """
    ax = _axes(ax)
    labels = list(values)
    colors = dict(zip(labels, _colors(labels)))  # each method in its course-wide colour
    order = sorted(labels, key=lambda k: (np.isnan(values[k][0]), values[k][0] if lower_is_better else -values[k][0]))
    for row, label in enumerate(reversed(order)):
        mean, se = values[label]
        color = colors[label]
        if np.isnan(mean):
            ax.annotate("diverged", (0.02, row), xycoords=("axes fraction", "data"), va="center", color=color)
            continue
        ax.errorbar(mean, row, xerr=2 * se, fmt="o", color=color, capsize=4, markersize=7)
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.set_xlabel(xlabel + (" (lower is better)" if lower_is_better else "") + ", mean ± 2 SE")
    if title:
        ax.set_title(title)
    return ax
