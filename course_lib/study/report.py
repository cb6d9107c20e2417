"""The study's results as tables and figures: summary rows, curves over seeds, lr sensitivity.

Everything here reads records (as :class:`~course_lib.study.store.ResultStore` loads them) of
one configuration, selected by its fingerprint; nothing trains.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from .. import plots
from ..engine.paired import PairedDifference, corrected_k, paired_difference
from .design import StudyConfig
from .protocol import chosen_learning_rates, lr_search
from .store import IncompleteStudy, dedupe

__all__ = ["final_records", "summarize", "per_seed", "paired", "claim_verdict", "best_of", "curves", "lr_sensitivity", "save_figures",
           "summary_markdown", "summary_csv", "check_complete", "describe_study"]  # fmt: skip


def final_records(cfg: StudyConfig, records: list[dict]) -> dict[str, list[dict]]:
    """Per optimizer, the final runs of its chosen setting (fresh seeds: the search run is not
    one of them), each run once even when ``records`` holds duplicates
    (:func:`~course_lib.study.store.dedupe`)."""
    records, _ = dedupe(records)
    chosen = chosen_learning_rates(cfg, records)
    out = {}
    for name in cfg.optimizers:
        out[name] = sorted(
            (r for r in records if r["fingerprint"] == cfg.fingerprint() and r["optimizer"] == name
             and r["lr"] == chosen[name] and r["phase"] == "final"),
            key=lambda r: r["seed"],
        )  # fmt: skip
    return out


def summarize(cfg: StudyConfig, records: list[dict]) -> list[dict]:
    """One row per optimizer: chosen lr, test accuracy mean, standard error and std over the
    final (fresh) seeds, time to target.

    Time to target: the mean over the runs that reached the target validation accuracy, in
    optimizer steps (``steps_to_target``: reproducible; the step of the first history row at or
    above the target) and in seconds (``time_to_target_s``: depends on the machine and its load).

    ``lr_at_edge`` is "smallest" or "largest" when the chosen rate is still at that end of its
    grid after the grid extension (:func:`~course_lib.study.protocol.lr_search`), else "";
    ``lr_added`` how many rates the extension added to the grid.
    """
    rows = []
    for name, runs in final_records(cfg, records).items():
        search = lr_search(cfg, name, records)
        lr = search.chosen if search.chosen is not None else float("nan")
        acc = np.array([r["test_acc"] for r in runs], dtype=float)
        ok = acc[~np.isnan(acc)]
        times = [r["time_to_target"] for r in runs if r["time_to_target"] is not None]
        steps = [r["steps_to_target"] for r in runs if r.get("steps_to_target") is not None]
        std = float(ok.std(ddof=1)) if ok.size > 1 else float("nan")
        rows.append({
            "optimizer": name, "lr": lr, "lr_at_edge": search.at_bound,
            "lr_added": len(search.added[0]) + len(search.added[1]), "seeds": len(runs),
            "test_acc_mean": float(ok.mean()) if ok.size else float("nan"),
            "test_acc_se": std / np.sqrt(ok.size) if ok.size > 1 else float("nan"),
            "test_acc_std": std,
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
    seeds both have and on which neither diverged (a diverged run has no accuracy to pair; count
    those seeds with :func:`diverged_seeds`): mean, per-seed values and standard error
    (:func:`course_lib.engine.paired.paired_difference`)."""
    values = per_seed(cfg, records, key)
    seeds = sorted(s for s in set(values[a]) & set(values[b])
                   if math.isfinite(values[a][s]) and math.isfinite(values[b][s]))  # fmt: skip
    return paired_difference([scale * values[a][s] for s in seeds], [scale * values[b][s] for s in seeds])


def diverged_seeds(cfg: StudyConfig, records: list[dict], key: str = "test_acc") -> dict[str, list[int]]:
    """Per optimizer, the final seeds whose run has no finite ``key`` (it diverged)."""
    return _diverged(per_seed(cfg, records, key))


def _diverged(values: dict[str, dict[int, float]]) -> dict[str, list[int]]:
    return {name: sorted(s for s, v in seeds.items() if not math.isfinite(v)) for name, seeds in values.items()}


def claim_verdict(difference: PairedDifference, k: float = 2.0) -> str:
    """The verdict on a claim that ``difference`` (claimed > 0) is positive: "supported" beyond
    ``k`` standard errors above 0, "contradicted" beyond ``k`` below, else "inconclusive"."""
    return difference.verdict(better="supported", worse="contradicted", neither="inconclusive", k=k)


def best_of(cfg: StudyConfig, records: list[dict], key: str = "test_acc", lower_is_better: bool = False,
            scale: float = 1.0, names=None) -> dict:  # fmt: skip
    """The best of several optimizers by the mean of ``key`` over the final seeds, compared with
    each of the others by its paired difference (:func:`paired`, best minus other, sign turned
    so that > 0 favours the best).

    **Correction for picking the best.** The best is chosen *because* it is ahead, so each of
    its :math:`m = n - 1` comparisons is held to the Bonferroni multiplier
    :func:`~course_lib.engine.paired.corrected_k` ``(m)`` instead of 2: it is "ahead" of another
    only when the difference exceeds that many standard errors; otherwise that pair is
    "inconclusive". The best is "resolved" only when it is ahead of every other.

    A seed on which either run diverged is left out of that pair's difference; each row names
    the diverged seeds of both (``"diverged"``: optimizer -> seeds), so that a method that
    sometimes diverges is not mistaken for one that merely scores lower.

    Returns ``{"best", "k", "rows": [{"other", "difference", "verdict", "diverged"}], "resolved"}``.
    """
    names = list(names or cfg.optimizers)
    values = per_seed(cfg, records, key)
    means = {n: np.nanmean(list(values[n].values())) if values[n] else float("nan") for n in names}
    ranked = sorted((n for n in names if np.isfinite(means[n])), key=lambda n: means[n], reverse=not lower_is_better)
    best = ranked[0]
    k = corrected_k(max(1, len(names) - 1))
    sign = -1.0 if lower_is_better else 1.0
    rows = []
    failed = _diverged(values)
    for other in names:
        if other == best:
            continue
        d = paired(cfg, records, best, other, key, scale=sign * scale)
        rows.append({"other": other, "difference": d, "verdict": d.verdict(better="ahead", worse="behind",
                                                                            neither="inconclusive", k=k),
                     "diverged": {n: failed[n] for n in (best, other) if failed[n]}})  # fmt: skip
    return {"best": best, "k": k, "rows": rows, "resolved": all(r["verdict"] == "ahead" for r in rows)}


def comparison_line(best: str, row: dict) -> str:
    """One row of :func:`best_of` as a line of text: ``Adam - SGD  +0.143 ± 0.006 -> ahead``
    (difference ± two standard errors), then the seeds left out because a run diverged."""
    line = f"{best} - {row['other']:9s} {row['difference']:+.3f} -> {row['verdict']}"
    failed = [f"{name} diverged on seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
              for name, seeds in row.get("diverged", {}).items()]  # fmt: skip
    return line + (f" ({'; '.join(failed)}: left out)" if failed else "")


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
    """The :func:`summarize` rows as a Markdown table (``target``: the validation accuracy timed):
    test accuracy as mean ± standard error over the final seeds that finished (std in its own
    column; a row with diverged seeds says over how many, and a line under the table names the
    failures), time to target in steps first (reproducible), seconds second."""
    lines = [f"| optimizer | lr | test accuracy (mean ± s.e.) | std | seeds | diverged | steps to {target:.0%} val acc | "
             "seconds to it |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lr = f"{r['lr']:g}" + (f" ({r['lr_at_edge']} in grid)" if r.get("lr_at_edge") else "")
        steps = r.get("steps_to_target", float("nan"))
        se = r.get("test_acc_se", float("nan"))
        over = f" (mean of the {r['seeds'] - r['diverged']} finished)" if r["diverged"] else ""
        lines.append(f"| {r['optimizer']} | {lr} | {r['test_acc_mean']:.3f} ± {se:.3f}{over} | {r['test_acc_std']:.3f} | "
                     f"{r['seeds']} | {r['diverged']} | {steps:.0f} ({r['reached_target']} runs) | "
                     f"{r['time_to_target_s']:.1f} |")  # fmt: skip
    failed = [r for r in rows if r["diverged"]]
    if failed:
        lines.append("\nA mean over the finished seeds leaves the failures out: "
                     + "; ".join(f"{r['optimizer']} diverged on {r['diverged']} of its {r['seeds']} seeds at its chosen rate"
                                 for r in failed)
                     + ". Count that against it as well as its accuracy.")  # fmt: skip
    if any(r.get("lr_at_edge") for r in rows):
        lines.append("\nA rate still at the end of its grid after the grid's extension may not be the best one: "
                     "the best may lie beyond it.")
    return "\n".join(lines)


def summary_csv(rows: list[dict]) -> str:
    """The :func:`summarize` rows as CSV text, with a header line."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def describe_study(out: str | os.PathLike) -> tuple[str, StudyConfig | None, list[dict]]:
    """What the study in ``out`` holds, as Markdown, for a notebook that shows a stored study
    (e.g. ``reference/study-cpu``) beside its own: provenance (date, machine, cores, device,
    torch, data variant, exact command, wall time), how far it got ("complete: n of n runs" or
    "partial: k of n runs"), then the summary table when every optimizer has two or more final
    seeds, else the search so far (validation accuracy ± standard error, no test numbers).
    Returns (text, its configuration, its records); (a line saying it is absent, None, []) when
    ``out`` holds no study."""
    import json

    from .protocol import search_table, study_status
    from .store import ResultStore, load_config

    out = Path(out)
    if not (out / "study-config.json").exists() or not (out / "results.jsonl").exists():
        return f"No study is stored in `{out}` (absent).", None, []
    cfg = load_config(out)
    records, _ = dedupe(ResultStore(out / "results.jsonl").load())
    lines = []
    if (out / "provenance.json").exists():
        for e in json.loads((out / "provenance.json").read_text()):
            wall = f", wall time {e['wall_s'] / 3600:.2f} h" if e.get("wall_s") is not None else ""
            lines.append(f"- {e.get('date')}: {e.get('machine', '?')}, {e.get('cores', '?')} cores, {e.get('device')}, "
                         f"torch {e.get('torch')}, {e.get('data')}{wall}; `{e.get('command')}`"
                         + (f" ({e['status']['label']})" if e.get("status") else ""))  # fmt: skip
    status = study_status(cfg, records)
    lines.append(f"\n**Status: {status['label']}** (configuration {cfg.mode}, fingerprint {cfg.fingerprint()}).\n")
    try:
        finals = final_records(cfg, records)
    except IncompleteStudy:
        finals = None
    if finals is not None and all(len(runs) >= 2 for runs in finals.values()):
        lines.append(summary_markdown(summarize(cfg, records), cfg.target_accuracy))
    else:
        lines.append("The search so far (validation accuracy ± its standard error; the search has no test numbers):\n")
        lines.append("| optimizer | lr | val acc ± s.e. | chosen |\n|---|---:|---:|---|")
        for r in search_table(cfg, records):
            if r["done"]:
                lines.append(f"| {r['optimizer']} | {r['lr']:g} | {r['val_acc']:.3f} ± {r['val_acc_se']:.3f} | "
                             f"{'yes' if r['chosen'] else ''} |")  # fmt: skip
    return "\n".join(lines), cfg, records


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
