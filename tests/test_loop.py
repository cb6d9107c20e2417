"""Training engine, models and device augmentations on synthetic data (fast, CPU)."""

import numpy as np
import pytest
import torch

from course_lib import engine, optim
from course_lib.engine import augment, models
from course_lib.problems.synthetic import brightest_channel_images as toy_data


def test_device_data_normalises_and_indexes():
    images, labels = toy_data(10)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    x, y = data.batch(torch.tensor([3, 1]))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, torch.as_tensor(labels[[3, 1]]))
    expected = (images[3, 5, 7, 0] / 255 - data.mean[0]) / data.std[0]
    assert x[0, 0, 5, 7].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        engine.DeviceData.from_numpy(images.astype(np.float32), labels)


def test_training_learns_and_records_history():
    images, labels = toy_data()
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    torch.manual_seed(0)
    model = models.small_cnn(widths=(8, 8, 8), classes=3)
    hist = engine.train(model, optim.Adam(model.parameters(), lr=1e-2), data, val_data=data,
                       epochs=3, batch_size=32, progress=False)  # fmt: skip
    assert len(hist.step_loss) == 3 * 8 and len(hist.epochs) == 3
    assert hist.epochs[-1].val_acc > 0.9 and not hist.diverged
    assert hist.column("seconds")[-1] <= hist.seconds
    assert hist.time_to("val_acc", 0.9) is not None and hist.time_to("val_acc", 1.01) is None


def test_training_repeats_exactly_with_the_same_seed():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = models.mlp(hidden=16, classes=3)
        runs.append(engine.train(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), data,
                                epochs=2, batch_size=16, augment=augment.flip_and_translate,
                                seed=3, progress=False).step_loss)  # fmt: skip
    assert runs[0] == runs[1]


def test_divergence_stops_the_run():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    model = models.mlp(hidden=16, classes=3)
    hist = engine.train(model, optim.SGD(model.parameters(), lr=1e6), data, epochs=5, batch_size=16, progress=False)
    assert hist.diverged and len(hist.epochs) < 5
    assert all(np.isfinite(hist.step_loss))


def test_scheduler_is_stepped():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    model = models.softmax_regression(classes=3)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = engine.train(model, opt, data, epochs=3, batch_size=64, scheduler=sched,
                       scheduler_interval="epoch", progress=False)  # fmt: skip
    assert hist.column("lr").tolist() == [0.05, 0.025, 0.0125]


def test_augmentations_keep_shape_and_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    flipped = augment.random_flip(x, gen)
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x))
    moved = augment.random_translate(x, pad=2, generator=gen)
    assert moved.shape == x.shape
    # a translate by (dy, dx) keeps the interior pixels, shifted
    shifted_ok = []
    for m, i in zip(moved, x):
        shifted_ok.append(any(torch.equal(m[:, 2:6, 2:6], i[:, 2 + dy:6 + dy, 2 + dx:6 + dx])
                              for dy in range(-2, 3) for dx in range(-2, 3)))  # fmt: skip
    assert all(shifted_ok)
    assert torch.equal(augment.random_translate(x, pad=0), x)


@pytest.mark.parametrize("make,params", [(models.airbench_net, 1.9e6), (models.small_cnn, 2e4)])
def test_models_shapes(make, params):
    model = make()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert 0.5 * params < models.count_parameters(model) < 1.5 * params


def test_compare_optimizers_starts_every_run_from_the_same_weights():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    runs = {"SGD": (optim.SGD, dict(lr=0.0)), "SGD again": (optim.SGD, dict(lr=0.0)),
            "Adam": (optim.Adam, dict(lr=1e-2))}  # fmt: skip
    hists = engine.compare_optimizers(lambda: models.mlp(hidden=8, classes=3), runs, data,
                                     epochs=2, batch_size=16, progress=False)  # fmt: skip
    assert hists["SGD"].step_loss == hists["SGD again"].step_loss  # lr 0: same weights, same batches
    assert hists["Adam"].step_loss[0] == hists["SGD"].step_loss[0]  # same start
    assert hists["Adam"].step_loss[-1] < hists["SGD"].step_loss[-1]


def test_a_loss_that_uses_inputs_gets_the_augmented_batch():
    images, labels = toy_data(32)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    seen = []

    class InputLoss:
        uses_inputs = True

        def __call__(self, logits, y, x):
            seen.append(x.shape)
            return torch.nn.functional.cross_entropy(logits, y)

    model = models.mlp(hidden=8, classes=3)
    engine.train(model, optim.SGD(model.parameters(), lr=0.1), data, epochs=1, batch_size=16,
                loss_fn=InputLoss(), progress=False)  # fmt: skip
    assert seen == [(16, 3, 32, 32)] * 2


def test_whitening_stem_decorrelates_patches():
    images, labels = toy_data(64)
    x = engine.DeviceData.from_numpy(images, labels, device="cpu").batch(torch.arange(64))[0]
    model = models.airbench_net(widths=(8, 8, 8))
    stem = models.init_whitening_(model[0], x, eps=1e-8)
    assert not stem.weight.requires_grad and stem.bias.requires_grad
    assert models.count_parameters(model) == sum(p.numel() for p in model.parameters()) - stem.weight.numel()
    with torch.no_grad():
        out = stem(x).permute(0, 2, 3, 1).reshape(-1, 24).double()
    d = 12
    cov = torch.cov(out[:, :d].T)
    assert torch.allclose(cov, torch.eye(d, dtype=cov.dtype), atol=1e-3)
    assert out[:, :d].mean(0).abs().max() < 1e-4
    assert torch.allclose(out[:, d:], -out[:, :d], atol=1e-5)
    with pytest.raises(ValueError, match="24 output channels"):
        models.init_whitening_(torch.nn.Conv2d(3, 16, 2), x)


def test_tta_averages_the_logits_of_the_views():
    torch.manual_seed(0)
    model = models.small_cnn(widths=(4, 4, 4), classes=3).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(engine.tta_logits(model, x, 0), model(x))
        assert torch.allclose(engine.tta_logits(model, x, 1), (model(x) + model(x.flip(-1))) / 2, atol=1e-6)
        # a one-pixel shift down-right: output pixel (i, j) is input pixel (i-1, j-1)
        shifted = augment.shift(x, 1, 1)
        assert torch.equal(shifted[..., 1:, 1:], x[..., :-1, :-1])
        assert torch.equal(shifted[..., 0, 1:], x[..., 1, :-1])  # reflected row
        views = [x, x.flip(-1), shifted, augment.shift(x.flip(-1), 1, 1), augment.shift(x, -1, -1),
                 augment.shift(x.flip(-1), -1, -1)]
        expected = torch.stack([model(v) for v in views]).mean(0)
        assert torch.allclose(engine.tta_logits(model, x, 2), expected, atol=1e-6)
    with pytest.raises(ValueError, match="TTA level"):
        engine.tta_logits(model, x, 3)


def test_evaluate_with_tta_on_a_mirror_symmetric_task():
    images, labels = toy_data(64)  # the class is the brightest channel: mirroring changes nothing
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    torch.manual_seed(0)
    model = models.small_cnn(widths=(8, 8, 8), classes=3)
    engine.train(model, optim.Adam(model.parameters(), lr=1e-2), data, epochs=3, batch_size=16, progress=False)
    plain, flip, six = (engine.evaluate(model, data, tta=level) for level in (0, 1, 2))
    assert plain[1] > 0.9 and flip[1] > 0.9 and six[1] > 0.9
    assert plain[0] != flip[0] != six[0]
    each = engine.example_accuracies(model, data, tta=1)  # one 0/1 trial per image
    assert set(np.unique(each)) <= {0.0, 1.0} and each.mean() == pytest.approx(flip[1])


def test_divergence_rule_flags_a_finite_runaway_and_spares_a_recovering_run():
    from course_lib.optim.divergence import DIVERGENCE_FACTOR, first_divergent_step, is_diverged

    assert DIVERGENCE_FACTOR == 10
    assert first_divergent_step([2.3, 5.0, 22.9, 1.0]) is None  # below 10x the start: a transient
    assert first_divergent_step([2.3, 5.0, 23.1, 1.0]) == 2
    assert first_divergent_step([2.3, float("nan")]) == 1
    assert first_divergent_step([3.0, 25.0], initial=2.0) == 1  # the initial loss may be given
    assert first_divergent_step([-1.0, 7.5], floor=-2.0) is None and is_diverged([-1.0, 8.5], floor=-2.0)
    assert not is_diverged([0.0, 5.0])  # already at the floor: no scale, only non-finite counts
    with pytest.raises(ValueError, match="above 1"):
        first_divergent_step([1.0], factor=1.0)


def test_a_finite_runaway_stops_the_run_at_the_first_divergent_step():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    torch.manual_seed(0)
    model = models.mlp(hidden=16, classes=3)
    # lr 3 with momentum 0.99 on this problem: the loss grows but stays finite at first
    hist = engine.train(model, optim.SGD(model.parameters(), lr=3.0, momentum=0.99), data, epochs=20,
                        batch_size=16, progress=False)  # fmt: skip
    assert hist.diverged
    assert all(np.isfinite(hist.step_loss)) and max(hist.step_loss) <= 10 * hist.step_loss[0]


def test_augmentation_draws_from_its_own_generator():
    """A run with augmentation visits the examples in the same order as a run without."""
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    orders = []

    class Recording:
        device = data.device

        def __len__(self):
            return len(data)

        def batch(self, index, augment=None, generator=None):
            orders.append(index.clone())
            return data.batch(index, augment=augment, generator=generator)

    for aug in (None, augment.flip_and_translate):
        model = models.mlp(hidden=8, classes=3)
        engine.train(model, optim.SGD(model.parameters(), lr=0.1), Recording(), epochs=2, batch_size=16, seed=5,
                     augment=aug, progress=False)  # fmt: skip
    assert len(orders) == 16
    assert all(torch.equal(a, b) for a, b in zip(orders[:8], orders[8:]))


def test_an_optimizer_with_eval_and_train_is_evaluated_at_its_reported_point():
    images, labels = toy_data(64)
    data = engine.DeviceData.from_numpy(images, labels, device="cpu")
    calls = []

    class Switching(optim.SGD):
        def eval(self):
            calls.append("eval")

        def train(self):
            calls.append("train")

    model = models.mlp(hidden=8, classes=3)
    engine.train(model, Switching(model.parameters(), lr=0.1), data, epochs=2, batch_size=32, val_data=data,
                 progress=False)  # fmt: skip
    assert calls == ["eval", "train"] * 2
