"""course_lib: the shared, tested code behind the optimization-for-deep-learning notebooks.

Modules, one idea each:

- ``config``   environment: fast mode, device, data directory, seeding
- ``ewma``     exponentially weighted averages, bias correction, weights, effective window
- ``optim``    from-scratch SGD, Adagrad, RMSprop, Adam, AdamW (drop-in for ``torch.optim``)
"""

__version__ = "0.1.0"
