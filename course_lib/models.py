"""The networks the course trains on CIFAR-10 (inputs N x 3 x 32 x 32, 10 classes).

- :func:`softmax_regression` and :func:`mlp`: the small models of the early chapters.
- :func:`small_cnn`: a CNN that trains in seconds on a CPU (fast mode, regularization, schedules).
- :func:`airbench_net`: the airbench-style network for the GPU study: a 2x2 stem convolution,
  then three blocks of (conv, max-pool, batch norm, activation, conv, batch norm, activation),
  a global max-pool and a scaled linear head. Widths are configurable.
"""

from __future__ import annotations

from torch import nn

__all__ = ["softmax_regression", "mlp", "small_cnn", "airbench_net", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def softmax_regression(in_features: int = 3 * 32 * 32, classes: int = 10) -> nn.Module:
    """Logits :math:`W x + b` of the flattened image: a convex problem."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))


def mlp(hidden: int = 256, in_features: int = 3 * 32 * 32, classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """One hidden ReLU layer (optionally followed by dropout with drop probability ``dropout``)."""
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def _activation(name: str) -> nn.Module:
    choices = {"relu": nn.ReLU, "gelu": nn.GELU}
    if name not in choices:
        raise ValueError(f"activation must be one of {sorted(choices)}, got {name!r}")
    return choices[name]()


def small_cnn(widths: tuple[int, int, int] = (16, 32, 64), classes: int = 10, dropout: float = 0.0,
              batchnorm: bool = True, activation: str = "relu") -> nn.Module:  # fmt: skip
    """Three conv blocks (conv 3x3, [batch norm], activation, max-pool 2), then a linear head.

    With the default widths it has about 25k parameters and trains on a CPU in seconds per epoch
    on a few thousand images.
    """
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in widths:
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers += [_activation(activation), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c_in, classes))
    return nn.Sequential(*layers)


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, activation: str, bn_momentum: float):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding="same", bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            _activation(activation),
            nn.Conv2d(c_out, c_out, 3, padding="same", bias=False),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            _activation(activation),
        )


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def airbench_net(widths: tuple[int, int, int] = (64, 256, 256), stem_width: int = 24, classes: int = 10,
                 activation: str = "gelu", bn_momentum: float = 0.4, head_scale: float = 1 / 9) -> nn.Module:  # fmt: skip
    """An airbench-style CIFAR-10 network (Jordan, 2024): fast to train on a GPU.

    2x2 stem conv (no padding, 32 -> 31), three conv blocks that halve the resolution
    (31 -> 15 -> 7 -> 3), global max-pool, linear head scaled by ``head_scale``. About 1.97M
    parameters with the default widths.
    """
    return nn.Sequential(
        nn.Conv2d(3, stem_width, 2, padding=0, bias=True),
        _activation(activation),
        _ConvBlock(stem_width, widths[0], activation, bn_momentum),
        _ConvBlock(widths[0], widths[1], activation, bn_momentum),
        _ConvBlock(widths[1], widths[2], activation, bn_momentum),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[2], classes, bias=False),
        _Scale(head_scale),
    )
