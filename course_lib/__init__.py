"""course_lib: the shared, tested code behind the optimization-for-deep-learning notebooks.

Modules, one idea each:

- ``config``          environment: fast mode, device, data directory, seeding, progress bars
- ``ewma``            exponentially weighted averages, bias correction, weights, effective window
- ``optim``           from-scratch SGD, Adagrad, RMSprop, Adam, AdamW (drop-in for ``torch.optim``)
- ``landscapes``      2-D test functions with known minima and saddles; run any optimizer on them
- ``plots``           contours with trajectories, loss curves, seed bands, animations
- ``data``            CIFAR-10: official archive (download, verify, parse), image folders, cache
- ``models``          the networks: softmax regression, MLP, small CNN, airbench-style CNN
- ``train``           device-resident data, the training loop, optimizer comparisons
- ``regularization``  penalties (L1, L2), dropout from scratch, on-device augmentations, gap experiments
- ``schedules``       learning-rate schedules as pure functions of the step, one adapter
- ``distill``         knowledge distillation: loss and teacher/student helpers
- ``parallel``        data parallelism (DDP) and pipeline parallelism on torch.distributed
- ``study``           the CIFAR-10 optimizer study: grid, results store, summary, CLI
- ``synthetic``       small synthetic problems (sparse features)
- ``adaptive``        trace an optimizer's state step by step (for the adaptive-method chapters)
- ``pitfalls``        popular-but-wrong update rules, kept to show what they compute
- ``exercises``       answer checkers and the student-copy tool
- ``slides``, ``site`` slide metadata for presenting; the static HTML course
- ``files``           all-or-nothing file writes (temporary file, then rename)
"""

__version__ = "0.1.0"
