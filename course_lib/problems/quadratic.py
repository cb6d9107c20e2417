r"""Gradient descent on a quadratic: the stability limit, the best fixed step, the rate.

On :math:`f(\theta) = \tfrac12 \theta^\top H \theta` one gradient step maps
:math:`\theta \mapsto (I - \eta H)\theta`: along the eigenvector of eigenvalue :math:`h` the
error is multiplied by :math:`1 - \eta h`. Everything here follows from that factor: the
largest stable step :math:`2/h_{\max}`, the fastest fixed step :math:`2/(h_{\min}+h_{\max})`,
the contraction per step :math:`\max_h |1 - \eta h|`, and the number of steps to get within a
tolerance. The landscape experiments compare their measured runs against these predictions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["max_stable_lr", "optimal_lr", "gd_contraction", "gd_steps_bound"]

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
