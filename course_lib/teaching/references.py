"""Reference answers of exercises whose answer is not a function of the library itself.

A check cell in a notebook compares the student's function with a reference; when the
reference is not already in ``course_lib`` (an optimizer, a schedule, ``ewma``), it lives here,
so that the check cell does not show the answer to a student who has not written it yet.
"""

from __future__ import annotations

import torch

__all__ = ["half_life", "newton_schulz_step"]


def half_life(beta: float) -> int:
    """The smallest integer k >= 0 with beta**k < 1/2: after k steps a reading's weight
    beta**k in an EWMA has fallen below half of the newest reading's weight (1 = beta**0).

    Counted step by step (no logarithm), so that beta = 0.5, where beta**1 = 1/2 exactly, gives
    2 without rounding doubt; beta must be in [0, 1) (beta = 0 gives 1)."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    k = 0
    while beta**k >= 0.5:
        k += 1
    return k


def newton_schulz_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    r"""One Newton–Schulz iteration, without the normalisation that comes first in Muon:
    :math:`X \leftarrow aX + (bA + cA^2)X` with :math:`A = XX^\top` (each singular value
    :math:`\sigma` of :math:`X` becomes :math:`a\sigma + b\sigma^3 + c\sigma^5`)."""
    A = X @ X.T
    return a * X + b * A @ X + c * A @ A @ X
