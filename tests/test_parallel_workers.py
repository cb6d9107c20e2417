"""course_lib.techniques.parallel.Workers: processes started once and reused, task after task.

Each test starts real gloo processes on 127.0.0.1 and checks that none is left behind.
"""

import multiprocessing
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist

from course_lib.techniques import parallel


def _no_children_left():
    assert multiprocessing.active_children() == []


def _identity(rank, world_size, tag):
    """The process id, the world it sees, an all-reduced rank sum and the thread count."""
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    return dict(pid=os.getpid(), rank=rank, world=world_size, total=t.item(), tag=tag,
                threads=torch.get_num_threads())  # fmt: skip


def _set_threads(rank, world_size, n):
    torch.set_num_threads(n)
    return torch.get_num_threads()


def _fail_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("rank one is broken")
    return rank


def _sleep(rank, world_size, seconds):
    time.sleep(seconds)
    return rank


def test_workers_reuse_their_processes_and_return_results_by_rank():
    with parallel.Workers(2) as workers:
        assert not workers.running and workers.starts == 0  # started on the first task
        first = workers.run(_identity, ("a",))
        second = workers.run(_identity, ("b",))
        assert [r["rank"] for r in first] == [0, 1] and all(r["world"] == 2 for r in first)
        assert all(r["total"] == 1.0 for r in first + second)  # the group's collectives work
        assert [r["tag"] for r in second] == ["b", "b"]
        assert [r["pid"] for r in first] == [r["pid"] for r in second]  # the same processes
        assert len({r["pid"] for r in first}) == 2 and os.getpid() not in {r["pid"] for r in first}
        assert workers.starts == 1 and workers.running
    assert not workers.running
    _no_children_left()


def test_each_task_starts_with_the_workers_thread_count():
    with parallel.Workers(2, threads=1) as workers:
        assert workers.run(_set_threads, (2,)) == [2, 2]
        assert [r["threads"] for r in workers.run(_identity, ("x",))] == [1, 1]
    _no_children_left()


def test_a_failed_task_stops_the_processes_and_the_next_task_starts_fresh():
    with parallel.Workers(2) as workers:
        before = {r["pid"] for r in workers.run(_identity, ("x",))}
        with pytest.raises(parallel.WorkerError, match="rank one is broken"):
            workers.run(_fail_on_rank_one)
        assert not workers.running
        after = workers.run(_identity, ("y",))
        assert workers.starts == 2 and before.isdisjoint(r["pid"] for r in after)
        assert all(r["total"] == 1.0 for r in after)
    _no_children_left()


def test_a_task_that_runs_too_long_times_out_and_stops_the_processes():
    with parallel.Workers(2, timeout=60) as workers:
        workers.run(_identity, ("warm",))
        start = time.perf_counter()
        with pytest.raises(parallel.WorkerError, match="timed out after 2 s"):
            workers.run(_sleep, (600,), timeout=2)
        assert time.perf_counter() - start < 20 and not workers.running
        assert workers.run(_sleep, (0,)) == [0, 1]  # and it recovers
    _no_children_left()


def test_an_interrupted_caller_leaves_no_stale_work_behind(monkeypatch):
    workers = parallel.Workers(2)
    workers.run(_identity, ("x",))

    def interrupted(name, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "_collect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        workers.run(_sleep, (600,))
    assert not workers.running  # the processes that were sleeping on it are gone
    _no_children_left()
    monkeypatch.undo()
    assert [r["tag"] for r in workers.run(_identity, ("fresh",))] == ["fresh", "fresh"]
    workers.close()
    _no_children_left()


def test_workers_refuse_a_demonstration_of_another_size():
    workers = parallel.Workers(3)
    with pytest.raises(ValueError, match="needs 2 ranks with gloo; the workers given have 3"):
        parallel.sharding_runs(2, workers=workers)
    assert not workers.running  # refused before anything started
    with pytest.raises(ValueError, match="at least 1"):
        parallel.Workers(0)


def test_demonstrations_share_one_start():
    with parallel.Workers(2) as workers:
        checks = parallel.ddp_gradient_checks({"equal": dict(batch_size=8)}, workers=workers)
        sharded = parallel.sharding_runs(2, width=16, depth=2, steps=2, workers=workers)
        sizes, times, fit = parallel.allreduce_sweep((4_096, 65_536), repeats=2, workers=workers)
        assert workers.starts == 1
    assert checks["equal"].grad_rel_diff < 1e-12
    ddp = sharded[parallel.METHODS[0]]
    assert all((r.weights - ddp.weights).abs().max().item() < 1e-12 for r in sharded.values())
    assert len(times) == 2 and all(t > 0 for t in times)
    _no_children_left()


_ORPHAN_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from course_lib.techniques import parallel
from test_parallel_workers import _identity
if __name__ == "__main__":
    workers = parallel.Workers(2)
    print(" ".join(str(r["pid"]) for r in workers.run(_identity, ("x",))), flush=True)
    os._exit(0)  # dies without closing them, as a killed kernel would
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, only not yet reaped
        return f.read().split(")")[-1].split()[0] != "Z"


def test_workers_leave_when_their_parent_dies(tmp_path):
    script = tmp_path / "orphans.py"
    script.write_text(_ORPHAN_SCRIPT.format(tests=os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
