"""The command line: ``python -m course_lib.study run|merge|summary|thin --out DIR``.

::

    python -m course_lib.study run --mode fast --out results/study-fast
    python -m course_lib.study run --task shakespeare --mode fast --out results/study-shakespeare-fast
    python -m course_lib.study run --mode full --out results/study-full --phase search --shard 1/4
    python -m course_lib.study merge --out results/study-full
    python -m course_lib.study summary --out results/study-full
    python -m course_lib.study run --mode fast --optimizers Adam,Lion,ScheduleFreeAdamW --out results/modern
    nice -n 19 python -m course_lib.study run --mode reference --out reference/study-cpu
    python -m course_lib.study thin --out reference/study-cpu --every 10

``--shard i/n`` runs every n-th run of the grid, starting at the i-th, so array jobs on a
cluster can share the work; ``merge`` joins the shard files. On Slurm: an array job of n tasks
runs ``run --phase search --shard $((SLURM_ARRAY_TASK_ID+1))/n``, then ``merge``; then the
same for ``--phase final``; then ``summary``. Without ``--mode``, ``summary`` reads the
configuration the study in ``--out`` ran with. ``--task`` picks the test bed: ``cifar10`` (a CNN
on CIFAR-10, the default) or ``shakespeare`` (a small transformer on tiny Shakespeare).
``--optimizers NAME,NAME`` compares exactly those (classic or modern names of
:data:`~course_lib.study.design.OPTIMIZER_SETTINGS`). ``--mode reference`` is the CPU reference
(:func:`~course_lib.study.design.reference_config`; with ``--task shakespeare``,
:func:`~course_lib.study.design.text_reference_config`). A ``run`` stopped by Ctrl-C or ``kill``
(SIGTERM) records its wall time and how far it got in ``provenance.json`` before it exits.
``thin --every N`` keeps every N-th step of each run's per-step loss (for a study committed to a
repository; every reported number comes from the per-epoch entries).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .. import config
from ..files import atomic_write_text
from .design import OPTIMIZER_SETTINGS, TASKS, config_for, select_optimizers
from .protocol import run_study
from ..config import ConfigError
from ..engine.cifar10 import DataError
from .report import check_complete, save_figures, summarize, summary_csv, summary_markdown
from .store import IncompleteStudy, LockHeld, ResultStore, StudyError, dedupe, load_config, merge, thin

__all__ = ["main"]

DESCRIPTION = ("The optimizer study: a fair comparison of SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam and "
               "AdamW on a CNN on CIFAR-10 or a transformer on tiny Shakespeare, resumable and shardable.")  # fmt: skip


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 2/4; got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 1 <= i <= n; got {text!r}")
    return i, n


def _parse_optimizers(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in OPTIMIZER_SETTINGS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"--optimizers takes names from {', '.join(OPTIMIZER_SETTINGS)}, "
                                         f"comma-separated; got {text!r}")  # fmt: skip
    return names


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib.study", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("thin", help="keep every N-th step of each run's per-step loss (smaller results file)")
    t.add_argument("--out", required=True, help="the study's directory")
    t.add_argument("--every", type=int, required=True, metavar="N", help="keep steps 1, 1 + N, 1 + 2N, ...")
    t.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another process is writing the results file, wait this long for it")
    for name, text in [("run", "run or resume the study"), ("merge", "join shard result files"),
                       ("summary", "write summary.md and summary.csv")]:  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--out", required=True, help="directory for results, summary and figures")
        if name == "summary":
            p.add_argument("--mode", choices=("fast", "full", "reference"), default=None,
                           help="default: the configuration the study in --out was run with")
        else:
            p.add_argument("--mode", choices=("fast", "full", "reference"), default=None,
                           help="default: fast when COURSE_FAST=1, else full; reference: the CPU reference")
        p.add_argument("--task", choices=tuple(TASKS), default=None,
                       help="the test bed (default: cifar10; for summary, the one the study in --out ran)")
        if name == "run":
            p.add_argument("--optimizers", type=_parse_optimizers, default=None, metavar="NAME,NAME",
                           help="compare exactly these optimizers (default: the configuration's); names: "
                                + ", ".join(OPTIMIZER_SETTINGS))
            p.add_argument("--phase", choices=("search", "final", "all"), default="all")
            p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="I/N")
            p.add_argument("--no-progress", action="store_true")
            p.add_argument("--force-new", action="store_true",
                           help="--out holds a study of another configuration: move its files into "
                                "--out/previous-<date>-<fingerprint>/ (nothing is deleted) and start afresh")
        if name in ("run", "merge"):
            p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                           help="when another process is writing the same results file, wait this long for it "
                                "(default: refuse at once, naming it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 (after one line ``error: ...`` on stderr, no
    traceback) when the study cannot go on as asked: another process holds its lock, another
    configuration is in ``--out``, a phase or summary lacks runs, an environment variable or
    the data is unusable."""
    args = _parser().parse_args(argv)
    try:
        return _main(args, argv)
    except (StudyError, LockHeld, ConfigError, DataError) as exc:  # DataError: CIFAR-10's and the text's
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.command == "thin":
        try:
            changed, total = thin(args.out, args.every, wait=args.wait)
        except ValueError as exc:  # --every not a multiple of an earlier thinning, or below 1
            raise StudyError(str(exc)) from exc
        print(f"thinned the per-step loss of {changed} of {total} runs to every {args.every}th step "
              f"in {Path(args.out) / 'results.jsonl'}")  # fmt: skip
        return 0
    if args.mode is None and args.command != "summary":
        args.mode = "fast" if config.is_fast() else "full"
    if args.command == "summary" and args.mode is None:
        try:
            cfg = (load_config(args.out) if (Path(args.out) / "study-config.json").exists()
                   else config_for("full", args.task or "cifar10"))  # fmt: skip
        except ValueError as exc:  # a damaged or foreign study-config.json: its message names the file
            raise StudyError(str(exc)) from exc
    else:
        try:
            cfg = config_for(args.mode, args.task or "cifar10")
        except ValueError as exc:  # e.g. --mode reference --task shakespeare
            raise StudyError(str(exc)) from exc
    if args.command == "run":
        if args.optimizers:
            cfg = select_optimizers(cfg, args.optimizers)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # kill: end like Ctrl-C, provenance written
        try:
            _run(cfg, args, argv)
        except KeyboardInterrupt:
            print("interrupted: the finished runs are in the results file; run the same command to resume",
                  file=sys.stderr)  # fmt: skip
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0
    return _summary_or_merge(cfg, args)


def _run(cfg, args: argparse.Namespace, argv: list[str] | None) -> None:
    run_study(cfg, args.out, phase=args.phase, shard_spec=args.shard, progress=False if args.no_progress else None,
              force_new=args.force_new, wait=args.wait,
              command="python -m course_lib.study " + " ".join(argv if argv is not None else sys.argv[1:]))  # fmt: skip


def _summary_or_merge(cfg, args: argparse.Namespace) -> int:
    if args.command == "merge":
        store = merge(args.out, wait=args.wait)
        print(f"merged {len(store.load())} records into {store.path}")
        return 0
    records = ResultStore(Path(args.out) / "results.jsonl").load()
    if not records:
        raise IncompleteStudy(f"no results in {Path(args.out) / 'results.jsonl'}; run the study first")
    records, duplicates = dedupe(records)
    if duplicates:
        print(f"note: {Path(args.out) / 'results.jsonl'} holds {duplicates} duplicate record(s) of the same run "
              f"(task, optimizer, lr, seed, phase); each run is counted once", file=sys.stderr)  # fmt: skip
    check_complete(cfg, records)
    rows = summarize(cfg, records)
    out = Path(args.out)
    atomic_write_text(out / "summary.md", summary_markdown(rows, cfg.target_accuracy) + "\n")
    atomic_write_text(out / "summary.csv", summary_csv(rows))
    figures = save_figures(cfg, records, out)
    print(summary_markdown(rows, cfg.target_accuracy))
    print("wrote " + ", ".join(str(p) for p in [out / "summary.md", out / "summary.csv", *figures]))
    return 0
