"""The networks the course trains: CNNs on CIFAR-10 (inputs N x 3 x 32 x 32, 10 classes) and a
small GPT-style transformer on text (inputs N x T token ids, outputs N x T x V logits).

- :func:`softmax_regression` and :func:`mlp`: the small models of the early chapters.
- :func:`small_cnn`: a CNN that trains in seconds on a CPU (fast mode, regularization, schedules).
- :func:`airbench_net`: the airbench-style network for the GPU study: a 2x2 stem convolution,
  then three blocks of (conv, max-pool, batch norm, activation, conv, batch norm, activation),
  a global max-pool and a scaled linear head. Widths are configurable.
- :func:`init_whitening_`: set the airbench stem to a data-dependent whitening of 2x2 patches
  (:func:`patch_whitening` computes the filters).
- :func:`transformer`: a decoder-only, pre-LayerNorm transformer for character-level language
  modelling; :data:`TRANSFORMER_SIZES` names a CPU size and a GPU size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["softmax_regression", "mlp", "small_cnn", "airbench_net", "count_parameters", "patch_whitening",
           "init_whitening_", "transformer", "TRANSFORMER_SIZES", "Transformer"]


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


def patch_whitening(images: Tensor, kernel_size: int = 2, eps: float = 5e-4) -> tuple[Tensor, Tensor]:
    r"""Filters that whiten the ``kernel_size`` x ``kernel_size`` patches of ``images`` (N x C x H x W).

    Every patch, flattened, is a vector :math:`p \in \mathbb{R}^d` with :math:`d = C k^2`. With its
    mean :math:`\mu` and covariance :math:`\Sigma = V \Lambda V^\top` (eigenvalues
    :math:`\lambda_1 \ge \dots \ge \lambda_d`), the filters are the rows of
    :math:`W = (\Lambda + \varepsilon I)^{-1/2} V^\top`, so :math:`W (p - \mu)` has covariance
    :math:`\Lambda (\Lambda + \varepsilon I)^{-1} \approx I`: uncorrelated channels of unit
    variance, the directions of rare pixel patterns (edges, colour contrasts) amplified most.
    ``eps`` keeps the near-zero directions from being amplified without bound.

    Returns ``(weight, mean)``: weight d x C x k x k (row 1 = the direction of largest variance,
    the patch's overall brightness) and the patch mean (d).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    c, k = images.shape[1], kernel_size
    patches = F.unfold(images.double(), k).transpose(1, 2).reshape(-1, c * k * k)  # rows: C x k x k patches
    mean = patches.mean(0)
    cov = torch.cov(patches.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    weight = eigenvectors.T / (eigenvalues.clamp_min(0) + eps).sqrt()[:, None]
    return weight.reshape(-1, c, k, k).to(images.dtype), mean.to(images.dtype)


@torch.no_grad()
def init_whitening_(conv: nn.Conv2d, images: Tensor, eps: float = 5e-4, freeze: bool = True) -> nn.Conv2d:
    r"""Initialise ``conv`` (the airbench stem, :math:`2d` output channels for :math:`d = C k^2`) as a
    patch-whitening layer computed from ``images`` (normalised training images, N x C x H x W).

    Channels :math:`1..d` compute :math:`W (p - \mu)` (:func:`patch_whitening`) and channels
    :math:`d+1..2d` its negative, so that the activation after the stem, which passes mostly the
    positive part, keeps both signs of every direction. With ``freeze`` the filters stay fixed
    (``requires_grad=False``; optimizers skip them) and only the bias trains, as in airbench.
    A network whose first layer sees decorrelated inputs of equal scale starts faster: every
    direction of the input gets the same effective learning rate.
    """
    weight, mean = patch_whitening(images, conv.kernel_size[0], eps)
    d = weight.shape[0]
    if conv.kernel_size[0] != conv.kernel_size[1] or conv.in_channels != images.shape[1] or conv.out_channels != 2 * d:
        raise ValueError(f"a whitening stem for {images.shape[1]}-channel images and {conv.kernel_size} kernels "
                         f"needs {images.shape[1]} input and {2 * d} output channels; this conv has "
                         f"{conv.in_channels} and {conv.out_channels}")  # fmt: skip
    weight = torch.cat([weight, -weight]).to(conv.weight)
    conv.weight.copy_(weight)
    if conv.bias is not None:
        conv.bias.copy_(-(weight.flatten(1) @ mean.to(weight)))
    conv.weight.requires_grad_(not freeze)
    return conv


# --------------------------------------------------------------------------------------------
# a small GPT-style transformer
# --------------------------------------------------------------------------------------------

# named sizes: "fast" trains in seconds on two CPU cores; "full" is a GPU model (about 10.7M
# parameters with a 65-symbol vocabulary, the size of the well-known character-level nanoGPT)
TRANSFORMER_SIZES: dict[str, dict] = {
    "fast": {"layers": 2, "width": 64, "heads": 4, "context": 64},
    "full": {"layers": 6, "width": 384, "heads": 6, "context": 256},
}


class _CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention: :math:`\mathrm{softmax}(QK^\top/\sqrt{d_h} + M)V` per head,
    where the mask :math:`M` hides the future (``scaled_dot_product_attention`` with ``is_causal``)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, t, c))


class _Block(nn.Module):
    r"""Pre-LayerNorm block: :math:`x + \mathrm{Attn}(\mathrm{LN}(x))`, then :math:`x + \mathrm{MLP}(\mathrm{LN}(x))`."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = _CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Decoder-only transformer: token + learned position embeddings, ``layers`` pre-LayerNorm
    blocks, a final LayerNorm and a linear head to ``vocab_size`` logits at every position."""

    def __init__(self, vocab_size: int, context: int, layers: int, width: int, heads: int, dropout: float = 0.0,
                 tie_weights: bool = False):  # fmt: skip
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        if min(vocab_size, context, layers, width, heads) < 1:
            raise ValueError("vocab_size, context, layers, width and heads must be positive")
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[_Block(width, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.apply(self._init_weights)
        if tie_weights:  # the output layer reads with the input embedding's vectors
            self.head.weight = self.token_embedding.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2's initialisation: normal(0, 0.02) weights and embeddings, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"a sequence of {t} tokens is longer than the model's context of {self.context}")
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(t, device=tokens.device))
        return self.head(self.ln_f(self.blocks(self.drop(x))))


def transformer(vocab_size: int = 65, size: str | None = "fast", **overrides) -> Transformer:
    """A :class:`Transformer` of a named size (:data:`TRANSFORMER_SIZES`), with any setting
    (``layers``, ``width``, ``heads``, ``context``, ``dropout``, ``tie_weights``) overridden.

    ``transformer(65, "fast")`` has about 0.1M parameters; ``size=None`` takes every setting
    from ``overrides``.
    """
    if size is not None and size not in TRANSFORMER_SIZES:
        raise ValueError(f"size must be one of {sorted(TRANSFORMER_SIZES)} or None, got {size!r}")
    settings = {**(TRANSFORMER_SIZES[size] if size is not None else {}), **overrides}
    return Transformer(vocab_size, **settings)
