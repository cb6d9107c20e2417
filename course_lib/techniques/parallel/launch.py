"""Launching local processes: a worker function on ``world_size`` processes with a process group.

:func:`spawn` starts the processes with the ``spawn`` method (so it works from a notebook), on
127.0.0.1 and a free port, with timeouts, clear errors (the first-hand traceback first) and a
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

__all__ = ["WorkerError", "free_port", "loopback_env", "spawn"]


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
                   timeout: float, worker: Callable, args: tuple, results) -> None:  # fmt: skip
    """Body of each spawned process: set up, join the group, run ``worker``, report, shut down."""
    try:
        torch.set_num_threads(threads)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), **loopback_env())  # fmt: skip
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))  # fmt: skip
        try:
            out = worker(rank, world_size, *args)
            dist.barrier()  # nobody leaves while another rank still needs it
        finally:
            dist.destroy_process_group()
        # plain pickle copies tensor data into the message; the queue's own pickler would share
        # it through file descriptors, which vanish when this process exits
        results.put((rank, True, pickle.dumps(out)))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        results.put((rank, False, traceback.format_exc()))


def spawn(worker: Callable, world_size: int = 2, args: tuple = (), *, threads: int = 1,
          backend: str = "gloo", timeout: float = 120.0) -> list:  # fmt: skip
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` new processes; return their results.

    Each process is started with the ``spawn`` method (so this works from a notebook; ``worker``
    must be a module-level function, importable by name), limits torch to ``threads`` intra-op
    threads, and joins a process group (``backend``, ``MASTER_ADDR=127.0.0.1``, a free port) before
    calling ``worker``; afterwards the group is destroyed. The return values come back through a
    queue, ordered by rank. If a worker raises, dies, or the whole run takes longer than
    ``timeout`` seconds, every process is stopped and :class:`WorkerError` is raised (with the
    worker's traceback): no hangs, no leftover processes. If another program took the free port
    before rank 0 could listen on it, the launch is retried once on a new port.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if getattr(worker, "__module__", None) == "__main__" and not hasattr(sys.modules["__main__"], "__file__"):
        raise ValueError(f"spawn needs a worker the new processes can import; {worker.__name__} was defined "
                         "interactively (a notebook cell): move it into a module")  # fmt: skip
    try:
        return _spawn_once(worker, world_size, args, threads, backend, timeout)
    except WorkerError as exc:
        if "EADDRINUSE" not in str(exc) and "address already in use" not in str(exc).lower():
            raise
    return _spawn_once(worker, world_size, args, threads, backend, timeout)


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


def _spawn_once(worker: Callable, world_size: int, args: tuple, threads: int, backend: str, timeout: float) -> list:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_process_entry, name=f"course-rank{rank}", daemon=True,
                         args=(rank, world_size, port, backend, threads, timeout, worker, args, results))
             for rank in range(world_size)]  # fmt: skip
    got: dict[int, Any] = {}
    failed: dict[int, str] = {}
    ok = False
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        dead_since: dict[int, float] = {}
        grace = math.inf  # set when the first failure arrives
        while len(got) + len(failed) < world_size:
            try:
                rank, success, payload = results.get(timeout=0.1)
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
                                              "that calls spawn needs `if __name__ == '__main__':`)") from None  # fmt: skip
                if now > deadline:
                    missing = sorted(set(range(world_size)) - set(got) - set(failed))
                    raise WorkerError(f"timed out after {timeout:.0f} s waiting for rank(s) {missing} "
                                      f"of {worker.__name__}") from None  # fmt: skip
                continue
            if success:
                got[rank] = pickle.loads(payload)
            else:
                # a failing rank breaks the collectives of the others: wait a moment for the
                # other reports, so that the original error can be told from its echoes
                failed[rank] = payload
                grace = min(grace, time.monotonic() + 3.0)
        if failed:
            raise WorkerError(_failure_message(failed, world_size, worker.__name__))
        ok = True
    finally:
        for p in procs:
            if p.pid is None:
                continue
            p.join(timeout=10.0 if ok else 0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    return [got[rank] for rank in range(world_size)]

