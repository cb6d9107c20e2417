r"""When a run has diverged: one rule for the training loop and the landscape runner.

A run has diverged at the first step whose loss is not finite, or whose loss has risen above
its initial loss by more than a factor :data:`DIVERGENCE_FACTOR` (measured above a ``floor``,
the smallest value the loss can take: 0 for a cross-entropy or a squared error):

.. math::

    \text{diverged at } t \iff \neg\,\mathrm{isfinite}(L_t) \;\lor\;
    L_t - L_\text{floor} > k\,(L_0 - L_\text{floor}), \qquad k = 10 .

Waiting for ``inf`` or ``nan`` is not enough: gradient descent with a step a little above
:math:`2/\lambda_{\max}` grows the loss geometrically but stays finite for hundreds of steps
(chapter 03's momentum run at lr = 0.05 reaches 2.9e4 and is still "finite").

The factor is not a proof that a run will not recover. A run with heavy momentum can overshoot
far and still converge: Polyak's tuned heavy ball on the ravine climbs to 5x its initial loss at
:math:`\kappa = 100` and 18x at :math:`\kappa = 1000` before it settles. So the two users apply the
rule differently:

- the **landscape runner** (:mod:`course_lib.problems.runs`), whose runs are cheap and whose
  whole path is drawn, judges a finished run by its *last* loss (diverged if that is not finite
  or above the limit);
- the **training loop** (:func:`course_lib.engine.loop.train`) stops at the *first* loss above
  the limit, to save the rest of a run that is most likely lost. For a cross-entropy that starts
  at :math:`\ln 10 = 2.3` the limit is 23 nats per example, a confidently wrong network; a
  transient that high has not been seen in the course's runs, but the rule would end such a run.
"""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["DIVERGENCE_FACTOR", "first_divergent_step", "is_diverged"]

DIVERGENCE_FACTOR = 10.0


def first_divergent_step(losses: Iterable[float], *, initial: float | None = None,
                         factor: float = DIVERGENCE_FACTOR, floor: float = 0.0) -> int | None:  # fmt: skip
    """Index of the first loss that is not finite or exceeds ``floor + factor * (initial - floor)``.

    ``initial`` defaults to the first loss of ``losses`` (a run's loss before or at its first
    step). Returns None when the run has not diverged. When the initial loss is at or below the
    floor there is no scale to compare against, and only a non-finite loss counts.
    """
    if factor <= 1:
        raise ValueError(f"the divergence factor must be above 1, got {factor}")
    limit = None
    for t, loss in enumerate(losses):
        loss = float(loss)
        if not math.isfinite(loss):
            return t
        if limit is None:
            start = float(initial) if initial is not None else loss
            if not math.isfinite(start):
                return t
            gap = start - floor
            limit = floor + factor * gap if gap > 0 else math.inf
        if loss > limit:
            return t
    return None


def is_diverged(losses: Iterable[float], *, initial: float | None = None, factor: float = DIVERGENCE_FACTOR,
                floor: float = 0.0) -> bool:  # fmt: skip
    """Whether :func:`first_divergent_step` finds a divergent step."""
    return first_divergent_step(losses, initial=initial, factor=factor, floor=floor) is not None
