"""Two-dimensional test functions with known minima and saddles, and their derivatives.

A :class:`Landscape` is a function ``f(x, y)`` written with torch operations (so autograd gives
its gradient) together with what we know about it: its minima, its saddle points, a plotting
window and a default starting point. Every landscape is shifted so that its global minimum
value is exactly ``0``, which lets loss curves use a logarithmic axis.

==================  =========================================  ==============================
factory             what it shows                              stationary points
==================  =========================================  ==============================
``ravine``          ill-conditioning, zig-zagging              minimum (0, 0)
``saddle``          slow escape from a saddle point            saddle (0, 0); minima (0, ±1)
``plateau``         vanishing gradients far from the basin     minimum (0, 0)
``local_minima``    getting stuck in a worse minimum           4 minima, 4 saddles
``coupled_wells``   the same, not separable (curved basins)    4 minima, 4 saddles
``rotated_ravine``  a ravine not aligned with the axes         minimum (0, 0)
``rosenbrock``      a curved, narrow valley                    minimum (a, a²)
``beale``           steep walls, flat floor                    minimum (3, 0.5); saddle (0, 1)
==================  =========================================  ==============================

``parabola``        the 1-D quadratic of the stability limit       minimum (0, 0)

The 2-D problems are optimized exactly like a network (:mod:`course_lib.problems.runs`): the
point is a 2-element ``torch.nn.Parameter`` handed to any ``torch.optim``-style optimizer class
(``torch.optim.Adam``, ``course_lib.optim.Adam``, ...)::

    land = get_landscape("rosenbrock")
    traj = run_optimizer(land, torch.optim.Adam, steps=500, lr=0.05)
    traj.steps_to_reach(1e-2)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

Point = tuple[float, float]

__all__ = ["Point", "Landscape", "gradient", "hessian", "ravine", "rotated_ravine", "saddle", "plateau",
           "local_minima", "coupled_wells", "rosenbrock", "beale", "parabola", "LANDSCAPES", "get_landscape"]

# --------------------------------------------------------------------------------------------
# The landscape record
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Landscape:
    """A 2-D test function and what is known about it.

    ``fn(x, y)`` accepts tensors (any broadcastable shapes, e.g. a meshgrid) and also plain
    floats or NumPy arrays, which it turns into float64 tensors; it always returns a tensor.
    ``minima`` is sorted by value, so ``minima[0]`` is the global minimum (value 0).
    ``levels`` is a hint for contour plots: ``"log"`` or ``"linear"`` spacing.
    """

    name: str
    fn: Callable[[Any, Any], torch.Tensor]
    x_range: Point
    y_range: Point
    minima: tuple[Point, ...]
    saddles: tuple[Point, ...]
    start: Point
    levels: str
    description: str

    def __call__(self, x: Any, y: Any) -> torch.Tensor:
        """Same as ``self.fn(x, y)``."""
        return self.fn(x, y)

    def value(self, point: Any) -> float:
        """``f`` at one point ``(x, y)``, as a Python float."""
        x, y = _point(point)
        return float(self.fn(x, y))

    @property
    def global_minimum(self) -> Point:
        """The lowest of the stored minima."""
        return self.minima[0]

    @property
    def min_value(self) -> float:
        """``f`` at the global minimum (0 up to rounding, by construction)."""
        return self.value(self.global_minimum)

    def grid(self, resolution: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X, Y, Z`` arrays (``resolution`` x ``resolution``) over the plotting window."""
        xs = torch.linspace(*self.x_range, resolution, dtype=torch.float64)
        ys = torch.linspace(*self.y_range, resolution, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        with torch.no_grad():
            Z = self.fn(X, Y)
        return X.numpy(), Y.numpy(), Z.numpy()


def _as_tensor(v: Any) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float64)


def _accepts_numbers(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """Let a torch-only ``fn(x, y)`` also take floats and NumPy arrays (as float64 tensors)."""

    @functools.wraps(fn)
    def wrapped(x: Any, y: Any) -> torch.Tensor:
        return fn(_as_tensor(x), _as_tensor(y))

    return wrapped


def _point(point: Any) -> tuple[float, float]:
    x, y = (float(v) for v in np.asarray(point, dtype=np.float64).reshape(2))
    return x, y


# --------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------


def _vector_fn(landscape: Landscape | Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    fn = landscape.fn if isinstance(landscape, Landscape) else landscape
    return lambda p: fn(p[0], p[1])


def gradient(landscape: Landscape, point: Any) -> np.ndarray:
    """The gradient ``(df/dx, df/dy)`` at ``point``, computed by autograd in float64."""
    p = torch.tensor(_point(point), dtype=torch.float64)
    return torch.autograd.functional.jacobian(_vector_fn(landscape), p).numpy()


def hessian(landscape: Landscape, point: Any) -> np.ndarray:
    """The 2 x 2 Hessian at ``point``, computed by autograd in float64."""
    p = torch.tensor(_point(point), dtype=torch.float64)
    return torch.autograd.functional.hessian(_vector_fn(landscape), p).numpy()


def _stationary_point(fn: Callable, guess: Point, tol: float = 1e-13, max_iter: int = 50) -> Point:
    """Newton's method on the gradient of ``fn`` from ``guess``; raises if it does not converge."""
    p = np.asarray(guess, dtype=np.float64)
    for _ in range(max_iter):
        g = gradient(fn, p)
        if np.linalg.norm(g) < tol:
            return float(p[0]), float(p[1])
        p = p - np.linalg.solve(hessian(fn, p), g)
    raise RuntimeError(f"Newton's method did not find a stationary point near {guess}")


# --------------------------------------------------------------------------------------------
# The landscapes
# --------------------------------------------------------------------------------------------


def ravine(condition: float = 25.0) -> Landscape:
    """``f = (x² + condition·y²) / 2``: a quadratic bowl squeezed along ``y``.

    The Hessian is ``diag(1, condition)``, so the condition number is ``condition``, the
    smoothness constant is ``L = max(1, condition)`` and gradient descent converges only for
    ``lr < 2 / L``. Minimum ``(0, 0)``.
    """
    if condition <= 0:
        raise ValueError(f"condition must be positive, got {condition}")

    @_accepts_numbers
    def fn(x, y):
        return 0.5 * (x**2 + condition * y**2)

    return Landscape(
        name="ravine",
        fn=fn,
        x_range=(-3.0, 3.0),
        y_range=(-1.5, 1.5),
        minima=((0.0, 0.0),),
        saddles=(),
        start=(-2.5, 1.0),
        levels="log",
        description=(
            f"Ill-conditioned quadratic f = (x² + {condition:g}·y²)/2; condition number "
            f"{condition:g}, gradient descent needs lr < 2/{max(1.0, condition):g}."
        ),
    )


def rotated_ravine(condition: float = 25.0, angle: float = math.pi / 4) -> Landscape:
    """The ravine ``(u² + condition·v²) / 2`` in coordinates ``(u, v)`` rotated by ``angle`` (radians).

    ``u = x·cos(angle) + y·sin(angle)``, ``v = −x·sin(angle) + y·cos(angle)``. The Hessian has the
    same eigenvalues ``1`` and ``condition`` as :func:`ravine`'s, so gradient descent and momentum
    (which do not care about the axes) behave exactly as there; a per-coordinate method (Adagrad,
    RMSprop, Adam) loses its advantage, since the steep and flat directions mix both coordinates.
    Minimum ``(0, 0)``; the start is :func:`ravine`'s start rotated by ``angle``.
    """
    if condition <= 0:
        raise ValueError(f"condition must be positive, got {condition}")
    c, s = math.cos(angle), math.sin(angle)

    @_accepts_numbers
    def fn(x, y):
        u, v = c * x + s * y, -s * x + c * y
        return 0.5 * (u**2 + condition * v**2)

    u0, v0 = -2.5, 1.0  # ravine()'s start, in the rotated coordinates
    return Landscape(
        name="rotated_ravine",
        fn=fn,
        x_range=(-3.0, 3.0),
        y_range=(-3.0, 3.0),
        minima=((0.0, 0.0),),
        saddles=(),
        start=(c * u0 - s * v0, s * u0 + c * v0),
        levels="log",
        description=(
            f"Ravine f = (u² + {condition:g}·v²)/2 rotated by {math.degrees(angle):g}°: condition number "
            f"{condition:g}, the steep direction is not a coordinate axis."
        ),
    )


def saddle() -> Landscape:
    """``f = x² + (y² − 1)² / 4``: a saddle at the origin between two minima.

    Stationary points: the saddle ``(0, 0)`` with ``f = 1/4`` and Hessian ``diag(2, −1)``, and the
    minima ``(0, ±1)`` with ``f = 0`` and Hessian ``diag(2, 2)``. The line ``y = 0`` is the
    saddle's stable manifold: plain gradient descent started on it never leaves it and stalls at
    the saddle; a tiny ``y`` offset grows by only ``(1 + lr)`` per step, so the escape is slow.
    """

    @_accepts_numbers
    def fn(x, y):
        return x**2 + 0.25 * (y**2 - 1.0) ** 2

    return Landscape(
        name="saddle",
        fn=fn,
        x_range=(-2.0, 2.0),
        y_range=(-1.6, 1.6),
        minima=((0.0, -1.0), (0.0, 1.0)),
        saddles=((0.0, 0.0),),
        start=(1.5, 1e-3),
        levels="log",
        description=(
            "f = x² + (y² − 1)²/4: saddle at (0, 0) (f = 1/4, Hessian diag(2, −1)), "
            "minima at (0, ±1) (f = 0). Starting exactly on y = 0 you never escape."
        ),
    )


def plateau(width: float = 1.0) -> Landscape:
    """``f = 1 − exp(−(x² + y²) / (2·width²))``: a narrow basin in a wide, almost flat plain.

    Minimum ``(0, 0)`` with Hessian ``I / width²``. At distance ``r`` from it the gradient is
    ``(r / width²)·exp(−r² / (2·width²))``: about ``2e-4 / width`` at ``r = 4.5·width`` (the
    default start) and ``2e-5 / width`` at ``r = 5·width``. Methods that rescale the step
    (Adam, RMSprop) cross the plateau far faster than plain SGD.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")

    @_accepts_numbers
    def fn(x, y):
        # -expm1(-r²/2w²) = 1 - exp(-r²/2w²) without the cancellation that makes 1 - exp(-1e-17) exactly 0
        return -torch.expm1(-(x**2 + y**2) / (2.0 * width**2))

    return Landscape(
        name="plateau",
        fn=fn,
        x_range=(-5.0 * width, 5.0 * width),
        y_range=(-5.0 * width, 5.0 * width),
        minima=((0.0, 0.0),),
        saddles=(),
        start=(3.6 * width, 2.7 * width),
        levels="linear",
        description=(
            f"Plateau f = 1 − exp(−(x² + y²)/(2·{width:g}²)): gradient almost 0 far from the "
            "basin at the origin."
        ),
    )


_WELL_TILT = (0.4, 0.2)


def _tilted_double_wells(x, y):
    return (x**2 - 1.0) ** 2 + (y**2 - 1.0) ** 2 + _WELL_TILT[0] * x + _WELL_TILT[1] * y


def _double_wells_landscape(raw_fn: Callable, name: str, description: str) -> Landscape:
    """A landscape of four wells near ``(±1, ±1)``: ``raw_fn`` shifted so the global minimum is 0.

    The starting guesses are the wells and humps of each coordinate's tilted double well
    (roots of :math:`4u^3 - 4u + \text{tilt}`); Newton's method refines them. A refined guess
    between wells counts as a saddle only if its Hessian has one negative and one positive
    eigenvalue, and once. ``minima`` is sorted by value.
    """

    def coordinate_guesses(tilt):
        # stationary points of (u² − 1)² + tilt·u: roots of 4u³ − 4u + tilt
        roots = np.sort(np.roots([4.0, 0.0, -4.0, tilt]).real)
        return (roots[0], roots[2]), roots[1]  # (the two wells), the hump between them

    (x_wells, x_hump), (y_wells, y_hump) = (coordinate_guesses(t) for t in _WELL_TILT)
    minima = [_stationary_point(raw_fn, (a, b)) for a in x_wells for b in y_wells]
    guesses = [(a, y_hump) for a in x_wells] + [(x_hump, b) for b in y_wells]
    saddles = []
    for guess in guesses:
        point = _stationary_point(raw_fn, guess)
        eig = np.linalg.eigvalsh(hessian(raw_fn, point))
        if eig[0] < 0 < eig[1] and all(np.hypot(point[0] - q[0], point[1] - q[1]) > 1e-6 for q in saddles):
            saddles.append(point)
    numbers = _accepts_numbers(raw_fn)
    minima.sort(key=lambda m: float(numbers(*m)))
    offset = float(numbers(*minima[0]))

    @_accepts_numbers
    def fn(x, y):
        return raw_fn(x, y) - offset

    values = ", ".join(f"({m[0]:.3f}, {m[1]:.3f}) f={float(fn(*m)):.3f}" for m in minima)
    return Landscape(
        name=name,
        fn=fn,
        x_range=(-2.0, 2.0),
        y_range=(-2.0, 2.0),
        minima=tuple(minima),
        saddles=tuple(sorted(saddles)),
        start=(1.9, 1.8),
        levels="linear",
        description=f"{description} with four minima: {values}.",
    )


def local_minima() -> Landscape:
    """Two tilted double wells, ``(x² − 1)² + (y² − 1)² + 0.4·x + 0.2·y − c``.

    Each coordinate has a deep well near −1 and a shallow one near +1, giving four minima near
    ``(±1, ±1)`` and four saddles between neighbouring wells. Their exact positions are found by
    Newton's method (gradient below 1e-13); ``c`` makes the global minimum, near ``(−1, −1)``,
    have value 0. ``minima`` is sorted by value; the values are about 0, 0.40, 0.80 and 1.20.
    """
    return _double_wells_landscape(_tilted_double_wells, "local_minima", "Tilted double wells")


def _coupled_wells(coupling):
    def raw(x, y):
        return _tilted_double_wells(x, y) + coupling * x * y

    return raw


def coupled_wells(coupling: float = 0.5) -> Landscape:
    """:func:`local_minima` plus a coupling term ``coupling·x·y``: four minima, not separable.

    ``local_minima`` is a sum of a function of ``x`` and a function of ``y``, so gradient descent
    moves ``x`` and ``y`` independently and every basin of attraction is a rectangle. The
    ``x·y`` term ties the coordinates together: the basins get curved borders, and the order of
    the minima changes (with the default coupling the deepest one is near ``(−1, +1)``). Minima
    and saddles are found by Newton's method; ``minima`` is sorted by value, the global one at 0.
    """
    return _double_wells_landscape(_coupled_wells(coupling), "coupled_wells",
                                   f"Coupled double wells (+ {coupling:g}·x·y)")  # fmt: skip


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Landscape:
    """``f = (a − x)² + b·(y − x²)²``: a curved, narrow valley; minimum ``(a, a²)``."""
    if b <= 0:
        raise ValueError(f"b must be positive, got {b}")

    @_accepts_numbers
    def fn(x, y):
        return (a - x) ** 2 + b * (y - x**2) ** 2

    half = max(2.0, abs(a) + 1.0)
    return Landscape(
        name="rosenbrock",
        fn=fn,
        x_range=(-half, half),
        y_range=(-1.0, half**2 - 1.0),
        minima=((float(a), float(a) ** 2),),
        saddles=(),
        start=(-1.2, 1.0),
        levels="log",
        description=f"Rosenbrock f = ({a:g} − x)² + {b:g}·(y − x²)², minimum ({a:g}, {a**2:g}).",
    )


def beale() -> Landscape:
    """Beale's function ``Σᵢ (cᵢ − x + x·yⁱ)²`` with ``c = (1.5, 2.25, 2.625)``.

    Minimum ``(3, 0.5)``. Two saddles: ``(0, 1)`` (``f = 14.203125``), on the line ``x = 0``
    where ``f`` is constant, and one near ``(0.1005, −2.6445)`` (``f ≈ 9.86``), located by
    Newton's method. Steep walls for large ``|y|``, a flat floor near ``y = 1``.
    """

    @_accepts_numbers
    def fn(x, y):
        return (
            (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2
        )

    return Landscape(
        name="beale",
        fn=fn,
        x_range=(-4.5, 4.5),
        y_range=(-4.5, 4.5),
        minima=((3.0, 0.5),),
        saddles=((0.0, 1.0), _stationary_point(fn, (0.1, -2.6))),
        start=(1.0, 1.5),
        levels="log",
        description=(
            "Beale's function: minimum (3, 0.5), saddles (0, 1) and about (0.1005, −2.6445), "
            "steep walls."
        ),
    )

def parabola(curvature: float = 4.0, start: float = 1.0) -> Landscape:
    """``f = curvature·x² / 2``: a one-dimensional quadratic, run through the 2-D machinery.

    ``f`` does not depend on ``y``, so the ``y`` gradient is always 0 and ``y`` never leaves its
    start value 0: a trajectory's ``points[:, 0]`` is the 1-D path ``x₀, x₁, ...``. Gradient
    descent with learning rate ``lr`` multiplies ``x`` by exactly ``1 − lr·curvature`` each step,
    so it converges for ``0 < lr < 2 / curvature``, oscillates (sign flips) when
    ``lr > 1 / curvature`` and diverges when ``lr > 2 / curvature``. Minimum ``(0, 0)``.
    """
    if curvature <= 0:
        raise ValueError(f"curvature must be positive, got {curvature}")

    @_accepts_numbers
    def fn(x, y):
        return 0.5 * curvature * x**2 + 0.0 * y

    half = 1.5 * max(abs(float(start)), 1.0)
    return Landscape(
        name="parabola",
        fn=fn,
        x_range=(-half, half),
        y_range=(-1.0, 1.0),
        minima=((0.0, 0.0),),
        saddles=(),
        start=(float(start), 0.0),
        levels="linear",
        description=(
            f"1-D quadratic f = {curvature:g}·x²/2 (constant in y); gradient descent needs "
            f"lr < 2/{curvature:g}."
        ),
    )

LANDSCAPES: Mapping[str, Callable[..., Landscape]] = {
    "ravine": ravine,
    "saddle": saddle,
    "plateau": plateau,
    "local_minima": local_minima,
    "coupled_wells": coupled_wells,
    "rotated_ravine": rotated_ravine,
    "rosenbrock": rosenbrock,
    "beale": beale,
    "parabola": parabola,
}
"""Landscape name -> factory. Factories take keyword parameters, e.g. ``ravine(condition=100)``."""


def get_landscape(name: str, **kwargs: Any) -> Landscape:
    """Build the landscape called ``name``, passing ``kwargs`` to its factory."""
    try:
        factory = LANDSCAPES[name]
    except KeyError:
        known = ", ".join(sorted(LANDSCAPES))
        raise ValueError(f"unknown landscape {name!r}; known landscapes: {known}") from None
    return factory(**kwargs)
