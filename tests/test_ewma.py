"""course_lib.optim.ewma: the formulas of the EWMA chapter."""

import numpy as np
import pytest
import torch

from course_lib.optim import ewma as E


def naive_zero_start(x, beta):
    v, out = 0.0, []
    for value in x:
        v = beta * v + (1 - beta) * value
        out.append(v)
    return np.array(out)


@pytest.fixture
def temps():
    return np.random.default_rng(0).normal(20, 3, size=30)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.98])
def test_zero_start_matches_the_recurrence(temps, beta):
    np.testing.assert_allclose(E.ewma(temps, beta), naive_zero_start(temps, beta), rtol=1e-15)


def test_bias_correction_divides_by_one_minus_beta_to_the_t(temps):
    beta = 0.9
    t = np.arange(1, len(temps) + 1)
    np.testing.assert_allclose(E.ewma(temps, beta, bias_correction=True), naive_zero_start(temps, beta) / (1 - beta**t))


def test_bias_correction_removes_the_pull_towards_zero():
    constant = np.full(10, 25.0)
    np.testing.assert_allclose(E.ewma(constant, 0.98, bias_correction=True), constant)
    assert E.ewma(constant, 0.98)[0] == pytest.approx(0.5)  # (1 - 0.98) * 25


def test_first_value_start(temps):
    out = E.ewma(temps, 0.9, start="first")
    assert out[0] == temps[0]
    assert out[1] == pytest.approx(0.9 * temps[0] + 0.1 * temps[1])


@pytest.mark.parametrize("start,bc", [("zero", False), ("zero", True), ("first", False)])
def test_weights_reproduce_the_average(temps, start, bc):
    w = E.ewma_weights(0.9, len(temps), start=start, bias_correction=bc)
    assert E.ewma(temps, 0.9, start=start, bias_correction=bc)[-1] == pytest.approx(w @ temps[::-1])
    expected_total = 1 - 0.9 ** len(temps) if (start == "zero" and not bc) else 1.0
    assert w.sum() == pytest.approx(expected_total)


def test_effective_window():
    assert E.effective_window(0.9) == pytest.approx(10)
    assert E.effective_window(0.98) == pytest.approx(50)
    # after one window the weight beta^k has fallen to about 1/e (the closer beta is to 1, the closer)
    assert 0.98**50 == pytest.approx(np.exp(-1), rel=0.02)
    assert 0.9**10 == pytest.approx(0.349, abs=1e-3)


def test_in_place_steps_equal_the_formula():
    gen = torch.Generator().manual_seed(0)
    avg, x = torch.randn(100, generator=gen, dtype=torch.float64), torch.randn(100, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(E.ewma_step_(avg.clone(), x, 0.9), E.ewma_step(avg, x, 0.9), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(E.ewma_square_step_(avg.clone(), x, 0.99), E.ewma_step(avg, x * x, 0.99), rtol=1e-14, atol=1e-15)


def test_bias_correction_factor():
    assert E.bias_correction_factor(0.9, 1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="starts at 1"):
        E.bias_correction_factor(0.9, 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=1.0), "beta"), (dict(beta=-0.1), "beta"), (dict(beta=0.9, start="last"), "start"),
    (dict(beta=0.9, start="first", bias_correction=True), "zero start"),
])  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.ewma([1.0, 2.0], **kwargs)


def test_mean_age_is_the_lag_on_a_linear_trend_and_variance_factor_is_measured():
    from course_lib.optim.ewma import ewma, mean_age, variance_factor

    trend = 0.25 * np.arange(1, 31)
    for beta in (0.5, 0.9, 0.98):
        for t in (1, 5, 30):
            lag = (trend[t - 1] - ewma(trend[:t], beta, bias_correction=True)[-1]) / 0.25
            assert lag == pytest.approx(mean_age(beta, t), abs=1e-9)
        assert mean_age(beta) == pytest.approx(beta / (1 - beta))
        assert mean_age(beta, 10_000) == pytest.approx(beta / (1 - beta))
    noise = np.random.default_rng(0).normal(size=200_000)
    for beta in (0.5, 0.9):
        assert ewma(noise, beta)[1000:].var() == pytest.approx(variance_factor(beta), rel=0.05)
    with pytest.raises(ValueError):
        mean_age(0.9, 0)
