"""Penalties, dropout from scratch, rotation, and the gap experiment runner (CPU, seconds)."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from course_lib import optim
from course_lib.engine import augment
from course_lib.techniques import dropout, regularization as reg

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- penalties


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_l2_and_l1_values_cover_weights_only_by_default():
    model = tiny_model()
    w1, w2 = model[0].weight, model[2].weight
    everything = torch.cat([p.flatten() for p in model.parameters()])
    lam = 0.3
    assert reg.l2_penalty(model, lam).item() == pytest.approx(lam / 2 * (w1.pow(2).sum() + w2.pow(2).sum()).item())
    assert reg.l2_penalty(model, lam, include_bias_and_norm=True).item() == pytest.approx(
        lam / 2 * everything.pow(2).sum().item())
    assert reg.l1_penalty(model, lam).item() == pytest.approx(lam * (w1.abs().sum() + w2.abs().sum()).item())
    assert reg.l1_penalty(model, lam, include_bias_and_norm=True).item() == pytest.approx(
        lam * everything.abs().sum().item())
    assert [p.shape for p in reg.penalised_parameters(model)] == [w1.shape, w2.shape]


def test_penalty_gradients_are_lambda_theta_and_lambda_sign():
    theta = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    lam = 0.7
    (g2,) = torch.autograd.grad(reg.l2_penalty([theta], lam), theta)
    assert torch.allclose(g2, lam * theta)
    (g1,) = torch.autograd.grad(reg.l1_penalty([theta], lam), theta)
    assert torch.equal(g1, lam * theta.sign())


def test_penalty_factory_and_errors():
    model = tiny_model()
    assert reg.penalty("l2", 0.1)(model).item() == pytest.approx(reg.l2_penalty(model, 0.1).item())
    assert reg.penalty("l1", 0.1, include_bias_and_norm=True)(model).item() == pytest.approx(
        reg.l1_penalty(model, 0.1, include_bias_and_norm=True).item())
    assert "l2" in repr(reg.penalty("l2", 1e-4))
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        reg.penalty("l3", 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        reg.l2_penalty(model, -1.0)
    with pytest.raises(ValueError, match="non-negative"):
        reg.penalty("l1", float("nan"))


@pytest.mark.parametrize("cls", [optim.SGD, torch.optim.SGD])
@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True)])
def test_l2_in_the_loss_equals_sgd_weight_decay(cls, kwargs):
    assert reg.l2_vs_weight_decay(cls, weight_decay=0.1, steps=30, **kwargs) < 1e-12


def test_l2_equals_coupled_adam_but_not_adamw():
    assert reg.l2_vs_weight_decay(optim.Adam, lr=0.01, weight_decay=0.1) < 1e-12
    assert reg.l2_vs_weight_decay(optim.AdamW, lr=0.01, weight_decay=0.1) > 1e-3
    # without the 1/2 the penalty's gradient is 2λθ: not weight_decay=λ ...
    assert reg.l2_vs_weight_decay(optim.SGD, lr=0.1, weight_decay=0.1, without_half=True) > 1e-3


def test_penalty_without_the_half_is_weight_decay_two_lambda():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    start = torch.randn(3, 1, dtype=torch.float64)
    finals = []
    for wd, extra in ((0.2, 0.0), (0.0, 0.1)):  # weight_decay = 2λ vs λ Σθ² in the loss
        w = nn.Parameter(start.clone())
        opt = optim.SGD([w], lr=0.1, weight_decay=wd)
        for _ in range(20):
            loss = ((x @ w).squeeze(1) - y).pow(2).mean() + extra * reg.squared_norm([w])
            opt.zero_grad()
            loss.backward()
            opt.step()
        finals.append(w.detach())
    assert torch.allclose(*finals, rtol=0, atol=1e-12)


def test_parameter_groups_split_weights_from_bias_and_norm():
    model = tiny_model()
    groups = reg.parameter_groups(model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert len(groups[0]["params"]) == 2 and len(groups[1]["params"]) == 4
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert len(reg.parameter_groups(model, 0.05, include_bias_and_norm=True)) == 1
    # AdamW through the groups: a bias with zero gradient is not decayed, a weight is
    opt = optim.AdamW(groups, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = list(model.parameters())
    assert torch.allclose(after[0], before[0] * (1 - 0.1 * 0.05))
    assert torch.equal(after[1], before[1])


def test_fraction_near_zero():
    w = torch.tensor([[0.0, 1e-4, -2e-3, 0.5]])
    assert reg.fraction_near_zero([w], 0) == 0.25
    assert reg.fraction_near_zero([w], 1e-3) == 0.5
    assert reg.fraction_near_zero([w], 1.0) == 1.0


# ----------------------------------------------------------------------------- dropout


def test_keep_prob_conversions_and_errors():
    assert dropout.keep_prob_to_p(0.8) == pytest.approx(0.2)
    assert dropout.p_to_keep_prob(0.2) == pytest.approx(0.8)
    assert dropout.Dropout(keep_prob=0.8).p == pytest.approx(0.2)
    assert dropout.Dropout(0.2).keep_prob == pytest.approx(0.8)
    assert "keep_prob=0.8" in repr(dropout.Dropout(0.2))
    assert dropout.Dropout().p == 0.5
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"DROP probability"):
            dropout.dropout(torch.ones(3), bad)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            dropout.Dropout(bad)
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match="KEEPING"):
            dropout.Dropout(keep_prob=bad)
    with pytest.raises(ValueError, match="not both"):
        dropout.dropout(torch.ones(3), 0.2, keep_prob=0.8)


def test_dropout_exact_properties():
    torch.manual_seed(0)
    x = torch.rand(1000, 100) + 0.5  # no zeros in the input
    p = 0.3
    out = dropout.dropout(x, p, generator=torch.Generator().manual_seed(1))
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)  # scaled by 1/(1-p)
    n = x.numel()
    assert abs((~kept).float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)  # zeros fraction
    # identity when not training, in eval mode, and for p = 0
    assert dropout.dropout(x, p, training=False) is x
    assert dropout.dropout(x, 0.0) is x
    layer = dropout.Dropout(p).eval()
    assert torch.equal(layer(x), x)
    # same generator seed, same mask; the gradient is the mask scaled by 1/(1-p)
    again = dropout.dropout(x, p, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    xg = x.clone().requires_grad_()
    dropout.dropout(xg, p, generator=torch.Generator().manual_seed(1)).sum().backward()
    assert torch.allclose(xg.grad, kept.float() / (1 - p))
    # the mask helper
    mask = torch.tensor([1.0, 0.0, 1.0])
    assert torch.allclose(dropout.apply_dropout_mask(torch.tensor([2.0, 3.0, 4.0]), mask, 0.5), torch.tensor([4.0, 0.0, 8.0]))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_matches_torch_in_expectation_and_variance(p):
    """On n entries, E[out - x] = 0 with standard error sqrt(mean(x²) p/q / n), and
    E[(out - x)²] = mean(x²) p/q with standard error sqrt(mean(x⁴) (p⁴/q³ + p - p²/q²) / n),
    q = 1 - p; both implementations must be within 5 standard errors of these values and of
    each other (5 sigma: a false alarm about once in 3.5 million runs)."""
    q = 1 - p
    n = 2_000_000
    x = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m2, m4 = x.pow(2).mean().item(), x.pow(4).mean().item()
    se_mean = math.sqrt(m2 * p / q / n)
    se_var = math.sqrt(m4 * (p**4 / q**3 + p - p**2 / q**2) / n)
    torch.manual_seed(1)
    ours = dropout.Dropout(p)(x)
    torch.manual_seed(2)
    theirs = nn.Dropout(p)(x)
    stats = {}
    for name, out in (("ours", ours), ("torch", theirs)):
        d = out - x
        stats[name] = (d.mean().item(), d.pow(2).mean().item())
        assert abs(stats[name][0]) < 5 * se_mean, name
        assert abs(stats[name][1] - m2 * p / q) <= 5 * se_var + 1e-12, name  # exact at p = 1/2
    assert abs(stats["ours"][0] - stats["torch"][0]) < 5 * math.sqrt(2) * se_mean
    assert abs(stats["ours"][1] - stats["torch"][1]) <= 5 * math.sqrt(2) * se_var + 1e-12
    # the same distribution of values: 0 or x / q, with the same fraction of zeros
    se_zero = math.sqrt(p * q / n)
    assert abs((ours == 0).double().mean().item() - (theirs == 0).double().mean().item()) < 5 * math.sqrt(2) * se_zero


def test_dropout_mlp_shares_weights_across_p():
    a, b = dropout.dropout_mlp(hidden=16, p=0.0), dropout.dropout_mlp(hidden=16, p=0.5)
    assert a.state_dict().keys() == b.state_dict().keys()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert a(x).shape == (4, 10)
    b.eval()
    assert torch.allclose(a(x), b(x))  # dropout is the identity in eval mode
    b.train()
    assert not torch.allclose(a(x), b(x))


# ----------------------------------------------------------------------------- rotation


def test_rotate_shape_identity_and_quarter_turns():
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert augment.rotate(x, 0.0).shape == x.shape
    assert torch.allclose(augment.rotate(x, 0.0), x, atol=1e-5)
    assert augment.random_rotate(x, 0.0) is x
    assert torch.allclose(augment.rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(augment.rotate(x, -90.0), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)
    per_image = augment.rotate(x, torch.tensor([0.0, 90.0, 180.0]))
    assert torch.allclose(per_image[2], torch.rot90(x[2], 2, dims=(-2, -1)), atol=1e-5)


def test_rotate_turns_a_known_pattern_counter_clockwise():
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4:] = 1.0  # a bar from the centre to the right edge
    up = augment.rotate(img, 90.0)[0, 0]
    expected = torch.zeros(9, 9)
    expected[:5, 4] = 1.0  # counter-clockwise: the bar now points up (rows go down)
    assert torch.allclose(up, expected, atol=1e-5)
    # 45 degrees: the mass moves onto the up-right diagonal, and is conserved in the interior
    diag = augment.rotate(img, 45.0)[0, 0]
    assert diag[2, 6] > 0.5 and diag[4, 8] < 0.5 and diag[6, 2] < 1e-6


def test_random_rotate_angles_and_reproducibility():
    x = torch.randn(6, 3, 16, 16)
    gen = torch.Generator().manual_seed(3)
    out = augment.random_rotate(x, 20.0, gen)
    angles = (2 * torch.rand(6, generator=torch.Generator().manual_seed(3)) - 1) * 20.0
    assert angles.abs().max() <= 20.0
    assert torch.allclose(out, augment.rotate(x, angles), atol=1e-6)
    const = torch.full((2, 3, 8, 8), 0.7)
    assert torch.allclose(augment.random_rotate(const, 30.0), const, atol=1e-6)  # nothing to rotate
    assert augment.flip_translate_rotate(x, torch.Generator().manual_seed(0)).shape == x.shape
    with pytest.raises(ValueError, match="non-negative"):
        augment.random_rotate(x, -1.0)


# ----------------------------------------------------------------------------- experiments


def test_compare_regularizers_same_start_and_gap(toy_data):
    data = toy_data()
    settings = {
        "none": reg.Setting(optim.SGD, dict(lr=0.05)),
        "L2": reg.Setting(optim.SGD, dict(lr=0.05), penalty=reg.penalty("l2", 0.0)),
        "wd": reg.Setting(optim.SGD, dict(lr=0.05, weight_decay=0.1)),
        "dropout": reg.Setting(optim.SGD, dict(lr=0.05), model_kwargs=dict(p=0.5)),
        "aug": reg.Setting(optim.SGD, dict(lr=0.05), augment=augment.flip_translate_rotate),
    }
    results = reg.compare_regularizers(lambda p=0.0: dropout.dropout_mlp(hidden=16, p=p, classes=3), settings,
                                       data, data, epochs=2, batch_size=32, progress=False)  # fmt: skip
    assert list(results) == list(settings)
    first = {k: r.history.step_loss[0] for k, r in results.items()}
    assert first["none"] == first["L2"] == first["wd"]  # same weights, same first batch
    assert results["none"].history.step_loss == results["L2"].history.step_loss  # a zero penalty changes nothing
    for r in results.values():
        assert 0 <= r.train_acc <= 1 and r.gap == pytest.approx(r.train_acc - r.val_acc)
    assert results["none"].gap == pytest.approx(0.0)  # same data for train and val
    table = reg.gap_table(results)
    assert all(k in table for k in settings) and "gap" in table
    ax = reg.plot_gaps(results)
    assert len(ax.patches) == 2 * len(settings)
    ax = reg.plot_weight_histograms({k: results[k].model for k in ("none", "wd")})
    assert len(ax.get_legend().get_texts()) == 2


def test_show_augmentations_draws_a_row_per_augmentation(toy_data):
    data = toy_data(8)
    fig = reg.show_augmentations(data, {"flip": augment.random_flip, "rotate": augment.random_rotate}, n=4)
    assert len(fig.axes) == 3 * 4
    assert fig.axes[4].get_ylabel() == "flip"


def test_accuracy_difference_is_paired(toy_data):
    data = toy_data(40)

    class Fixed(nn.Module):  # predicts the given labels, whatever the input
        def __init__(self, labels):
            super().__init__()
            self.labels = labels

        def forward(self, x):
            return nn.functional.one_hot(self.labels[: len(x)], 3).float()

    y = data.labels.clone()
    wrong = (y + 1) % 3
    a = Fixed(torch.where(torch.arange(40) < 30, y, wrong))  # right on the first 30
    b = Fixed(torch.where(torch.arange(40) < 20, y, wrong))  # right on the first 20
    diff, se = reg.accuracy_difference(a, b, data, batch_size=40)
    assert diff == pytest.approx(0.25)
    d = np.r_[np.zeros(20), np.ones(10), np.zeros(10)]
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(40))
    assert reg.accuracy_difference(a, a, data) == (0.0, 0.0)


def test_compare_over_seeds_pairs_settings_by_seed_and_keeps_test(toy_data):
    data = toy_data()
    model_fn = lambda p=0.0: dropout.dropout_mlp(hidden=16, p=p, classes=3)  # noqa: E731
    settings = {"none": reg.Setting(optim.SGD, dict(lr=0.05)),
                "L2 0": reg.Setting(optim.SGD, dict(lr=0.05), penalty=reg.penalty("l2", 0.0)),
                "wd": reg.Setting(optim.SGD, dict(lr=0.05, weight_decay=0.5))}  # fmt: skip
    results = reg.compare_over_seeds(model_fn, settings, data, data, seeds=[0, 1, 2], epochs=2, batch_size=32,
                                     test_data=data, track_val=True, progress=False)  # fmt: skip
    assert list(results) == list(settings) and all(len(runs) == 3 for runs in results.values())
    for s in range(3):  # within a seed: same start, same batches; a zero penalty changes nothing
        assert results["none"][s].history.step_loss == results["L2 0"][s].history.step_loss
    assert results["none"][0].history.step_loss != results["none"][1].history.step_loss  # seeds differ
    for runs in results.values():
        for r in runs:
            assert r.val_correct.shape == (len(data),) and r.val_acc == pytest.approx(r.val_correct.mean())
            assert r.test_acc == pytest.approx(r.val_acc)  # the same data passed as val and test
    diffs = reg.differences(results, "none")
    assert set(diffs) == {"L2 0", "wd"}
    assert diffs["L2 0"].mean == 0.0 and diffs["L2 0"].se == 0.0 and diffs["L2 0"].verdict() == "inconclusive"
    assert reg.mean_of(results["wd"], "val_acc") == pytest.approx(np.mean([r.val_acc for r in results["wd"]]))
    table = reg.change_table(results, "none")
    assert "(baseline)" in table and "inconclusive" in table
    epoch, curve = reg.best_epoch([r.history for r in results["none"]])
    assert 1 <= epoch <= 2 and curve[epoch - 1] == curve.max()
    ax = reg.plot_changes(diffs)
    assert len(ax.get_yticklabels()) == 2
    untracked = reg.compare_over_seeds(model_fn, {"none": settings["none"]}, data, data, seeds=[0, 1], epochs=2,
                                       batch_size=32, progress=False)  # fmt: skip
    assert untracked["none"][0].history.epochs[-1].val_acc is None  # no curve, the final accuracies all the same
    assert untracked["none"][0].val_acc == results["none"][0].val_acc


def test_gap_table_gap_is_the_difference_of_the_printed_accuracies():
    runs = []
    for train, val in ((0.99949, 0.27751), (0.8, 0.30049)):
        r = reg.RunResult(history=None, model=None, train_acc=train, val_acc=val)
        runs.append(r)
    table = reg.gap_table({"a": [runs[0]], "b": runs[1]})
    rows = [line.split() for line in table.splitlines()[2:]]
    for row in rows:
        train, val, gap = float(row[1].rstrip("%")), float(row[2].rstrip("%")), float(row[3])
        assert gap == pytest.approx(train - val, abs=1e-9)
    assert rows[0][1:] == ["99.9%", "27.8%", "72.1"]  # 99.949 - 27.751 = 72.198 would print 72.2


def test_weight_decay_timescale():
    assert reg.decay_timescale(1e-3, 0.1) == pytest.approx(10_000)
    assert reg.decay_timescale(1e-3, 0.0) == math.inf
    assert reg.weight_decay_for_timescale(1e-3, 100) == pytest.approx(10.0)
    assert reg.decay_timescale(2e-4, reg.weight_decay_for_timescale(2e-4, 333)) == pytest.approx(333)
    with pytest.raises(ValueError):
        reg.weight_decay_for_timescale(0.0, 10)


def test_batch_norm_makes_weights_scale_invariant_and_norm_growth_exact(toy_data):
    """With batch norm after a convolution: g ⟂ w, and plain SGD grows ||w||² by exactly η²||g||² per step."""
    from course_lib.engine import models

    data = toy_data(64)
    torch.manual_seed(0)
    cnn = models.small_cnn(widths=(4, 8, 8), classes=3)
    conv = cnn[4].weight
    trace = reg.trace_weight_norm(cnn, optim.SGD(cnn.parameters(), lr=0.2), conv, data, steps=15, batch_size=16)
    assert np.abs(trace["cos"]).max() < 1e-4
    predicted = trace["norm2"][0] + 0.2**2 * np.cumsum(trace["grad_norm2"])
    assert np.allclose(predicted, trace["norm2"][1:], rtol=1e-4)
    head = reg.trace_weight_norm(cnn, optim.SGD(cnn.parameters(), lr=0.2), cnn[-1].weight, data, steps=15, batch_size=16)
    assert np.abs(head["cos"]).max() > 1e-2  # no batch norm after the head: not orthogonal


def test_one_per_class(toy_data):
    data = toy_data(30)
    index = reg.one_per_class(data, classes=3)
    assert data.labels[index].tolist() == [0, 1, 2]
