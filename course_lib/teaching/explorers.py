"""Explorers: a figure with sliders in JupyterLab, the same figure at one setting everywhere else.

``explore(draw, beta=FloatSlider(...), ...)`` shows ``ipywidgets.interactive(draw, ...)`` and
attaches to the same output a static picture: ``draw`` called once with the controls' starting
values, as a PNG. A front end picks the richest form it can show from one output's bundle, so

- JupyterLab (with the widget manager) shows the sliders and redraws on every move;
- where no widget manager runs (the jupyterlab-rise slideshow, the static HTML site, nbval,
  a notebook viewer) the picture at the starting setting is shown instead of the text
  ``interactive(children=(FloatSlider(...``.

``draw`` makes one matplotlib figure and shows it (``plt.show()``), as any cell would.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

__all__ = ["starting_values", "static_png", "explore"]


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
