r"""Running optimizers without a data set: on a landscape, from many starts, or on a gradient stream.

:func:`run_optimizer` minimises a :class:`~course_lib.problems.landscapes.Landscape` with any
``torch.optim``-style optimizer class and returns its :class:`Trajectory`; :func:`run_optimizers`
does it for several optimizers, :func:`run_many` from many starts at once.

:func:`trace_optimizer` looks inside adaptive optimizers: it runs any optimizer class
(``course_lib.optim`` or ``torch.optim``) on a single parameter tensor, feeding it either a fixed
sequence of gradients or the gradient of a landscape at the current point, and records the
parameter and the requested state entries (Adagrad's sum :math:`G`, RMSprop's ``square_avg``
:math:`v`, Adam's ``exp_avg`` :math:`m` and ``exp_avg_sq`` :math:`v`) after every step. It
drives the real optimizer classes: there is no second implementation of any update rule here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..optim.divergence import DIVERGENCE_FACTOR, is_diverged
from .landscapes import Landscape, Point, _point

__all__ = ["DIVERGENCE_NORM", "Trajectory", "run_optimizer", "run_optimizers", "run_many", "tune_lr", "basin_labels",
           "gradient_norms", "trace_optimizer"]

DIVERGENCE_NORM = 1e6
"""A run stops, marked diverged, once ``|p|`` exceeds this or its loss is not finite; a run that
ends with a loss above ``DIVERGENCE_FACTOR`` (10) times its initial loss is marked diverged too
(:func:`course_lib.optim.is_diverged`; every landscape's minimum value is 0)."""

@dataclass
class Trajectory:
    """The path of one optimizer run on a landscape.

    ``points[k]`` is the parameter after ``k`` steps (``points[0]`` is the start) and
    ``losses[k] = f(points[k])``. ``diverged`` is True when the run ends with a loss above 10
    times its initial loss (:func:`course_lib.optim.is_diverged`), or stopped early because its
    loss stopped being finite or ``|p|`` passed 1e6 (its arrays are then shorter than ``steps + 1``).
    """

    points: np.ndarray
    losses: np.ndarray
    label: str
    diverged: bool = False
    minima: tuple[Point, ...] = ()

    def __len__(self) -> int:
        return len(self.points)

    @property
    def final_point(self) -> np.ndarray:
        """Where the run ended."""
        return self.points[-1]

    @property
    def final_loss(self) -> float:
        """The loss where the run ended."""
        return float(self.losses[-1])

    def distances(self, target: Any = None) -> np.ndarray:
        """Distance of every point to ``target``, or to the nearest stored minimum if None."""
        if target is None:
            if not self.minima:
                raise ValueError("this trajectory knows no minima; pass a target point")
            targets = np.asarray(self.minima, dtype=np.float64)
        else:
            targets = np.asarray(target, dtype=np.float64).reshape(1, 2)
        gaps = self.points[:, None, :] - targets[None, :, :]
        return np.linalg.norm(gaps, axis=-1).min(axis=1)

    def steps_to_reach(self, tol: float, target: Any = None) -> int | None:
        """First step at which the point is within ``tol`` of ``target`` (default: the nearest
        minimum), or None if it never gets there."""
        return _first(self.distances(target) < tol)

    def steps_to_settle(self, tol: float, target: Any = None) -> int | None:
        """First step from which the point stays within ``tol`` of ``target`` (default: the
        nearest minimum) for the rest of the run, or None if the last point is not within ``tol``.

        :meth:`steps_to_reach` counts the first visit; this one suits runs that oscillate, such
        as momentum passing through the minimum several times before it stays there.
        """
        outside = np.flatnonzero(self.distances(target) >= tol)
        if outside.size == 0:
            return 0
        settled = int(outside[-1]) + 1
        return None if settled == len(self) else settled

    def escape_step(self, radius: float, center: Any = None) -> int | None:
        """First step at which the point is farther than ``radius`` from ``center`` (default: the
        start) after having been within ``radius`` of it, or None if it never gets out (or never
        came near). Pass a saddle as ``center`` to time the escape from it."""
        outside = self.distances(self.points[0] if center is None else center) > radius
        entered = _first(~outside)
        if entered is None:
            return None
        escaped = _first(outside[entered:])
        return None if escaped is None else entered + escaped


def _ends_diverged(losses: Sequence[float]) -> bool:
    """The divergence rule for a finished landscape run: its last loss is not finite or above
    ``DIVERGENCE_FACTOR`` times its first (:func:`course_lib.optim.is_diverged` on the last loss).

    Only the last loss counts, not every loss on the way: momentum's path can rise far above its
    start and still converge (Polyak's tuned heavy ball on a ravine of condition number 100
    climbs to 12 times its initial loss in three steps, at 1000 to over a hundred times), and a
    rule that stopped such a run at its first high loss would call the best-tuned run diverged.
    """
    return len(losses) > 0 and is_diverged([losses[-1]], initial=losses[0], factor=DIVERGENCE_FACTOR)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _default_label(optimizer_cls: type, kwargs: Mapping[str, Any]) -> str:
    shown = (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items())
    args = ", ".join(shown)
    return f"{optimizer_cls.__name__}({args})"


def run_optimizer(
    landscape: Landscape,
    optimizer_cls: type,
    steps: int,
    start: Any = None,
    noise_std: float = 0.0,
    seed: int = 0,
    scheduler: Callable[[Any], Any] | None = None,
    label: str | None = None,
    **optimizer_kwargs: Any,
) -> Trajectory:
    """Optimize ``landscape`` for ``steps`` steps with ``optimizer_cls([p], **optimizer_kwargs)``.

    The point is a float64 ``torch.nn.Parameter`` starting at ``start`` (default:
    ``landscape.start``). Each step runs ``zero_grad``, the loss, ``backward``, adds Gaussian
    noise of standard deviation ``noise_std`` to the gradient (drawn from a ``torch.Generator``
    seeded with ``seed``, standing in for mini-batch noise), then ``optimizer.step()``.
    ``scheduler``, if given, is called with the optimizer and must return an object whose
    ``step()`` is called after every optimizer step, e.g.
    ``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100, gamma=0.5)``.
    ``label`` defaults to the class name and keyword arguments, e.g. ``"SGD(lr=0.1)"``.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    start = landscape.start if start is None else _point(start)
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = optimizer_cls([param], **optimizer_kwargs)
    schedule = scheduler(optimizer) if scheduler is not None else None
    generator = torch.Generator().manual_seed(seed)

    points = [param.detach().numpy().copy()]
    losses: list[float] = []
    diverged = False
    for _ in range(steps):
        optimizer.zero_grad()
        loss = landscape.fn(param[0], param[1])
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            diverged = True
            break
        loss.backward()
        if noise_std > 0:
            param.grad.add_(noise_std * torch.randn(2, generator=generator, dtype=torch.float64))
        optimizer.step()
        if schedule is not None:
            schedule.step()
        points.append(param.detach().numpy().copy())
        if not torch.isfinite(param).all() or param.detach().norm().item() > DIVERGENCE_NORM:
            diverged = True
            break
    if len(losses) < len(points):  # the loss at the last point
        with torch.no_grad():
            losses.append(landscape.fn(param[0], param[1]).item())
    diverged = diverged or _ends_diverged(losses)

    return Trajectory(
        points=np.array(points, dtype=np.float64),
        losses=np.array(losses, dtype=np.float64),
        label=label if label is not None else _default_label(optimizer_cls, optimizer_kwargs),
        diverged=diverged,
        minima=landscape.minima,
    )


def run_optimizers(
    landscape: Landscape,
    runs: Mapping[str, tuple[type, Mapping[str, Any]]],
    steps: int,
    **common: Any,
) -> dict[str, Trajectory]:
    """Run several optimizers on one landscape: ``runs`` maps a label to
    ``(optimizer_cls, optimizer_kwargs)``; ``common`` (``start``, ``noise_std``, ``seed``,
    ``scheduler``) goes to every :func:`run_optimizer` call."""
    return {
        label: run_optimizer(landscape, cls, steps, label=label, **common, **dict(kwargs))
        for label, (cls, kwargs) in runs.items()
    }

def run_many(
    landscape: Landscape,
    optimizer_cls: type,
    starts: Any,
    steps: int,
    noise_std: float = 0.0,
    seed: int = 0,
    label: str | None = None,
    **optimizer_kwargs: Any,
) -> list[Trajectory]:
    """:func:`run_optimizer` from many starts at once: one ``Trajectory`` per row of ``starts``.

    All ``N`` points are the rows of one float64 ``N x 2`` parameter, and each step minimizes
    the sum of ``f`` over the rows. The gradient of that sum with respect to a row is exactly
    that row's own gradient, so an optimizer whose update is elementwise (SGD with or without
    momentum, Adagrad, RMSprop, Adam: every optimizer of the course) takes exactly the steps
    it would take from each start alone: without noise the paths equal :func:`run_optimizer`'s.
    With ``noise_std > 0`` each row gets its own Gaussian gradient noise, ``N x 2`` values
    per step from one generator seeded with ``seed`` (a single start sees the same noise as
    :func:`run_optimizer` with that seed). A row whose point stops being finite or leaves
    ``|p| <= 1e6`` is cut there and marked diverged (the other rows are unaffected); a row that
    ends above 10 times its initial loss is marked diverged as in :func:`run_optimizer`.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    start = np.asarray(starts, dtype=np.float64).reshape(-1, 2)
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = optimizer_cls([param], **optimizer_kwargs)
    generator = torch.Generator().manual_seed(seed)

    points = [start.copy()]
    for _ in range(steps):
        optimizer.zero_grad()
        landscape.fn(param[:, 0], param[:, 1]).sum().backward()
        if noise_std > 0:
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            param.grad.add_(noise_std * noise)
        optimizer.step()
        points.append(param.detach().numpy().copy())
    path = np.stack(points, axis=1)  # N x (steps + 1) x 2
    with torch.no_grad():
        losses = landscape.fn(torch.from_numpy(path[..., 0]), torch.from_numpy(path[..., 1])).numpy()

    name = label if label is not None else _default_label(optimizer_cls, optimizer_kwargs)
    out = []
    for pts, loss in zip(path, losses):
        bad = ~np.isfinite(pts).all(axis=1) | ~np.isfinite(loss)
        with np.errstate(invalid="ignore"):
            bad |= ~(np.linalg.norm(pts, axis=1) <= DIVERGENCE_NORM)
        cut = _first(bad)
        keep = len(pts) if cut is None else cut + 1
        kept = np.array(loss[:keep], dtype=np.float64)
        out.append(Trajectory(points=pts[:keep].copy(), losses=kept, label=name,
                              diverged=cut is not None or _ends_diverged(kept), minima=landscape.minima))  # fmt: skip
    return out


def basin_labels(landscape: Landscape, trajectories: Any, tol: float = 0.05) -> np.ndarray:
    """For each trajectory, the index into ``landscape.minima`` of the minimum it ended within
    ``tol`` of, or ``-1`` if it ended near none (still moving, stuck at a saddle, diverged).

    ``minima`` is sorted by value, so label 0 is the global minimum.
    """
    runs = [trajectories] if isinstance(trajectories, Trajectory) else list(trajectories)
    minima = np.asarray(landscape.minima, dtype=np.float64)
    labels = np.full(len(runs), -1, dtype=np.int64)
    for i, traj in enumerate(runs):
        if traj.diverged:
            continue
        gaps = np.linalg.norm(minima - traj.final_point, axis=1)
        if gaps.min() < tol:
            labels[i] = int(gaps.argmin())
    return labels


def gradient_norms(landscape: Landscape, points: Any) -> np.ndarray:
    """``|∇f|`` at each row of ``points`` (an ``N x 2`` array, e.g. ``trajectory.points``).

    One autograd pass in float64 over all points: the gradient of ``Σ f(pᵢ)`` with respect to
    ``pᵢ`` is ``∇f(pᵢ)``.
    """
    p = torch.tensor(np.asarray(points, dtype=np.float64).reshape(-1, 2), requires_grad=True)
    (grad,) = torch.autograd.grad(landscape.fn(p[:, 0], p[:, 1]).sum(), p)
    return grad.norm(dim=1).numpy()

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
    - a :class:`~course_lib.problems.landscapes.Landscape` (``start`` is then a point ``(x, y)``): its
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


def tune_lr(
    landscape: Landscape,
    optimizer_cls: type,
    lrs: Sequence[float],
    steps: int,
    tol: float,
    start: Any = None,
    **optimizer_kwargs: Any,
) -> tuple[float | None, Trajectory | None]:
    """A small learning-rate sweep: the ``lr`` of ``lrs`` whose run settles within ``tol`` of a
    minimum in the fewest steps (:meth:`Trajectory.steps_to_settle`), and that run.

    Every run gets the same budget of ``steps``, the same ``start`` and the same
    ``optimizer_kwargs`` (e.g. ``momentum=0.9``). All runs are made at once, one parameter group
    per ``lr`` in one optimizer (each group's point is its own 2-element parameter, so an
    optimizer whose update is elementwise takes exactly the steps of :func:`run_optimizer`; the
    returned trajectory is that run). Diverged runs do not count; ties go to the smaller ``lr``.
    If no run settles, the ``lr`` and run with the lowest final loss among those that did not
    diverge (its ``steps_to_settle(tol)`` is None); ``(None, None)`` if every run diverged. A
    chosen ``lr`` at either end of ``lrs`` means the grid should be widened.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    rates = sorted(float(lr) for lr in lrs)
    origin = landscape.start if start is None else _point(start)
    params = [torch.nn.Parameter(torch.tensor(origin, dtype=torch.float64)) for _ in rates]
    optimizer = optimizer_cls([{"params": [p], "lr": lr} for p, lr in zip(params, rates)], **optimizer_kwargs)
    alive = np.ones(len(rates), dtype=bool)
    points = np.full((len(rates), steps + 1, 2), np.nan)
    points[:, 0] = origin
    for t in range(steps):
        optimizer.zero_grad()
        if not alive.any():
            break
        stacked = torch.stack([p for p, ok in zip(params, alive) if ok])  # one graph for all runs
        landscape.fn(stacked[:, 0], stacked[:, 1]).sum().backward()
        optimizer.step()
        with torch.no_grad():
            now = torch.stack([p.detach() for p in params]).numpy()
        points[alive, t + 1] = now[alive]
        with np.errstate(invalid="ignore", over="ignore"):
            bad = alive & ~(np.isfinite(now).all(axis=1) & (np.linalg.norm(now, axis=1) <= DIVERGENCE_NORM))
        for i in np.flatnonzero(bad):  # a diverged run stops; the others go on unaffected
            alive[i] = False
            params[i].requires_grad_(False)
            params[i].grad = None
    best: tuple[int, float, Trajectory] | None = None
    lowest: tuple[float, float, Trajectory] | None = None
    for i, lr in enumerate(rates):
        keep = int(np.isfinite(points[i]).all(axis=1).sum())
        pts = points[i, :keep]
        with torch.no_grad():
            losses = landscape.fn(torch.from_numpy(pts[:, 0]), torch.from_numpy(pts[:, 1])).numpy().astype(np.float64)
        diverged = (not alive[i]) or _ends_diverged(losses)
        label = _default_label(optimizer_cls, {"lr": lr, **optimizer_kwargs})
        traj = Trajectory(points=pts.copy(), losses=losses, label=label, diverged=diverged, minima=landscape.minima)
        settled = None if diverged else traj.steps_to_settle(tol)
        if settled is not None and (best is None or settled < best[0]):
            best = (settled, lr, traj)
        if not diverged and (lowest is None or traj.final_loss < lowest[0]):
            lowest = (traj.final_loss, lr, traj)
    if best is not None:
        return best[1], best[2]
    return (None, None) if lowest is None else (lowest[1], lowest[2])
