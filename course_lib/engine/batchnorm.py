r"""Batch-norm statistics recomputed for the weights a model has now.

A batch-norm layer normalises with the mean and variance of the current batch while training,
and keeps running averages of them for evaluation:
:math:`\hat\mu \leftarrow (1-m)\hat\mu + m\,\mu_{\text{batch}}` (PyTorch's ``momentum`` :math:`m`,
0.1 by default). Those averages describe the activations of the weights *seen during training*.
When the weights that are evaluated are not the weights that were trained, they are stale:

- a schedule-free optimizer takes gradients at :math:`y` and returns the average :math:`x`
  (``optimizer.eval()``); the statistics were collected at :math:`y`, and at a moving :math:`y`;
- averaged or interpolated weights (SWA, model soups) have the same problem.

:func:`recompute_batch_norm_statistics` resets every batch-norm layer's statistics and passes
training batches through the model (train mode, no gradients) with a *cumulative* average
(``momentum=None``), so that afterwards :math:`\hat\mu` is the mean of the batch means and
:math:`\hat\sigma^2` the mean of the (unbiased) batch variances at the current weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["batch_norm_layers", "recompute_batch_norm_statistics"]


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics, in the model's order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, data, *, batch_size: int = 500,
                                    max_batches: int | None = None) -> int:  # fmt: skip
    """Recompute the running mean and variance of every batch-norm layer of ``model`` at its
    current weights, from ``data`` (anything with ``len()``, ``device`` and ``batch(index)``,
    e.g. :class:`~course_lib.engine.device_data.DeviceData`), taken in order, without augmentation.

    Each layer's statistics are reset and then averaged with equal weight over the batches
    (``momentum=None``; each layer's own momentum is restored afterwards), ``max_batches`` of
    them at most (None: the whole set). The weights are not touched and the model is left in
    the mode (train or eval) it was in. Returns the number of examples used (0 if the model
    has no batch-norm layer with running statistics).
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    used = 0
    try:
        n = len(data)
        for b, start in enumerate(range(0, n, batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            index = torch.arange(start, min(start + batch_size, n), device=data.device)
            x, _ = data.batch(index)
            model(x)
            used += len(index)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used
