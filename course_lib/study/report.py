"""The study's results as tables and figures: summary rows, curves over seeds, lr sensitivity.

Everything here reads records (as :class:`~course_lib.study.store.ResultStore` loads them) of
one configuration, selected by its fingerprint; nothing trains.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from .. import plots
from ..engine.paired import PairedDifference, paired_difference
from .design import StudyConfig
from .protocol import chosen_learning_rates
from .store import IncompleteStudy, dedupe

__all__ = ["final_records", "summarize", "per_seed", "paired", "curves", "lr_sensitivity", "save_figures",
           "summary_markdown", "summary_csv", "check_complete"]  # fmt: skip


def final_records(cfg: StudyConfig, records: list[dict]) -> dict[str, list[dict]]:
    """Per optimizer, the runs of its chosen setting (seed 0's search run and the final seeds),
    each run once even when ``records`` holds duplicates (:func:`~course_lib.study.store.dedupe`)."""
    records, _ = dedupe(records)
    chosen = chosen_learning_rates(cfg, records)
    out = {}
    for name in cfg.optimizers:
        out[name] = sorted(
            (r for r in records if r["fingerprint"] == cfg.fingerprint() and r["optimizer"] == name
             and r["lr"] == chosen[name] and (r["phase"] == "final" or r["seed"] == 0)),
            key=lambda r: r["seed"],
        )  # fmt: skip
    return out


def summarize(cfg: StudyConfig, records: list[dict]) -> list[dict]:
    """One row per optimizer: chosen lr, test accuracy mean and std over seeds, time to target.

    Time to target: the mean over the runs that reached the target validation accuracy, in
    optimizer steps (``steps_to_target``: reproducible; the step of the first history row at or
    above the target) and in seconds (``time_to_target_s``: depends on the machine and its load).

    ``lr_at_edge`` is "smallest" or "largest" when the chosen rate is at that end of its grid
    (the best rate may then lie outside the grid: widen it), else "".
    """
    rows = []
    for name, runs in final_records(cfg, records).items():
        grid = cfg.lr_grids[name]
        lr = runs[0]["lr"] if runs else float("nan")
        edge = "" if len(grid) < 2 else "smallest" if lr == min(grid) else "largest" if lr == max(grid) else ""
        acc = np.array([r["test_acc"] for r in runs], dtype=float)
        ok = acc[~np.isnan(acc)]
        times = [r["time_to_target"] for r in runs if r["time_to_target"] is not None]
        steps = [r["steps_to_target"] for r in runs if r.get("steps_to_target") is not None]
        rows.append({
            "optimizer": name, "lr": lr, "lr_at_edge": edge, "seeds": len(runs),
            "test_acc_mean": float(ok.mean()) if ok.size else float("nan"),
            "test_acc_std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
            "diverged": int(np.isnan(acc).sum()),
            "reached_target": f"{len(times)}/{len(runs)}",
            "time_to_target_s": float(np.mean(times)) if times else float("nan"),
            "steps_to_target": float(np.mean(steps)) if steps else float("nan"),
        })  # fmt: skip
    return rows


def per_seed(cfg: StudyConfig, records: list[dict], key: str = "test_acc") -> dict[str, dict[int, float]]:
    """Per optimizer, seed -> the value of ``key`` (``"test_acc"``, ``"test_loss"``,
    ``"final_val_acc"``, ...) in the run of its chosen setting with that seed (NaN if it diverged)."""
    return {name: {r["seed"]: float("nan") if r[key] is None else float(r[key]) for r in runs}
            for name, runs in final_records(cfg, records).items()}  # fmt: skip


def paired(cfg: StudyConfig, records: list[dict], a: str, b: str, key: str = "test_acc",
           scale: float = 1.0) -> PairedDifference:  # fmt: skip
    """``a`` - ``b`` in ``key`` (times ``scale``, e.g. ``1 / ln 2`` for a loss in bits), paired by
    seed (within a seed both started from the same weights and saw the same batches), over the
    seeds both have: mean, per-seed values and standard error
    (:func:`course_lib.engine.paired.paired_difference`)."""
    values = per_seed(cfg, records, key)
    seeds = sorted(set(values[a]) & set(values[b]))
    return paired_difference([scale * values[a][s] for s in seeds], [scale * values[b][s] for s in seeds])


def curves(cfg: StudyConfig, records: list[dict], metric: str = "val_acc") -> dict[str, np.ndarray]:
    """Per optimizer, a seeds x rows array of a metric of its chosen setting's history (one row
    per epoch, or per validation point of a run budgeted in steps: ``cfg.history_axis()``).

    A diverged run is padded with NaN after its last finished row.
    """
    out = {}
    points = len(cfg.history_axis()[0])
    for name, runs in final_records(cfg, records).items():
        rows = np.full((len(runs), points), np.nan)
        for i, r in enumerate(runs):
            values = [e[metric] for e in r["history"]["epochs"]]
            rows[i, : len(values)] = values
        out[name] = rows
    return out


def lr_sensitivity(cfg: StudyConfig, records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Per optimizer, (learning rates, final validation accuracy) of the search runs (each once)."""
    records, _ = dedupe(records)
    out = {}
    for name in cfg.optimizers:
        runs = sorted((r for r in records if r["phase"] == "search" and r["optimizer"] == name
                       and r["fingerprint"] == cfg.fingerprint()), key=lambda r: r["lr"])  # fmt: skip
        out[name] = ([r["lr"] for r in runs], [r["final_val_acc"] for r in runs])
    return out


def save_figures(cfg: StudyConfig, records: list[dict], out: str | os.PathLike) -> list[Path]:
    """Write curves.png (train loss and val accuracy with seed bands) and lr_sensitivity.png."""
    import matplotlib.pyplot as plt

    out = Path(out)
    x, unit = cfg.history_axis()
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    plots.plot_curves_with_band(x, curves(cfg, records, "train_loss"), ax=axes[0], xlabel=unit,
                                ylabel="training loss")  # fmt: skip
    plots.plot_curves_with_band(x, curves(cfg, records, "val_acc"), ax=axes[1], xlabel=unit,
                                ylabel="validation accuracy")  # fmt: skip
    paths = [out / "curves.png", out / "lr_sensitivity.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    plt.close(fig)
    ax = plots.plot_lr_sensitivity(lr_sensitivity(cfg, records), chosen=chosen_learning_rates(cfg, records))
    ax.figure.savefig(paths[1], bbox_inches="tight")
    plt.close(ax.figure)
    return paths


def summary_markdown(rows: list[dict], target: float) -> str:
    """The :func:`summarize` rows as a Markdown table (``target``: the validation accuracy timed)."""
    lines = [f"| optimizer | lr | test accuracy (mean ± std) | seeds | diverged | steps to {target:.0%} val acc | "
             "seconds to it |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lr = f"{r['lr']:g}" + (f" ({r['lr_at_edge']} in grid)" if r.get("lr_at_edge") else "")
        steps = r.get("steps_to_target", float("nan"))
        lines.append(f"| {r['optimizer']} | {lr} | {r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} | "
                     f"{r['seeds']} | {r['diverged']} | {steps:.0f} ({r['reached_target']} runs) | "
                     f"{r['time_to_target_s']:.1f} |")  # fmt: skip
    if any(r.get("lr_at_edge") for r in rows):
        lines.append("\nA rate at the end of its grid may not be the best one: the best may lie outside the grid.")
    return "\n".join(lines)


def summary_csv(rows: list[dict]) -> str:
    """The :func:`summarize` rows as CSV text, with a header line."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def check_complete(cfg: StudyConfig, records: list[dict]) -> None:
    """Raise :class:`~course_lib.study.store.IncompleteStudy` (one line: what is missing and
    what to run) unless ``records`` hold the whole search and every final seed of ``cfg``."""
    chosen = chosen_learning_rates(cfg, records)  # raises for an incomplete search
    missing = [f"{name} {len(runs)} of {cfg.final_seeds} seeds" for name, runs in final_records(cfg, records).items()
               if len({r["seed"] for r in runs}) < cfg.final_seeds]  # fmt: skip
    if missing:
        raise IncompleteStudy(f"the final phase is incomplete ({', '.join(missing)}; learning rates chosen: "
                              + ", ".join(f"{k} {v:g}" for k, v in chosen.items())
                              + "); run --phase final (or merge its shard files) first")
