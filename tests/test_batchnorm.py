"""course_lib.engine.batchnorm: batch-norm statistics recomputed at the current weights."""

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.engine import batchnorm
from course_lib.engine.device_data import DeviceData


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return DeviceData.from_numpy(images, rng.integers(0, 10, size=n), "cpu")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))


def test_one_batch_gives_the_exact_mean_and_unbiased_variance():
    data, model = _data(), _model()
    model(data.batch(torch.arange(2))[0])  # materialise the lazy layer
    bn = model[1]
    bn.running_mean.fill_(5.0)  # stale statistics
    bn.running_var.fill_(9.0)
    model.eval()
    used = batchnorm.recompute_batch_norm_statistics(model, data, batch_size=len(data))
    assert used == len(data)
    with torch.no_grad():
        h = model[0](data.batch(torch.arange(len(data)))[0])
    torch.testing.assert_close(bn.running_mean, h.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var, h.var(dim=(0, 2, 3), unbiased=True))
    assert not model.training and bn.momentum == 0.1  # mode and momentum restored


def test_several_batches_are_averaged_with_equal_weight_and_max_batches_limits_them():
    data, model = _data(), _model()
    model(data.batch(torch.arange(2))[0])
    bn = model[1]
    used = batchnorm.recompute_batch_norm_statistics(model, data, batch_size=16, max_batches=3)
    assert used == 48 and model.training
    with torch.no_grad():
        means = [model[0](data.batch(torch.arange(s, s + 16))[0]).mean(dim=(0, 2, 3)) for s in (0, 16, 32)]
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(dim=0))
    assert int(bn.num_batches_tracked) == 3


def test_weights_untouched_and_no_batch_norm_means_nothing_to_do():
    data, model = _data(), _model()
    model(data.batch(torch.arange(2))[0])
    before = [p.clone() for p in model.parameters()]
    batchnorm.recompute_batch_norm_statistics(model, data, batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert batchnorm.recompute_batch_norm_statistics(nn.Linear(3, 2), data) == 0
    with pytest.raises(ValueError, match="batch_size"):
        batchnorm.recompute_batch_norm_statistics(model, data, batch_size=0)
