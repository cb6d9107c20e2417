"""LARS and LAMB trust ratios (course_lib.optim.layerwise): the formulas, their invariances, the zero cases."""

import pytest
import torch

from course_lib.optim import layerwise


def test_lars_trust_ratio_formula():
    w, g = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.5])  # norms 5 and 0.5
    assert layerwise.lars_trust_ratio(w, g, trust_coefficient=1e-3).item() == pytest.approx(1e-3 * 5 / 0.5)
    assert layerwise.lars_trust_ratio(w, g, 1e-3, weight_decay=0.1).item() == pytest.approx(1e-3 * 5 / (0.5 + 0.5))


def test_lars_step_size_does_not_depend_on_the_gradient_scale():
    torch.manual_seed(0)
    w, g = torch.randn(10, 5), torch.randn(10, 5)
    steps = [layerwise.lars_trust_ratio(w, c * g) * c * g for c in (1e-4, 1.0, 1e3)]
    for s in steps[1:]:
        assert torch.allclose(s, steps[0], rtol=1e-5)
    # and the step's norm is tau ||w||: each layer moves by the same fraction of its weights
    assert torch.linalg.vector_norm(steps[0]).item() == pytest.approx(1e-3 * torch.linalg.vector_norm(w).item(), rel=1e-5)


def test_lamb_moves_every_layer_by_the_same_relative_amount():
    torch.manual_seed(0)
    layers = [torch.randn(20, 20) * 10, torch.randn(5) * 1e-3]
    updates = [torch.randn(20, 20) * 1e-4, torch.randn(5) * 50]
    for w, u in zip(layers, updates):
        before = w.clone()
        layerwise.apply_trust_ratio(w, u, lr=0.01, ratio=layerwise.lamb_trust_ratio(before, u))
        change = torch.linalg.vector_norm(w - before) / torch.linalg.vector_norm(before)
        assert change.item() == pytest.approx(0.01, rel=1e-5)


def test_zero_weights_or_updates_give_ratio_one():
    z, x = torch.zeros(3), torch.ones(3)
    assert layerwise.lars_trust_ratio(z, x).item() == 1.0
    assert layerwise.lars_trust_ratio(x, z).item() == 1.0
    assert layerwise.lamb_trust_ratio(z, x).item() == 1.0
    assert layerwise.lamb_trust_ratio(x, z).item() == 1.0
