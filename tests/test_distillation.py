"""Knowledge distillation: the loss against hand computations, its T^2 scaling, the training loss object."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from course_lib import engine, optim
from course_lib.engine import augment, models
from course_lib.techniques import distillation, distillation_analysis


def logits(b=4, k=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=torch.float64) * scale


def test_soft_targets_is_softmax_at_temperature():
    z = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    for T in (1.0, 2.0, 10.0):
        e = [math.exp(v / T) for v in (1.0, 2.0, 4.0)]
        expected = torch.tensor([[v / sum(e) for v in e]], dtype=torch.float64)
        assert torch.allclose(distillation.soft_targets(z, T), expected, rtol=1e-12)
    # higher T: flatter, same order, tends to uniform
    p1, p10, p1000 = (distillation.soft_targets(z, T)[0] for T in (1, 10, 1000))
    assert p10.max() < p1.max() and p10.min() > p1.min()
    assert torch.equal(p10.argsort(), p1.argsort())
    assert torch.allclose(p1000, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-3)
    with pytest.raises(ValueError, match="temperature"):
        distillation.soft_targets(z, 0)


def test_loss_equals_hand_computation():
    s, t = logits(seed=1), logits(seed=2)
    y = torch.tensor([0, 3, 1, 4])
    T, alpha = 3.0, 0.7
    B = s.shape[0]
    kl = 0.0
    ce = 0.0
    for b in range(B):
        p = [math.exp(v / T) for v in t[b].tolist()]
        p = [v / sum(p) for v in p]
        q = [math.exp(v / T) for v in s[b].tolist()]
        q = [v / sum(q) for v in q]
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q)) / B
        q1 = [math.exp(v) for v in s[b].tolist()]
        ce += -math.log(q1[y[b]] / sum(q1)) / B
    expected = alpha * T**2 * kl + (1 - alpha) * ce
    assert distillation.soft_kl(s, t, T).item() == pytest.approx(kl, rel=1e-12)
    assert distillation.distillation_loss(s, t, y, T, alpha).item() == pytest.approx(expected, rel=1e-12)
    # alpha weights the soft term: alpha = 1 is the T^2-scaled KL alone
    assert distillation.distillation_loss(s, t, y, T, 1.0).item() == pytest.approx(T**2 * kl, rel=1e-12)


def test_alpha_zero_is_plain_cross_entropy():
    s, t = logits(seed=3), logits(seed=4)
    y = torch.tensor([1, 1, 0, 2])
    for T in (1.0, 4.0):
        assert torch.equal(distillation.distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))
    with pytest.raises(ValueError, match="alpha"):
        distillation.distillation_loss(s, t, y, 2.0, 1.5)


def test_kl_term_is_zero_when_student_equals_teacher_and_positive_otherwise():
    s = logits(seed=5)
    for T in (1.0, 2.0, 8.0):
        assert distillation.soft_kl(s, s.clone(), T).item() == pytest.approx(0.0, abs=1e-14)
        assert distillation.soft_kl(s, logits(seed=6), T).item() > 0
    # shifting a row of logits by a constant changes no probability
    assert distillation.soft_kl(s, s + 5.0, 3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_handles_teacher_probabilities_that_underflow():
    t = torch.tensor([[1000.0, 0.0, -1000.0]])
    s = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    loss = distillation.soft_kl(s, t, 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_no_gradient_reaches_the_teacher():
    s = logits(seed=7).requires_grad_(True)
    t = logits(seed=8).requires_grad_(True)
    distillation.distillation_loss(s, t, torch.tensor([0, 1, 2, 3]), 2.0, 0.5).backward()
    assert t.grad is None and s.grad is not None


def soft_grad(s, t, T, scaled=True):
    return distillation.soft_term_gradient(s, t, T, scaled=scaled)


def test_soft_gradient_is_the_difference_of_probabilities_over_BT():
    # exact, any T: d KL / d s = (q - p) / (B T)
    s, t = logits(seed=9), logits(seed=10)
    B = s.shape[0]
    for T in (1.0, 3.0):
        expected = (distillation.soft_targets(s, T) - distillation.soft_targets(t, T)) / (B * T)
        assert torch.allclose(soft_grad(s, t, T, scaled=False), expected, rtol=1e-10, atol=1e-15)
        assert torch.allclose(soft_grad(s, t, T), expected * T**2, rtol=1e-10, atol=1e-15)


def test_T_squared_keeps_the_soft_gradient_independent_of_T():
    s, t = logits(seed=11), logits(seed=12)
    limit = distillation.soft_gradient_limit(s, t)
    # the analytic large-T limit: ((s - mean s) - (t - mean t)) / (B K), error O(1/T)
    errors = {T: (soft_grad(s, t, T) - limit).norm().item() / limit.norm().item() for T in (10.0, 100.0, 1000.0)}
    assert errors[1000.0] < 1e-2 and errors[100.0] < 0.1
    assert 5 < errors[100.0] / errors[1000.0] < 20  # shrinks like 1 / T
    # scaled: the norm hardly moves between T = 10 and T = 1000 ...
    norms = [soft_grad(s, t, T).norm().item() for T in (10.0, 100.0, 1000.0)]
    assert max(norms) / min(norms) < 1.2
    # ... unscaled, it falls like 1 / T^2
    unscaled = [soft_grad(s, t, T, scaled=False).norm().item() for T in (100.0, 1000.0)]
    assert unscaled[0] / unscaled[1] == pytest.approx(100.0, rel=1e-2)
    # a constant shift of either row changes nothing (the limit is centred)
    assert torch.allclose(distillation.soft_gradient_limit(s + 3.0, t - 1.0), limit)


def test_distillation_loss_object_runs_the_teacher_in_eval_mode_on_the_batch():
    torch.manual_seed(0)
    teacher = models.small_cnn(widths=(4, 4, 4), classes=3)
    teacher.train()
    loss_fn = distillation.DistillationLoss(teacher, T=2.0, alpha=0.5)
    assert loss_fn.uses_inputs
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    s = torch.randn(6, 3, requires_grad=True)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss = loss_fn(s, y, x)
    teacher.eval()
    with torch.no_grad():
        expected = distillation.distillation_loss(s, teacher(x), y, 2.0, 0.5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    # eval mode: the batch-norm running statistics did not move; the teacher's mode is restored
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    teacher.train()
    loss_fn(s, y, x)
    assert teacher.training and loss_fn.teacher_seconds > 0


def test_distillation_inside_the_training_loop(toy_data):
    data = toy_data(192, size=8)
    torch.manual_seed(0)
    teacher = models.small_cnn(widths=(8, 8, 8), classes=3)
    fast = dict(optimizer=(optim.Adam, {"lr": 1e-2}), decay=False, progress=False)
    distillation.train_teacher(teacher, data, epochs=4, batch_size=32, **fast)
    assert engine.evaluate(teacher, data)[1] > 0.9
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    model_fn = lambda: models.small_cnn(widths=(4, 4, 4), classes=3)  # noqa: E731
    student, hist = distillation.train_student(model_fn, data, teacher=teacher, T=4.0, alpha=0.9, epochs=6,
                                          batch_size=32, augment=augment.random_flip, **fast)  # fmt: skip
    assert not hist.diverged and len(hist.step_loss) == 6 * 6 and hist.teacher_seconds > 0
    assert hist.step_loss[-1] < hist.step_loss[0]
    assert engine.evaluate(student, data)[1] > 0.6  # chance is 1/3
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())


def test_teacher_memo_replays_exactly_the_teachers_answers(toy_data):
    data = toy_data(64, size=8)
    torch.manual_seed(0)
    teacher = models.small_cnn(widths=(4, 4, 4), classes=3)
    memo = distillation.TeacherMemo(teacher)
    xs = [data.batch(torch.arange(i, i + 16))[0] for i in (0, 16, 32)]
    first = [memo(x) for x in xs]
    assert memo.misses == 3 and memo.hits == 0
    memo.rewind()
    again = [memo(x) for x in xs]
    assert memo.hits == 3 and all(a is b for a, b in zip(first, again))
    assert all(torch.equal(a, distillation.teacher_logits(teacher, x)) for a, x in zip(first, xs))
    memo.rewind()
    other = data.batch(torch.arange(48, 64))[0]
    assert torch.equal(memo(other), distillation.teacher_logits(teacher, other))  # a new batch: recomputed
    assert memo.misses == 4
    with pytest.raises(ValueError, match="memo"):
        distillation.DistillationLoss(models.mlp(hidden=4, classes=3), memo=memo)


def test_students_start_from_identical_weights_and_see_identical_batches(toy_data):
    data = toy_data(64, size=8)
    torch.manual_seed(0)
    teacher = models.small_cnn(widths=(4, 4, 4), classes=3)
    model_fn = lambda: models.mlp(hidden=8, in_features=3 * 8 * 8, classes=3)  # noqa: E731
    kw = dict(epochs=2, batch_size=16, augment=augment.random_flip, progress=False)
    a, ha = distillation.train_student(model_fn, data, teacher=None, **kw)
    b, hb = distillation.train_student(model_fn, data, teacher=None, **kw)
    assert ha.step_loss == hb.step_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    # alpha = 0 with a teacher is plain cross-entropy: the same run, step for step
    c, hc = distillation.train_student(model_fn, data, teacher=teacher, alpha=0.0, **kw)
    assert hc.step_loss == ha.step_loss
    # with and without replaying the teacher's logits: identical runs
    replayed = distillation.compare_students(model_fn, teacher, data, [1.0, 4.0, 4.0], alpha=0.5, **kw)
    direct = distillation.compare_students(model_fn, teacher, data, [1.0, 4.0], alpha=0.5, replay=False, **kw)
    assert list(replayed) == ["alone", "T=1", "T=4"] and list(direct) == ["alone", "T=1", "T=4"]
    assert replayed["alone"][1].step_loss == ha.step_loss
    for key in ("T=1", "T=4"):
        assert replayed[key][1].step_loss == direct[key][1].step_loss
    # the first loss differs only through the loss function (same weights, same first batch)
    assert replayed["T=1"][1].step_loss[0] != replayed["T=4"][1].step_loss[0]


def test_linear_decay_reaches_zero():
    """The wrappers' default schedule (decay=True): linear from the initial rate to zero."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = optim.SGD([p], lr=0.5)
    sched = optim.schedules.ScheduledLR(opt, distillation._variant((optim.SGD, {}), True, 4).schedule)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 0.375, 0.25, 0.125]) and opt.param_groups[0]["lr"] == 0.0


def test_seconds_per_image_is_positive_and_restores_mode(toy_data):
    data = toy_data(40, size=8)
    model = models.small_cnn(widths=(4, 4, 4), classes=3)
    model.train()
    t = distillation_analysis.seconds_per_image(model, data, batch_size=16, repeats=2)
    assert 0 < t < 1 and model.training


def test_plots_draw_without_error():
    import matplotlib.pyplot as plt

    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    probs = {"T=1": np.full((2, 10), 0.1), "T=4": np.full((2, 10), 0.1)}
    fig = distillation_analysis.plot_soft_targets(images, probs, [0, 3], [f"c{i}" for i in range(10)], predicted=[0, 2])
    assert len(fig.axes) == 4
    ax = distillation_analysis.plot_temperature_sweep([1, 2, 4], [0.3, 0.35, 0.32], alone=0.31, teacher=0.4)
    assert len(ax.lines) == 3
    plt.close("all")


def test_dataset_logits_runner_up_and_accuracy_gain(toy_data):
    data = toy_data(30, size=8)
    model = models.small_cnn(widths=(4, 4, 4), classes=3)
    model.train()
    z = distillation_analysis.dataset_logits(model, data, batch_size=7)
    assert z.shape == (30, 3) and model.training
    assert torch.allclose(z[:7], distillation.teacher_logits(model, data.batch(torch.arange(7))[0]))
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.1, 0.8, 0.1]])
    labels = torch.tensor([0, 0, 1])
    assert distillation_analysis.runner_up(probs, labels, ["a", "b", "c"]) == [("a", "c", pytest.approx(0.25)),
                                                                ("b", "a", pytest.approx(0.1))]  # fmt: skip
    labels = torch.tensor([0, 1, 2, 0])
    base = torch.eye(3)[[0, 0, 0, 0]]  # right on examples 0 and 3
    new = torch.eye(3)[[0, 1, 2, 1]]  # right on 0, 1, 2
    gain, se = distillation_analysis.accuracy_gain(new, base, labels)
    d = torch.tensor([0.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    assert gain == pytest.approx(0.25) and se == pytest.approx(float(d.std() / 2))


def test_the_probability_axis_shows_every_bar_and_typical_images_are_the_median():
    import matplotlib.pyplot as plt

    p = np.array([[0.97] + [2e-7] * 8 + [0.03 - 1.6e-6]])  # eight wrong classes far below the old 1e-5 floor
    assert distillation_analysis.log_floor(p) == 1e-8 and (p > distillation_analysis.log_floor(p)).all()
    fig = distillation_analysis.plot_soft_targets(np.zeros((1, 32, 32, 3), np.uint8), {"T=1": p}, [0],
                                                  [f"c{i}" for i in range(10)])  # fmt: skip
    ax = fig.axes[1]
    assert ax.get_ylim()[0] <= 1e-8
    tops = [bar.get_y() + bar.get_height() for bar in ax.patches]
    assert len(tops) == 10 and all(top > ax.get_ylim()[0] for top in tops)  # every bar rises above the floor
    plt.close(fig)
    confidence = torch.tensor([0.9, 0.2, 0.5, 0.99, 0.6, 0.1, 0.4])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    # class 0: 0.2, 0.5, 0.9 -> 0.5 (index 2); class 1: 0.1, 0.4, 0.6, 0.99 -> the lower median 0.4 (index 6)
    assert distillation_analysis.typical_images(confidence, labels, [0, 1]) == [2, 6]
    with pytest.raises(ValueError, match="no image of class 5"):
        distillation_analysis.typical_images(confidence, labels, [5])
