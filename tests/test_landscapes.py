"""Tests for course_lib.landscapes: the stated stationary points and the optimizer runner."""

import functools

import numpy as np
import pytest
import torch

from course_lib.landscapes import (
    LANDSCAPES,
    Landscape,
    Trajectory,
    compare_optimizers,
    get_landscape,
    gradient,
    hessian,
    rosenbrock,
    run_optimizer,
)

NAMES = sorted(LANDSCAPES)


@pytest.fixture(scope="module", params=NAMES)
def landscape(request) -> Landscape:
    return get_landscape(request.param)


def test_at_least_the_required_landscapes():
    assert {"ravine", "saddle", "plateau", "local_minima", "rosenbrock"} <= set(LANDSCAPES)


def test_minima_have_zero_gradient_and_positive_definite_hessian(landscape):
    assert landscape.minima
    for m in landscape.minima:
        np.testing.assert_allclose(gradient(landscape, m), 0.0, atol=1e-6)
        assert np.all(np.linalg.eigvalsh(hessian(landscape, m)) > 0), m


def test_saddles_have_zero_gradient_and_indefinite_hessian(landscape):
    for s in landscape.saddles:
        np.testing.assert_allclose(gradient(landscape, s), 0.0, atol=1e-6)
        eig = np.linalg.eigvalsh(hessian(landscape, s))
        assert eig[0] < 0 < eig[1], s


def test_global_minimum_is_zero_and_first(landscape):
    values = [landscape.value(m) for m in landscape.minima]
    assert values == sorted(values)
    assert abs(values[0]) < 1e-12
    X, Y, Z = landscape.grid(60)
    assert Z.shape == X.shape == Y.shape == (60, 60)
    assert Z.min() >= -1e-12  # nothing on the plotting window is below the global minimum


def test_points_lie_in_the_plotting_window(landscape):
    for x, y in (*landscape.minima, *landscape.saddles, landscape.start):
        assert landscape.x_range[0] <= x <= landscape.x_range[1]
        assert landscape.y_range[0] <= y <= landscape.y_range[1]
    assert landscape.levels in {"log", "linear"}


def test_fn_takes_floats_arrays_and_tensors():
    land = rosenbrock()
    assert float(land.fn(1.0, 1.0)) == 0.0
    assert land(np.array([0.0, 1.0]), np.array([0.0, 1.0])).shape == (2,)
    grid = land.fn(torch.zeros(3, 1), torch.zeros(1, 4))
    assert grid.shape == (3, 4) and grid.dtype == torch.float32  # tensors keep their dtype


def test_local_minima_are_distinct_with_one_global():
    land = get_landscape("local_minima")
    assert len(land.minima) == 4 and len(land.saddles) == 4
    values = [land.value(m) for m in land.minima]
    assert values[0] < values[1] - 0.1  # a unique global minimum
    np.testing.assert_allclose(gradient(land, land.minima[-1]), 0.0, atol=1e-8)


def test_unknown_landscape_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="ravine"):
        get_landscape("himmelblau")


def test_ravine_condition_number():
    eig = np.linalg.eigvalsh(hessian(get_landscape("ravine", condition=40.0), (0.3, -0.2)))
    assert eig[1] / eig[0] == pytest.approx(40.0)


def test_sgd_converges_on_the_ravine():
    land = get_landscape("ravine")
    traj = run_optimizer(land, torch.optim.SGD, steps=200, lr=0.07)
    assert isinstance(traj, Trajectory)
    assert traj.points.shape == (201, 2) and traj.losses.shape == (201,)
    assert traj.points.dtype == np.float64
    np.testing.assert_array_equal(traj.points[0], land.start)
    assert traj.losses[0] == pytest.approx(land.value(land.start))
    assert not traj.diverged
    assert traj.final_loss < 1e-8
    assert traj.steps_to_reach(1e-3) is not None
    assert traj.label == "SGD(lr=0.07)"


def test_too_large_lr_diverges_on_the_ravine():
    land = get_landscape("ravine", condition=25.0)
    traj = run_optimizer(land, torch.optim.SGD, steps=500, lr=2.0 / 25.0 * 1.25)
    assert traj.diverged
    assert len(traj.points) == len(traj.losses) < 501  # stopped early
    assert traj.steps_to_reach(1e-3) is None


def test_adam_gets_close_on_rosenbrock():
    land = get_landscape("rosenbrock")
    traj = run_optimizer(land, torch.optim.Adam, steps=800, lr=0.2)
    assert not traj.diverged
    assert traj.steps_to_reach(5e-2) is not None
    assert traj.final_loss < 1e-3


def test_saddle_stable_manifold_traps_plain_gd_and_noise_escapes():
    land = get_landscape("saddle")
    (saddle,) = land.saddles
    on_manifold = (1.5, 0.0)
    stuck = run_optimizer(land, torch.optim.SGD, steps=300, start=on_manifold, lr=0.1)
    assert np.linalg.norm(stuck.final_point - saddle) < 1e-6
    assert stuck.escape_step(0.5, center=saddle) is None

    noisy = run_optimizer(
        land, torch.optim.SGD, steps=300, start=on_manifold, noise_std=0.01, seed=1, lr=0.1
    )
    step = noisy.escape_step(0.5, center=saddle)
    assert step is not None and step > noisy.steps_to_reach(0.5, target=saddle)
    assert noisy.steps_to_reach(0.05) is not None  # ends in one of the minima


def test_tiny_offset_escapes_slowly():
    land = get_landscape("saddle")
    (saddle,) = land.saddles
    fast = run_optimizer(land, torch.optim.SGD, steps=250, start=(1.5, 1e-2), lr=0.1)
    slow = run_optimizer(land, torch.optim.SGD, steps=250, start=(1.5, 1e-6), lr=0.1)
    assert fast.escape_step(0.5, saddle) < slow.escape_step(0.5, saddle)


def test_escape_step_from_the_start():
    traj = Trajectory(
        points=np.array([[0.0, 0.0], [0.1, 0.0], [0.6, 0.0], [0.2, 0.0]]),
        losses=np.zeros(4),
        label="hand-made",
    )
    assert traj.escape_step(0.5) == 2
    assert traj.escape_step(1.0) is None
    assert traj.escape_step(0.3, center=(5.0, 0.0)) is None  # never came near


def test_same_seed_repeats_exactly_and_seeds_differ():
    land = get_landscape("local_minima")
    kwargs = dict(steps=100, noise_std=0.5, lr=0.02, momentum=0.9)
    a = run_optimizer(land, torch.optim.SGD, seed=3, **kwargs)
    b = run_optimizer(land, torch.optim.SGD, seed=3, **kwargs)
    c = run_optimizer(land, torch.optim.SGD, seed=4, **kwargs)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.points, c.points)


def test_scheduler_is_stepped():
    land = get_landscape("ravine")
    one_step_only = lambda step: float(step == 0)  # noqa: E731
    frozen = functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=one_step_only)
    traj = run_optimizer(land, torch.optim.SGD, steps=10, scheduler=frozen, lr=0.05)
    np.testing.assert_array_equal(traj.points[1], traj.points[-1])  # lr is 0 after one step
    assert not np.array_equal(traj.points[0], traj.points[1])


def test_compare_optimizers_runs_every_entry_with_common_settings():
    land = get_landscape("plateau")
    runs = {
        "SGD": (torch.optim.SGD, {"lr": 1.0}),
        "Adam": (torch.optim.Adam, {"lr": 0.1}),
    }
    out = compare_optimizers(land, runs, steps=150, start=(3.6, 2.7))
    assert list(out) == ["SGD", "Adam"]
    assert all(t.label == label for label, t in out.items())
    assert all(len(t) == 151 for t in out.values())
    assert out["Adam"].steps_to_reach(1e-2) is not None
    assert out["SGD"].steps_to_reach(1e-2) is None  # still crossing the plateau
