"""The all-reduce cost model: ring bytes, the latency-bandwidth fit, a sweep on 2 gloo processes."""

import multiprocessing

import pytest

from course_lib.techniques import parallel


def test_ring_allreduce_bytes():
    assert parallel.ring_allreduce_bytes(1000, 1) == 0
    assert parallel.ring_allreduce_bytes(1000, 2) == 1000
    assert parallel.ring_allreduce_bytes(1000, 4) == 1500
    assert parallel.ring_allreduce_bytes(1000, 1000) == pytest.approx(1998)
    with pytest.raises(ValueError):
        parallel.ring_allreduce_bytes(10, 0)


def test_fit_recovers_latency_and_bandwidth():
    latency, bandwidth, W = 2e-4, 1e9, 4
    sizes = [1e3, 1e5, 1e6, 1e7]
    times = [latency + parallel.ring_allreduce_bytes(s, W) / bandwidth for s in sizes]
    fit = parallel.fit_allreduce(sizes, times, W)
    assert fit.latency == pytest.approx(latency) and fit.bandwidth == pytest.approx(bandwidth)
    assert fit.seconds(1e6, buckets=3) == pytest.approx(3 * latency + 1.5e6 / bandwidth)
    with pytest.raises(ValueError):
        parallel.fit_allreduce([1.0], [1.0], 2)


def test_allreduce_sweep_on_two_processes():
    sizes, times, fit = parallel.allreduce_sweep((4096, 1 << 20), repeats=3, timeout=120)
    assert sizes == [4096, 1 << 20] and len(times) == 2 and all(t > 0 for t in times)
    assert fit.world_size == 2 and fit.bandwidth > 0
    assert multiprocessing.active_children() == []
