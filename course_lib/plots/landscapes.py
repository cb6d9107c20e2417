"""Landscapes as contour plots with optimizer trajectories, their loss curves, and animations.

Every helper takes an optional ``ax`` (a new figure is made when it is None), returns the Axes
it drew on and never calls ``plt.show()``. Trajectories are drawn in a fixed colour order
(:data:`~course_lib.plots.style.COLORS`), so the same optimizer has the same colour on a
landscape and in the matching loss plot.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes

from ..config import pick
from ..problems.landscapes import Landscape
from ..problems.runs import Trajectory
from .style import (ANIMATION_LOOP_SECONDS, ANIMATION_RC, CONTOUR_LEVELS, FAST_MAX_FRAMES, MAX_FRAMES, _axes, _clip_log_axis, _colors, _finite,
                    _labelled, _legend, _styled)

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
    colors = _colors([label for label, _ in runs])
    for i, ((label, traj), pts) in enumerate(zip(runs, paths)):
        ax.plot(
            pts[:, 0], pts[:, 1], "-o", color=colors[i], lw=1.8, markersize=3.5,
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
            last[:, 0], last[:, 1], marker="s", s=80, c=colors[i], edgecolors="black",
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
    runs = _labelled(trajectories_or_dict)
    colors = _colors([label for label, _ in runs])
    for i, (label, run) in enumerate(runs):
        losses = _finite(run.losses if isinstance(run, Trajectory) else run)
        if isinstance(run, Trajectory) and run.diverged:
            label += " (diverged)"
        ax.plot(np.arange(len(losses)), losses, color=colors[i], label=label)
    if log:
        ax.set_yscale("log")
        _clip_log_axis(ax)
    ax.set_xlabel(x)
    ax.set_ylabel("loss (log scale)" if log else "loss")
    _legend(ax)
    return ax


@_styled
def animate_trajectories(
    landscape: Landscape,
    trajectories: Any,
    interval: int | None = None,
    frames: int | None = None,
) -> FuncAnimation:
    """Animate optimizer paths growing on the contours of ``landscape``.

    The paths are drawn up to a step that advances from 0 to the last step in ``frames`` evenly
    spaced frames (default: at most :data:`MAX_FRAMES`, or :data:`FAST_MAX_FRAMES` in fast mode,
    fewer for short runs); a dot marks each optimizer's current point. ``interval`` is the delay
    between frames in milliseconds (default: one pass takes :data:`ANIMATION_LOOP_SECONDS`, at
    least 50 ms a frame). Paths that coincide stay visible: each earlier path is drawn wider and
    beneath the later ones (GD's path shows as a border around Nesterov's where they overlap).
    Show it with :func:`animation_html`.
    """
    runs = _labelled(trajectories)
    ax = plot_landscape(landscape)
    longest = max(len(t.points) for _, t in runs)
    cap = pick(full=MAX_FRAMES, fast=FAST_MAX_FRAMES)
    n_frames = min(cap, longest) if frames is None else max(1, int(frames))
    steps = np.unique(np.linspace(0, longest - 1, n_frames).round().astype(int))
    if interval is None:
        interval = max(50, round(1000 * ANIMATION_LOOP_SECONDS / len(steps)))

    paths, heads = [], []
    colors = _colors([label for label, _ in runs])
    for i, (label, traj) in enumerate(runs):
        pts = _finite(traj.points)
        under = len(runs) - 1 - i  # how many paths are drawn on top of this one
        (path,) = ax.plot(pts[:, 0], pts[:, 1], "-", color=colors[i], lw=1.8 + 1.6 * under, label=label,
                          zorder=6 + 0.01 * i, solid_capstyle="round")  # fmt: skip
        ax.scatter(
            pts[:1, 0], pts[:1, 1], marker="o", s=110, facecolors="white", edgecolors="black",
            linewidths=1.8, label="start" if i == 0 else None, zorder=7,
        )
        heads.append(
            ax.scatter(pts[:1, 0], pts[:1, 1], s=80 + 50 * under, c=colors[i], edgecolors="black", zorder=10 + 0.01 * i)
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
    """The animation as an ``IPython.display.HTML`` player (``anim.to_jshtml()``), after a static
    picture of its last frame.

    The last frame is displayed as an ordinary figure first, so that a page without JavaScript
    (a static site, a notebook viewer) still shows the whole paths; then the figure is closed
    and the player returned.
    """
    from IPython.display import HTML, display

    with plt.rc_context(dict(ANIMATION_RC)):
        html = anim.to_jshtml()  # leaves the figure at the last frame
    fig = anim._fig  # FuncAnimation keeps its figure only in this attribute
    if _in_ipython():
        display(fig)
    plt.close(fig)
    return HTML(html)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the course
        return False
    return get_ipython() is not None
