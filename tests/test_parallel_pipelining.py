"""Pipelines: GPipe's makespan with unequal stages, activation bytes, and torch.distributed.pipelining on 2 gloo processes.

The engine test starts two real processes (free port, timeout) and checks that none is left.
"""

import multiprocessing

import pytest
import torch
from torch import nn

from course_lib.techniques import parallel


@pytest.mark.parametrize("micro_batches", [1, 2, 5])
@pytest.mark.parametrize("forward", [(1.0, 3.0), (2.0, 1.0, 1.0), (0.5, 0.5, 2.0, 1.0)])
def test_gpipe_makespan_formula_matches_the_simulated_schedule(micro_batches, forward):
    backward = [2 * f for f in forward]  # the slowest stage is slowest both ways
    tl = parallel.gpipe_schedule(len(forward), micro_batches, forward, backward)
    t = [f + b for f, b in zip(forward, backward)]
    assert tl.makespan == pytest.approx(parallel.gpipe_makespan(t, micro_batches))
    assert tl.makespan == pytest.approx(sum(t) + (micro_batches - 1) * max(t))
    # equal stages: (M + S - 1) t, the bubble formula
    assert parallel.gpipe_makespan([3.0] * 4, micro_batches) == pytest.approx((micro_batches + 3) * 3.0)
    # the busy time of the slowest stage is M t_max; everything else is bubble
    assert max(tl.busy) == pytest.approx(micro_batches * max(t))


def test_gpipe_schedule_refuses_wrong_stage_times():
    with pytest.raises(ValueError):
        parallel.gpipe_schedule(3, 2, [1.0, 2.0])
    with pytest.raises(ValueError):
        parallel.gpipe_makespan([], 2)


def test_in_flight_limits():
    assert [parallel.in_flight_limit("gpipe", s, 4, 8) for s in range(4)] == [8, 8, 8, 8]
    assert [parallel.in_flight_limit("1f1b", s, 4, 8) for s in range(4)] == [4, 3, 2, 1]
    assert parallel.in_flight_limit("1f1b", 0, 4, 2) == 2
    with pytest.raises(ValueError):
        parallel.in_flight_limit("zb", 0, 2, 2)


def test_saved_activations_counts_each_micro_batch_and_releases_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(12, 8)
    tracker = parallel.SavedActivations(model)
    with tracker:
        losses = [model(c).sum() for c in x.tensor_split(3)]
        # per micro-batch of 4 rows: its input (saved by the first Linear) and the ReLU output
        # (saved by the ReLU and by the second Linear: one region, counted once); no weights
        assert tracker.live == 3 * 2 * 4 * 8 * 4
        for loss in losses:
            loss.backward()
    assert tracker.live == 0 and tracker.peak == 3 * 2 * 4 * 8 * 4
    tracker.reset()
    assert tracker.peak == 0


def test_pipelining_engine_on_two_gloo_processes():
    runs = parallel.pipeline_runs({
        "gpipe": dict(schedule="gpipe", micro_batches=4, repeats=1),
        "1f1b": dict(schedule="1f1b", micro_batches=4, repeats=1),
    }, stages=2, timeout=120)  # fmt: skip
    for name, run in runs.items():
        assert run.dtype == "float64" and run.stages == 2 and run.micro_batches == 4
        # the pipelined gradient (stages concatenated) is one process's gradient on the whole batch
        assert run.grad.shape == run.single_grad.shape
        assert run.grad_rel_diff < 1e-12, name
        assert run.loss == pytest.approx(run.single_loss, rel=1e-12)
        # memory: micro-batches in flight and activation bytes, measured = predicted
        assert run.peak_in_flight == run.predicted_in_flight, name
        assert run.peak_bytes == run.predicted_bytes, name
        tl = run.timeline
        assert len(tl.intervals) == 2 * 2 * 4
        get = {(i.stage, i.kind, i.micro_batch): i for i in tl.intervals}
        for m in range(4):  # a stage starts a micro-batch only after its neighbour finished it
            assert get[(0, "F", m)].end <= get[(1, "F", m)].start
            assert get[(1, "B", m)].end <= get[(0, "B", m)].start
        assert all(0 <= b < 1 for b in tl.bubble) and tl.makespan >= max(tl.busy)
        assert run.single_seconds > 0
    assert runs["gpipe"].peak_in_flight == [4, 4] and runs["1f1b"].peak_in_flight == [2, 1]
    assert runs["1f1b"].peak_bytes[0] == runs["gpipe"].peak_bytes[0] // 2
    # 1F1B interleaves: on the last stage every forward after the first follows a backward
    last = sorted((i for i in runs["1f1b"].timeline.intervals if i.stage == 1), key=lambda i: i.start)
    assert [i.kind for i in last] == ["F", "B"] * 4
    assert runs["gpipe"].theory_bubble == pytest.approx(1 / 5) and runs["gpipe"].megatron_bubble == 0.25
    assert multiprocessing.active_children() == []


def test_pipeline_runs_refuses_bad_cases():
    with pytest.raises(ValueError, match="micro-batches"):
        parallel.pipeline_runs({"x": dict(batch=10, micro_batches=4)})
    with pytest.raises(ValueError, match="schedule"):
        parallel.pipeline_runs({"x": dict(schedule="zero-bubble")})
