"""Tokens per second of course_lib's training loop against a minimal plain-PyTorch loop, on the
character-level transformer and tiny Shakespeare, side by side in one process.

    python benchmarks/text_loop.py                       # the fast-mode model on this machine
    python benchmarks/text_loop.py --size full --steps 200 --batch-size 64 --context 256   # on a GPU

Both loops train the same model (the same initial weights, built from one seed), on the same
windows in the same order (one permutation of the window starts, drawn from a generator with
the same seed), with the same optimizer class and settings (course_lib's Adam); the plain loop
is the six lines of a step and nothing else, while ``engine.train`` adds what the course needs
(progress bar, per-step loss record, accuracy count, divergence check at the end). The two give
the same losses step for step, which the script checks, so the ratio compares equal work.

The two loops alternate (course_lib, plain, plain, course_lib, ...), so a change in the
machine's load during the benchmark hits both alike; an untimed warm-up run of each comes first.
On a shared machine wall time swings with other jobs; the CPU time of the process, also
printed, is steadier.
The course's target: a ratio (course_lib / plain tokens per second, medians) of at least 0.95.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.nn import functional as F

from course_lib import config, engine, optim
from course_lib.engine import models
from course_lib.engine.text import TextData, load_shakespeare, text_on_device


def load(context: int, device) -> tuple[TextData, int]:
    """The training split of tiny Shakespeare on the device, and the vocabulary size."""
    corpus = load_shakespeare()
    return text_on_device(corpus, context, device=device)["train"], corpus.vocab_size


def plain_loop(model, optimizer, data: TextData, steps: int, batch_size: int, seed: int) -> list[float]:
    """The minimal loop: index a batch, forward, loss, zero_grad, backward, step."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).to(data.device)
    losses = []
    for i in range(steps):
        x, y = data.batch(order[i * batch_size : (i + 1) * batch_size])
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, -2), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).tolist()


def course_loop(model, optimizer, data: TextData, steps: int, batch_size: int, seed: int) -> list[float]:
    return engine.train(model, optimizer, data, steps=steps, batch_size=batch_size, seed=seed, progress=False).step_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(models.TRANSFORMER_SIZES), default="fast")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per timed run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each loop")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)
    if min(args.context, args.batch_size, args.steps, args.runs) < 1:
        parser.error("--context, --batch-size, --steps and --runs must be at least 1")
    device = config.device()
    data, vocab_size = load(args.context, device)
    with config.seeded(0):
        initial = models.transformer(vocab_size, args.size, context=args.context).state_dict()

    def run(loop) -> tuple[float, float, list[float]]:
        model = models.transformer(vocab_size, args.size, context=args.context).to(device)
        model.load_state_dict(initial)
        opt = optim.Adam(model.parameters(), lr=args.lr)
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        losses = loop(model, opt, data, args.steps, args.batch_size, 0)
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu_start, losses

    loops = {"course_lib": course_loop, "plain": plain_loop}
    tokens = args.steps * args.batch_size * args.context
    reference = {name: run(loop)[2] for name, loop in loops.items()}  # warm-up, untimed
    same = reference["course_lib"] == reference["plain"]
    print(f"{platform.node()}: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"model {args.size} (context {args.context}), batch {args.batch_size}, {args.steps} steps "
          f"= {tokens:,} tokens per run, Adam lr {args.lr}")  # fmt: skip
    print(f"same losses step for step in both loops: {'yes' if same else 'NO'}")
    rows = []
    for r in range(args.runs):
        order = ["course_lib", "plain"] if r % 2 == 0 else ["plain", "course_lib"]
        for name in order:
            seconds, cpu, _ = run(loops[name])
            rows.append({"run": r, "loop": name, "seconds": seconds, "cpu_s": cpu, "tokens_per_s": tokens / seconds})
            print(f"  run {r}  {name:10s}  {seconds:7.3f} s wall  {cpu:7.3f} s CPU  {tokens / seconds:10,.0f} tokens/s")
    medians = {name: statistics.median(row["tokens_per_s"] for row in rows if row["loop"] == name) for name in loops}
    cpu = {name: statistics.median(row["cpu_s"] for row in rows if row["loop"] == name) for name in loops}
    ratio = medians["course_lib"] / medians["plain"]
    print(f"median tokens/s: course_lib {medians['course_lib']:,.0f}, plain {medians['plain']:,.0f}; "
          f"ratio {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'not met'})")  # fmt: skip
    print(f"median CPU seconds per run: course_lib {cpu['course_lib']:.3f}, plain {cpu['plain']:.3f}; "
          f"ratio of CPU work plain / course_lib {cpu['plain'] / cpu['course_lib']:.3f} (less sensitive to the "
          f"machine's load than wall time)")  # fmt: skip
    if not same:
        raise SystemExit("the two loops did not compute the same losses: the comparison is not like with like")
    return rows


if __name__ == "__main__":
    main()
