"""course_lib.problems: the landscapes' stated stationary points, the optimizer runners, the quadratic theory."""

import functools

import numpy as np
import pytest
import torch

from course_lib.problems import (
    LANDSCAPES,
    Landscape,
    Trajectory,
    run_optimizers,
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
        H = hessian(landscape, m)
        if landscape.name == "parabola":  # 1-D, constant in y: only the x curvature is positive
            assert H[0, 0] > 0 and H[0, 1] == H[1, 0] == H[1, 1] == 0, m
        else:
            assert np.all(np.linalg.eigvalsh(H) > 0), m


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


def test_run_optimizers_runs_every_entry_with_common_settings():
    land = get_landscape("plateau")
    runs = {
        "SGD": (torch.optim.SGD, {"lr": 1.0}),
        "Adam": (torch.optim.Adam, {"lr": 0.1}),
    }
    out = run_optimizers(land, runs, steps=150, start=(3.6, 2.7))
    assert list(out) == ["SGD", "Adam"]
    assert all(t.label == label for label, t in out.items())
    assert all(len(t) == 151 for t in out.values())
    assert out["Adam"].steps_to_reach(1e-2) is not None
    assert out["SGD"].steps_to_reach(1e-2) is None  # still crossing the plateau


# ---- gradient descent on quadratics, many starts, basins, gradient norms --------------------

from course_lib import optim  # noqa: E402
from course_lib.problems import (  # noqa: E402
    basin_labels,
    gd_contraction,
    gd_steps_bound,
    gradient_norms,
    max_stable_lr,
    optimal_lr,
    parabola,
    ravine,
    run_many,
)


def test_parabola_is_one_dimensional_and_gd_multiplies_by_one_minus_lr_curvature():
    curvature = 4.0
    land = parabola(curvature=curvature, start=1.0)
    assert land.value((0.5, 0.7)) == pytest.approx(curvature * 0.25 / 2)
    for lr in (0.05, 0.2, 0.45):
        traj = run_optimizer(land, optim.SGD, steps=20, lr=lr)
        np.testing.assert_array_equal(traj.points[:, 1], 0.0)  # y never moves
        ratios = traj.points[1:, 0] / traj.points[:-1, 0]
        np.testing.assert_allclose(ratios, 1 - lr * curvature, rtol=1e-12)
        assert not traj.diverged
    assert run_optimizer(land, optim.SGD, steps=500, lr=0.55).diverged
    at_limit = run_optimizer(land, optim.SGD, steps=50, lr=max_stable_lr(curvature))
    np.testing.assert_allclose(np.abs(at_limit.points[:, 0]), 1.0)  # oscillates forever
    with pytest.raises(ValueError):
        parabola(curvature=0.0)


def test_max_stable_lr_optimal_lr_and_contraction():
    assert max_stable_lr(4.0) == pytest.approx(0.5)
    assert max_stable_lr(np.diag([1.0, 25.0])) == pytest.approx(2 / 25)
    H = np.array([[2.0, 1.0], [1.0, 2.0]])  # eigenvalues 1 and 3
    assert max_stable_lr(H) == pytest.approx(2 / 3)
    assert optimal_lr(H) == pytest.approx(0.5)
    assert gd_contraction(H, 0.5) == pytest.approx(0.5)
    assert gd_contraction(H, max_stable_lr(H)) == pytest.approx(1.0)
    assert gd_contraction(4.0, 0.55) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="positive definite"):
        max_stable_lr(np.diag([2.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        max_stable_lr(np.array([[1.0, 2.0], [0.0, 1.0]]))


@pytest.mark.parametrize("condition", [2.0, 10.0, 50.0])
def test_gd_steps_bound_is_exact_at_the_optimal_lr_on_the_ravine(condition):
    land = ravine(condition=condition)
    H = hessian(land, (0.0, 0.0))
    lr = optimal_lr(H)
    distance, tol = float(np.linalg.norm(land.start)), 1e-3
    bound = gd_steps_bound(H, lr, distance, tol)
    traj = run_optimizer(land, optim.SGD, steps=bound + 5, lr=lr)
    assert traj.steps_to_reach(tol) == bound
    assert gd_steps_bound(H, 1.0 / condition, distance, tol) >= traj.steps_to_reach(tol)
    assert gd_steps_bound(H, max_stable_lr(H), distance, tol) is None
    assert gd_steps_bound(H, lr, distance=1e-4, tol=tol) == 0


def test_run_many_equals_run_optimizer_from_each_start():
    land = get_landscape("local_minima")
    starts = [(1.9, 1.8), (-1.5, 0.3), (0.2, -1.7)]
    for kwargs in (dict(lr=0.02), dict(lr=0.02, momentum=0.9), dict(lr=0.05, betas=(0.9, 0.99))):
        cls = optim.Adam if "betas" in kwargs else optim.SGD
        many = run_many(land, cls, starts, steps=60, **kwargs)
        assert len(many) == len(starts)
        for start, traj in zip(starts, many):
            one = run_optimizer(land, cls, steps=60, start=start, **kwargs)
            np.testing.assert_array_equal(traj.points, one.points)
            np.testing.assert_allclose(traj.losses, one.losses, rtol=1e-15, atol=1e-15)
            assert traj.label == one.label and traj.minima == land.minima


def test_run_many_single_start_noise_matches_run_optimizer():
    land = get_landscape("saddle")
    kwargs = dict(steps=40, noise_std=0.05, seed=7, lr=0.1)
    (many,) = run_many(land, optim.SGD, [(1.5, 0.0)], **kwargs)
    one = run_optimizer(land, optim.SGD, start=(1.5, 0.0), **kwargs)
    np.testing.assert_array_equal(many.points, one.points)


def test_run_many_cuts_only_the_diverging_rows():
    land = ravine(condition=25.0)
    # the second start sits on y = 0, where the y curvature (which is too large for lr) is idle
    wild, calm = run_many(land, optim.SGD, [(1.0, 1.0), (1.0, 0.0)], steps=400, lr=0.1)
    assert wild.diverged and len(wild) < 401 and len(wild.losses) == len(wild)
    assert not calm.diverged and len(calm) == 401 and calm.final_loss < 1e-12


def test_basin_labels_and_gradient_norms():
    land = get_landscape("local_minima")
    starts = np.array(land.minima) + 0.1
    runs = run_many(land, optim.SGD, starts, steps=200, lr=0.02)
    np.testing.assert_array_equal(basin_labels(land, runs), np.arange(4))
    assert basin_labels(land, runs[2])[0] == 2
    short = run_many(land, optim.SGD, [(1.9, 1.9)], steps=1, lr=0.001)
    assert basin_labels(land, short)[0] == -1
    points = np.array([[0.3, -0.4], [1.9, 1.2], list(land.minima[1])])
    expected = [np.linalg.norm(gradient(land, p)) for p in points]
    np.testing.assert_allclose(gradient_norms(land, points), expected, rtol=1e-12, atol=1e-12)


def test_steps_to_settle_counts_from_the_last_exit():
    # a path along x that overshoots the minimum at 0: 1, 0.3, -0.6, 0.05, -0.02, 0.01
    xs = np.array([1.0, 0.3, -0.6, 0.05, -0.02, 0.01])
    traj = Trajectory(points=np.stack([xs, np.zeros_like(xs)], 1), losses=xs**2, label="toy",
                      minima=((0.0, 0.0),))  # fmt: skip
    assert traj.steps_to_reach(0.4) == 1  # first visit
    assert traj.steps_to_settle(0.4) == 3  # stays within from step 3 on, after the overshoot to -0.6
    assert traj.steps_to_settle(2.0) == 0
    assert traj.steps_to_settle(0.015) == 5  # only the last point is within
    assert traj.steps_to_settle(0.005) is None  # the run ends outside
