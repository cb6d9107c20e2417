"""The subject itself: averages, update rules, optimizers, schedules, and their parity with torch.

=================  =========================================================================
``ewma``           exponentially weighted averages, bias correction, weights, effective window
``rules``          the update rules: small functions in the chapters' symbols
``optimizers``     one thin ``torch.optim.Optimizer`` shell and the torch-compatible classes
``schedules``      learning-rate schedules as pure functions of the step, and one adapter
``pitfalls``       popular-but-wrong update rules, run as written
``parity``         how far each optimizer and schedule is from torch's, as a table
``divergence``     when a run has diverged: one rule for the loop and the landscape runner
=================  =========================================================================

Notebooks write ``from course_lib import optim`` and use ``optim.SGD``, ``optim.sgd_rule``,
``optim.max_difference``, ``optim.ewma.ewma_step``, ``optim.schedules.cosine_annealing``.
"""

from . import divergence, ewma, parity, pitfalls, rules, schedules
from .divergence import DIVERGENCE_FACTOR, first_divergent_step, is_diverged
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, RuleOptimizer, ema_equivalent_lr
from .parity import max_difference, max_schedule_difference, optimizer_parity, schedule_parity
from .rules import adagrad_rule, adam_rule, rmsprop_rule, sgd_rule

__all__ = [
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RuleOptimizer", "ema_equivalent_lr",
    "sgd_rule", "adagrad_rule", "rmsprop_rule", "adam_rule",
    "max_difference", "max_schedule_difference", "optimizer_parity", "schedule_parity",
    "DIVERGENCE_FACTOR", "first_divergent_step", "is_diverged",
    "ewma", "rules", "schedules", "pitfalls", "parity", "divergence",
]  # fmt: skip
