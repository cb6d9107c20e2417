"""course_lib.techniques.parallel: DDP equals the big batch (two gloo processes), torchrun launch, pipeline maths.

The pipeline engine (torch.distributed.pipelining) is tested in test_parallel_pipelining.py.

The multi-process tests start real processes on 127.0.0.1 (free ports, timeouts); each checks
that no child process is left behind.
"""

import math
import multiprocessing
import time


import pytest
import torch

from course_lib.techniques import parallel
from course_lib.techniques.parallel import launch


def _no_children_left():
    assert multiprocessing.active_children() == []


# --------------------------------------------------------------------------------------------
# maths
# --------------------------------------------------------------------------------------------


def test_bubble_fraction_formula():
    assert parallel.bubble_fraction(2, 1) == 0.5
    assert parallel.bubble_fraction(2, 4) == pytest.approx(1 / 5)
    assert parallel.bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert parallel.bubble_fraction(1, 7) == 0.0
    with pytest.raises(ValueError):
        parallel.bubble_fraction(0, 3)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("micro_batches", [1, 2, 4, 8])
@pytest.mark.parametrize("times", [(1.0, 2.0), (1.0, 1.0), (0.3, 0.7)])
def test_simulated_gpipe_schedule_has_the_theoretical_bubble(stages, micro_batches, times):
    tl = parallel.gpipe_schedule(stages, micro_batches, *times)
    f, b = times
    assert len(tl.intervals) == 2 * stages * micro_batches
    assert tl.makespan == pytest.approx((micro_batches + stages - 1) * (f + b))
    for s_bubble in tl.bubble:
        assert s_bubble == pytest.approx(parallel.bubble_fraction(stages, micro_batches))
    assert tl.mean_bubble == pytest.approx(tl.theory)
    # no stage does two things at once
    for s in range(stages):
        mine = sorted((i for i in tl.intervals if i.stage == s), key=lambda i: i.start)
        assert all(a.end <= b.start + 1e-12 for a, b in zip(mine, mine[1:]))


def test_weighted_gradient_average():
    g = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])]
    assert torch.allclose(parallel.weighted_gradient_average(g, [1, 1]), torch.tensor([2.0, 4.0]))
    assert torch.allclose(parallel.weighted_gradient_average(g, [3, 1]), torch.tensor([1.5, 3.0]))
    # equals the gradient of the mean loss over the concatenated shards
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    xs = [torch.randn(5, 3), torch.randn(2, 3)]
    grads = [torch.autograd.grad((x @ w).pow(2).mean(), w)[0] for x in xs]
    full = torch.autograd.grad((torch.cat(xs) @ w).pow(2).mean(), w)[0]
    assert torch.allclose(parallel.weighted_gradient_average(grads, [5, 2]), full, atol=1e-6)
    with pytest.raises(ValueError):
        parallel.weighted_gradient_average(g, [1])


def test_split_stages_balances_and_composes():
    torch.manual_seed(0)
    model = parallel.pipeline_mlp(width=32, depth=4)
    stages = parallel.split_stages(model, 2)
    counts = [sum(p.numel() for p in s.parameters()) for s in stages]
    assert abs(counts[0] - counts[1]) <= 33 * 10 + 10  # the head is the only difference
    x = torch.randn(5, 32)
    assert torch.equal(stages[1](stages[0](x)), model(x))
    assert len(parallel.split_stages(model, 3)) == 3
    with pytest.raises(ValueError):
        parallel.split_stages(model, 100)


def test_handoff_passes_values_and_gradients():
    torch.manual_seed(0)
    a_layer, b_layer = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    x = torch.randn(6, 4)
    a = a_layer(x)
    received = parallel.handoff(a)
    assert received.is_leaf and received.requires_grad and torch.equal(received, a)
    b_layer(received).pow(2).sum().backward()
    a.backward(received.grad)
    split = parallel.flat_grad([a_layer, b_layer])
    a_layer.zero_grad(), b_layer.zero_grad()
    b_layer(a_layer(x)).pow(2).sum().backward()
    assert torch.allclose(split, parallel.flat_grad([a_layer, b_layer]))


def test_plot_pipeline_timeline():
    axes = parallel.plot_pipeline_timeline({"a": parallel.gpipe_schedule(2, 1), "b": parallel.gpipe_schedule(2, 4)})
    assert len(axes) == 2 and "bubble 50%" in axes[0].get_title()
    ax = parallel.plot_pipeline_timeline(parallel.gpipe_schedule(3, 2), title="x")
    assert len(ax.get_yticks()) == 3


# --------------------------------------------------------------------------------------------
# real processes
# --------------------------------------------------------------------------------------------


def test_ddp_gradient_equals_single_process_gradient():
    start = time.perf_counter()
    res = parallel.ddp_gradient_checks({
        "equal": dict(batch_size=32, steps=3),
        "uneven": dict(shard_sizes=[24, 8], steps=2),
        "uneven, reweighted": dict(shard_sizes=[24, 8], reweight=True, steps=2),
        "batch norm": dict(model="small_cnn", steps=2),
    }, timeout=120)  # fmt: skip
    eq = res["equal"]
    assert eq.dtype == "float64" and eq.shard_sizes == [16, 16]
    assert eq.grad_rel_diff < 1e-12
    assert eq.rank_param_spread == 0.0  # identical on every rank, bit for bit
    assert eq.train_max_diff < 1e-12  # = one process training on the combined batches
    assert eq.rank_checksums[0] == eq.rank_checksums[1] and len(eq.rank_checksums[0]) == 3
    assert torch.allclose((eq.local_grads[0] + eq.local_grads[1]) / 2, eq.ddp_grad, atol=1e-15)

    un = res["uneven"]
    assert un.grad_rel_diff > 1e-3  # DDP's plain mean is not the big batch's gradient
    assert un.rank_param_spread == 0.0  # ... but the ranks still agree with each other
    weighted = parallel.weighted_gradient_average(un.local_grads, un.shard_sizes)
    assert torch.allclose(weighted, un.full_grad, atol=1e-14)
    assert res["uneven, reweighted"].grad_rel_diff < 1e-12
    assert res["batch norm"].grad_rel_diff > 1e-3  # per-rank batch statistics
    assert time.perf_counter() - start < 120
    _no_children_left()


def _failing_worker(rank, world_size):
    if rank == 1:
        raise ValueError("rank one is broken")
    return rank


def _sleeping_worker(rank, world_size):
    time.sleep(600)


def test_spawn_reports_a_failing_worker():
    with pytest.raises(parallel.WorkerError, match="rank one is broken"):
        parallel.spawn(_failing_worker, 2, timeout=60)
    _no_children_left()


def test_spawn_times_out_instead_of_hanging():
    start = time.perf_counter()
    with pytest.raises(parallel.WorkerError, match="timed out"):
        parallel.spawn(_sleeping_worker, 2, timeout=4)
    assert time.perf_counter() - start < 30
    _no_children_left()


def test_torchrun_launch_trains_on_two_gloo_ranks():
    run = parallel.run_torchrun(["--data", "synthetic", "--fast", "--batch-size", "64", "--epochs", "2"],
                                nproc_per_node=2, timeout=120)  # fmt: skip
    r = run.result
    assert r["world_size"] == 2 and r["backend"] == "gloo" and r["per_rank_batch"] == 32
    assert r["schedule"] == "cosine" and r["steps"] > 0  # the rate decays over the run by default
    assert r["shard_examples"] * 2 == r["train_examples"]
    assert len(r["train_loss"]) == 2 and all(math.isfinite(v) for v in r["train_loss"])
    assert r["rank_checksums"][0] == r["rank_checksums"][1]
    assert "parameters identical on every rank: yes" in run.stdout
    assert run.command[:3] == ["python", "-m", "torch.distributed.run"]
    assert run.command[5:7] == ["-m", "course_lib.techniques.parallel"]


def test_main_runs_as_a_world_of_one():
    import os

    r = parallel.main(["--data", "synthetic", "--fast", "--batch-size", "50", "--threads", "1"])
    assert r["world_size"] == 1 and r["shard_examples"] == r["train_examples"]
    assert "RANK" not in os.environ


def test_ddp_throughputs_in_one_launch():
    res = parallel.ddp_throughputs([(1, 1), (2, 1)], total_batch=32, steps=2, warmup=1, model="mlp", timeout=120)
    assert [(t.world_size, t.threads_per_process) for t in res] == [(1, 1), (2, 1)]
    assert res[0].comm_seconds == 0 and res[1].comm_seconds > 0
    assert all(t.samples_per_second > 0 for t in res)
    _no_children_left()


def test_failure_message_puts_the_original_error_first():
    echo = "Traceback ...\nRuntimeError: [gloo] Connection closed by peer [127.0.0.1]:1234"
    real = "Traceback ...\nValueError: the real problem"
    msg = launch._failure_message({0: echo, 1: real}, 2, "work")
    assert msg.startswith("rank 1 of 2 failed in work:") and "(rank 0 failed too: RuntimeError" in msg


def test_spawn_refuses_a_worker_defined_in_a_notebook(monkeypatch):
    import sys

    def cell_function(rank, world_size):
        return rank

    cell_function.__module__ = "__main__"
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)
    with pytest.raises(ValueError, match="move it into a module"):
        parallel.spawn(cell_function, 2)
    _no_children_left()


def test_machine_ceiling_two_processes():
    c = parallel.machine_ceiling(2, steps=2, width=32, repeats=1, timeout=120)
    assert c.world_size == 2 and len(c.alone) == 2 and len(c.together) == 2
    assert all(t > 0 for t in c.alone + c.together)
    assert c.slowdown == pytest.approx((c.together[0] / c.alone[0] + c.together[1] / c.alone[1]) / 2)
    assert c.speedup == pytest.approx(2 / c.slowdown)
    _no_children_left()


def test_ceiling_arithmetic():
    c = parallel.Ceiling(world_size=2, alone=[1.0, 1.0], together=[1.9, 1.9], job="x")
    assert c.slowdown == pytest.approx(1.9) and c.speedup == pytest.approx(2 / 1.9)
    assert parallel.Ceiling(2, [1.0, 2.0], [1.0, 2.0], "free cores").speedup == pytest.approx(2.0)


def test_speed_measurements_in_one_launch():
    ceiling, (sizes, times, fit), res = parallel.speed_measurements(
        [(1, 1), (2, 1)], total_batch=32, steps=1, ceiling_steps=1, ceiling_repeats=1,
        sweep_sizes=(4096, 65536), sweep_repeats=2, model="mlp", timeout=120)  # fmt: skip
    assert ceiling.world_size == 2 and ceiling.speedup > 0
    assert sizes == [4096, 65536] and len(times) == 2 and fit.world_size == 2
    assert [(t.world_size, t.threads_per_process) for t in res] == [(1, 1), (2, 1)]
    assert res[0].comm_seconds == 0 and res[1].comm_seconds > 0
    _no_children_left()


@pytest.mark.parametrize("measure", [parallel.ddp_throughputs, parallel.speed_measurements])
def test_throughput_configurations_are_checked_before_any_process_starts(measure):
    with pytest.raises(ValueError, match=r"bad configuration \(2, 1\) for a total batch of 33"):
        measure([(1, 1), (2, 1)], total_batch=33)
    with pytest.raises(ValueError, match="model must be 'small_cnn' or 'mlp'"):
        measure([(1, 1)], model="resnet")
    _no_children_left()
