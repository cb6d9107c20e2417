"""Explorers: sliders where a widget manager runs, the picture at the starting setting elsewhere."""

import base64

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from course_lib.teaching import explorers  # noqa: E402

calls = []


def draw(beta=0.5, label="x"):
    calls.append((beta, label))
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, beta])
    ax.set_title(label)
    plt.show()


def test_starting_values():
    assert explorers.starting_values({"beta": ipywidgets.FloatSlider(value=0.3), "label": "fixed"}) == {
        "beta": 0.3, "label": "fixed"}


def test_static_png_is_the_figure_at_the_given_values():
    calls.clear()
    png = explorers.static_png(draw, {"beta": 0.7, "label": "a"})
    assert png.startswith(b"\x89PNG") and calls == [(0.7, "a")]
    assert not plt.get_fignums()  # nothing left open
    assert explorers.static_png(lambda: None, {}) is None


def test_explore_shows_one_bundle_with_the_widget_and_the_picture():
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.instance()  # display() as in a kernel, so that capture_output sees it
    calls.clear()
    with capture_output() as captured:
        result = explorers.explore(draw, beta=ipywidgets.FloatSlider(value=0.9, min=0, max=1), label="fixed")
    assert result is None
    bundles = [out.data for out in captured.outputs]
    assert len(bundles) == 1, bundles
    bundle = bundles[0]
    assert "model_id" in bundle["application/vnd.jupyter.widget-view+json"]
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert "interactive(" not in bundle["text/plain"] and "beta = 0.9" in bundle["text/plain"]
    assert calls[0] == (0.9, "fixed")  # the picture is drawn at the slider's starting value
