"""Plotting helpers shared by the notebooks, all drawn in one course-wide style.

Every helper takes an optional ``ax`` (a new figure is made when it is None), returns the Axes
it drew on (``ax.figure`` is the Figure) and never calls ``plt.show()``: the notebooks do that.
Sizes, colours and the grid come from :data:`STYLE` only, applied by :func:`course_style`.

Trajectories are drawn in a fixed colour order (:data:`COLORS`), so the same optimizer has the
same colour on a landscape and in the matching loss plot.
"""

from __future__ import annotations

import contextlib
import functools
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from course_lib.config import pick
from course_lib.landscapes import Landscape, Trajectory

COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe-Ito colours (safe for colour-blind readers), minus the yellow that vanishes on white."""

STYLE = MappingProxyType(
    {
        "figure.figsize": (8.0, 5.5),
        "figure.dpi": 100,
        "figure.constrained_layout.use": True,
        "font.size": 13,
        "axes.titlesize": 15,
        "axes.labelsize": 14,
        "xtick.labelsize": 13,
        "ytick.labelsize": 13,
        "legend.fontsize": 12,
        "legend.framealpha": 0.9,
        "lines.linewidth": 2.2,
        "lines.markersize": 6,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=COLORS),
        "image.cmap": "viridis",
    }
)
"""The course's matplotlib settings (read-only); meant to be readable on a projector."""

MAX_FRAMES = 60
"""Default upper bound on the number of frames of an animation (full mode)."""

FAST_MAX_FRAMES = 20
"""Default upper bound on the number of frames of an animation in fast mode."""

ANIMATION_RC = MappingProxyType({"savefig.dpi": 72, "animation.frame_format": "jpeg"})
"""Settings for rendering animation frames: small JPEG frames keep players quick and light."""

CONTOUR_LEVELS = 20
"""Default number of contour levels on a landscape."""


# --------------------------------------------------------------------------------------------
# Style
# --------------------------------------------------------------------------------------------


def course_style() -> contextlib.AbstractContextManager:
    """A context manager applying :data:`STYLE`; every helper of this module draws inside it.

    ``with course_style(): fig, ax = plt.subplots()`` styles a figure of your own.
    """
    return plt.rc_context(dict(STYLE))


def set_course_style() -> None:
    """Apply :data:`STYLE` globally, for the rest of the session (first cell of a notebook)."""
    plt.rcParams.update(STYLE)


def _styled(draw):
    """Run a plotting helper inside :func:`course_style`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with course_style():
            return draw(*args, **kwargs)

    return wrapper


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the Axes of a new figure; either way styled from :data:`STYLE`.

    Sizes are set on the Axes explicitly (not only through rcParams) so that they also hold
    for an Axes made outside :func:`course_style` and for ticks created later, at draw time.
    """
    if ax is None:
        _, ax = plt.subplots()
    ax.tick_params(labelsize=STYLE["xtick.labelsize"])
    ax.xaxis.label.set_size(STYLE["axes.labelsize"])
    ax.yaxis.label.set_size(STYLE["axes.labelsize"])
    ax.title.set_size(STYLE["axes.titlesize"])
    ax.grid(STYLE["axes.grid"], alpha=STYLE["grid.alpha"])
    return ax


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _labelled(items: Any) -> list[tuple[str, Any]]:
    """``(label, item)`` pairs from a Trajectory, a sequence of them, or a dict label -> item."""
    if items is None:
        return []
    if isinstance(items, Trajectory):
        return [(items.label, items)]
    if isinstance(items, Mapping):
        return [(str(label), item) for label, item in items.items()]
    return [(getattr(item, "label", f"run {i}"), item) for i, item in enumerate(items)]


def _legend(ax: Axes, loc: str = "best"):
    """The legend in the course's font size, lines (runs) listed before markers."""
    pairs = list(zip(*ax.get_legend_handles_labels()))
    pairs.sort(key=lambda pair: not isinstance(pair[0], Line2D))  # stable: keeps drawing order
    handles, labels = zip(*pairs) if pairs else ((), ())
    return ax.legend(handles, labels, loc=loc, fontsize=STYLE["legend.fontsize"])


def _finite(a: np.ndarray) -> np.ndarray:
    """A float copy of ``a`` with non-finite entries replaced by NaN (matplotlib skips them)."""
    a = np.array(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a


# --------------------------------------------------------------------------------------------
# Landscapes and trajectories
# --------------------------------------------------------------------------------------------


def contour_levels(
    landscape: Landscape, Z: np.ndarray, levels: int | Sequence[float] | None = None
) -> np.ndarray:
    """Contour levels for the values ``Z`` of ``landscape``.

    A sequence is used as it is. Otherwise ``levels`` (default :data:`CONTOUR_LEVELS`) levels
    are spaced as ``landscape.levels`` says: ``"log"`` puts them geometrically above the global
    minimum value (many rings near the minimum), ``"linear"`` evenly up to the 90th percentile.
    """
    if levels is not None and not isinstance(levels, (int, np.integer)):
        return np.asarray(levels, dtype=np.float64)
    n = CONTOUR_LEVELS if levels is None else int(levels)
    base = min(landscape.min_value, float(np.nanmin(Z)))
    gaps = Z[np.isfinite(Z)] - base
    if landscape.levels == "log":
        top = float(np.max(gaps))
        low = max(float(np.percentile(gaps, 2.0)), top * 1e-9)
        return base + np.geomspace(low, top, n)
    return base + np.linspace(0.0, float(np.percentile(gaps, 90)), n + 1)[1:]


def _draw_surface(ax: Axes, landscape: Landscape, levels, resolution: int) -> None:
    X, Y, Z = landscape.grid(resolution)
    lv = contour_levels(landscape, Z, levels)
    if landscape.levels == "log" and np.all(np.diff(lv) > 0):
        # contour log(f - f*) on evenly spaced levels: the same rings, evenly coloured
        base = min(landscape.min_value, float(np.nanmin(Z)))
        floor = (lv[0] - base) * 1e-3
        Z, lv = np.log10(np.maximum(Z - base, floor)), np.log10(np.maximum(lv - base, floor))
    ax.contourf(X, Y, Z, levels=lv, cmap="viridis", alpha=0.35, extend="both")
    ax.contour(X, Y, Z, levels=lv, colors="0.4", linewidths=0.7, linestyles="solid")
    ax.set_xlim(landscape.x_range)
    ax.set_ylim(landscape.y_range)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(landscape.name.replace("_", " "))
    ax.grid(False)


def _draw_stationary_points(ax: Axes, landscape: Landscape) -> None:
    """Global minima as gold stars, other minima as white stars, saddles as white crosses."""
    lowest = landscape.min_value
    is_global = [landscape.value(m) <= lowest + 1e-9 for m in landscape.minima]
    star = dict(marker="*", s=320, edgecolors="black", linewidths=1.0, zorder=9)
    for kind, colour, wanted in (("global", "gold", True), ("local", "white", False)):
        points = [m for m, g in zip(landscape.minima, is_global) if g == wanted]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, c=colour, label=f"{kind} minimum", **star)
    if landscape.saddles:
        xs, ys = zip(*landscape.saddles)
        ax.scatter(
            xs, ys, marker="X", s=170, c="white", edgecolors="black", linewidths=1.0,
            label="saddle point", zorder=9,
        )


def _draw_trajectories(ax: Axes, runs: list[tuple[str, Trajectory]]) -> None:
    """Each path as a line with dots, then the starts (hollow circles) and ends (squares)."""
    paths = [_finite(traj.points) for _, traj in runs]
    for i, ((label, traj), pts) in enumerate(zip(runs, paths)):
        ax.plot(
            pts[:, 0], pts[:, 1], "-o", color=_color(i), lw=1.8, markersize=3.5,
            markevery=max(1, len(pts) // 50), zorder=6,
            label=label + (" (diverged)" if traj.diverged else ""),
        )
    for i, pts in enumerate(paths):
        ax.scatter(
            pts[:1, 0], pts[:1, 1], marker="o", s=110, facecolors="white", edgecolors="black",
            linewidths=1.8, label="start" if i == 0 else None, zorder=7,
        )
        last = pts[np.isfinite(pts).all(axis=1)][-1:]
        ax.scatter(
            last[:, 0], last[:, 1], marker="s", s=80, c=_color(i), edgecolors="black",
            linewidths=1.0, zorder=8,
        )


@_styled
def plot_landscape(
    landscape: Landscape,
    ax: Axes | None = None,
    trajectories: Any = None,
    levels: int | Sequence[float] | None = None,
    show_minima: bool = True,
    resolution: int = 200,
    equal_aspect: bool = True,
) -> Axes:
    """Draw the contours of ``landscape`` and, on top, optimizer paths.

    Drawn: filled contours with level lines (see :func:`contour_levels` for ``levels``); the
    global minimum as a gold star, other minima as white stars and saddles as white crosses
    (``show_minima``); each trajectory (a :class:`Trajectory`, a list of them, or a dict
    label -> Trajectory) as a coloured line with dots, its start as a hollow black circle and
    its end as a square in its colour; a legend. ``equal_aspect`` keeps one unit the same length
    on both axes, so that gradients look perpendicular to the level lines.
    """
    ax = _axes(ax)
    _draw_surface(ax, landscape, levels, resolution)
    _draw_trajectories(ax, _labelled(trajectories))
    if show_minima:
        _draw_stationary_points(ax, landscape)
    if equal_aspect:
        ax.set_aspect("equal")
    if ax.get_legend_handles_labels()[1]:
        _legend(ax)
    return ax


@_styled
def plot_losses(
    trajectories_or_dict: Any,
    ax: Axes | None = None,
    log: bool = True,
    x: str = "step",
) -> Axes:
    """Draw one loss-versus-step curve per run, with a legend.

    ``trajectories_or_dict``: a :class:`Trajectory`, a list of them, or a dict label -> Trajectory
    or label -> 1-D array of losses. ``log`` puts the loss on a log axis (values <= 0 are not
    drawn; every course landscape has minimum value 0). ``x`` names the x axis: ``"step"``,
    ``"epoch"``, ...
    """
    ax = _axes(ax)
    for i, (label, run) in enumerate(_labelled(trajectories_or_dict)):
        losses = _finite(run.losses if isinstance(run, Trajectory) else run)
        if isinstance(run, Trajectory) and run.diverged:
            label += " (diverged)"
        ax.plot(np.arange(len(losses)), losses, color=_color(i), label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss (log scale)" if log else "loss")
    _legend(ax)
    return ax


@_styled
def animate_trajectories(
    landscape: Landscape,
    trajectories: Any,
    interval: int = 50,
    frames: int | None = None,
) -> FuncAnimation:
    """Animate optimizer paths growing on the contours of ``landscape``.

    The paths are drawn up to a step that advances from 0 to the last step in ``frames`` evenly
    spaced frames (default: at most :data:`MAX_FRAMES`, or :data:`FAST_MAX_FRAMES` in fast mode,
    fewer for short runs); a dot marks each optimizer's current point. ``interval`` is the delay
    between frames in milliseconds. Show it with :func:`animation_html` (about 0.15 s a frame).
    """
    runs = _labelled(trajectories)
    ax = plot_landscape(landscape)
    longest = max(len(t.points) for _, t in runs)
    cap = pick(full=MAX_FRAMES, fast=FAST_MAX_FRAMES)
    n_frames = min(cap, longest) if frames is None else max(1, int(frames))
    steps = np.unique(np.linspace(0, longest - 1, n_frames).round().astype(int))

    paths, heads = [], []
    for i, (label, traj) in enumerate(runs):
        pts = _finite(traj.points)
        (path,) = ax.plot(pts[:, 0], pts[:, 1], "-", color=_color(i), lw=1.8, label=label, zorder=6)
        ax.scatter(
            pts[:1, 0], pts[:1, 1], marker="o", s=110, facecolors="white", edgecolors="black",
            linewidths=1.8, label="start" if i == 0 else None, zorder=7,
        )
        heads.append(
            ax.scatter(pts[:1, 0], pts[:1, 1], s=80, c=_color(i), edgecolors="black", zorder=10)
        )
        paths.append(path)
    _freeze_legend(ax)  # placed where the whole paths leave room, then kept there
    ax.set_title(f"{ax.get_title()}: step 0")
    ax.figure.draw_without_rendering()  # lay the figure out once ...
    ax.figure.set_layout_engine("none")  # ... instead of again for every frame

    def update(step: int):
        for (_, traj), path, head in zip(runs, paths, heads):
            pts = _finite(traj.points[: step + 1])
            path.set_data(pts[:, 0], pts[:, 1])
            head.set_offsets(pts[-1:])
        ax.title.set_text(f"{landscape.name.replace('_', ' ')}: step {step}")
        return [*paths, *heads]

    return FuncAnimation(ax.figure, update, frames=steps.tolist(), interval=interval, blit=False)


def _freeze_legend(ax: Axes) -> None:
    """A legend at the "best" place for what is drawn now, pinned there for later frames."""
    legend = _legend(ax)
    ax.figure.draw_without_rendering()
    corner = legend.get_window_extent().p0
    legend.set_loc(tuple(ax.transAxes.inverted().transform(corner)))


def animation_html(anim: FuncAnimation):
    """The animation as an ``IPython.display.HTML`` player (``anim.to_jshtml()``).

    Closes the animation's figure, so the notebook does not show a second, static copy of it.
    """
    from IPython.display import HTML

    with plt.rc_context(dict(ANIMATION_RC)):
        html = anim.to_jshtml()
    plt.close(anim._fig)  # FuncAnimation keeps its figure only in this attribute
    return HTML(html)


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
    at the smallest positive value). ``x`` gives the x values (None: 0, 1, 2, ...).
    """
    if band not in {"minmax", "std"}:
        raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    ax = _axes(ax)
    for i, (label, values) in enumerate(runs.items()):
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        xs = np.arange(values.shape[1]) if x is None else np.asarray(x)
        mean = values.mean(axis=0)
        if band == "minmax":
            low, high = values.min(axis=0), values.max(axis=0)
        else:
            std = values.std(axis=0)
            low, high = mean - std, mean + std
        if log:  # a band reaching zero or below would fill the log axis down to its bottom
            low = np.maximum(low, values[values > 0].min(initial=np.inf))
        ax.plot(xs, mean, color=_color(i), label=f"{label} (mean of {len(values)})")
        ax.fill_between(xs, low, high, color=_color(i), alpha=0.2, linewidth=0)
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
    """Draw one curve per training run (label -> :class:`course_lib.train.History`).

    ``metric`` is a per-epoch column (``"train_loss"``, ``"val_acc"``, ...) drawn against
    ``x = "epoch"`` or ``"seconds"`` (wall time), or ``"step_loss"`` drawn against
    ``x = "step"``. Diverged runs are marked in the legend.
    """
    if x not in _HISTORY_X:
        raise ValueError(f"x must be one of {sorted(_HISTORY_X)}, got {x!r}")
    if (metric == "step_loss") != (x == "step"):
        raise ValueError("the per-step loss is drawn against x='step', per-epoch metrics against 'epoch' or 'seconds'")
    ax = _axes(ax)
    for i, (label, history) in enumerate(histories.items()):
        if metric == "step_loss":
            ys = np.asarray(history.step_loss, dtype=float)
            xs = np.arange(1, len(ys) + 1)
        else:
            ys, xs = history.column(metric), history.column(x)
        ax.plot(xs, ys, color=_color(i), marker="o" if len(ys) <= 30 else None, markersize=4,
                label=label + (" (diverged)" if history.diverged else ""))  # fmt: skip
    if log:
        ax.set_yscale("log")
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
    for i, (label, (lrs, scores)) in enumerate(results.items()):
        lrs, scores = np.asarray(lrs, dtype=float), np.asarray(scores, dtype=float)
        ax.plot(lrs, scores, marker="o", color=_color(i), label=label)
        if chosen and label in chosen:
            best = np.flatnonzero(lrs == chosen[label])
            ax.scatter(lrs[best], scores[best], s=160, facecolors="none", edgecolors=_color(i), linewidths=2)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    _legend(ax)
    return ax
