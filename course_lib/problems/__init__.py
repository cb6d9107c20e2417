"""Where an optimizer is run without a data set: landscapes, quadratic theory, runners, toy problems.

=================  =========================================================================
``landscapes``     2-D functions with known minima and saddles, their gradient and Hessian
``quadratic``      theory on quadratics: stability limit, optimal step, contraction, step count
``runs``           ``Trajectory``, ``run_optimizer``/``run_optimizers``/``run_many``, the state tracer
``synthetic``      small synthetic problems (sparse features, a linear fit, steady gradients, tiny images)
=================  =========================================================================

Notebooks write ``from course_lib import problems`` and use ``problems.ravine()``,
``problems.run_optimizer(...)``, ``problems.max_stable_lr(...)``.
"""

from . import landscapes, quadratic, runs, synthetic
from .landscapes import (LANDSCAPES, Landscape, beale, coupled_wells, get_landscape, gradient, hessian, local_minima,
                         parabola, plateau, ravine, rosenbrock, rotated_ravine, saddle)
from .quadratic import (gd_contraction, gd_steps_bound, max_stable_lr, momentum_factors, momentum_matrix,
                        momentum_max_stable_lr, momentum_rate, optimal_lr, optimal_momentum, steps_at_rate)
from .runs import (DIVERGENCE_NORM, Trajectory, basin_labels, gradient_norms, run_many, run_optimizer, tune_lr,
                   run_optimizers, trace_optimizer)
from .synthetic import (DecayGrid, LinearFit, SparseRegression, brightest_channel_images, fit_linear,
                        sparse_regression, steady_gradients, weight_decay_grid)

__all__ = [
    "landscapes", "quadratic", "runs", "synthetic",
    "Landscape", "LANDSCAPES", "get_landscape", "gradient", "hessian",
    "ravine", "rotated_ravine", "saddle", "plateau", "local_minima", "coupled_wells", "rosenbrock", "beale", "parabola",
    "max_stable_lr", "optimal_lr", "gd_contraction", "gd_steps_bound", "momentum_matrix", "momentum_factors",
    "momentum_rate", "momentum_max_stable_lr", "optimal_momentum", "steps_at_rate",
    "DIVERGENCE_NORM", "Trajectory", "run_optimizer", "run_optimizers", "run_many", "tune_lr", "basin_labels",
    "gradient_norms", "trace_optimizer",
    "SparseRegression", "sparse_regression", "LinearFit", "fit_linear", "steady_gradients", "DecayGrid", "weight_decay_grid",
    "brightest_channel_images",
]  # fmt: skip
