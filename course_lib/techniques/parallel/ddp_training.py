"""Data-parallel CIFAR-10 training under ``torchrun``, and starting ``torchrun`` from Python.

Every rank runs the course's own training loop (:func:`course_lib.engine.loop.train`) on its
shard of the training set, with the model wrapped in ``DistributedDataParallel``
(:func:`train_ddp`); :func:`main` is the entry point::

    torchrun --standalone --nproc_per_node=2 -m course_lib.techniques.parallel --epochs 10 --batch-size 512

:func:`run_torchrun` starts that command (:func:`torchrun_command`) from Python (a notebook, a
test) and returns rank 0's results as a :class:`TorchrunResult`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ... import config, optim
from ...engine import cifar10, models
from ...engine.device_data import DeviceData, cifar10_on_device
from ...engine.loop import evaluate, train
from .ddp import flat_params
from .launch import WorkerError, free_port, loopback_env

__all__ = ["train_ddp", "main", "TorchrunResult", "torchrun_command", "run_torchrun"]

_MODELS = {
    "small_cnn": lambda: models.small_cnn(),
    "mlp": lambda: models.mlp(),
    "airbench": lambda: models.airbench_net(),
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="torchrun --standalone --nproc_per_node=N -m course_lib.techniques.parallel",
        description="Data-parallel CIFAR-10 training with the course's engine: every rank runs "
        "course_lib.engine.loop.train on its own shard with the model wrapped in DDP; rank 0 evaluates.",
    )
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set (default 10; --fast: 1)")
    p.add_argument("--batch-size", type=int, default=512, help="global batch (split evenly over the ranks)")
    p.add_argument("--train-per-class", type=int, default=None,
                   help="class-balanced subset of the training set (default: all; --fast: 50)")
    p.add_argument("--model", choices=sorted(_MODELS), default="small_cnn")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="course_lib.optim.SGD (Nesterov momentum 0.9) or course_lib.optim.Adam")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.02 for SGD, 2e-3 for Adam)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine: the rate decays to 0 over the run, step by step (default); constant: no decay")
    p.add_argument("--data", choices=["cifar10", "synthetic"], default="cifar10",
                   help="synthetic: random learnable images, no download (tests)")
    p.add_argument("--backend", choices=["auto", "nccl", "gloo"], default="auto",
                   help="auto: NCCL when every rank has a GPU, else gloo (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per rank "
                   "(default: CPU cores / local ranks)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a collective may wait")
    p.add_argument("--fast", action="store_true", help="tiny run: 1 epoch on 50 images per class")
    p.add_argument("--output", type=str, default=None, help="rank 0 writes its results here as JSON")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.fast else 10
    if args.train_per_class is None and args.fast:
        args.train_per_class = 50
    if args.lr is None:
        args.lr = 0.02 if args.optimizer == "sgd" else 2e-3
    return args


def _synthetic_cifar(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 32 x 32 images with a faint class template added: learnable, like a toy CIFAR-10."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 2, (10, 32, 32, 3)) * 60
    labels = np.repeat(np.arange(10), per_class)
    images = rng.integers(0, 160, (len(labels), 32, 32, 3)) + templates[labels]
    return images.astype(np.uint8), labels.astype(np.int64)


def _load_data(args, device) -> dict[str, DeviceData]:
    if args.data == "synthetic":
        images, labels = _synthetic_cifar(args.train_per_class or 50, args.seed)
        tx, ty, vx, vy = cifar10.train_val_split(images, labels, val_fraction=0.2, seed=args.seed)
        out = {"train": DeviceData.from_numpy(tx, ty, device)}
        out["val"] = DeviceData.from_numpy(vx, vy, device, stats=out["train"].stats)
        return out
    return cifar10_on_device(train_per_class=args.train_per_class, seed=args.seed, device=device)


def _shard(data: DeviceData, rank: int, world_size: int) -> DeviceData:
    """Every ``world_size``-th example starting at ``rank``: disjoint shards of equal size.

    The tail that does not divide evenly is dropped, so every rank takes the same number of
    steps (DDP needs every rank in every all-reduce). Normalisation stays the full set's.
    """
    n = len(data) - len(data) % world_size
    index = torch.arange(rank, n, world_size, device=data.device)
    return DeviceData(data.images[index], data.labels[index], data.mean, data.std)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Entry point of ``torchrun ... -m course_lib.techniques.parallel``; returns rank 0's results.

    Parses the options (``argv``, default ``sys.argv``; ``--help`` lists them), picks the backend
    and device (NCCL on ``cuda:LOCAL_RANK`` when every local rank has a GPU, else gloo on the
    CPU), joins the process group and runs :func:`train_ddp`; the other ranks return None.
    Without torchrun (no ``RANK`` in the environment) it runs as a world of one process.
    """
    args = _parse_args(argv)
    if "RANK" not in os.environ:  # plain `python -m course_lib.techniques.parallel` (or a call): a world of one
        single = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))  # fmt: skip
        os.environ.update(single)
        try:
            return main(argv)
        finally:
            for key in single:
                os.environ.pop(key, None)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    backend = args.backend
    if backend == "auto":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        backend = "nccl" if dist.is_nccl_available() and gpus >= local_world else "gloo"
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout),
                            **({"device_id": device} if backend == "nccl" else {}))  # fmt: skip
    try:
        return train_ddp(args, rank, world_size, backend, device)
    finally:
        dist.destroy_process_group()
        torch.set_num_threads(threads_before)


def train_ddp(args: argparse.Namespace, rank: int, world_size: int, backend: str,
              device: torch.device) -> dict | None:  # fmt: skip
    """One rank's data-parallel training: the course's training loop on its shard, the model in DDP.

    Runs inside an initialised process group (:func:`main` sets it up; ``args`` are its parsed
    options). Every rank loads the same split (rank 0 first, so only one process downloads or
    builds the cache), keeps every ``world_size``-th training image (disjoint shards of equal
    size), builds the model from the same seed, wraps it in ``DistributedDataParallel`` (on
    CUDA with ``SyncBatchNorm``) and calls :func:`course_lib.engine.loop.train` unchanged, with a
    per-rank batch of ``args.batch_size / world_size`` and (``--schedule cosine``, the default) a
    cosine decay of the rate to 0 over the run: DDP averages the gradients inside ``backward``. Afterwards the ranks average their epoch losses and gather a checksum of their
    parameters; rank 0 evaluates on the validation split, prints a summary, writes it to
    ``args.output`` (JSON) if given and returns it as a dict. The other ranks return None.
    """
    if args.batch_size % world_size:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by the {world_size} ranks")
    config.seed_everything(args.seed)
    # the same split on every rank (same seed); rank 0 first, so that only one process downloads
    # or builds the cache, and the others then read it
    data = _load_data(args, device) if rank == 0 else None
    dist.barrier()
    data = data or _load_data(args, device)
    shard = _shard(data["train"], rank, world_size)
    torch.manual_seed(args.seed)
    model = _MODELS[args.model]().to(device)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over all ranks
        model = model.to(memory_format=torch.channels_last)  # as engine.loop.train does, but before DDP
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.optimizer == "sgd":
        opt = optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    else:
        opt = optim.Adam(ddp.parameters(), lr=args.lr)
    per_rank_batch = args.batch_size // world_size
    total_steps = args.epochs * math.ceil(len(shard) / per_rank_batch)
    scheduler = (optim.schedules.ScheduledLR(opt, optim.schedules.cosine_annealing, T_max=total_steps)
                 if args.schedule == "cosine" else None)  # fmt: skip
    history = train(ddp, opt, shard, epochs=args.epochs, batch_size=per_rank_batch, seed=args.seed,
                    scheduler=scheduler, progress=False)  # fmt: skip
    # the mean training loss of each epoch over all ranks, and a fingerprint of every rank's weights
    losses = torch.tensor(history.column("train_loss"), dtype=torch.float64, device=device)
    dist.all_reduce(losses)
    losses /= world_size
    checksum = torch.tensor([float(flat_params(model).double().sum())], dtype=torch.float64, device=device)
    checksums = [torch.zeros_like(checksum) for _ in range(world_size)]
    dist.all_gather(checksums, checksum)
    result = None
    if rank == 0:  # evaluate the plain module: no collectives, the other ranks just wait
        val_loss, val_acc = evaluate(model, data["val"])
        result = dict(
            world_size=world_size, backend=backend, device=str(device), model=args.model, data=args.data,
            epochs=args.epochs, global_batch=args.batch_size, per_rank_batch=per_rank_batch, lr=args.lr,
            schedule=args.schedule, steps=total_steps,
            train_examples=len(data["train"]), shard_examples=len(shard), val_examples=len(data["val"]),
            train_loss=losses.tolist(), val_loss=val_loss, val_acc=val_acc, seconds=history.seconds,
            samples_per_second=len(shard) * world_size * args.epochs / history.seconds,
            rank_checksums=[c.item() for c in checksums], diverged=history.diverged,
        )  # fmt: skip
        for e, loss in enumerate(result["train_loss"], 1):
            print(f"epoch {e:3d}  train loss {loss:.4f}")
        print(f"{world_size} rank(s), {backend} on {device}: {len(shard)} training images per rank, "
              f"batch {per_rank_batch} per rank ({args.batch_size} global), lr {args.lr:g} ({args.schedule})")  # fmt: skip
        print(f"val accuracy {val_acc:.3f}  val loss {val_loss:.4f}  "
              f"{result['samples_per_second']:.0f} images/s  {history.seconds:.1f} s")  # fmt: skip
        same = max(result["rank_checksums"]) == min(result["rank_checksums"])
        print(f"parameters identical on every rank: {'yes' if same else 'no'}")
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=1))
    dist.barrier()
    return result


# --------------------------------------------------------------------------------------------
# Starting torchrun from Python
# --------------------------------------------------------------------------------------------


@dataclass
class TorchrunResult:
    """A finished ``torchrun`` run: the ``command``, rank 0's printed ``stdout`` and its ``result``."""

    command: list[str]
    stdout: str
    stderr: str
    result: dict
    seconds: float

    @property
    def command_line(self) -> str:
        return " ".join(self.command)


def torchrun_command(script_args: Sequence[str] = (), nproc_per_node: int = 2) -> list[str]:
    """The command that launches :func:`main` on ``nproc_per_node`` local processes.

    ``python -m torch.distributed.run`` is the ``torchrun`` executable, called through the current
    interpreter (so the same environment is used); each rank runs
    ``python -m course_lib.techniques.parallel`` (the package's ``__main__``) with ``script_args``.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "course_lib.techniques.parallel", *map(str, script_args)]  # fmt: skip


def run_torchrun(script_args: Sequence[str] = (), nproc_per_node: int = 2, *, timeout: float = 300.0,
                 threads_per_process: int = 1) -> TorchrunResult:  # fmt: skip
    """Run :func:`torchrun_command` as a subprocess and return rank 0's results.

    ``OMP_NUM_THREADS`` is set to ``threads_per_process`` (torchrun would set 1 and warn). On a
    non-zero exit, or after ``timeout`` seconds (the whole process group is killed then), a
    :class:`WorkerError` carries the end of the output.
    """
    with tempfile.TemporaryDirectory(prefix="course-torchrun-") as tmp:
        out_file = Path(tmp) / "result.json"
        cmd = torchrun_command([*script_args, "--output", str(out_file)], nproc_per_node)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process), PYTHONUNBUFFERED="1")
        env.update(loopback_env())
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise WorkerError(f"torchrun timed out after {timeout:.0f} s; its output ended with:\n"
                              f"{(stdout + stderr)[-3000:]}") from None  # fmt: skip
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out_file.exists():
            raise WorkerError(f"torchrun exited with code {proc.returncode}; its output ended with:\n"
                              f"{(stdout + stderr)[-3000:]}")  # fmt: skip
        result = json.loads(out_file.read_text())
    shown = [c if c != sys.executable else "python" for c in cmd[:-2]]
    return TorchrunResult(command=shown, stdout=stdout, stderr=stderr, result=result, seconds=seconds)
