"""The course-wide plotting style and the small helpers every plotting module shares.

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
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from ..problems.runs import Trajectory

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

ANIMATION_LOOP_SECONDS = 12.0
"""How long one pass of an animation lasts by default: slow enough to follow each path."""

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


METHOD_COLORS = MappingProxyType({
    "gd": COLORS[0], "momentum": COLORS[1], "nesterov": COLORS[2], "adagrad": COLORS[3],
    "rmsprop": COLORS[4], "adam": COLORS[5], "adamw": COLORS[6],
})
"""One colour per method, in every figure of the course: a run whose label names a method
(``"GD"``, ``"SGD lr=0.1"``, ``"momentum β=0.9"``, ``"heavy ball"``, ``"Nesterov"``, ``"Adagrad"``,
``"RMSProp"``, ``"Adam"``, ``"AdamW"``) is drawn in that method's colour (:func:`_colors`)."""

_METHOD_WORDS = (("adamw", "adamw"), ("amsgrad", "adam"), ("adam", "adam"), ("rmsprop", "rmsprop"),
                 ("adagrad", "adagrad"), ("nesterov", "nesterov"), ("heavy ball", "momentum"),
                 ("momentum", "momentum"), ("sgd", "gd"), ("gd", "gd"))  # fmt: skip


def _method(label: str) -> str | None:
    low = label.lower()
    for word, method in _METHOD_WORDS:
        if word in low:
            return method
    return None


def _colors(labels: Sequence[str]) -> list[str]:
    """A colour per label: the method's colour (:data:`METHOD_COLORS`) for the first run of each
    named method, the colours no method of this figure uses for the rest, in order.

    So GD is blue and momentum orange in every figure that names them, and three learning rates of
    one method still get three colours.
    """
    methods = [_method(label) for label in labels]
    taken = {METHOD_COLORS[m] for m in methods if m is not None}
    spare = [c for c in COLORS if c not in taken]
    out, used = [], set()
    for method in methods:
        if method is not None and method not in used:
            used.add(method)
            out.append(METHOD_COLORS[method])
        else:
            out.append(spare.pop(0) if spare else COLORS[len(out) % len(COLORS)])
    return out


LOG_FLOOR = 1e-16
"""On a log axis the bottom is at least ``LOG_FLOOR`` times the largest value drawn: a loss that
reaches machine precision runs off the bottom instead of stretching the axis down to 1e-96."""


def _clip_log_axis(ax: Axes) -> None:
    """Raise the bottom of a log y axis to ``LOG_FLOOR`` times the largest value drawn."""
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines]
    values = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else np.zeros(0)
    if values.size:
        bottom = max(values.min(), LOG_FLOOR * values.max())
        ax.set_ylim(bottom=bottom / 1.5)


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
