r"""Gradient descent on a quadratic: the stability limit, the best fixed step, the rate.

On :math:`f(\theta) = \tfrac12 \theta^\top H \theta` one gradient step maps
:math:`\theta \mapsto (I - \eta H)\theta`: along the eigenvector of eigenvalue :math:`h` the
error is multiplied by :math:`1 - \eta h`. Everything here follows from that factor: the
largest stable step :math:`2/h_{\max}`, the fastest fixed step :math:`2/(h_{\min}+h_{\max})`,
the contraction per step :math:`\max_h |1 - \eta h|`, and the number of steps to get within a
tolerance. The landscape experiments compare their measured runs against these predictions.

Momentum (torch's form, :math:`b \leftarrow \beta b + g`, :math:`\theta \leftarrow \theta - \eta b`;
the heavy ball of Polyak 1964) turns the factor into a 2x2 matrix per eigenvalue: with
:math:`\theta_{t+1} = \theta_t - \eta h \theta_t + \beta(\theta_t - \theta_{t-1})` the pair
:math:`(\theta_t, \theta_{t-1})` is multiplied by the companion matrix
:math:`\begin{pmatrix} 1 + \beta - \eta h & -\beta \\ 1 & 0 \end{pmatrix}`, whose eigenvalues
solve :math:`\lambda^2 - (1 + \beta - \eta h)\lambda + \beta = 0`. Their product is
:math:`\beta`, so when they are complex (underdamped) both have modulus :math:`\sqrt\beta`. The
run converges iff :math:`0 < \eta h < 2(1+\beta)`. Nesterov's method (torch's ``nesterov=True``)
has :math:`\lambda^2 - (1+\beta)(1-\eta h)\lambda + \beta(1-\eta h) = 0` and converges iff
:math:`0 < \eta h < 2(1+\beta)/(1+2\beta)`. The rate of a run is the largest eigenvalue
modulus over the Hessian's eigenvalues (:func:`momentum_rate`); :func:`optimal_momentum` gives
Polyak's tuned pair, whose rate :math:`(\sqrt\kappa - 1)/(\sqrt\kappa + 1)` makes the step count
grow like :math:`\sqrt\kappa` instead of gradient descent's :math:`\kappa`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["max_stable_lr", "optimal_lr", "gd_contraction", "gd_steps_bound", "momentum_matrix",
           "momentum_factors", "momentum_rate", "momentum_max_stable_lr", "optimal_momentum", "steps_at_rate"]

def _eigenvalues(hessian: Any) -> np.ndarray:
    """Eigenvalues (ascending) of a symmetric Hessian given as a number or a square matrix."""
    H = np.atleast_2d(np.asarray(hessian, dtype=np.float64))
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"the Hessian must be a number or a square matrix, got shape {H.shape}")
    if not np.allclose(H, H.T):
        raise ValueError("the Hessian must be symmetric")
    return np.linalg.eigvalsh(H)


def max_stable_lr(hessian: Any) -> float:
    """The stability limit ``2 / h_max``: gradient descent on ``f = θᵀHθ / 2`` converges iff ``η`` is below it.

    One step maps ``θ ↦ (I − ηH)θ``; along the eigenvector of eigenvalue ``h`` the error is
    multiplied by ``1 − η·h``, which shrinks iff ``0 < η·h < 2``. So GD converges from every
    start iff ``η < 2 / h_max`` (``H`` positive definite); ``η = 2 / h_max`` itself oscillates
    forever. ``hessian``: a number (1-D curvature ``L``, giving ``2 / L``) or a symmetric matrix.
    Raises ``ValueError`` if ``H`` is not positive definite (no learning rate converges then).
    """
    eig = _eigenvalues(hessian)
    if eig[0] <= 0:
        raise ValueError(f"the Hessian must be positive definite, its eigenvalues are {eig}")
    return float(2.0 / eig[-1])


def optimal_lr(hessian: Any) -> float:
    """The fixed learning rate that makes GD on ``f = θᵀHθ / 2`` fastest: ``2 / (h_min + h_max)``.

    It balances the slowest and the fastest direction: ``|1 − ηh_min| = |1 − ηh_max|
    = (κ − 1) / (κ + 1)`` with ``κ = h_max / h_min`` the condition number.
    """
    eig = _eigenvalues(hessian)
    if eig[0] <= 0:
        raise ValueError(f"the Hessian must be positive definite, its eigenvalues are {eig}")
    return float(2.0 / (eig[0] + eig[-1]))


def gd_contraction(hessian: Any, lr: float) -> float:
    """``ρ = max_h |1 − lr·h|`` over the eigenvalues of ``H``: GD's worst factor per step.

    On ``f = θᵀHθ / 2`` the distance to the minimum after ``k`` steps is at most ``ρᵏ`` times the
    starting distance, with equality when every eigen-direction contracts by ``ρ`` (as at
    :func:`optimal_lr`). ``ρ < 1`` means convergence, ``ρ > 1`` divergence.
    """
    eig = _eigenvalues(hessian)
    return float(np.max(np.abs(1.0 - lr * eig)))


def gd_steps_bound(hessian: Any, lr: float, distance: float, tol: float) -> int | None:
    """Steps after which GD on ``f = θᵀHθ / 2`` is surely within ``tol`` of the minimum.

    The smallest ``k`` with ``ρᵏ·distance < tol`` (``ρ`` from :func:`gd_contraction`), i.e.
    ``⌊ln(tol / distance) / ln ρ⌋ + 1``; 0 if already within ``tol``; ``None`` if ``ρ ≥ 1``.
    It is exact when every eigen-direction contracts by the same ``ρ``; with
    ``lr = optimal_lr(H)`` it grows like ``(κ / 2)·ln(distance / tol)`` in the condition number ``κ``.
    """
    if distance < tol:
        return 0
    rho = gd_contraction(hessian, lr)
    if rho >= 1.0:
        return None
    if rho == 0.0:
        return 1
    return int(math.floor(math.log(tol / distance) / math.log(rho))) + 1


# --------------------------------------------------------------------------------------------
# Momentum (heavy ball) and Nesterov on a quadratic
# --------------------------------------------------------------------------------------------


def _check_momentum(momentum: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def momentum_matrix(lr: float, momentum: float, curvature: float, nesterov: bool = False) -> np.ndarray:
    """The 2x2 matrix that maps ``(θ_t, θ_{t−1})`` to ``(θ_{t+1}, θ_t)`` along one eigen-direction.

    Heavy ball (torch's ``SGD(momentum=β)``): ``θ_{t+1} = (1 + β − ηh)θ_t − βθ_{t−1}``.
    Nesterov (``nesterov=True``): ``θ_{t+1} = (1 + β)(1 − ηh)θ_t − β(1 − ηh)θ_{t−1}``.
    torch's first step (``b₁ = g₁``) is this recursion started with ``θ_{−1} = θ_0``; for Nesterov
    torch stores the look-ahead point, which follows the same recursion from its second point on.
    """
    _check_momentum(momentum)
    a = lr * curvature
    if nesterov:
        top = [(1.0 + momentum) * (1.0 - a), -momentum * (1.0 - a)]
    else:
        top = [1.0 + momentum - a, -momentum]
    return np.array([top, [1.0, 0.0]], dtype=np.float64)


def momentum_factors(lr_curvature: Any, momentum: Any, nesterov: bool = False) -> np.ndarray:
    """The rate per step along one eigen-direction: the larger eigenvalue modulus of
    :func:`momentum_matrix`, as a function of ``ηh`` and ``β`` (NumPy arrays broadcast).

    ``momentum = 0`` gives gradient descent's ``|1 − ηh|`` (Nesterov too). Above 1: divergence.
    This is the map "convergence rate over (β, ηh)" drawn in chapter 03.
    """
    a = np.asarray(lr_curvature, dtype=np.float64)
    b = np.asarray(momentum, dtype=np.float64)
    if nesterov:
        trace, det = (1.0 + b) * (1.0 - a), b * (1.0 - a)
    else:
        trace, det = 1.0 + b - a, b + 0.0 * a
    disc = (trace**2 - 4.0 * det).astype(np.complex128)
    root = np.sqrt(disc)
    return np.maximum(np.abs((trace + root) / 2.0), np.abs((trace - root) / 2.0))


def momentum_rate(hessian: Any, lr: float, momentum: float, nesterov: bool = False) -> float:
    """``ρ``: the largest eigenvalue modulus of :func:`momentum_matrix` over the eigenvalues of ``H``.

    The distance to the minimum shrinks like ``ρᵗ`` (up to a constant, and a factor growing like
    ``t`` when the two eigenvalues coincide, the critically damped case). ``momentum = 0`` gives
    :func:`gd_contraction`. When the eigenvalues are complex (underdamped: ``(1 + β − ηh)² < 4β``
    for the heavy ball) the rate is exactly ``√β``, whatever ``η``.
    """
    _check_momentum(momentum)
    eig = _eigenvalues(hessian)
    return float(np.max(momentum_factors(lr * eig, momentum, nesterov=nesterov)))


def momentum_max_stable_lr(hessian: Any, momentum: float, nesterov: bool = False) -> float:
    """The stability limit of momentum: ``2(1 + β) / h_max`` (heavy ball), ``2(1 + β) / ((1 + 2β) h_max)``
    (Nesterov). ``β = 0`` gives :func:`max_stable_lr`'s ``2 / h_max`` for both."""
    _check_momentum(momentum)
    eig = _eigenvalues(hessian)
    if eig[0] <= 0:
        raise ValueError(f"the Hessian must be positive definite, its eigenvalues are {eig}")
    limit = 2.0 * (1.0 + momentum)
    if nesterov:
        limit /= 1.0 + 2.0 * momentum
    return float(limit / eig[-1])


def optimal_momentum(hessian: Any) -> tuple[float, float]:
    """Polyak's tuned heavy ball for ``f = θᵀHθ/2``: ``(η*, β*)`` with
    ``η* = 4 / (√L + √μ)²`` and ``β* = ((√κ − 1)/(√κ + 1))²`` (``L, μ`` the extreme eigenvalues,
    ``κ = L/μ``), in torch's form. Its rate is ``√β* = (√κ − 1)/(√κ + 1)``: steps grow like ``√κ``.
    """
    eig = _eigenvalues(hessian)
    if eig[0] <= 0:
        raise ValueError(f"the Hessian must be positive definite, its eigenvalues are {eig}")
    low, high = math.sqrt(eig[0]), math.sqrt(eig[-1])
    return 4.0 / (low + high) ** 2, ((high - low) / (high + low)) ** 2


def steps_at_rate(rate: float, distance: float, tol: float) -> int | None:
    """The smallest ``k`` with ``rateᵏ·distance < tol``: the step count a rate predicts.

    0 if already within ``tol``; ``None`` if ``rate ≥ 1``; 1 if ``rate`` is 0. For gradient
    descent with ``rate = gd_contraction(H, lr)`` it is :func:`gd_steps_bound`.
    """
    if distance < tol:
        return 0
    if rate >= 1.0:
        return None
    if rate <= 0.0:
        return 1
    return int(math.floor(math.log(tol / distance) / math.log(rate))) + 1
