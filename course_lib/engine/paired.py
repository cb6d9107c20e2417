r"""Paired differences over seeds: is variant A better than variant B beyond the noise?

A comparison trains A and B from the same initial weights on the same batches (one *seed*
fixes both, :mod:`course_lib.engine.compare`), then repeats that for several seeds. The
difference is paired twice: per seed (A and B share the seed) and per example (both are scored
on the same validation images). Two sources of noise are left:

- **training noise**: another seed gives another difference. With :math:`d_s` the difference
  of seed :math:`s` (:math:`S` seeds), its standard error is :math:`\mathrm{sd}(d_s)/\sqrt{S}`;
- **which images were drawn**: another validation set gives another difference. With
  :math:`e_i` the difference on image :math:`i` averaged over the seeds (each of
  :math:`[A \text{ right}] - [B \text{ right}]` is -1, 0 or 1), its standard error is
  :math:`\mathrm{sd}(e_i)/\sqrt{n}`.

:func:`paired_difference` reports both and their root sum of squares ``se`` (conservative:
the per-image spread also carries some training noise). A verdict is only given beyond two
standard errors; within them the comparison is *inconclusive*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .device_data import DeviceData

__all__ = ["PairedDifference", "paired_difference", "correct_per_example", "verdict", "corrected_k"]


def corrected_k(comparisons: int, k: float = 2.0) -> float:
    r"""The multiplier of the standard error for one of ``comparisons`` verdicts made together
    (Bonferroni): each comparison is held to the two-sided tail
    :math:`P(|Z| > k)/m` of a normal :math:`Z`, so that the chance that *any* of the :math:`m`
    crosses the line by noise alone stays at most :math:`P(|Z| > k)` (4.6% for :math:`k = 2`).

    Used when the best of :math:`n` variants is picked and compared with the other
    :math:`m = n - 1`: e.g. 2.28 for two comparisons, 2.61 for five. One comparison: ``k``.
    """
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    from statistics import NormalDist

    tail = 2 * (1 - NormalDist().cdf(k))  # the two-sided tail of one comparison at k
    return float(NormalDist().inv_cdf(1 - tail / (2 * comparisons)))


def verdict(mean: float, se: float, better: str = "better", worse: str = "worse",
            neither: str = "inconclusive", k: float = 2.0) -> str:  # fmt: skip
    """``better`` if ``mean > k·se``, ``worse`` if ``mean < -k·se``, else ``neither``."""
    if mean > k * se:
        return better
    if mean < -k * se:
        return worse
    return neither


@dataclass(frozen=True)
class PairedDifference:
    """A - B over paired seeds (and, for accuracies, paired examples); see the module notes.

    ``per_seed``: the difference of each seed; ``mean``: their mean; ``se_seeds``: the
    standard error over seeds; ``se_examples``: over the examples (0 for a per-run number);
    ``se``: both together.
    """

    per_seed: tuple[float, ...]
    se_seeds: float
    se_examples: float = 0.0

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def se(self) -> float:
        return math.hypot(self.se_seeds, self.se_examples)

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    @property
    def wins(self) -> int:
        """How many seeds have A ahead (difference > 0)."""
        return sum(d > 0 for d in self.per_seed)

    def verdict(self, better: str = "better", worse: str = "worse", neither: str = "inconclusive",
                k: float = 2.0) -> str:  # fmt: skip
        """The words for this difference: beyond ``k`` standard errors or not (:func:`verdict`)."""
        return verdict(self.mean, self.se, better, worse, neither, k)

    def __format__(self, spec: str) -> str:
        """``f"{d:+.1%}"`` gives ``+1.2% ± 0.8%`` (mean ± 2 standard errors)."""
        spec = spec or "+.3f"
        plain = spec.lstrip("+")
        return f"{format(self.mean, spec)} ± {format(2 * self.se, plain)}"


def paired_difference(a: Sequence | np.ndarray, b: Sequence | np.ndarray) -> PairedDifference:
    """A - B, paired by seed: ``a[s]`` and ``b[s]`` come from the same seed ``s``.

    Each entry is either one number per run (a final loss; shape ``(S,)``) or one 0/1 (or
    float) per example (correct or not; shape ``(S, n)``, the same examples in the same order
    for every run), whose mean is the run's accuracy. Needs at least two seeds.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ValueError(f"a and b must have the same shape, (seeds,) or (seeds, examples); got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError("a paired difference over seeds needs at least two seeds")
    d = a - b
    per_seed = d if d.ndim == 1 else d.mean(axis=1)
    se_seeds = float(per_seed.std(ddof=1) / math.sqrt(len(per_seed)))
    se_examples = 0.0
    if d.ndim == 2:
        per_example = d.mean(axis=0)
        se_examples = float(per_example.std(ddof=1) / math.sqrt(len(per_example)))
    return PairedDifference(tuple(float(x) for x in per_seed), se_seeds, se_examples)


@torch.no_grad()
def correct_per_example(model: nn.Module, data: DeviceData, batch_size: int = 1000) -> np.ndarray:
    """A boolean array: is ``model`` (in eval mode, no augmentation) right on each example of ``data``?"""
    was_training = model.training
    model.eval()
    hits = []
    for start in range(0, len(data), batch_size):
        x, y = data.batch(torch.arange(start, min(start + batch_size, len(data)), device=data.device))
        hits.append((model(x).argmax(-1) == y).cpu())
    model.train(was_training)
    return torch.cat(hits).numpy()
