"""course_lib.engine.compare: every variant starts from the same weights and sees the same batches."""

import functools

import pytest
import torch

from course_lib import config, optim
from course_lib.engine import Variant, compare_variants, initial_weights, models, train_variant
from course_lib.optim import schedules
from course_lib.techniques import dropout


def mlp():
    return models.mlp(hidden=8, classes=3)


def test_same_variant_twice_gives_the_same_run(toy_data):
    data = toy_data(48)
    runs = compare_variants(mlp, {"a": Variant(optim.SGD, {"lr": 0.1}), "b": Variant(optim.SGD, {"lr": 0.1})},
                            data, epochs=2, batch_size=16, progress=False)
    assert runs["a"].history.step_loss == runs["b"].history.step_loss
    assert all(torch.equal(p, q) for p, q in zip(runs["a"].model.parameters(), runs["b"].model.parameters()))


def test_every_run_starts_from_the_initial_weights_of_its_seed(toy_data):
    data = toy_data(32)
    start = initial_weights(mlp, seed=3)
    runs = compare_variants(mlp, {"sgd": Variant(optim.SGD, {"lr": 0.0}), "adam": Variant(optim.Adam, {"lr": 0.0})},
                            data, epochs=1, batch_size=16, seed=3, progress=False)
    for run in runs.values():  # lr = 0: the weights never move
        assert all(torch.equal(start[k], v) for k, v in run.model.state_dict().items())
    other = initial_weights(mlp, seed=4)
    assert not all(torch.equal(start[k], other[k]) for k in start)


def test_init_seed_and_batch_seed_are_separate(toy_data):
    data = toy_data(32)
    v = {"x": Variant(optim.SGD, {"lr": 0.1})}
    a = compare_variants(mlp, v, data, epochs=1, batch_size=8, seed=0, init_seed=5, progress=False)["x"]
    b = compare_variants(mlp, v, data, epochs=1, batch_size=8, seed=1, init_seed=5, progress=False)["x"]
    c = compare_variants(mlp, v, data, epochs=1, batch_size=8, seed=0, init_seed=6, progress=False)["x"]
    assert a.history.step_loss[0] != b.history.step_loss[0]  # other batches, same start
    assert a.history.step_loss != c.history.step_loss  # other start, same batches


def test_the_callers_global_generator_is_untouched(toy_data):
    data = toy_data(32)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    compare_variants(functools.partial(dropout.dropout_mlp, hidden=8, classes=3, p=0.5),
                     {"d": Variant(optim.SGD, {"lr": 0.1})}, data, epochs=1, batch_size=8, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_dropout_masks_repeat_for_a_seed(toy_data):
    data = toy_data(32)
    model_fn = functools.partial(dropout.dropout_mlp, hidden=8, classes=3, p=0.5)
    v = Variant(optim.SGD, {"lr": 0.1})
    a = compare_variants(model_fn, {"a": v, "b": v}, data, epochs=2, batch_size=8, progress=False)
    assert a["a"].history.step_loss == a["b"].history.step_loss


def test_schedule_parameters_before_run_and_model_kwargs(toy_data):
    data = toy_data(32)
    calls = []
    decay = functools.partial(schedules.warmup_linear_decay, warmup_steps=0, total_steps=8)
    groups = lambda model: [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 0.5},  # noqa: E731
                            {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    variant = Variant(optim.SGD, {"lr": 0.2}, schedule=decay, parameters=groups, before_run=lambda: calls.append(1),
                      model_kwargs={"p": 0.25})
    run = compare_variants(functools.partial(dropout.dropout_mlp, hidden=8, classes=3), {"v": variant}, data,
                           epochs=2, batch_size=8, progress=False)["v"]
    assert calls == [1]
    assert run.history.epochs[0].lr == pytest.approx(0.2 * 4 / 8) and run.history.epochs[-1].lr == 0.0
    assert [m.p for m in run.model.modules() if isinstance(m, dropout.Dropout)] == [0.25] * 2


def test_train_variant_trains_only_trainable_parameters(toy_data):
    data = toy_data(32)
    model = mlp()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    before = frozen.clone()
    with config.seeded(0):
        run = train_variant(model, Variant(optim.Adam, {"lr": 0.1}), data, epochs=1, batch_size=8, progress=False)
    assert torch.equal(frozen, before) and len(run.history.step_loss) == 4
    assert run.model is model and all(p is not frozen for g in run.optimizer.param_groups for p in g["params"])
