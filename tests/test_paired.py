"""course_lib.engine.paired: paired differences over seeds and examples, and their verdicts."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.engine import paired


def test_per_run_numbers_paired_by_seed():
    d = paired.paired_difference([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert d.per_seed == (2.0, 3.0, 1.0) and d.mean == pytest.approx(2.0)
    assert d.se_seeds == pytest.approx(1.0 / math.sqrt(3)) and d.se_examples == 0.0 and d.se == d.se_seeds
    assert d.wins == 3 and d.n_seeds == 3
    assert d.verdict() == "better"  # 2 > 2 · 0.577
    assert paired.paired_difference([1.0, 2.0, 3.0], [3.0, 5.0, 4.0]).verdict("up", "down") == "down"
    assert f"{d:+.2f}" == "+2.00 ± 1.15"


def test_pairing_removes_what_the_seeds_share():
    """A constant offset between seeds cancels in the paired difference (an unpaired one would not)."""
    base = np.array([0.2, 0.5, 0.8])
    d = paired.paired_difference(base + 0.01, base)
    assert d.se_seeds == pytest.approx(0.0, abs=1e-12) and d.verdict() == "better"


def test_per_example_correctness_adds_the_examples_error():
    a = np.array([[1, 1, 0, 1], [1, 0, 1, 1]])
    b = np.array([[1, 0, 0, 1], [0, 0, 1, 1]])
    d = paired.paired_difference(a, b)
    assert d.per_seed == (0.25, 0.25) and d.se_seeds == 0.0
    per_example = (a - b).mean(axis=0)  # 0.5, 0.5, 0, 0
    assert d.se_examples == pytest.approx(per_example.std(ddof=1) / 2)
    assert d.se == pytest.approx(math.hypot(d.se_seeds, d.se_examples))
    assert d.verdict() == "inconclusive"  # 0.25 < 2 · 0.144


def test_verdict_words_and_errors():
    assert paired.verdict(0.3, 0.1) == "better" and paired.verdict(-0.3, 0.1) == "worse"
    assert paired.verdict(0.2, 0.1) == "inconclusive"  # exactly 2 s.e. is not beyond
    assert paired.verdict(0.2, 0.1, k=1) == "better"
    with pytest.raises(ValueError, match="two seeds"):
        paired.paired_difference([1.0], [0.0])
    with pytest.raises(ValueError, match="same shape"):
        paired.paired_difference([1.0, 2.0], [0.0, 1.0, 2.0])


def test_correct_per_example(toy_data):
    data = toy_data(20)

    class Oracle(nn.Module):
        def forward(self, x):
            return nn.functional.one_hot(data.labels[: len(x)], 3).float()

    model = Oracle().train()
    hits = paired.correct_per_example(model, data, batch_size=20)
    assert hits.dtype == bool and hits.shape == (20,) and hits.all() and model.training  # training mode restored
    in_batches = paired.correct_per_example(model, data, batch_size=7)  # labels[:7] again for each later batch
    assert in_batches[:7].all() and in_batches.shape == (20,)
