r"""Looking inside adaptive optimizers: their state, step by step.

RMSprop, Adagrad and Adam keep per-coordinate statistics of the gradients in ``optimizer.state``
(Adagrad's sum :math:`G`, RMSprop's ``square_avg`` :math:`v`, Adam's ``exp_avg`` :math:`m` and
``exp_avg_sq`` :math:`v`). The chapters on these methods need to watch those statistics evolve:
the effective learning rate :math:`\eta / (\sqrt{G} + \epsilon)` versus
:math:`\eta / (\sqrt{v} + \epsilon)`, the step Adam would take without bias correction, the
decay that L2 regularization really applies through Adam's denominator.

:func:`trace_optimizer` runs any ``torch.optim``-style optimizer class (``course_lib.optim`` or
``torch.optim``) on a single parameter tensor, feeding it either a fixed sequence of gradients
or the gradient of a 2-D :class:`~course_lib.landscapes.Landscape` at the current point, and
records the parameter and the requested state entries after every step. It drives the real
optimizer classes: there is no second implementation of any update rule here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from .landscapes import Landscape

__all__ = ["trace_optimizer"]


def _landscape_gradient(landscape: Landscape) -> Callable[[torch.Tensor], torch.Tensor]:
    def grad(point: torch.Tensor) -> torch.Tensor:
        p = point.detach().clone().requires_grad_(True)
        landscape.fn(p[0], p[1]).backward()
        return p.grad

    return grad


def trace_optimizer(
    optimizer_cls: type,
    gradients: Any,
    start: Any,
    *,
    steps: int | None = None,
    state_keys: Sequence[str] = (),
    **optimizer_kwargs: Any,
) -> dict[str, np.ndarray]:
    r"""Run ``optimizer_cls([p], **optimizer_kwargs)`` and record ``p`` and its state every step.

    ``p`` is a float64 ``torch.nn.Parameter`` starting at ``start`` (any shape). Before step
    :math:`t` (1-based) ``p.grad`` is set to the gradient :math:`g_t`, taken from ``gradients``:

    - an array or tensor of shape ``(steps, *start.shape)``: a fixed stream, ``g_t =
      gradients[t - 1]`` whatever the parameter does (how a noisy, stationary problem looks);
      ``steps`` defaults to its length;
    - a :class:`~course_lib.landscapes.Landscape` (``start`` is then a point ``(x, y)``): its
      gradient at the current point, by autograd;
    - any callable ``tensor -> tensor``: the gradient at the current parameter.

    Returns float64 NumPy arrays: ``"param"`` of shape ``(steps + 1, *shape)`` (row 0 is the
    start, row ``t`` the parameter after step ``t``), ``"grad"`` of shape ``(steps, *shape)``
    (row ``t - 1`` is :math:`g_t`), and for each name in ``state_keys`` (e.g. ``"square_avg"``,
    ``"exp_avg"``, ``"step"``) ``optimizer.state[p][name]`` after each step, shape
    ``(steps, *its shape)``. An unknown key raises ``KeyError`` naming the keys the state has.
    """
    start_t = torch.as_tensor(np.asarray(start, dtype=np.float64)).clone()
    if isinstance(gradients, Landscape):
        source: Callable[[torch.Tensor], torch.Tensor] | None = _landscape_gradient(gradients)
    elif callable(gradients):
        source = gradients
    else:
        source = None
        stream = torch.as_tensor(np.asarray(gradients, dtype=np.float64))
        if stream.shape[1:] != start_t.shape:
            raise ValueError(f"gradients must have shape (steps, *{tuple(start_t.shape)}), "
                             f"got {tuple(stream.shape)}")  # fmt: skip
        steps = len(stream) if steps is None else steps
        if steps > len(stream):
            raise ValueError(f"asked for {steps} steps but only {len(stream)} gradients were given")
    if steps is None:
        raise ValueError("steps is required when the gradient is a landscape or a function")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")

    p = torch.nn.Parameter(start_t.clone())
    optimizer = optimizer_cls([p], **optimizer_kwargs)
    params, grads = [p.detach().clone()], []
    states: dict[str, list[torch.Tensor]] = {key: [] for key in state_keys}
    for t in range(steps):
        g = stream[t] if source is None else source(p.detach().clone())
        p.grad = torch.as_tensor(g, dtype=torch.float64).reshape(p.shape).clone()
        grads.append(p.grad.clone())
        optimizer.step()
        params.append(p.detach().clone())
        state = optimizer.state[p]
        for key in state_keys:
            if key not in state:
                raise KeyError(f"{optimizer_cls.__name__} has no state entry {key!r}; "
                               f"it has {sorted(state)}")  # fmt: skip
            states[key].append(torch.as_tensor(state[key]).detach().clone())

    shape = tuple(start_t.shape)
    out = {
        "param": torch.stack(params).numpy(),
        "grad": torch.stack(grads).numpy() if grads else np.zeros((0, *shape)),
    }
    for key, values in states.items():
        out[key] = (torch.stack(values).to(torch.float64).numpy() if values else np.zeros((0,)))
    return out
