"""Explorers: sliders where a widget manager runs, the picture at the starting setting elsewhere."""

import base64

import pytest

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


def test_measured_rate_of_a_geometric_sequence():
    import numpy as np

    assert explorers.measured_rate(3.0 * 0.9 ** np.arange(50)) == pytest.approx(0.9, rel=1e-12)
    assert explorers.measured_rate([1.0, 0.0, 0.0]) != explorers.measured_rate([1.0, 0.0, 0.0])  # nan: too few
    assert explorers.measured_rate(2.0 ** np.arange(10)) == pytest.approx(2.0)


def test_momentum_run_figure_matches_the_quadratic_model():
    import numpy as np

    from course_lib import problems

    land, H = problems.ravine(), np.diag([1.0, 25.0])
    for lr, beta, nesterov in ((0.05, 0.0, False), (0.05, 0.5, False), (0.03, 0.3, True), (0.09, 0.0, False)):
        predicted, measured = explorers.momentum_run_figure(land, H, lr, beta, nesterov=nesterov, steps=80)
        plt.close("all")
        assert predicted == problems.momentum_rate(H, lr, beta, nesterov=nesterov)
        assert measured == pytest.approx(predicted, rel=1e-3), (lr, beta, nesterov)
    assert predicted > 1  # η = 0.09 > 2/25: GD diverges, as predicted


def test_schedule_curves_come_from_the_schedules():
    import numpy as np

    from course_lib.optim import schedules

    curves = explorers.schedule_curves(200, 0, 1.0)
    names = list(curves)
    # WSD cooling down over the whole run (linearly) is the linear decay
    np.testing.assert_allclose(curves[names[2]], curves[names[1]])
    np.testing.assert_array_equal(curves[names[0]], schedules.factors(schedules.warmup_cosine, 200, warmup_steps=0,
                                                                       total_steps=200, min_factor=0.0))  # fmt: skip
    means = explorers.schedule_figure(1000, 50, 0.2)
    plt.close("all")
    assert means["WSD (cool-down from step 800)"] > means["warm-up + cosine"]  # WSD spends more learning rate
    assert means["WSD (cool-down from step 800)"] == pytest.approx((50 * 0.5 + 750 + 200 * 0.5) / 1000, abs=2e-3)


def test_adaptive_runs_figure_reports_the_runs_it_draws():
    from course_lib import optim, problems

    land = problems.rotated_ravine()
    finals = explorers.adaptive_runs_figure(land, lr=0.1, alpha=0.9, eps=1e-8, steps=50)
    plt.close("all")
    adagrad = problems.run_optimizer(land, optim.Adagrad, 50, lr=0.1, eps=1e-8).final_loss
    rmsprop = problems.run_optimizer(land, optim.RMSprop, 50, lr=0.1, alpha=0.9, eps=1e-8).final_loss
    assert list(finals.values()) == [adagrad, rmsprop]
    assert list(finals) == ["Adagrad (ε = 1e-08)", "RMSProp (α = 0.9, ε = 1e-08)"]


def test_adam_runs_figure_l2_and_decoupled_decay():
    import numpy as np

    from course_lib import problems

    land = problems.rosenbrock()
    same = list(explorers.adam_runs_figure(land, 0.05, 0.9, 0.999, 0.0, steps=60).values())
    np.testing.assert_array_equal(same[0], same[1])  # without decay Adam and AdamW are one method
    apart = list(explorers.adam_runs_figure(land, 0.05, 0.9, 0.999, 0.5, steps=60).values())
    plt.close("all")
    assert np.abs(apart[0] - apart[1]).max() > 1e-3  # with decay they move differently
