"""course_lib.problems.quadratic: the theory of gradient descent and momentum on quadratics, checked
against measured runs of the real optimizer classes."""

import math

import numpy as np
import pytest

from course_lib import optim
from course_lib.problems import (gd_contraction, gd_steps_bound, momentum_factors, momentum_matrix,
                                 momentum_max_stable_lr, momentum_rate, optimal_lr, optimal_momentum, parabola,
                                 ravine, rotated_ravine, run_optimizer, steps_at_rate, tune_lr)


def _measured_rate(traj, first, last):
    d = traj.distances()
    return (d[last] / d[first]) ** (1.0 / (last - first))


def test_momentum_zero_is_gradient_descent():
    a = np.linspace(0.0, 2.5, 11)
    np.testing.assert_allclose(momentum_factors(a, 0.0), np.abs(1 - a), atol=1e-12)
    np.testing.assert_allclose(momentum_factors(a, 0.0, nesterov=True), np.abs(1 - a), atol=1e-12)
    H = np.diag([1.0, 25.0])
    assert momentum_rate(H, 0.05, 0.0) == pytest.approx(gd_contraction(H, 0.05))


def test_matrix_reproduces_torch_momentum_exactly():
    """Iterating the companion matrix from (θ0, θ0) gives torch's SGD path along one direction."""
    for nesterov in (False, True):
        land = parabola(curvature=4.0, start=1.0)
        traj = run_optimizer(land, optim.SGD, steps=30, lr=0.2, momentum=0.7, nesterov=nesterov)
        M = momentum_matrix(0.2, 0.7, 4.0, nesterov=nesterov)
        # heavy ball: torch's b₁ = g₁ is the recursion from θ₋₁ = θ₀; Nesterov's stored look-ahead
        # point follows the recursion from its first two points
        state = np.array([1.0, 1.0]) if not nesterov else traj.points[1::-1, 0].copy()
        path = [1.0] if not nesterov else [1.0, traj.points[1, 0]]
        while len(path) < 31:
            state = M @ state
            path.append(state[0])
        np.testing.assert_allclose(traj.points[:, 0], path, atol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_stability_limit_separates_converging_and_diverging_runs(nesterov):
    land = parabola(curvature=4.0, start=1.0)
    for beta in ((0.5, 0.9) if nesterov else (0.0, 0.5, 0.9)):
        limit = momentum_max_stable_lr(4.0, beta, nesterov=nesterov)
        assert momentum_rate(4.0, 0.98 * limit, beta, nesterov=nesterov) < 1 < momentum_rate(
            4.0, 1.02 * limit, beta, nesterov=nesterov)
        below = run_optimizer(land, optim.SGD, steps=3000, lr=0.98 * limit, momentum=beta, nesterov=nesterov)
        above = run_optimizer(land, optim.SGD, steps=3000, lr=1.02 * limit, momentum=beta, nesterov=nesterov)
        assert not below.diverged and abs(below.points[-1, 0]) < 1e-3
        assert above.diverged
    assert momentum_max_stable_lr(1.0, 0.9) == pytest.approx(3.8)
    assert momentum_max_stable_lr(1.0, 0.9, nesterov=True) == pytest.approx(3.8 / 2.8)


def test_underdamped_rate_is_sqrt_beta_and_matches_the_measured_rate():
    H = np.diag([1.0, 25.0])
    lr, beta = 0.03, 0.9
    assert momentum_rate(H, lr, beta) == pytest.approx(math.sqrt(beta))
    traj = run_optimizer(ravine(25.0), optim.SGD, steps=400, lr=lr, momentum=beta)
    # the distance oscillates inside an envelope ρᵗ: compare over a long window
    assert _measured_rate(traj, 100, 380) == pytest.approx(math.sqrt(beta), rel=0.02)


def test_optimal_momentum_rate_and_sqrt_kappa_scaling():
    steps = {}
    for kappa in (25.0, 100.0, 400.0):
        H = np.diag([1.0, kappa])
        lr, beta = optimal_momentum(H)
        rate = momentum_rate(H, lr, beta)
        assert rate == pytest.approx((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1), rel=1e-6)
        assert rate < gd_contraction(H, optimal_lr(H))
        traj = run_optimizer(ravine(kappa), optim.SGD, steps=3000, lr=lr, momentum=beta)
        steps[kappa] = traj.steps_to_settle(1e-3)
        predicted = steps_at_rate(rate, np.linalg.norm(traj.points[0]), 1e-3)
        # critically damped (a double eigenvalue): the error is (a + b t) ρᵗ, a few steps more than ρᵗ alone
        assert predicted <= steps[kappa] <= 1.6 * predicted + 10
    # √κ: four times the condition number, about twice the steps (GD would need four times)
    assert 1.6 < steps[100.0] / steps[25.0] < 2.6
    assert 1.6 < steps[400.0] / steps[100.0] < 2.6


def test_nesterov_at_lr_one_over_h_kills_that_direction_in_two_steps():
    land = parabola(curvature=4.0, start=1.0)
    traj = run_optimizer(land, optim.SGD, steps=5, lr=0.25, momentum=0.9, nesterov=True)
    assert abs(traj.points[2, 0]) < 1e-15
    assert momentum_factors(1.0, 0.9, nesterov=True) == pytest.approx(0.0)


def test_steps_at_rate_agrees_with_gd_steps_bound():
    H = np.diag([1.0, 25.0])
    for lr in (0.01, optimal_lr(H), 0.075):
        assert steps_at_rate(gd_contraction(H, lr), 2.7, 1e-3) == gd_steps_bound(H, lr, 2.7, 1e-3)
    assert steps_at_rate(1.0, 1.0, 0.1) is None
    assert steps_at_rate(0.5, 0.01, 0.1) == 0
    assert steps_at_rate(0.0, 1.0, 0.1) == 1


def test_rotation_changes_nothing_for_sgd_but_everything_for_adagrad():
    flat, turned = ravine(25.0), rotated_ravine(25.0)
    assert np.allclose(np.linalg.eigvalsh(np.diag([1.0, 25.0])), [1, 25])
    a = run_optimizer(flat, optim.SGD, steps=100, lr=0.03, momentum=0.9)
    b = run_optimizer(turned, optim.SGD, steps=100, lr=0.03, momentum=0.9)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9, atol=1e-12)
    a = run_optimizer(flat, optim.Adagrad, steps=100, lr=0.5)
    b = run_optimizer(turned, optim.Adagrad, steps=100, lr=0.5)
    assert b.final_loss > 10 * a.final_loss


def test_landscape_runner_flags_a_run_that_ends_tenfold_above_its_start():
    """A finite run whose loss ends 10x above its start is diverged; a transient rise is not."""
    H = np.diag([1.0, 25.0])
    assert momentum_rate(H, 0.16, 0.9) > 1
    traj = run_optimizer(ravine(25.0), optim.SGD, steps=20, lr=0.16, momentum=0.9)
    assert np.isfinite(traj.losses).all() and np.abs(traj.points).max() < 1e6
    assert traj.diverged and traj.losses[-1] > 10 * traj.losses[0]
    # Polyak's tuned heavy ball at κ = 100 climbs above 10x its start, then converges
    lr, beta = optimal_momentum(np.diag([1.0, 100.0]))
    tuned = run_optimizer(ravine(100.0), optim.SGD, steps=400, lr=lr, momentum=beta)
    assert tuned.losses.max() > 10 * tuned.losses[0]
    assert not tuned.diverged and tuned.final_loss < 1e-6


def test_tune_lr_finds_the_theoretical_optimum_of_gd():
    H = np.diag([1.0, 25.0])
    grid = np.linspace(0.05, 0.079, 30)
    lr, traj = tune_lr(ravine(25.0), optim.SGD, grid, steps=400, tol=1e-3)
    assert abs(lr - optimal_lr(H)) <= 0.0021 and traj.steps_to_settle(1e-3) <= 100
    assert tune_lr(ravine(25.0), optim.SGD, [0.1, 0.2], steps=50, tol=1e-3) == (None, None)  # both diverge
    lr, slow = tune_lr(ravine(25.0), optim.SGD, [0.001, 0.01], steps=20, tol=1e-3)  # neither settles in 20 steps
    assert lr == 0.01 and slow.steps_to_settle(1e-3) is None


@pytest.mark.parametrize("kwargs", [{}, dict(momentum=0.9), dict(momentum=0.5, nesterov=True)])
def test_tune_lr_runs_are_the_runs_of_run_optimizer(kwargs):
    from course_lib.problems import saddle

    for land in (ravine(25.0), saddle()):
        lr, traj = tune_lr(land, optim.SGD, np.geomspace(1e-3, 1.0, 12), steps=300, tol=1e-3, **kwargs)
        alone = run_optimizer(land, optim.SGD, steps=300, lr=lr, **kwargs)
        np.testing.assert_array_equal(traj.points, alone.points)
        np.testing.assert_allclose(traj.losses, alone.losses, rtol=1e-15, atol=0)
