"""Tests for course_lib.plots: the right artists are drawn, in the course style, quickly."""

import gc


import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.contour import ContourSet

from course_lib import plots
from course_lib.problems import get_landscape, run_optimizer, run_optimizers


@pytest.fixture(scope="module")
def ravine_runs():
    land = get_landscape("ravine")
    runs = {
        "SGD": (torch.optim.SGD, {"lr": 0.07}),
        "Adam": (torch.optim.Adam, {"lr": 0.1}),
    }
    return land, run_optimizers(land, runs, steps=40)


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_landscape_draws_contours_minima_and_one_line_per_trajectory(ravine_runs):
    land, trajs = ravine_runs
    ax = plots.plot_landscape(land, trajectories=trajs)
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    assert len(ax.lines) == len(trajs)
    labels = legend_texts(ax)
    assert {"SGD", "Adam", "start", "global minimum"} <= set(labels)
    assert labels[:2] == ["SGD", "Adam"]  # runs first
    assert ax.get_xlim() == land.x_range and ax.get_ylim() == land.y_range
    np.testing.assert_allclose(ax.lines[0].get_xydata(), trajs["SGD"].points)
    assert ax.figure is not None


def test_plot_landscape_marks_saddles_and_local_minima_and_draws_on_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    plots.plot_landscape(get_landscape("saddle"), ax=left)
    plots.plot_landscape(get_landscape("local_minima"), ax=right, levels=8)
    assert "saddle point" in legend_texts(left)
    assert "local minimum" not in legend_texts(left)  # both minima of the saddle are global
    assert {"local minimum", "global minimum", "saddle point"} <= set(legend_texts(right))
    assert not left.lines and not right.lines
    assert right.xaxis.label.get_size() == plots.STYLE["axes.labelsize"]


def test_plot_landscape_without_minima_or_trajectories_has_no_legend():
    ax = plots.plot_landscape(get_landscape("rosenbrock"), show_minima=False, resolution=40)
    assert ax.get_legend() is None
    assert any(isinstance(c, ContourSet) for c in ax.collections)


@pytest.mark.parametrize("name", ["ravine", "plateau", "beale"])
def test_contour_levels_increase(name):
    land = get_landscape(name)
    X, Y, Z = land.grid(50)
    levels = plots.contour_levels(land, Z)
    assert len(levels) == plots.CONTOUR_LEVELS
    assert np.all(np.diff(levels) > 0) and levels[0] > land.min_value
    np.testing.assert_array_equal(plots.contour_levels(land, Z, [1.0, 2.0]), [1.0, 2.0])


def test_diverged_trajectory_is_drawn_and_labelled():
    land = get_landscape("ravine")
    traj = run_optimizer(land, torch.optim.SGD, steps=200, lr=0.1, label="too fast")
    assert traj.diverged
    ax = plots.plot_landscape(land, trajectories=[traj])
    assert legend_texts(ax)[0] == "too fast (diverged)"
    ax = plots.plot_losses(traj)
    assert legend_texts(ax) == ["too fast (diverged)"]


def test_plot_losses_draws_one_curve_per_run(ravine_runs):
    _, trajs = ravine_runs
    ax = plots.plot_losses(trajs)
    assert len(ax.lines) == 2 and legend_texts(ax) == ["SGD", "Adam"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), trajs["Adam"].losses)


def test_plot_losses_takes_arrays_and_a_linear_axis():
    ax = plots.plot_losses({"train": np.linspace(2, 1, 5), "val": np.ones(5)}, log=False, x="epoch")
    assert ax.get_yscale() == "linear" and ax.get_xlabel() == "epoch"
    assert legend_texts(ax) == ["train", "val"]


def test_same_run_same_colour_on_landscape_and_losses(ravine_runs):
    land, trajs = ravine_runs
    contour_ax = plots.plot_landscape(land, trajectories=trajs)
    loss_ax = plots.plot_losses(trajs)
    assert [ln.get_color() for ln in contour_ax.lines] == [ln.get_color() for ln in loss_ax.lines]


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")
def test_animation_frames_are_bounded(ravine_runs, monkeypatch):
    land, trajs = ravine_runs
    long_run = run_optimizer(land, torch.optim.SGD, steps=500, lr=0.01)
    for fast, cap in (("0", plots.MAX_FRAMES), ("1", plots.FAST_MAX_FRAMES)):
        monkeypatch.setenv("COURSE_FAST", fast)
        anim = plots.animate_trajectories(land, [long_run])
        assert isinstance(anim, FuncAnimation)
        frames = list(anim.new_frame_seq())
        assert len(frames) == cap <= 60
        assert frames[0] == 0 and frames[-1] == len(long_run) - 1
    short = plots.animate_trajectories(land, trajs, frames=500)
    assert len(list(short.new_frame_seq())) == len(trajs["SGD"])  # never more frames than steps
    del anim, short  # never rendered, on purpose: collect them while their warning is ignored
    gc.collect()


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")
def test_animation_pace_and_overlapping_paths_stay_visible(ravine_runs, monkeypatch):
    land, trajs = ravine_runs
    monkeypatch.setenv("COURSE_FAST", "0")
    long_run = run_optimizer(land, torch.optim.SGD, steps=500, lr=0.01)
    anim = plots.animate_trajectories(land, {"GD": long_run, "copy": long_run})
    frames = len(list(anim.new_frame_seq()))
    assert anim._interval * frames / 1000 == pytest.approx(plots.style.ANIMATION_LOOP_SECONDS, rel=0.05)
    assert plots.animate_trajectories(land, trajs, interval=70)._interval == 70
    lines = [line for line in anim._fig.axes[0].get_lines() if line.get_label() in ("GD", "copy")]
    gd, copy = sorted(lines, key=lambda line: line.get_label() != "GD")
    assert gd.get_linewidth() > copy.get_linewidth() and gd.get_zorder() < copy.get_zorder()
    del anim
    gc.collect()


def test_animation_html_renders_a_player_and_closes_the_figure(ravine_runs):
    land, trajs = ravine_runs
    anim = plots.animate_trajectories(land, trajs, frames=4)
    fig_number = anim._fig.number
    html = plots.animation_html(anim)
    assert "<img" in html.data or "data:image" in html.data
    assert len(html.data) > 1000
    assert fig_number not in plt.get_fignums()


def test_curves_with_band(ravine_runs):
    rng = np.random.default_rng(0)
    runs = {"a": rng.random((3, 20)) + 1.0, "b": rng.random((5, 20))}
    for band in ("minmax", "std"):
        ax = plots.plot_curves_with_band(np.arange(20) * 10, runs, band=band, log=True)
        assert len(ax.lines) == 2 and len(ax.collections) == 2  # a mean line and a band each
        np.testing.assert_allclose(ax.lines[0].get_ydata(), runs["a"].mean(axis=0))
        assert ax.lines[0].get_xdata()[-1] == 190
        assert legend_texts(ax) == ["a (mean of 3)", "b (mean of 5)"]
    with pytest.raises(ValueError, match="band"):
        plots.plot_curves_with_band(None, runs, band="iqr")


def test_sequence_smoothing():
    days = np.arange(30)
    values = np.sin(days / 5.0) + 0.1 * np.cos(days)
    ax = plots.plot_sequence_smoothing(days, values, {"β = 0.5": values * 0.9, "β = 0.9": values})
    assert len(ax.lines) == 2 and len(ax.collections) == 1
    assert set(legend_texts(ax)) == {"measured", "β = 0.5", "β = 0.9"}


def test_style_is_one_read_only_place():
    with pytest.raises(TypeError):
        plots.STYLE["font.size"] = 30
    default = plt.rcParams["font.size"]
    with plots.course_style():
        assert plt.rcParams["font.size"] == plots.STYLE["font.size"]
        assert tuple(plt.rcParams["figure.figsize"]) == plots.STYLE["figure.figsize"]
    assert plt.rcParams["font.size"] == default  # nothing leaks out of the context
    ax = plots.plot_losses({"a": np.ones(3)})
    assert tuple(ax.figure.get_size_inches()) == plots.STYLE["figure.figsize"]
    assert ax.title.get_size() == plots.STYLE["axes.titlesize"]


def test_plot_histories_draws_one_curve_per_run():
    from course_lib.engine import EpochRecord, History

    def history(offset, diverged=False):
        h = History(step_loss=[3.0 - offset, 2.0 - offset], diverged=diverged)
        h.epochs = [EpochRecord(e, 2.0 - offset / e, 0.3, 2.1, 0.3 + 0.1 * e, 0.5 * e, 0.1) for e in (1, 2)]
        return h

    runs = {"SGD": history(0.0), "Adam": history(0.5, diverged=True)}
    ax = plots.plot_histories(runs, metric="val_acc", x="seconds")
    assert [line.get_label() for line in ax.get_lines()] == ["SGD", "Adam (diverged)"]
    assert list(ax.get_lines()[0].get_xdata()) == [0.5, 1.0]
    assert ax.get_xlabel() == "wall time (s)"
    ax = plots.plot_histories(runs, metric="step_loss", x="step")
    assert list(ax.get_lines()[1].get_ydata()) == [2.5, 1.5]
    with pytest.raises(ValueError, match="x="):
        plots.plot_histories(runs, metric="step_loss", x="epoch")
    plt.close("all")


def test_a_method_keeps_its_colour_across_figures():
    from course_lib.plots.style import METHOD_COLORS, _colors

    a = _colors(["GD", "momentum β=0.9"])
    b = _colors(["momentum lr=0.01", "Adam", "SGD lr=0.1"])
    assert a[0] == b[2] == METHOD_COLORS["gd"] and a[1] == b[0] == METHOD_COLORS["momentum"]
    assert b[1] == METHOD_COLORS["adam"] and _colors(["AdamW λ=0.1"]) == [METHOD_COLORS["adamw"]]
    three = _colors(["GD η=0.01", "GD η=0.05", "GD η=0.1"])  # one method, three runs: three colours
    assert len(set(three)) == 3 and three[0] == METHOD_COLORS["gd"]


def test_log_axis_is_clipped_to_a_readable_range():
    ax = plots.plot_losses({"fast": np.logspace(0, -96, 50), "slow": np.logspace(0, -3, 50)})
    bottom, top = ax.get_ylim()
    assert bottom > 1e-18 and top >= 1.0


def test_plot_ranking_puts_the_best_on_top_with_two_standard_errors():
    from course_lib import plots

    ax = plots.plot_ranking({"SGD": (0.30, 0.01), "Adam": (0.36, 0.005), "Broken": (float("nan"), 0.0)})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Broken", "SGD", "Adam"]  # bottom to top
    bars = [c for c in ax.containers]
    assert len(bars) == 2 and "2 SE" in ax.get_xlabel()
    top = bars[1]  # Adam, drawn second (top row)
    segment = top.lines[2][0].get_segments()[0]
    assert segment[0][0] == pytest.approx(0.36 - 0.01) and segment[1][0] == pytest.approx(0.36 + 0.01)
    low = plots.plot_ranking({"a": (2.0, 0.1), "b": (1.5, 0.1)}, lower_is_better=True)
    assert [t.get_text() for t in low.get_yticklabels()] == ["a", "b"] and "lower is better" in low.get_xlabel()


def test_curves_with_band_leave_diverged_seeds_out_and_say_so():
    good = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    runs = {"Adam": good, "SGD": np.vstack([good, [[1.0, np.nan, np.nan]]]),
            "Lion": np.full((2, 3), np.nan)}  # fmt: skip
    ax = plots.plot_curves_with_band(None, runs)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["Adam (mean of 2)", "SGD (mean of 2; 1 diverged)", "Lion (all 2 diverged)"]
    adam, sgd, lion = ax.get_lines()
    np.testing.assert_allclose(sgd.get_ydata(), [2.0, 3.0, 4.0])  # the mean of the two finite seeds
    np.testing.assert_allclose(sgd.get_ydata(), adam.get_ydata())
    assert len(lion.get_ydata()) == 0
    plt.close(ax.figure)
