"""Techniques built on the engine: regularization, dropout, distillation, parallel training.

==========================  ================================================================
``regularization``          L2/L1 penalties, weight decay on weights only, gap experiments
``dropout``                 inverted dropout from scratch, keep vs drop probability, an MLP
``distillation``            soft targets, the distillation loss, teacher and student training
``distillation_analysis``   dark knowledge, paired accuracy gains, inference cost, figures
``parallel``                data parallelism (DDP) and pipeline parallelism on torch.distributed
==========================  ================================================================

Notebooks write ``from course_lib.techniques import regularization, dropout`` (``parallel`` is
imported on its own, since it loads ``torch.distributed``).
"""

from . import distillation, distillation_analysis, dropout, regularization

__all__ = ["regularization", "dropout", "distillation", "distillation_analysis"]
