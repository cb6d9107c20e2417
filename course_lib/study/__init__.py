"""The optimizer study: a fair comparison of SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam and
AdamW on two test beds (a CNN on CIFAR-10, a small transformer on tiny Shakespeare), resumable
and shardable.

=============  ============================================================================
``design``     what a study is: ``StudyConfig`` (optimizers' fixed settings included, all in
               its fingerprint), the optimizer registry, lr grids, fast/full configs, the runs
``store``      what it leaves on disk: results (JSON lines, atomic), merge, its configuration,
               provenance, which data variant
``protocol``   running it: one run (``train_one``), the lr choice on validation, the whole
               study (``run_study``, resumable and shardable), runs outside the grid
``report``     tables and figures: summary rows, Markdown/CSV, curves over seeds, lr sensitivity
``cli``        ``python -m course_lib.study run|merge|summary --out DIR``
=============  ============================================================================

The modules import left to right. **Protocol** (:mod:`~course_lib.study.protocol` states it in
full): for every optimizer, each learning rate of its log grid is trained once (seed 0); the
validation split, carved from the training set, picks the rate, and a rate at an end of its
grid extends the grid; the chosen rate is re-run on fresh seeds and reported on the test set as
mean ± standard error, with paired differences and verdicts (:func:`~course_lib.study.report.best_of`).
Within a seed every optimizer starts from the same initial weights and sees the same batches
(:mod:`course_lib.engine.compare`). Results go to ``<out>/results.jsonl``, one record per
finished run; running the study again skips the runs already there.

Notebook 11 writes ``from course_lib import study`` and uses ``study.fast_config()``,
``study.load_data(cfg)``, ``study.run_study(cfg, out, data=data)``, ``study.summarize``,
``study.summary_markdown``, ``study.curves``, ``study.run_extra``.
"""

from . import cli, design, protocol, report, store
from .cli import main
from .design import (CLASSIC_OPTIMIZERS, COMPARED_OPTIMIZERS, LR_GRIDS, PROTOCOL, SEARCH_SEED, is_schedule_free,
                     reference_config, text_reference_config, select_optimizers, final_seeds, OPTIMIZER_CLASSES, OPTIMIZER_SETTINGS, TASKS, TEXT_LR_GRIDS, RunSpec,
                     StudyConfig, config_for, fast_config, final_runs, full_config, optimizer_for, search_runs, shard,
                     text_fast_config, text_full_config, with_optimizers)
from .protocol import (LrSearch, chosen_learning_rates, decoupled_weight_decay, load_data, lr_search, run_extra,
                       run_study, search_plan, search_table, study_status, total_steps, train_one,
                       validation_se, mean_se)
from .report import (best_of, check_complete, claim_verdict, comparison_line, curves, describe_study, diverged_seeds, final_records, lr_sensitivity, paired, per_seed, save_figures, summarize,
                     summary_csv, summary_markdown)
from .store import (ConfigMismatch, IncompleteStudy, LockHeld, ResultStore, StudyError, check_config, data_variant,
                    dedupe, load_config, merge, move_aside, provenance, record_provenance, thin, thin_step_loss,
                    write_config)

__all__ = [
    "design", "store", "protocol", "report", "cli",
    "OPTIMIZER_CLASSES", "OPTIMIZER_SETTINGS", "LR_GRIDS", "TEXT_LR_GRIDS", "TASKS", "StudyConfig", "fast_config",
    "full_config", "text_fast_config", "text_full_config",
    "config_for", "optimizer_for", "RunSpec", "search_runs", "final_runs", "shard", "CLASSIC_OPTIMIZERS",
    "with_optimizers", "select_optimizers", "COMPARED_OPTIMIZERS", "PROTOCOL", "SEARCH_SEED", "is_schedule_free",
    "reference_config", "text_reference_config", "final_seeds",
    "LrSearch", "lr_search", "search_plan", "search_table", "study_status", "total_steps", "decoupled_weight_decay", "validation_se", "mean_se",
    "best_of", "claim_verdict", "comparison_line", "describe_study", "diverged_seeds",
    "ResultStore", "merge", "thin", "thin_step_loss", "write_config", "load_config", "provenance", "record_provenance", "data_variant",
    "StudyError", "ConfigMismatch", "IncompleteStudy", "LockHeld", "dedupe", "check_config", "move_aside",
    "check_complete",
    "train_one", "chosen_learning_rates", "load_data", "run_study", "run_extra",
    "final_records", "summarize", "per_seed", "paired", "curves", "lr_sensitivity", "save_figures", "summary_markdown", "summary_csv",
    "main",
]  # fmt: skip
