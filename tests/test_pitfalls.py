"""The popular snippets compute what course_lib.optim.pitfalls says they compute."""

import functools

import numpy as np
import torch

from course_lib import optim, problems
from course_lib.optim import pitfalls


RAVINE = problems.get_landscape("ravine")
GRAD = functools.partial(problems.gradient, RAVINE)
START = (-2.5, 1.0)


def test_popular_nag_snippet_is_plain_momentum():
    snippet = pitfalls.snippet_nag(GRAD, START, lr=0.02, beta=0.9, steps=60)
    momentum = problems.run_optimizer(RAVINE, optim.SGD, 60, start=START, lr=0.02, momentum=0.9).points
    np.testing.assert_allclose(snippet, momentum, rtol=1e-12, atol=1e-12)
    nesterov = problems.run_optimizer(RAVINE, optim.SGD, 60, start=START, lr=0.02, momentum=0.9, nesterov=True).points
    assert np.abs(snippet - nesterov).max() > 1e-2


def test_lookahead_nesterov_is_torch_nesterov_in_shifted_variables():
    phi = pitfalls.lookahead_nesterov(GRAD, START, lr=0.02, beta=0.9, steps=60, report="lookahead")
    torch_nesterov = problems.run_optimizer(RAVINE, torch.optim.SGD, 60, start=START, lr=0.02, momentum=0.9,
                                              nesterov=True).points  # fmt: skip
    np.testing.assert_allclose(phi, torch_nesterov, rtol=1e-10, atol=1e-12)


def test_fresh_cache_rmsprop_is_scaled_sign_descent():
    lr, alpha = 0.01, 0.99
    points = pitfalls.snippet_rmsprop_fresh_cache(GRAD, (-2.53, 1.07), lr=lr, alpha=alpha, steps=20)
    steps = np.diff(points, axis=0)
    signs = np.array([-np.sign(GRAD(p)) for p in points[:-1]])
    np.testing.assert_allclose(steps, lr / np.sqrt(1 - alpha) * signs, rtol=1e-6)
