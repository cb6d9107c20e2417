"""course_lib.problems.runs.trace_optimizer: records the real optimizer's parameter and state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import optim, problems


def _stream(steps=30, shape=(3,), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((steps, *shape), generator=gen, dtype=torch.float64)


def test_stream_matches_a_hand_written_loop():
    grads = _stream()
    start = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    trace = problems.trace_optimizer(torch.optim.Adam, grads, start, lr=0.1,
                                     state_keys=["exp_avg", "exp_avg_sq", "step"])
    p = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([p], lr=0.1)
    params, m, v = [start.numpy().copy()], [], []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        params.append(p.detach().numpy().copy())
        m.append(opt.state[p]["exp_avg"].numpy().copy())
        v.append(opt.state[p]["exp_avg_sq"].numpy().copy())
    assert trace["param"].shape == (31, 3)
    assert trace["grad"].shape == (30, 3)
    np.testing.assert_array_equal(trace["param"], np.array(params))
    np.testing.assert_array_equal(trace["grad"], grads.numpy())
    np.testing.assert_array_equal(trace["exp_avg"], np.array(m))
    np.testing.assert_array_equal(trace["exp_avg_sq"], np.array(v))
    np.testing.assert_array_equal(trace["step"], np.arange(1, 31))


def test_rmsprop_state_gives_the_step():
    """The recorded square_avg reproduces every step: -lr g / (sqrt(v) + eps)."""
    grads = _stream(50, (4,))
    trace = problems.trace_optimizer(optim.RMSprop, grads, np.zeros(4), lr=0.01, state_keys=["square_avg"])
    steps = np.diff(trace["param"], axis=0)
    expected = -0.01 * trace["grad"] / (np.sqrt(trace["square_avg"]) + 1e-8)
    np.testing.assert_allclose(steps, expected, rtol=1e-12, atol=1e-15)


def test_landscape_gradient_matches_run_optimizer():
    land = problems.rosenbrock()
    trace = problems.trace_optimizer(optim.Adam, land, land.start, steps=40, lr=0.05)
    traj = problems.run_optimizer(land, optim.Adam, 40, lr=0.05)
    np.testing.assert_array_equal(trace["param"], traj.points)
    np.testing.assert_allclose(trace["grad"][0], problems.gradient(land, land.start), rtol=1e-12)


def test_callable_gradient():
    # f = |theta|^2 / 2: the gradient is theta; SGD with lr 0.5 halves the point each step
    trace = problems.trace_optimizer(optim.SGD, lambda p: p, [1.0, -2.0], steps=3, lr=0.5)
    np.testing.assert_allclose(trace["param"], [[1, -2], [0.5, -1], [0.25, -0.5], [0.125, -0.25]])


def test_steps_shorter_than_the_stream():
    trace = problems.trace_optimizer(optim.SGD, _stream(10), np.zeros(3), steps=4, lr=0.1)
    assert trace["param"].shape == (5, 3)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        problems.trace_optimizer(optim.SGD, _stream(5, (2,)), np.zeros(3), lr=0.1)
    with pytest.raises(ValueError, match="only 5 gradients"):
        problems.trace_optimizer(optim.SGD, _stream(5), np.zeros(3), steps=6, lr=0.1)
    with pytest.raises(ValueError, match="steps is required"):
        problems.trace_optimizer(optim.SGD, problems.ravine(), (1.0, 1.0), lr=0.1)
    with pytest.raises(KeyError, match="square_avg"):
        problems.trace_optimizer(optim.RMSprop, _stream(3), np.zeros(3), lr=0.1, state_keys=["exp_avg"])


def test_zero_steps():
    trace = problems.trace_optimizer(optim.Adam, _stream(3), np.ones(3), steps=0, state_keys=["exp_avg"])
    assert trace["param"].shape == (1, 3)
    assert len(trace["grad"]) == 0 and len(trace["exp_avg"]) == 0
