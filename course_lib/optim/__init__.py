"""The subject itself: averages, update rules, optimizers, schedules, and their parity with torch.

=================  =========================================================================
``ewma``           exponentially weighted averages, bias correction, weights, effective window
``rules``          the update rules: small functions in the chapters' symbols
``optimizers``     one thin ``torch.optim.Optimizer`` shell and the torch-compatible classes
``schedules``      learning-rate schedules as pure functions of the step, and one adapter
``pitfalls``       popular-but-wrong update rules, run as written
``parity``         how far each optimizer and schedule is from torch's, as a table
``divergence``     when a run has diverged: one rule for the loop and the landscape runner
``modern_rules``   the modern methods' rules: Lion, Adafactor, Newton–Schulz and Muon, schedule-free,
                   NAdam, RAdam
``modern``         their torch-style classes, the Muon/AdamW parameter split, optimizer-state bytes
=================  =========================================================================

Notebooks write ``from course_lib import optim`` and use ``optim.SGD``, ``optim.sgd_rule``,
``optim.max_difference``, ``optim.ewma.ewma_step``, ``optim.schedules.cosine_annealing``.
"""

from . import divergence, ewma, modern, modern_rules, parity, pitfalls, rules, schedules
from .divergence import DIVERGENCE_FACTOR, first_divergent_step, is_diverged
from .modern import (Adafactor, Lion, Muon, MuonWithAdamW, NAdam, RAdam, ScheduleFreeAdamW, ScheduleFreeSGD,
                     muon_param_groups, muon_split, state_bytes, state_bytes_per_parameter)
from .modern_rules import (adafactor_rule, lion_rule, muon_rule, nadam_rule, newton_schulz, newton_schulz_polynomial,
                           radam_rule, schedule_free_adamw_rule, schedule_free_sgd_rule)
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, RuleOptimizer, ema_equivalent_lr
from .parity import max_difference, max_schedule_difference, optimizer_parity, schedule_parity
from .rules import adagrad_rule, adam_rule, rmsprop_rule, sgd_rule

__all__ = [
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RuleOptimizer", "ema_equivalent_lr",
    "sgd_rule", "adagrad_rule", "rmsprop_rule", "adam_rule",
    "max_difference", "max_schedule_difference", "optimizer_parity", "schedule_parity",
    "DIVERGENCE_FACTOR", "first_divergent_step", "is_diverged",
    "ewma", "rules", "schedules", "pitfalls", "parity", "divergence",
    "Lion", "Adafactor", "Muon", "MuonWithAdamW", "NAdam", "RAdam", "ScheduleFreeAdamW", "ScheduleFreeSGD",
    "muon_param_groups", "muon_split", "state_bytes", "state_bytes_per_parameter",
    "lion_rule", "adafactor_rule", "newton_schulz", "newton_schulz_polynomial", "muon_rule", "nadam_rule",
    "radam_rule", "schedule_free_adamw_rule", "schedule_free_sgd_rule", "modern", "modern_rules",
]  # fmt: skip
