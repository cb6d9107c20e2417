r"""Dropout from scratch: inverted dropout, its keep/drop spelling, and an MLP with dropout.

Inverted dropout (Srivastava et al. 2014, in the form every framework uses): during training
each unit is kept with probability :math:`q = 1 - p` and scaled by :math:`1/q`, so its expected
value is unchanged and evaluation needs no rescaling. ``p`` is the DROP probability, as in
``torch.nn.Dropout``; older texts and courses write the KEEP probability (``keep_prob``)
:math:`q = 1 - p`. Both spellings are accepted here (``keep_prob=`` or :func:`keep_prob_to_p`).

.. math::  \text{out} = x \odot m / q, \qquad m_i \sim \text{Bernoulli}(q), \qquad E[\text{out}] = x.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["keep_prob_to_p", "p_to_keep_prob", "apply_dropout_mask", "dropout", "Dropout", "dropout_mlp"]


def keep_prob_to_p(keep_prob: float) -> float:
    """The drop probability ``p = 1 - keep_prob`` (torch's ``p``) from an older text's keep probability."""
    if not 0 < keep_prob <= 1:
        raise ValueError(f"keep_prob must be in (0, 1] (it is the probability of KEEPING a unit), got {keep_prob}")
    return 1.0 - keep_prob


def p_to_keep_prob(p: float) -> float:
    """The keep probability ``1 - p`` from torch's drop probability ``p``."""
    _check_p(p)
    return 1.0 - p


def _check_p(p: float) -> None:
    if not 0 <= p < 1:
        hint = " (p is the DROP probability; for a keep probability q pass keep_prob=q, i.e. p = 1 - q)"
        raise ValueError(f"dropout p must be in [0, 1), got {p}{hint}")


def _resolve_p(p: float | None, keep_prob: float | None) -> float:
    if keep_prob is not None:
        if p is not None:
            raise ValueError("give either p (drop probability) or keep_prob, not both")
        p = keep_prob_to_p(keep_prob)
    if p is None:
        p = 0.5
    _check_p(p)
    return float(p)


def apply_dropout_mask(x: Tensor, keep_mask: Tensor, p: float) -> Tensor:
    """Inverted dropout with a given mask: :math:`x \\odot m / (1 - p)`, ``keep_mask`` 1 where a
    unit is kept (probability :math:`1-p`) and 0 where it is dropped."""
    _check_p(p)
    return x * keep_mask / (1 - p)


def dropout(x: Tensor, p: float | None = None, training: bool = True, generator: torch.Generator | None = None,
            *, keep_prob: float | None = None) -> Tensor:  # fmt: skip
    """Inverted dropout: zero each entry with probability ``p``, scale the rest by :math:`1/(1-p)`.

    ``p`` is the drop probability (default 0.5), as in ``torch.nn.functional.dropout``; or give
    ``keep_prob`` :math:`= 1 - p` instead. Identity when ``training`` is False or ``p == 0``.
    The mask is drawn on ``generator``'s device when one is given (then moved to ``x``'s), else
    from the global generator on ``x``'s device. :math:`E[\\text{out}] = x`,
    :math:`\\mathrm{Var}[\\text{out}] = x^2 p/(1-p)`.
    """
    p = _resolve_p(p, keep_prob)
    if not training or p == 0:
        return x
    where = generator.device if generator is not None else x.device
    keep_mask = (torch.rand(x.shape, generator=generator, device=where) >= p).to(x.device, x.dtype)
    return apply_dropout_mask(x, keep_mask, p)


class Dropout(nn.Module):
    """:func:`dropout` as a module: active in ``train()`` mode, the identity in ``eval()`` mode.

    ``Dropout(0.2)`` drops 20% of the units (torch's meaning of ``p``);
    ``Dropout(keep_prob=0.8)`` is the same layer written with the keep probability.
    """

    def __init__(self, p: float | None = None, *, keep_prob: float | None = None,
                 generator: torch.Generator | None = None) -> None:  # fmt: skip
        super().__init__()
        self.p = _resolve_p(p, keep_prob)
        self.generator = generator

    @property
    def keep_prob(self) -> float:
        return 1.0 - self.p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p:g}, keep_prob={self.keep_prob:g}"


def dropout_mlp(hidden: int = 256, layers: int = 2, p: float = 0.0, downsample: int = 2,
                in_shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10) -> nn.Module:  # fmt: skip
    """An MLP for the regularization experiments: average-pool by ``downsample`` (a cheap
    input: 3 x 16 x 16 by default), then ``layers`` x (linear, ReLU, :class:`Dropout` ``p``),
    then a linear head. A :class:`Dropout` layer is present even when ``p = 0`` (the identity),
    so models with different ``p`` have the same ``state_dict`` keys and can share weights."""
    c, h, w = in_shape
    mods: list[nn.Module] = [nn.AvgPool2d(downsample) if downsample > 1 else nn.Identity(), nn.Flatten()]
    width = c * (h // downsample) * (w // downsample)
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(), Dropout(p)]
        width = hidden
    mods.append(nn.Linear(width, classes))
    return nn.Sequential(*mods)
