"""Launching local processes: worker functions on ``world_size`` processes with a process group.

:class:`Workers` starts the processes once (``spawn`` method, so it works from a notebook; on
127.0.0.1 and a free port) and runs task after task on them; :func:`spawn` is one task on
processes of its own. Both have timeouts, clear errors (the first-hand traceback first) and a
clean shutdown: no hangs, no leftover processes.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import socket
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

__all__ = ["WorkerError", "Workers", "exit_without_teardown", "free_port", "loopback_env", "run_on", "spawn"]


class WorkerError(RuntimeError):
    """A worker process failed (its traceback is in the message), died, or timed out."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env() -> dict[str, str]:
    """Environment that makes gloo talk over the loopback interface (all ranks are on this machine).

    Otherwise gloo picks the interface the host name resolves to, which in some containers
    is not reachable. An explicit ``GLOO_SOCKET_IFNAME`` is left alone (returns ``{}``).
    """
    if "GLOO_SOCKET_IFNAME" in os.environ or not Path("/sys/class/net/lo").exists():
        return {}
    return {"GLOO_SOCKET_IFNAME": "lo"}


def _process_entry(rank: int, world_size: int, port: int, backend: str, threads: int,
                   timeout: float, tasks, results, parent: int) -> None:  # fmt: skip
    """Body of each worker process: join the group, then run task after task until told to stop.

    A task is ``(worker, args)``, or ``None`` to stop. Each result goes back as
    ``(rank, True, pickled result)``; a failure as ``(rank, False, traceback)``, after which the
    process leaves (a failed rank breaks the group's collectives, so the group is not reused). It
    also leaves when its parent process (pid ``parent``) is gone.
    """
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), **loopback_env())  # fmt: skip
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))  # fmt: skip
        try:
            while True:
                try:
                    task = tasks.get(timeout=1.0)
                except queue_module.Empty:
                    if os.getppid() != parent:  # the parent died without stopping us (e.g. kill -9)
                        break
                    continue
                if task is None:
                    break
                worker, args = task
                torch.set_num_threads(threads)  # a task may have changed it (the throughput timings do)
                out = worker(rank, world_size, *args)
                dist.barrier()  # nobody reports while another rank still needs it
                # plain pickle copies tensor data into the message; the queue's own pickler would
                # share it through file descriptors, which vanish when this process exits
                results.put((rank, True, pickle.dumps(out)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        results.put((rank, False, traceback.format_exc()))
        code = 1
    else:
        code = 0
    results.close()
    results.join_thread()  # deliver what was put before leaving
    exit_without_teardown(code)


def exit_without_teardown(code: int = 0) -> None:
    """Flush stdout and stderr and end the process with ``code`` at once, skipping the
    interpreter's teardown; for a process that has destroyed its process group and is done.

    Why: gloo's worker thread may still be freeing the last collective (a barrier holds the
    operation before it, whose tensors are Python objects). That needs the GIL, which a
    finalizing interpreter no longer gives: the thread is ended inside a ``noexcept`` C++ frame
    and the process aborts ("terminate called without an active exception", SIGABRT; a core
    dump showed ``ProcessGroupGloo::runLoop`` -> ``~AsyncBarrierWork`` -> decref during
    ``Py_FinalizeEx``). It happened in about one torchrun run in 20 on 2 CPU cores, and torchrun
    then reports the whole run as failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Workers:
    """``world_size`` local processes in one process group, started once, running task after task.

    Starting a process that imports torch takes seconds (more from a notebook's kernel), so a
    chapter that runs several distributed demonstrations starts its processes once::

        workers = parallel.Workers(2)
        checks = parallel.ddp_gradient_checks(cases, workers=workers)
        runs = parallel.pipeline_runs(cases, workers=workers)
        workers.close()

    :meth:`run` sends ``worker(rank, world_size, *args)`` to every process and returns their
    results ordered by rank; the processes start on the first :meth:`run` (``spawn`` method, so
    this works from a notebook; ``worker`` must be a module-level function, importable by name),
    on 127.0.0.1 and a free port, each with ``threads`` intra-op threads and the ``backend``
    (``"gloo"``: CPU; ``"nccl"``: one GPU per rank). If a task fails, a process dies, the task
    takes longer than ``timeout`` seconds, or the caller is interrupted (Ctrl-C), every process
    is stopped and :class:`WorkerError` is raised (the interruption is re-raised as it was): no
    hangs, no leftover processes, no stale results; the next :meth:`run` starts fresh processes.
    Use it as a context manager, or call :meth:`close`; processes left running end with the
    Python process that started them.
    """

    def __init__(self, world_size: int = 2, *, threads: int = 1, backend: str = "gloo", timeout: float = 120.0):
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.world_size, self.threads, self.backend, self.timeout = world_size, threads, backend, timeout
        self._procs: list = []
        self._tasks: list = []
        self._results = None
        self._busy = False  # a task was sent and its results not all collected
        self.starts = 0  # how many times processes were started (a failure or close forces a new start)

    @property
    def running(self) -> bool:
        """Whether the processes are started and alive."""
        return bool(self._procs) and all(p.is_alive() for p in self._procs)

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "not started"
        return f"Workers({self.world_size}, threads={self.threads}, backend={self.backend!r}; {state})"

    def check(self, world_size: int, backend: str = "gloo") -> None:
        """Raise ``ValueError`` unless these workers have ``world_size`` ranks and ``backend``."""
        if (self.world_size, self.backend) != (world_size, backend):
            raise ValueError(f"this needs {world_size} ranks with {backend}; the workers given have "
                             f"{self.world_size} with {self.backend}")  # fmt: skip

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue() for _ in range(self.world_size)]
        port = free_port()
        self._procs = [ctx.Process(target=_process_entry, name=f"course-rank{rank}", daemon=True,
                                   args=(rank, self.world_size, port, self.backend, self.threads, self.timeout,
                                         self._tasks[rank], self._results, os.getpid()))
                       for rank in range(self.world_size)]  # fmt: skip
        for p in self._procs:
            p.start()
        self.starts += 1

    def run(self, worker: Callable, args: tuple = (), *, timeout: float | None = None) -> list:
        """``worker(rank, world_size, *args)`` on every process; the results, ordered by rank.

        ``timeout`` (default: the one given at construction) bounds this task, including the
        processes' start when they are not running yet.
        """
        if getattr(worker, "__module__", None) == "__main__" and not hasattr(sys.modules["__main__"], "__file__"):
            raise ValueError(f"the workers need a function they can import; {worker.__name__} was defined "
                             "interactively (a notebook cell): move it into a module")  # fmt: skip
        timeout = self.timeout if timeout is None else timeout
        for attempt in range(2):
            starting = not self.running
            if starting:
                self.close()
                self._start()
            try:
                self._busy = True
                for q in self._tasks:
                    q.put((worker, args))
                results = self._collect(worker.__name__, timeout)
                self._busy = False
                return results
            except WorkerError as exc:
                self.close()
                port_taken = "EADDRINUSE" in str(exc) or "address already in use" in str(exc).lower()
                # another program took the free port before rank 0 listened on it: once more, new port
                if not (attempt == 0 and starting and port_taken):
                    raise
            except BaseException:  # Ctrl-C in the caller: the processes would still be working on it
                self.close()
                raise
        raise AssertionError("unreachable")

    def _collect(self, name: str, timeout: float) -> list:
        world_size, procs = self.world_size, self._procs
        got: dict[int, Any] = {}
        failed: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        dead_since: dict[int, float] = {}
        grace = math.inf  # set when the first failure arrives
        while len(got) + len(failed) < world_size:
            try:
                rank, success, payload = self._results.get(timeout=0.1)
            except queue_module.Empty:
                now = time.monotonic()
                if failed:  # the others are echoing it or stuck: stop waiting after the grace period
                    if now > grace:
                        break
                    continue
                for rank, p in enumerate(procs):
                    if rank not in got and rank not in failed and p.exitcode is not None:
                        # its report may still be in the pipe: give it a moment before giving up
                        if now - dead_since.setdefault(rank, now) > 2.0:
                            raise WorkerError(f"rank {rank} of {world_size} exited with code {p.exitcode} "
                                              "without reporting a result (an error before the worker "
                                              "started is printed on the process's stderr; a script "
                                              "that starts workers needs `if __name__ == '__main__':`)")  # fmt: skip
                if now > deadline:
                    missing = sorted(set(range(world_size)) - set(got) - set(failed))
                    raise WorkerError(f"timed out after {timeout:.0f} s waiting for rank(s) {missing} of {name}")
                continue
            if success:
                got[rank] = pickle.loads(payload)
            else:
                # a failing rank breaks the collectives of the others: wait a moment for the
                # other reports, so that the original error can be told from its echoes
                failed[rank] = payload
                grace = min(grace, time.monotonic() + 3.0)
        if failed:
            raise WorkerError(_failure_message(failed, world_size, name))
        return [got[rank] for rank in range(world_size)]

    def close(self) -> None:
        """Stop the processes (politely when they are idle, at once when a task failed or was
        interrupted); idempotent."""
        polite = self.running and not self._busy
        if polite:
            for q in self._tasks:
                q.put(None)
        for p in self._procs:
            if p.pid is None:
                continue
            p.join(timeout=10.0 if polite else 0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in [*self._tasks] + ([self._results] if self._results is not None else []):
            q.close()
            q.join_thread()
        self._procs, self._tasks, self._results, self._busy = [], [], None, False


def spawn(worker: Callable, world_size: int = 2, args: tuple = (), *, threads: int = 1,
          backend: str = "gloo", timeout: float = 120.0) -> list:  # fmt: skip
    """Run ``worker(rank, world_size, *args)`` once in ``world_size`` new processes; return their results.

    A :class:`Workers` group for one task: the processes start (``spawn`` method, a process
    group on a free port, ``threads`` intra-op threads each), run ``worker``, and stop. Errors,
    deaths and timeouts raise :class:`WorkerError` with the failing rank's traceback, and no
    process is left behind. For several tasks in a row, keep one :class:`Workers`.
    """
    with Workers(world_size, threads=threads, backend=backend, timeout=timeout) as workers:
        return workers.run(worker, args)


def run_on(workers: "Workers | None", worker: Callable, world_size: int, args: tuple = (), *,
           backend: str = "gloo", timeout: float = 120.0) -> list:  # fmt: skip
    """``workers.run(worker, args)`` on the given :class:`Workers` (checked to have ``world_size``
    ranks and ``backend``), or a one-off :func:`spawn` when ``workers`` is None."""
    if workers is None:
        return spawn(worker, world_size, args, backend=backend, timeout=timeout)
    workers.check(world_size, backend)
    return workers.run(worker, args, timeout=timeout)


_ECHOES = ("connection closed by peer", "connection reset by peer", "broken pipe")


def _failure_message(failed: dict[int, str], world_size: int, name: str) -> str:
    """The traceback of the rank that failed first-hand, then one line for each other failure."""
    def is_echo(tb: str) -> bool:
        return any(e in tb.lower() for e in _ECHOES)

    order = sorted(failed, key=lambda r: (is_echo(failed[r]), r))
    first = order[0]
    lines = [f"rank {first} of {world_size} failed in {name}:\n{failed[first]}"]
    for r in order[1:]:
        last = failed[r].strip().splitlines()[-1]
        lines.append(f"(rank {r} failed too: {last[:300]})")
    return "\n".join(lines)
