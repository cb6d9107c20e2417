"""Optimizer state per parameter, ZeRO's accounting, and DDP vs ZeroRedundancyOptimizer vs FSDP2 on 2 gloo processes."""

import multiprocessing

import pytest

from course_lib.techniques import parallel


def test_state_bytes_per_parameter_of_the_course_optimizers():
    table = parallel.state_bytes_per_parameter_table()
    buffers = {"SGD": 0, "SGD + momentum": 1, "Adagrad": 1, "RMSprop": 1, "Adam": 2, "AdamW": 2}
    assert set(table) == set(buffers)
    for name, n in buffers.items():  # float32 buffers, plus a step counter per parameter tensor
        assert 4 * n <= table[name] < 4 * n + 0.01, name


def test_zero_bytes_per_parameter():
    assert [parallel.zero_bytes_per_parameter(s, 1) for s in range(4)] == [16, 16, 16, 16]
    assert [parallel.zero_bytes_per_parameter(s, 2) for s in range(4)] == [16, 10, 9, 8]
    assert parallel.zero_bytes_per_parameter(1, 64) == pytest.approx(4 + 12 / 64)
    assert parallel.zero_bytes_per_parameter(3, 64) == pytest.approx(16 / 64)
    with pytest.raises(ValueError):
        parallel.zero_bytes_per_parameter(4, 2)


def _greedy(sizes, world_size):
    load, owner = [0] * world_size, []
    for n in sizes:
        r = min(range(world_size), key=lambda k: load[k])
        owner.append(r)
        load[r] += n
    return owner


def test_ddp_zero_and_fsdp_on_two_gloo_processes():
    runs = parallel.sharding_runs(2, width=32, depth=2, batch=16, steps=2, timeout=120)
    ddp, zero, fsdp = (runs[m] for m in parallel.METHODS)
    n = ddp.parameters
    for run in runs.values():
        assert run.rank_weights_equal
        assert (run.weights - ddp.weights).abs().max().item() < 1e-12, run.method  # the same training
    # DDP: every rank holds everything (float64: 8 bytes per parameter each)
    assert ddp.param_bytes == [8 * n] * 2 and ddp.grad_bytes == [8 * n] * 2
    tensors = len(list(parallel.pipeline_mlp(width=32, depth=2).parameters()))
    assert ddp.state_bytes == [16 * n + 4 * tensors] * 2  # m and v, and a float32 step per tensor
    # FSDP2: parameters, gradients and state halved on each rank (the rows split evenly here)
    assert fsdp.param_bytes == [4 * n] * 2 and fsdp.grad_bytes == [4 * n] * 2
    assert fsdp.state_bytes == [8 * n + 4 * tensors] * 2
    # ZeRO-1: full parameters and gradients, the state of whole parameters split by the greedy rule
    assert zero.param_bytes == ddp.param_bytes and zero.grad_bytes == ddp.grad_bytes
    sizes = [size for _, size, _ in zero.partition]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == n
    assert [r for _, _, r in zero.partition] == _greedy(sizes, 2)
    for rank in range(2):
        mine = [size for _, size, r in zero.partition if r == rank]
        assert zero.state_bytes[rank] == 16 * sum(mine) + 4 * len(mine)
    assert multiprocessing.active_children() == []
