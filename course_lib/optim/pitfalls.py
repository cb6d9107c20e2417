r"""Update rules as popular write-ups show them, kept to demonstrate what they really compute.

None of these is used for training anywhere in the course; each exists so a notebook can run it
next to the real method and show the difference (or the sameness) numerically.

- :func:`snippet_nag`: the snippet often labelled "Nesterov accelerated gradient",
  ``v = beta * v - lr * grad(theta); theta = theta + v``. The gradient is taken at
  :math:`\theta`, not at the look-ahead point, so this is *classical momentum*: it takes
  exactly the steps of ``SGD(lr, momentum=beta)``.
- :func:`lookahead_nesterov`: Nesterov's method as Sutskever et al. (2013) state it,
  :math:`v \leftarrow \beta v - \eta \nabla f(\theta + \beta v)`, :math:`\theta \leftarrow \theta + v`.
  torch's ``nesterov=True`` is the same method written in the shifted variable
  :math:`\phi = \theta + \beta v` (so that the gradient is taken at the stored parameter).
- :func:`snippet_rmsprop_fresh_cache`: an "RMSProp" function that re-creates its cache of
  squared gradients on every call. With :math:`v = 0` each time,
  :math:`v = (1-\alpha) g^2` and the step is :math:`\eta g / (\sqrt{1-\alpha}\,|g| + \epsilon)
  \approx \frac{\eta}{\sqrt{1-\alpha}} \operatorname{sign}(g)`: sign descent with a step ten
  times ``lr`` at :math:`\alpha = 0.99`, and no memory at all.

Every function takes a gradient function ``grad_fn(theta) -> gradient`` (NumPy float64 arrays)
and returns the visited points, start included, as an array ``(steps + 1) x dim``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["snippet_nag", "lookahead_nesterov", "snippet_rmsprop_fresh_cache"]

GradFn = Callable[[np.ndarray], np.ndarray]


def _start(start) -> np.ndarray:
    return np.array(start, dtype=np.float64)


def snippet_nag(grad_fn: GradFn, start, *, lr: float, beta: float, steps: int) -> np.ndarray:
    """The popular "NAG" snippet: ``v = beta*v - lr*grad(theta); theta += v`` (really momentum)."""
    theta, v = _start(start), np.zeros(len(start))
    points = [theta.copy()]
    for _ in range(steps):
        v = beta * v - lr * grad_fn(theta)
        theta = theta + v
        points.append(theta.copy())
    return np.array(points)


def lookahead_nesterov(grad_fn: GradFn, start, *, lr: float, beta: float, steps: int,
                       report: str = "theta") -> np.ndarray:  # fmt: skip
    r"""Nesterov's method with the gradient at the look-ahead point :math:`\theta + \beta v`.

    ``report="theta"`` returns the iterates :math:`\theta_t`; ``report="lookahead"`` returns
    :math:`\phi_t = \theta_t + \beta v_t`, the points torch's ``SGD(nesterov=True)`` stores as
    its parameter (they coincide at the start, where :math:`v = 0`).
    """
    if report not in ("theta", "lookahead"):
        raise ValueError(f"report must be 'theta' or 'lookahead', got {report!r}")
    theta, v = _start(start), np.zeros(len(start))
    points = [theta.copy()]
    for _ in range(steps):
        v = beta * v - lr * grad_fn(theta + beta * v)
        theta = theta + v
        points.append(theta + beta * v if report == "lookahead" else theta.copy())
    return np.array(points)


def snippet_rmsprop_fresh_cache(grad_fn: GradFn, start, *, lr: float, alpha: float = 0.99,
                                eps: float = 1e-8, steps: int) -> np.ndarray:  # fmt: skip
    """An "RMSProp" step function that starts a new cache each call (the bug: no memory)."""
    theta = _start(start)
    points = [theta.copy()]
    for _ in range(steps):
        g = grad_fn(theta)
        cache = np.zeros_like(theta)  # the bug: a fresh cache on every call
        cache = alpha * cache + (1 - alpha) * g**2
        theta = theta - lr * g / (np.sqrt(cache) + eps)
        points.append(theta.copy())
    return np.array(points)
