"""One airbench-style CIFAR-10 training run with Nesterov SGD: wall time and test accuracy, with
course_lib's SGD and torch.optim.SGD side by side in one process.

    python benchmarks/airbench_speed.py                       # on a GPU: the speed target
    python benchmarks/airbench_speed.py --lr 0.2 0.4 0.8      # a learning-rate sweep
    python benchmarks/airbench_speed.py --train-per-class 20 --test-per-class 10 --epochs 1 \
        --widths 16 32 32 --batch-size 50                     # a smoke run on a CPU

The course's target for a GPU (an H100): at least 93% test accuracy in at most 15 s on the JPEG
copy of CIFAR-10. Training uses all 50,000 training images and the recipe of the full study
(``course_lib.study.protocol.train_one``): the airbench-style net with a frozen whitening stem,
flip-and-translate augmentation on the device, label smoothing, warm-up then linear decay of
the learning rate, bf16 autocast and channels-last on CUDA, and test-time augmentation (six
views) for the test accuracy. The hyperparameters are fixed on the command line beforehand; the
test set only reports.

Every (learning rate, implementation) pair trains ``--runs`` times, the implementations
alternating, all from the same seed (same initial weights and batches). ``train s`` is the
training loop's wall time (``History.seconds``: from the first step to the end of the last
epoch, waiting for the device at each epoch's end); ``total s`` adds building the model, the
whitening and the test evaluation. An untimed one-epoch run comes first, so that one-time costs
(cuDNN's algorithm search, memory allocation, thread-pool start) do not count against the first
timed run.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import numpy as np
import torch

from course_lib import config, optim, study
from course_lib.engine import DeviceData, cifar10


def load(train_per_class: int | None, test_per_class: int | None, device) -> dict[str, DeviceData]:
    """All (or a class-balanced subset) of the training and test sets on the device; no validation split."""
    tx, ty = cifar10.load_cifar10("train")
    if train_per_class is not None:
        tx, ty = cifar10.class_balanced_subset(tx, ty, train_per_class, seed=0)
    out = {"train": DeviceData.from_numpy(tx, ty, device)}
    sx, sy = cifar10.load_cifar10("test")
    if test_per_class is not None:
        sx, sy = cifar10.class_balanced_subset(sx, sy, test_per_class, seed=0)
    out["test"] = DeviceData.from_numpy(sx, sy, device, stats=out["train"].stats)
    return out


def recipe(args: argparse.Namespace) -> study.StudyConfig:
    return study.StudyConfig(mode="speed", model="airbench", model_kwargs={"widths": tuple(args.widths)},
                             epochs=args.epochs, batch_size=args.batch_size, whiten=True,
                             label_smoothing=args.label_smoothing, tta=args.tta,
                             optimizers=("Nesterov",), lr_grids={"Nesterov": tuple(args.lr)})  # fmt: skip


def one_run(cfg: study.StudyConfig, lr: float, optimizer_cls, args, splits) -> dict:
    fixed = {"momentum": args.momentum, "nesterov": True, "weight_decay": args.weight_decay}
    _sync()
    start = time.perf_counter()
    record = study.train_one(cfg, study.RunSpec("speed", "Nesterov", lr, args.seed), splits, progress=False,
                             optimizer=(optimizer_cls, fixed))  # fmt: skip
    _sync()
    return {"train_s": record["history"]["seconds"], "total_s": time.perf_counter() - start,
            "test_acc": record["test_acc"], "test_loss": record["test_loss"],
            "diverged": record["history"]["diverged"]}  # fmt: skip


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="timed runs per learning rate and implementation")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.4], help="one or more peak learning rates")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--tta", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--train-per-class", type=int, default=None, help="a class-balanced subset (smoke runs)")
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.93, help="test accuracy to report against")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.epochs < 1 or args.batch_size < 1:
        parser.error("--runs, --epochs and --batch-size must be at least 1")

    device = config.device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device} ({name}); torch {torch.__version__}; {torch.get_num_threads()} CPU threads")
    t = time.perf_counter()
    splits = load(args.train_per_class, args.test_per_class, device)
    print(f"data: {len(splits['train'])} training and {len(splits['test'])} test images on the device "
          f"in {time.perf_counter() - t:.1f} s ({study.data_variant()})")  # fmt: skip
    cfg = recipe(args)
    print(f"recipe: {cfg.epochs} epochs, batch {cfg.batch_size}, widths {cfg.model_kwargs['widths']}, "
          f"momentum {args.momentum} (Nesterov), weight decay {args.weight_decay}, label smoothing "
          f"{cfg.label_smoothing}, TTA level {cfg.tta}, warm-up {cfg.warmup_fraction:.0%} then linear decay")  # fmt: skip
    one_run(dataclasses.replace(cfg, epochs=1), args.lr[0], torch.optim.SGD, args, splits)  # warm-up, untimed

    implementations = {"course_lib": optim.SGD, "torch": torch.optim.SGD}
    rows = []
    print(f"\n{'lr':>6s} {'optimizer':>10s} {'run':>3s} {'train s':>8s} {'total s':>8s} {'test acc':>8s}")
    for lr in args.lr:
        for run in range(args.runs):
            order = list(implementations) if run % 2 == 0 else list(reversed(implementations))
            for label in order:
                result = {"lr": lr, "optimizer": label, "run": run + 1,
                          **one_run(cfg, lr, implementations[label], args, splits)}  # fmt: skip
                rows.append(result)
                print(f"{lr:6g} {label:>10s} {run + 1:3d} {result['train_s']:8.2f} {result['total_s']:8.2f} "
                      f"{result['test_acc']:8.4f}" + ("  diverged" if result["diverged"] else ""))  # fmt: skip

    print(f"\nmedians over {args.runs} run(s); target: test accuracy >= {args.target:.0%}")
    print(f"{'lr':>6s} {'course_lib s':>12s} {'torch s':>8s} {'ratio':>6s} {'course_lib acc':>14s} {'torch acc':>9s}")
    for lr in args.lr:
        med = {label: {key: statistics.median(r[key] for r in rows if r["lr"] == lr and r["optimizer"] == label)
                       for key in ("train_s", "test_acc")} for label in implementations}  # fmt: skip
        ours, ref = med["course_lib"], med["torch"]
        reached = " (reaches the target)" if np.nanmin([ours["test_acc"], ref["test_acc"]]) >= args.target else ""
        print(f"{lr:6g} {ours['train_s']:12.2f} {ref['train_s']:8.2f} {ours['train_s'] / ref['train_s']:5.2f}x "
              f"{ours['test_acc']:14.4f} {ref['test_acc']:9.4f}{reached}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
