"""Tests for course_lib.problems.synthetic: the sparse-feature regression, its fitting loop, steady gradients."""

import numpy as np
import pytest
import torch

from course_lib import optim
from course_lib.problems import synthetic


@pytest.fixture(scope="module")
def problem():
    return synthetic.sparse_regression(n_samples=3000, n_common=5, n_rare=20, rare_prob=0.02,
                                       common_scale=2.0, noise_std=0.1, seed=3)


def test_shapes_and_feature_kinds(problem):
    n, d = problem.X.shape
    assert (n, d) == (3000, 25)
    assert problem.y.shape == (n,) and problem.w_true.shape == (d,) and problem.w_best.shape == (d,)
    assert problem.X.dtype == torch.float64
    assert problem.rare.tolist() == [False] * 5 + [True] * 20
    rare_cols = problem.X[:, problem.rare]
    assert set(rare_cols.unique().tolist()) == {0.0, 1.0}  # indicators
    assert (rare_cols.sum(dim=0) >= 1).all()  # every rare feature appears somewhere
    common_cols = problem.X[:, ~problem.rare]
    assert (common_cols != 0).all()
    assert common_cols.std().item() == pytest.approx(2.0, rel=0.05)


def test_frequencies_match_rare_prob(problem):
    freq = problem.frequency
    assert torch.all(freq[~problem.rare] == 1.0)
    assert freq[problem.rare].mean().item() == pytest.approx(0.02, rel=0.15)


def test_targets_follow_the_model(problem):
    residual = problem.y - problem.X @ problem.w_true
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)
    assert abs(residual.mean().item()) < 0.01


def test_w_best_is_the_least_squares_solution(problem):
    gradient = problem.X.T @ (problem.X @ problem.w_best - problem.y) / len(problem.y)
    assert gradient.abs().max().item() < 1e-10
    assert problem.loss(problem.w_best) <= problem.loss(problem.w_true)


def test_noise_free_problem_recovers_the_truth():
    p = synthetic.sparse_regression(n_samples=500, n_common=3, n_rare=4, rare_prob=0.2, noise_std=0.0)
    assert torch.allclose(p.w_best, p.w_true, atol=1e-10)
    assert p.loss(p.w_true) == 0.0
    assert p.weight_errors(p.w_true) == (0.0, 0.0)


def test_seeded_and_reproducible():
    a = synthetic.sparse_regression(n_samples=100, seed=5)
    b = synthetic.sparse_regression(n_samples=100, seed=5)
    c = synthetic.sparse_regression(n_samples=100, seed=6)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)


def test_every_rare_feature_is_made_present():
    p = synthetic.sparse_regression(n_samples=20, n_common=1, n_rare=30, rare_prob=0.001)
    assert (p.X[:, p.rare].sum(dim=0) >= 1).all()


@pytest.mark.parametrize("kwargs", [dict(n_samples=0), dict(rare_prob=0.0), dict(rare_prob=1.5),
                                    dict(noise_std=-1.0), dict(common_scale=0.0),
                                    dict(n_common=0, n_rare=0)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic.sparse_regression(**kwargs)


def test_weight_errors_split_common_and_rare(problem):
    w = problem.w_true.clone()
    w[~problem.rare] += 0.5
    assert problem.weight_errors(w) == pytest.approx((0.5, 0.0))


def test_full_batch_sgd_is_gradient_descent(problem):
    """With batch_size = n every step is w <- w - lr * X^T (X w - y) / n."""
    lr, steps = 0.05, 7
    fit = synthetic.fit_linear(problem, optim.SGD, steps=steps, batch_size=len(problem.y), lr=lr)
    w = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    for _ in range(steps):
        w = w - lr * problem.X.T @ (problem.X @ w - problem.y) / len(problem.y)
    np.testing.assert_allclose(fit.weights, w.numpy(), rtol=1e-12, atol=1e-14)
    assert len(fit.loss) == len(fit.rare_error) == len(fit.common_error) == steps + 1
    assert fit.loss[-1] == pytest.approx(problem.loss(w), rel=1e-12)
    assert not fit.diverged
    assert np.all(np.diff(fit.loss) < 0)


def test_fit_reaches_the_least_squares_solution(problem):
    fit = synthetic.fit_linear(problem, optim.Adagrad, steps=800, batch_size=64, lr=0.3)
    assert fit.loss[-1] < 1.5 * problem.loss(problem.w_best)
    assert fit.loss[0] == pytest.approx(problem.loss(torch.zeros(25, dtype=torch.float64)))


def test_fit_records_the_optimizer_state(problem):
    fit = synthetic.fit_linear(problem, optim.Adagrad, steps=10, batch_size=32, lr=0.1)
    assert set(fit.state) == {"step", "sum"}
    assert fit.state["step"].item() == 10
    assert fit.state["sum"][~problem.rare].min().item() > 0  # common features are in every batch
    assert fit.state["sum"].shape == problem.w_true.shape


def test_fit_marks_divergence(problem):
    fit = synthetic.fit_linear(problem, optim.SGD, steps=200, batch_size=32, lr=5.0)
    assert fit.diverged
    assert len(fit.loss) < 201
    assert fit.losses is fit.loss


def test_fit_is_seeded(problem):
    a = synthetic.fit_linear(problem, optim.SGD, steps=20, batch_size=16, lr=0.01, seed=1)
    b = synthetic.fit_linear(problem, optim.SGD, steps=20, batch_size=16, lr=0.01, seed=1)
    c = synthetic.fit_linear(problem, optim.SGD, steps=20, batch_size=16, lr=0.01, seed=2)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, c.loss)


def test_fit_rejects_bad_sizes(problem):
    with pytest.raises(ValueError):
        synthetic.fit_linear(problem, optim.SGD, steps=-1, batch_size=8, lr=0.1)
    with pytest.raises(ValueError):
        synthetic.fit_linear(problem, optim.SGD, steps=1, batch_size=0, lr=0.1)


def test_steady_gradients():
    g = synthetic.steady_gradients(4000, [1.0, 0.01], seed=0)
    assert g.shape == (4000, 2) and g.dtype == torch.float64
    np.testing.assert_allclose(g.std(dim=0).numpy(), [1.0, 0.01], rtol=0.05)
    assert torch.equal(g, synthetic.steady_gradients(4000, [1.0, 0.01], seed=0))
    with pytest.raises(ValueError):
        synthetic.steady_gradients(0, [1.0])


def test_adagrad_sum_on_steady_gradients_is_the_cumulative_sum_of_squares():
    g = synthetic.steady_gradients(50, [2.0, 0.5, 1e-3], seed=1)
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = optim.Adagrad([p], lr=0.1)
    for row in g:
        p.grad = row.clone()
        opt.step()
    torch.testing.assert_close(opt.state[p]["sum"], (g**2).sum(dim=0), rtol=1e-12, atol=0)


def test_brightest_channel_images():
    from course_lib.problems.synthetic import brightest_channel_images

    images, labels = brightest_channel_images(50, seed=1)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8 and labels.shape == (50,)
    means = images.reshape(50, -1, 3).mean(1)
    assert (means.argmax(1) == labels).all()
    a, b = brightest_channel_images(10, seed=2), brightest_channel_images(10, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="classes"):
        brightest_channel_images(classes=4)


def test_weight_decay_grid_shapes_pairing_and_limits():
    lrs, lams = [1e-2, 3e-2], [0.0, 0.3, 30.0]
    adamw = synthetic.weight_decay_grid(optim.AdamW, lrs, lams, steps=200, seeds=(0, 1, 2))
    assert adamw.val_loss.shape == (2, 3, 3) and adamw.mean.shape == (2, 3)
    # λ = 0: AdamW is Adam, and every cell of a seed shares data, start and batches
    adam = synthetic.weight_decay_grid(optim.Adam, lrs, lams, steps=200, seeds=(0, 1, 2))
    np.testing.assert_array_equal(adamw.val_loss[:, 0], adam.val_loss[:, 0])
    assert not np.allclose(adamw.val_loss[:, 1], adam.val_loss[:, 1])   # L2 is not decoupled decay
    # ηλT = 0.03·30·200 = 180 windows: the weights are shrunk to about 0 (the decay's fixed point
    # |θ| <~ 1/λ), so the validation loss is close to that of predicting 0, i.e. about 0.5·E[y²] ≈ 4.6
    assert 3.0 < adamw.mean[1, 2] < 5.0
    # decay helps here: the moderate λ beats both no decay and the crushing one, at each lr
    assert (adamw.best_decay() == 0.3).all()


def test_weight_decay_grid_near_best_uses_paired_noise():
    g = synthetic.DecayGrid(lrs=(0.1,), weight_decays=(0.0, 1.0, 2.0), seeds=(0, 1, 2), steps=1,
                            val_loss=np.array([[[2.0, 2.1, 1.9], [1.0, 1.2, 0.8], [1.05, 1.25, 0.85]]]))
    # cell 2 is 0.05 worse than cell 1 on every seed: a paired difference with zero spread
    assert g.best_decay().tolist() == [1.0]
    assert g.near_best().tolist() == [[False, True, False]]
    noisy = synthetic.DecayGrid(lrs=(0.1,), weight_decays=(0.0, 1.0), seeds=(0, 1, 2), steps=1,
                                val_loss=np.array([[[1.0, 1.2, 0.8], [1.3, 0.9, 0.9]]]))
    assert noisy.near_best().tolist() == [[True, True]]   # 0.033 ± 0.2: within noise
    with pytest.raises(ValueError, match="two seeds"):
        synthetic.DecayGrid(lrs=(0.1,), weight_decays=(0.0,), seeds=(0,), steps=1,
                            val_loss=np.zeros((1, 1, 1))).near_best()
    with pytest.raises(ValueError, match="at least one"):
        synthetic.weight_decay_grid(optim.AdamW, [], [0.0], steps=1)
