"""Time one step of course_lib's modern optimizers against their references, in one process, interleaved.

    python benchmarks/modern_optimizer_step.py [--repeats 100] [--threads N] [--only Muon Lion ...]

The network is ``optimizer_step.py``'s ~2M-parameter CNN (ten conv-BN blocks), its gradients from
one real backward pass, fixed. Pairs: course_lib's ``Muon`` and ``Adafactor`` against torch's,
``Lion`` against ``lion_pytorch``, ``NAdam``/``RAdam`` against torch's and the schedule-free
classes against ``schedulefree`` (``foreach=False``, its per-tensor path). Muon takes matrices
only: it gets the ten conv filters flattened to :math:`C_{out} \\times C_{in}k^2` matrices (the same
numbers); a second Muon row times the hidden matrices of the transformer (``--transformer``
size, default "fast"). For each pair the two optimizers are stepped in turn, in a shuffled order
each round; the table gives the median time per step and the ratio of the medians (target: at
most 1.2x).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import random
import statistics
from pathlib import Path

import lion_pytorch
import schedulefree
import torch
from torch import nn

from course_lib import optim as co
from course_lib.engine import models


def _load_optimizer_step():
    spec = importlib.util.spec_from_file_location("optimizer_step", Path(__file__).with_name("optimizer_step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _load_optimizer_step()

# name -> (course_lib class, reference class, keyword arguments, which parameters)
PAIRS = {
    "Muon (CNN filters as matrices)": (co.Muon, torch.optim.Muon, dict(lr=0.02), "matrices"),
    "Muon (transformer matrices)": (co.Muon, torch.optim.Muon, dict(lr=0.02), "transformer"),
    "Adafactor": (co.Adafactor, torch.optim.Adafactor, dict(), "all"),
    "Lion": (co.Lion, lion_pytorch.Lion, dict(lr=1e-4, weight_decay=0.1), "all"),
    "NAdam": (co.NAdam, torch.optim.NAdam, dict(), "all"),
    "RAdam": (co.RAdam, torch.optim.RAdam, dict(), "all"),
    "ScheduleFreeAdamW": (co.ScheduleFreeAdamW, schedulefree.AdamWScheduleFree, dict(lr=0.0025), "all"),
    "ScheduleFreeSGD": (co.ScheduleFreeSGD, schedulefree.SGDScheduleFree, dict(lr=0.1), "all"),
}


def parameters(kind: str, transformer_size: str) -> list[nn.Parameter]:
    """Parameters with fixed gradients: the CNN's (``all``), its conv filters as matrices
    (``matrices``), or the transformer's hidden matrices (``transformer``)."""
    if kind == "transformer":
        torch.manual_seed(0)
        model = models.transformer(65, transformer_size)
        tokens = torch.randint(0, 65, (8, 33))
        logits = model(tokens[:, :-1])
        nn.functional.cross_entropy(logits.reshape(-1, 65), tokens[:, 1:].reshape(-1)).backward()
        return co.muon_param_groups(model)[0]["params"]
    params = list(base._with_grads(base.benchmark_model()).parameters())
    if kind == "matrices":
        flat = [nn.Parameter(p.detach().reshape(p.size(0), -1).clone()) for p in params if p.ndim == 4]
        for f, p in zip(flat, [p for p in params if p.ndim == 4]):
            f.grad = p.grad.reshape(p.size(0), -1).clone()
        return flat
    return params


def _make(cls, params, cfg):
    if cls.__module__.startswith("schedulefree"):
        cfg = dict(cfg, foreach=False)
    opt = cls(base._copy_with_grads(params), **cfg)
    if hasattr(opt, "train") and hasattr(opt, "eval"):
        opt.train()
    return opt


def run(repeats: int, names: list[str], transformer_size: str = "fast", warmup: int = 3,
        muon_repeats: int | None = None) -> list[dict]:  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    rows = []
    for name in names:
        ours_cls, ref_cls, cfg, kind = PAIRS[name]
        params = parameters(kind, transformer_size)
        n = sum(p.numel() for p in params)
        opts = {"course_lib": _make(ours_cls, params, cfg), "reference": _make(ref_cls, params, cfg)}
        times: dict[str, list[float]] = {key: [] for key in opts}
        order = list(opts)
        n_timed = muon_repeats if (muon_repeats is not None and ours_cls is co.Muon) else repeats
        for i in range(warmup + n_timed):
            random.shuffle(order)
            for key in order:
                elapsed = base._time_step(opts[key])
                if i >= warmup:
                    times[key].append(elapsed)
        med = {key: statistics.median(ts) for key, ts in times.items()}
        rows.append(dict(optimizer=name, reference=f"{ref_cls.__module__.split('.')[0]}.{ref_cls.__name__}",
                         tensors=len(params), parameters=n, ours_ms=1e3 * med["course_lib"],
                         reference_ms=1e3 * med["reference"], ratio=med["course_lib"] / med["reference"]))  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| optimizer | reference | tensors | parameters | course_lib ms | reference ms | course_lib / reference |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['reference']} | {r['tensors']} | {r['parameters'] / 1e6:.2f}M "
              f"| {r['ours_ms']:.2f} | {r['reference_ms']:.2f} | {r['ratio']:.2f}x |")  # fmt: skip
    worst = max(r["ratio"] for r in rows)
    print(f"\nworst ratio: {worst:.2f}x (target: at most 1.20x)")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="timed steps per optimizer (default 100)")
    parser.add_argument("--muon-repeats", type=int, default=None,
                        help="timed steps of the Muon rows (default: --repeats; Newton-Schulz in bfloat16 is "
                             "slow on a CPU)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help=f"rows whose name starts with one of these (of: {', '.join(PAIRS)})")  # fmt: skip
    parser.add_argument("--flush-denormal", action="store_true",
                        help="treat subnormal floats as zero (torch.set_flush_denormal): the fixed gradients' "
                             "squares are partly subnormal, which makes every implementation slow alike")  # fmt: skip
    parser.add_argument("--transformer", default="fast", choices=sorted(models.TRANSFORMER_SIZES),
                        help="size of the transformer whose matrices Muon steps (default fast)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.muon_repeats is not None and args.muon_repeats < 1):
        parser.error("--repeats and --muon-repeats must be at least 1")
    names = [n for n in PAIRS if args.only is None or any(n.startswith(o) for o in args.only)]
    if not names:
        parser.error(f"--only matches none of {list(PAIRS)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        parser.error("--flush-denormal: this CPU cannot flush subnormal numbers")
    random.seed(0)
    try:
        rows = run(args.repeats, names, args.transformer, muon_repeats=args.muon_repeats)
    finally:
        if args.flush_denormal:
            torch.set_flush_denormal(False)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
