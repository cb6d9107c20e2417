"""Time one optimizer step of course_lib.optim against torch.optim, in one process, interleaved.

    python benchmarks/optimizer_step.py [--repeats 200] [--threads N]

The model is a ~2M-parameter CNN with ~30 parameter tensors (conv + batch-norm blocks); its
gradients come from one real backward pass and stay fixed, so every optimizer updates the same
tensors with the same data. For each optimizer three copies are stepped in turn, in a shuffled
order each round: course_lib, torch's default CPU path (single-tensor), and torch with
``foreach=True``. The table gives the median time per step and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
from torch import nn

from course_lib import optim as co

OPTIMIZERS = {
    "SGD (momentum 0.9)": (co.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
    "Adagrad": (co.Adagrad, torch.optim.Adagrad, dict(lr=0.01)),
    "RMSprop": (co.RMSprop, torch.optim.RMSprop, dict(lr=0.01)),
    "Adam": (co.Adam, torch.optim.Adam, dict(lr=0.001)),
    "AdamW": (co.AdamW, torch.optim.AdamW, dict(lr=0.001, weight_decay=0.01)),
}


def benchmark_model() -> nn.Module:
    """Ten conv-BN blocks (30 parameter tensors), about 2.0M parameters."""
    widths = [3, 32, 64, 64, 128, 128, 192, 192, 192, 224, 224]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _with_grads(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    model(torch.randn(8, 3, 16, 16)).square().mean().backward()
    return model


def _copy_with_grads(params: list[nn.Parameter]) -> list[nn.Parameter]:
    copies = [nn.Parameter(p.detach().clone()) for p in params]
    for c, p in zip(copies, params):
        c.grad = p.grad.clone()
    return copies


def _time_step(opt: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    opt.step()
    return time.perf_counter() - start


def run(repeats: int, warmup: int = 10) -> list[dict]:
    base = _with_grads(benchmark_model())
    params = list(base.parameters())
    n_params = sum(p.numel() for p in params)
    print(f"model: {len(params)} parameter tensors, {n_params / 1e6:.2f}M parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")  # fmt: skip
    rows = []
    for name, (ours_cls, torch_cls, cfg) in OPTIMIZERS.items():
        variants = {
            "course_lib": lambda ps: ours_cls(ps, **cfg),
            "torch": lambda ps: torch_cls(ps, **cfg),
            "torch foreach": lambda ps: torch_cls(ps, foreach=True, **cfg),
        }
        opts = {key: make(_copy_with_grads(params)) for key, make in variants.items()}
        times: dict[str, list[float]] = {key: [] for key in opts}
        order = list(opts)
        for i in range(warmup + repeats):
            random.shuffle(order)
            for key in order:
                elapsed = _time_step(opts[key])
                if i >= warmup:
                    times[key].append(elapsed)
        med = {key: statistics.median(ts) for key, ts in times.items()}
        rows.append(dict(optimizer=name, **{f"{k} ms": 1e3 * v for k, v in med.items()},
                         ratio_torch=med["course_lib"] / med["torch"],
                         ratio_foreach=med["course_lib"] / med["torch foreach"]))  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| optimizer | course_lib ms | torch ms | torch foreach ms | course_lib / torch | course_lib / foreach |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['course_lib ms']:.2f} | {r['torch ms']:.2f} | {r['torch foreach ms']:.2f} "
              f"| {r['ratio_torch']:.2f}x | {r['ratio_foreach']:.2f}x |")  # fmt: skip
    worst = max(r["ratio_torch"] for r in rows)
    print(f"\nworst ratio against torch's default path: {worst:.2f}x (target: at most 1.20x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed steps per variant (default 200)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    random.seed(0)
    print_table(run(args.repeats))


if __name__ == "__main__":
    main()
