"""Explorers: a figure with sliders in JupyterLab, the same figure at one setting everywhere else.

``explore(draw, beta=FloatSlider(...), ...)`` shows ``ipywidgets.interactive(draw, ...)`` and
attaches to the same output a static picture: ``draw`` called once with the controls' starting
values, as a PNG. A front end picks the richest form it can show from one output's bundle, so

- JupyterLab (with the widget manager) shows the sliders and redraws on every move;
- where no widget manager runs (the jupyterlab-rise slideshow, the static HTML site, nbval,
  a notebook viewer) the picture at the starting setting is shown instead of the text
  ``interactive(children=(FloatSlider(...``.

``draw`` makes one matplotlib figure and shows it (``plt.show()``), as any cell would.

The chapters' own drawing functions live here too, when they hold a computation worth testing:
:func:`momentum_run_figure` (chapters 01 and 03) draws a GD or momentum run on a quadratic landscape next to
the rate the quadratic model predicts for it; :func:`schedule_figure` (chapter 08) three
warm-up schedules with shared settings; :func:`adaptive_runs_figure` (chapter 05) Adagrad and
RMSProp with the same η and ε; :func:`adam_runs_figure` (chapter 06) Adam + L2 against AdamW.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

__all__ = ["starting_values", "static_png", "explore", "measured_rate", "momentum_run_figure", "schedule_curves",
           "schedule_figure", "adaptive_runs_figure",
           "adam_runs_figure"]


def starting_values(controls: dict[str, Any]) -> dict[str, Any]:
    """The value each control starts at (a widget's ``value``; a plain value passes through:
    ``interactive`` treats it as fixed)."""
    return {name: getattr(control, "value", control) for name, control in controls.items()}


def static_png(draw: Callable[..., Any], values: dict[str, Any]) -> bytes | None:
    """The PNG ``draw(**values)`` shows (its last figure), captured instead of displayed; None
    when it shows no figure."""
    import io

    import matplotlib.pyplot as plt
    from IPython.utils.capture import capture_output

    before = set(plt.get_fignums())
    with capture_output(stdout=True, stderr=False, display=True) as captured:
        draw(**values)  # in a kernel, plt.show() displays the figure: captured here
    pngs = [out.data["image/png"] for out in captured.outputs if "image/png" in out.data]
    left = [n for n in plt.get_fignums() if n not in before]  # drawn but not displayed (no inline backend)
    if not pngs and left:
        buffer = io.BytesIO()
        plt.figure(left[-1]).savefig(buffer, format="png")
        pngs = [buffer.getvalue()]
    for number in left:
        plt.close(number)
    if not pngs:
        return None
    png = pngs[-1]
    return base64.b64decode(png) if isinstance(png, str) else png


def explore(draw: Callable[..., Any], **controls: Any) -> None:
    """Show ``draw`` with a widget per control, and the static picture at the starting values
    as the fallback in the same output (returns nothing, so a cell's value is not shown twice)."""
    import ipywidgets
    from IPython.display import display

    png = static_png(draw, starting_values(controls))
    panel = ipywidgets.interactive(draw, **controls)
    bundle = dict(panel._repr_mimebundle_())
    settings = ", ".join(f"{k} = {v}" for k, v in starting_values(controls).items())
    bundle["text/plain"] = f"(an explorer: sliders for {', '.join(controls)}; shown at {settings})"
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    display(bundle, raw=True)


def measured_rate(distances, tol: float = 1e-12) -> float:
    """The factor by which ``distances`` shrink per step over the second half of the run (a
    geometric mean: (d_end / d_mid)^(1/steps)), the part where the slowest direction rules;
    distances below ``tol`` (converged to round-off) are left out; nan when fewer than 2 remain."""
    import numpy as np

    d = np.asarray(distances, dtype=float)
    d = d[np.isfinite(d) & (d > tol)]
    if d.size < 2:
        return float("nan")
    half = d[d.size // 2:] if d.size >= 4 else d
    return float((half[-1] / half[0]) ** (1.0 / (half.size - 1)))


def momentum_run_figure(landscape, hessian, lr: float, beta: float, nesterov: bool = False, steps: int = 80):
    """Run torch-form momentum (``optim.SGD``; ``beta = 0``: plain GD, as in chapter 01) from
    ``landscape.start`` and draw the path on the contours (left) and the distance to the minimum
    on a log scale (right), with the quadratic model's prediction d₀ρᵗ,
    ρ = ``problems.momentum_rate(hessian, lr, beta, nesterov)`` (``max |1 − ηh|`` for GD).

    Returns ``(predicted ρ, measured ρ)`` (:func:`measured_rate` of the run's distances; a
    diverging run measures above 1, as predicted when ρ > 1)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .. import optim, plots, problems

    kw = dict(momentum=beta, nesterov=nesterov) if beta > 0 else {}
    run = problems.run_optimizer(landscape, optim.SGD, steps, lr=lr, **kw)
    rho = problems.momentum_rate(hessian, lr, beta, nesterov=nesterov)
    distance = np.linalg.norm(np.asarray(run.points, dtype=float) - np.asarray(landscape.minima[0], dtype=float), axis=1)
    measured = measured_rate(distance)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    label = ("Nesterov" if nesterov else "momentum") if beta > 0 else "GD"
    plots.plot_landscape(landscape, ax=left, trajectories={f"{label}: η = {lr:g}, β = {beta:g}": run})
    t = np.arange(len(distance))
    right.semilogy(t, np.maximum(distance, 1e-300), lw=2, label="measured distance")
    right.semilogy(t, distance[0] * rho**t, "k--", lw=1.2, label=f"predicted d₀ρᵗ, ρ = {rho:.3f}")
    top = max(float(np.nanmax(distance[np.isfinite(distance)])), float(distance[0])) * 10
    right.set_ylim(max(1e-12, float(np.nanmin(distance[distance > 0])) / 10) if (distance > 0).any() else 1e-12, top)
    right.set_xlabel("step")
    right.set_ylabel("distance to the minimum")
    right.set_title(f"predicted ρ = {rho:.3f}, measured {measured:.3f}")
    right.legend(fontsize=10)
    plt.show()
    return rho, measured


def schedule_curves(total_steps: int, warmup_steps: int, decay_fraction: float, min_factor: float = 0.0) -> dict:
    """The factors of warm-up + cosine, warm-up + linear decay and warmup-stable-decay (WSD,
    cooling down over the last ``decay_fraction`` of the run) for steps 0 .. total_steps - 1,
    each from ``optim.schedules`` with the same warm-up and floor: ``{name: array}``."""
    from ..optim import schedules

    decay_start = max(warmup_steps, int(round(total_steps * (1 - decay_fraction))))
    return {
        "warm-up + cosine": schedules.factors(schedules.warmup_cosine, total_steps, warmup_steps=warmup_steps,
                                              total_steps=total_steps, min_factor=min_factor),
        "warm-up + linear decay": schedules.factors(schedules.warmup_linear_decay, total_steps,
                                                    warmup_steps=warmup_steps, total_steps=total_steps),
        f"WSD (cool-down from step {decay_start})": schedules.factors(
            schedules.warmup_stable_decay, total_steps, warmup_steps=warmup_steps, decay_start=decay_start,
            total_steps=total_steps, min_factor=min_factor),
    }  # fmt: skip


def schedule_figure(total_steps: int = 1000, warmup_steps: int = 50, decay_fraction: float = 0.2,
                    min_factor: float = 0.0) -> dict:  # fmt: skip
    """Draw :func:`schedule_curves` and print each schedule's mean factor (the area under the
    curve: how much learning rate the run spends in all); returns ``{name: mean factor}``."""
    import matplotlib.pyplot as plt

    curves = schedule_curves(total_steps, warmup_steps, decay_fraction, min_factor)
    fig, ax = plt.subplots(figsize=(11, 4))
    means = {}
    for name, f in curves.items():
        means[name] = float(f.mean())
        ax.plot(f, lw=2, label=f"{name}: mean factor {means[name]:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("factor of the peak learning rate")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=10)
    plt.show()
    return means


def adaptive_runs_figure(landscape, lr: float, alpha: float, eps: float, steps: int = 200) -> dict:
    """Adagrad and RMSProp (decay ``alpha``) with the same ``lr`` and ``eps`` from
    ``landscape.start``: paths on the contours (left), losses (right); returns
    ``{label: final loss}``. Adagrad's steps shrink with the sum of squared gradients, RMSProp's
    stay of size about η once its average has warmed up (over about 1/(1 − α) steps)."""
    import matplotlib.pyplot as plt

    from .. import optim, plots, problems

    runs = problems.run_optimizers(landscape, {
        f"Adagrad (ε = {eps:g})": (optim.Adagrad, dict(lr=lr, eps=eps)),
        f"RMSProp (α = {alpha:g}, ε = {eps:g})": (optim.RMSprop, dict(lr=lr, alpha=alpha, eps=eps)),
    }, steps)  # fmt: skip
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    plots.plot_landscape(landscape, ax=left, trajectories=runs)
    plots.plot_losses(runs, ax=right)
    right.set_title(f"η = {lr:g}, {steps} steps")
    plt.show()
    return {label: run.final_loss for label, run in runs.items()}


def adam_runs_figure(landscape, lr: float, beta1: float, beta2: float, weight_decay: float, steps: int = 300) -> dict:
    """Adam with L2 (``optim.Adam(weight_decay=λ)``: λθ added to the gradient, then rescaled)
    and AdamW (``optim.AdamW``: θ shrunk by ηλθ, outside the rescaling) with the same η, β₁, β₂
    and λ from ``landscape.start``: paths (left), losses (right); returns ``{label: final point}``.
    With λ = 0 the two are the same method; with λ > 0 they settle at different points, both
    pulled from the landscape's minimum towards 0."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .. import optim, plots, problems

    common = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
    runs = problems.run_optimizers(landscape, {f"Adam + L2 (λ = {weight_decay:g})": (optim.Adam, common),
                                               f"AdamW (λ = {weight_decay:g})": (optim.AdamW, common)}, steps)  # fmt: skip
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    plots.plot_landscape(landscape, ax=left, trajectories=runs)
    plots.plot_losses(runs, ax=right)
    right.set_title(f"η = {lr:g}, β₁ = {beta1:g}, β₂ = {beta2:g}")
    plt.show()
    return {label: np.asarray(run.points[-1], dtype=float) for label, run in runs.items()}
