"""Batch size at scale: the scaling rules and the gradient noise scale against its exact value."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.techniques import parallel


def test_scaling_rules():
    assert parallel.linear_scaled_lr(0.1, 256, 8192) == pytest.approx(3.2)
    assert parallel.sqrt_scaled_lr(1e-3, 64, 256) == pytest.approx(2e-3)


class _Data:
    def __init__(self, x, y):
        self.x, self.y, self.device = x, y, x.device

    def __len__(self):
        return len(self.y)

    def batch(self, index):
        return self.x[index], self.y[index]


def test_gradient_noise_scale_matches_the_exact_value():
    torch.manual_seed(0)
    n = 400
    x, y = torch.randn(n, 6), torch.randint(0, 3, (n,))
    model = nn.Linear(6, 3)
    # exact: per-example gradients over the whole set
    per_example = []
    for i in range(n):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        per_example.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    G = torch.stack(per_example)
    signal = G.mean(0).square().sum().item()
    noise = G.var(0, unbiased=False).sum().item()
    est = parallel.gradient_noise_scale(model, _Data(x, y), small=8, big=n, pairs=300, seed=1)
    # the big batch is the whole set here, so |G_big|^2 is exact; the small batches are sampled
    assert est.signal == pytest.approx(signal, rel=0.25)
    assert est.noise == pytest.approx(noise, rel=0.25)
    assert est.b_simple == pytest.approx(noise / signal, rel=0.4)
    assert all(p.grad is None for p in model.parameters()) and model.training
    with pytest.raises(ValueError):
        parallel.gradient_noise_scale(model, _Data(x, y), small=10, big=10)
