"""course_lib: the shared, tested code behind the optimization-for-deep-learning notebooks.

Layers, each importing only from itself and the layers to its left (``tests/test_layers.py``
fails on any import against this order)::

    config, files  ->  optim  ->  problems  ->  plots  ->  engine  ->  techniques  ->  study  ->  teaching

================  ===========================================================================
``config``        environment in one place: fast mode, device, data dir, progress, seeding
``files``         all-or-nothing writes (temporary file, then rename), notebooks included
``optim``         the subject: EWMA, update rules, torch-compatible optimizers, schedules,
                  popular-but-wrong rules, parity tables against torch
``problems``      optimizers without a data set: 2-D landscapes, quadratic theory, runners,
                  the state tracer, synthetic problems
``plots``         the course style; landscapes with trajectories; curves with bands
``engine``        training on real data: CIFAR-10, models, device data, augmentation, the loop,
                  fair comparisons (same initial weights, same batches)
``techniques``    regularization, dropout, distillation, parallel training
``study``         the CIFAR-10 optimizer study: design, results store, protocol, report, CLI
``teaching``      showing code, answer checkers, student copies, slides, the static site
================  ===========================================================================

Each subpackage's docstring lists its modules, one idea per file.
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "files"),
    ("optim",),
    ("problems",),
    ("plots",),
    ("engine",),
    ("techniques",),
    ("study",),
    ("teaching",),
)
"""The layer order, left to right: a module may import from its own layer and the ones before it."""
