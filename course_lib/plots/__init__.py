"""Plots in one course-wide style: landscapes with trajectories, animations, curves with bands.

=================  =========================================================================
``style``          the course's matplotlib settings (readable on a projector), colours, helpers
``landscapes``     contours with trajectories, loss curves of landscape runs, animations
``curves``         curves with a band over seeds, smoothed sequences, histories, lr sensitivity,
                   rankings with error bars
=================  =========================================================================

Every helper takes an optional ``ax`` (a new figure is made when it is None), returns the Axes
it drew on (``ax.figure`` is the Figure) and never calls ``plt.show()``: the notebooks do that.
"""

from .curves import plot_curves_with_band, plot_histories, plot_lr_sensitivity, plot_ranking, plot_sequence_smoothing
from .landscapes import animate_trajectories, animation_html, contour_levels, plot_landscape, plot_losses
from .style import ANIMATION_RC, COLORS, CONTOUR_LEVELS, FAST_MAX_FRAMES, MAX_FRAMES, STYLE, course_style, set_course_style

__all__ = [
    "COLORS", "STYLE", "MAX_FRAMES", "FAST_MAX_FRAMES", "ANIMATION_RC", "CONTOUR_LEVELS", "course_style",
    "set_course_style", "contour_levels", "plot_landscape", "plot_losses", "animate_trajectories", "animation_html",
    "plot_curves_with_band", "plot_sequence_smoothing", "plot_histories", "plot_lr_sensitivity", "plot_ranking",
]  # fmt: skip
