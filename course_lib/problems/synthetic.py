r"""Synthetic problems with a known answer: the data where the truth is needed to judge a method.

Sparse-feature linear regression (:func:`sparse_regression`)
------------------------------------------------------------
:math:`n` samples of :math:`d = d_c + d_r` features and a target

.. math::  y_i = x_i^\top w^* + \sigma\,\varepsilon_i, \qquad \varepsilon_i \sim \mathcal N(0, 1),

with two kinds of features:

- **common** (:math:`d_c` of them): :math:`x_{ij} \sim \mathcal N(0, c^2)`, present in every
  sample (:math:`c` = ``common_scale``);
- **rare** (:math:`d_r` of them): :math:`x_{ij} = b_{ij}` with :math:`b_{ij} \sim
  \text{Bernoulli}(p)`, an indicator that is 1 in a fraction :math:`p` of the samples and 0
  elsewhere (think of a rare word in a bag-of-words model).

Every true weight is drawn as :math:`w^*_j \sim \mathcal N(0, 1)`: a rare feature is as
informative as a common one when it is present. The Hessian of the squared loss,
:math:`\tfrac1n X^\top X`, has diagonal entries of about :math:`c^2` on the common coordinates
and about :math:`p` on the rare ones, so one learning rate cannot suit both: a rate small enough
for the common coordinates moves the rare ones about :math:`c^2/p` times slower.

Fitting (:func:`fit_linear`)
----------------------------
:func:`fit_linear` minimises :math:`L(w) = \frac{1}{2n} \sum_i (x_i^\top w - y_i)^2` from
:math:`w = 0` with mini-batch gradients and any ``torch.optim``-style optimizer class, recording
after every step the full-data loss and the root-mean-square errors of the common and of the
rare weights against :math:`w^*`.

Steady gradients (:func:`steady_gradients`)
-------------------------------------------
A stream :math:`g_t = s \odot z_t`, :math:`z_t \sim \mathcal N(0, I)`: gradients whose size does
not shrink over time, like mini-batch gradients at the bottom of a noisy loss. Fed to Adagrad,
:math:`G_t = \sum_{k \le t} g_k^2 \approx t\, s^2`, so the effective learning rate
:math:`\eta / (\sqrt{G_t} + \epsilon)` falls like :math:`\eta / (s \sqrt t)`.

Weight decay over a learning-rate grid (:func:`weight_decay_grid`)
------------------------------------------------------------------
An over-parameterised regression (:math:`d` features > :math:`n` samples) with noisy labels,
features of decreasing scale (:math:`x_{ij} \sim \mathcal N(0, s_j^2)`, :math:`s_j` from 1 down
to 0.1) and a **random start** :math:`w_0 \sim \mathcal N(0, I)`, as a network's initial weights
are random. Without decay the fit keeps much of the start and fits the label noise, so weight
decay has an interior optimum on held-out data. :func:`weight_decay_grid` trains one weight
vector per (learning rate, :math:`\lambda`, seed) for a fixed number of mini-batch steps and
returns their validation losses: a small version of Loshchilov & Hutter's (2019) figure 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

DIVERGENCE_FACTOR = 1e6
""":func:`fit_linear` marks a run diverged once its loss exceeds this multiple of the starting loss."""

__all__ = ["DIVERGENCE_FACTOR", "SparseRegression", "sparse_regression", "LinearFit", "fit_linear", "steady_gradients",
           "brightest_channel_images", "DecayGrid", "weight_decay_grid"]


@dataclass(frozen=True)
class SparseRegression:
    """A sparse-feature regression problem (see the module docstring for the model).

    ``X`` (n x d) and ``y`` (n) are float64 tensors; columns ``0 .. n_common-1`` are the common
    features, the rest the rare ones (``rare`` is the boolean mask of the rare columns).
    ``w_true`` is :math:`w^*`; ``w_best`` is the least-squares solution on this sample, the best
    any optimizer can reach (it differs from ``w_true`` by the noise). ``frequency[j]`` is the
    fraction of samples in which feature ``j`` is non-zero.
    """

    X: Tensor
    y: Tensor
    w_true: Tensor
    w_best: Tensor
    rare: Tensor
    noise_std: float

    @property
    def frequency(self) -> Tensor:
        """Fraction of the samples in which each feature is non-zero (1 for the common ones)."""
        return (self.X != 0).double().mean(dim=0)

    def loss(self, w: Tensor) -> float:
        r"""The full-data loss :math:`\frac{1}{2n}\lVert X w - y\rVert^2`."""
        return 0.5 * torch.mean((self.X @ w - self.y) ** 2).item()

    def weight_errors(self, w: Tensor) -> tuple[float, float]:
        """Root-mean-square error of ``w`` against ``w_true``: (common weights, rare weights)."""
        err = (w - self.w_true) ** 2
        return err[~self.rare].mean().sqrt().item(), err[self.rare].mean().sqrt().item()


def sparse_regression(
    n_samples: int = 2000,
    n_common: int = 10,
    n_rare: int = 40,
    rare_prob: float = 0.01,
    common_scale: float = 1.0,
    noise_std: float = 0.1,
    seed: int = 0,
) -> SparseRegression:
    r"""Draw a :class:`SparseRegression`: common features :math:`\mathcal N(0, c^2)` with
    :math:`c` = ``common_scale``, rare ones Bernoulli(``rare_prob``) indicators,
    :math:`w^* \sim \mathcal N(0, I)`, :math:`y = X w^* + \sigma \varepsilon` with
    :math:`\sigma` = ``noise_std``; ``w_best`` by least squares (``torch.linalg.lstsq``).

    Every rare feature is made non-zero in at least one sample (if a draw leaves it all zero,
    one random sample gets it), so that every weight is determined by the data.
    """
    if n_samples < 1 or n_common < 0 or n_rare < 0 or n_common + n_rare < 1:
        raise ValueError("need at least one sample and one feature")
    if not 0.0 < rare_prob <= 1.0:
        raise ValueError(f"rare_prob must be in (0, 1], got {rare_prob}")
    if common_scale <= 0:
        raise ValueError(f"common_scale must be positive, got {common_scale}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}")
    gen = torch.Generator().manual_seed(seed)
    common = common_scale * torch.randn(n_samples, n_common, generator=gen, dtype=torch.float64)
    rare = (torch.rand(n_samples, n_rare, generator=gen, dtype=torch.float64) < rare_prob).double()
    for j in torch.nonzero(rare.sum(dim=0) == 0).flatten().tolist():
        rare[torch.randint(n_samples, (1,), generator=gen), j] = 1.0
    X = torch.cat([common, rare], dim=1)
    w_true = torch.randn(n_common + n_rare, generator=gen, dtype=torch.float64)
    y = X @ w_true + noise_std * torch.randn(n_samples, generator=gen, dtype=torch.float64)
    w_best = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    mask = torch.zeros(n_common + n_rare, dtype=torch.bool)
    mask[n_common:] = True
    return SparseRegression(X=X, y=y, w_true=w_true, w_best=w_best, rare=mask, noise_std=noise_std)


@dataclass
class LinearFit:
    """What :func:`fit_linear` recorded; arrays hold ``steps + 1`` values (the start included),
    fewer when the run diverged and stopped early. ``state`` is the optimizer's final state
    for the weight vector (e.g. Adagrad's ``"sum"`` :math:`G`), as a dict of copies."""

    weights: np.ndarray
    loss: np.ndarray
    common_error: np.ndarray
    rare_error: np.ndarray
    state: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    diverged: bool = False

    @property
    def losses(self) -> np.ndarray:
        """The loss curve (same as ``loss``; the name :func:`course_lib.plots.plot_losses` reads)."""
        return self.loss


def fit_linear(
    problem: SparseRegression,
    optimizer_cls: type,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    label: str = "",
    **optimizer_kwargs: Any,
) -> LinearFit:
    r"""Fit :math:`w` (from 0) by ``steps`` mini-batch steps of ``optimizer_cls([w], **optimizer_kwargs)``.

    Each step takes the next ``batch_size`` samples of a random order (reshuffled, with a
    ``torch.Generator`` seeded by ``seed``, whenever it runs out), and uses the gradient of
    :math:`\frac{1}{2B} \sum_{i \in \text{batch}} (x_i^\top w - y_i)^2` computed by autograd.
    After every step the full-data loss and the RMS errors of the common and rare weights
    (against ``problem.w_true``) are recorded. A loss that is not finite or exceeds
    :data:`DIVERGENCE_FACTOR` times the starting loss stops the run (``diverged``).
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    X, y = problem.X, problem.y
    n = len(y)
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.zeros(X.shape[1], dtype=torch.float64))
    optimizer = optimizer_cls([w], **optimizer_kwargs)
    order, used = torch.randperm(n, generator=gen), 0

    def record(into: dict[str, list[float]]) -> None:
        with torch.no_grad():
            into["loss"].append(problem.loss(w))
            common, rare = problem.weight_errors(w)
        into["common"].append(common)
        into["rare"].append(rare)

    history: dict[str, list[float]] = {"loss": [], "common": [], "rare": []}
    record(history)
    diverged = False
    for _ in range(steps):
        if used + batch_size > n:
            order, used = torch.randperm(n, generator=gen), 0
        index = order[used : used + batch_size]
        used += batch_size
        optimizer.zero_grad()
        batch_loss = 0.5 * torch.mean((X[index] @ w - y[index]) ** 2)
        batch_loss.backward()
        optimizer.step()
        record(history)
        if not history["loss"][-1] <= DIVERGENCE_FACTOR * history["loss"][0]:  # also catches NaN
            diverged = True
            break
    return LinearFit(
        weights=w.detach().numpy().copy(),
        loss=np.array(history["loss"]),
        common_error=np.array(history["common"]),
        rare_error=np.array(history["rare"]),
        state={k: v.clone() if isinstance(v, Tensor) else v for k, v in optimizer.state[w].items()},
        label=label,
        diverged=diverged,
    )


def steady_gradients(steps: int, scales, seed: int = 0) -> Tensor:
    r"""A ``steps`` x ``len(scales)`` float64 tensor of gradients :math:`g_t = s \odot z_t`,
    :math:`z_t \sim \mathcal N(0, I)` (seeded): zero mean, per-coordinate size ``scales``, no
    decay over time."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    s = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, len(s), generator=gen, dtype=torch.float64) * s


def brightest_channel_images(n: int = 256, seed: int = 0, classes: int = 3,
                             size: int = 32) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Tiny image-classification data that trains in seconds: the label is the brightest channel.

    ``n`` RGB images of ``size`` x ``size`` (uint8, N x H x W x 3, like ``load_cifar10``) with
    uniform noise in [0, 100); channel ``label`` (one of ``classes`` <= 3) gets +120 everywhere.
    """
    if not 1 <= classes <= 3:
        raise ValueError(f"classes must be 1, 2 or 3 (one per colour channel), got {classes}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 100, (n, size, size, 3)).astype(np.uint8)
    images[np.arange(n), :, :, labels] += 120
    return images, labels


@dataclass(frozen=True)
class DecayGrid:
    r"""Validation losses of :func:`weight_decay_grid`: ``val_loss[i, j, k]`` for learning rate
    ``lrs[i]``, weight decay ``weight_decays[j]`` and seed ``seeds[k]`` (NaN for a run whose
    loss stopped being finite). Every (lr, λ) pair of one seed saw the same data, start and
    batches, so differences between cells of one seed are *paired*."""

    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int
    val_loss: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean validation loss over seeds, ``len(lrs)`` x ``len(weight_decays)``."""
        return self.val_loss.mean(axis=2)

    def _best_index(self) -> np.ndarray:
        """For each learning rate, the index of the lowest mean loss (a diverged cell never wins)."""
        return np.where(np.isfinite(self.mean), self.mean, np.inf).argmin(axis=1)

    def best_decay(self) -> np.ndarray:
        """For each learning rate, the weight decay with the lowest mean validation loss."""
        return np.asarray(self.weight_decays)[self._best_index()]

    def near_best(self, n_se: float = 2.0) -> np.ndarray:
        r"""Boolean ``len(lrs)`` x ``len(weight_decays)``: cells whose loss is within ``n_se``
        standard errors of the best cell *of the same learning rate*, the standard error being
        that of the paired difference over seeds, :math:`\mathrm{sd}_k(L_{ijk} - L_{ij^*k})/\sqrt{K}`
        (the best cell itself is always in the set)."""
        if len(self.seeds) < 2:
            raise ValueError("near_best needs at least two seeds to estimate the noise")
        out = np.zeros(self.mean.shape, dtype=bool)
        for i, j_best in enumerate(self._best_index()):
            diff = self.val_loss[i] - self.val_loss[i, j_best][None, :]
            se = diff.std(axis=1, ddof=1) / np.sqrt(len(self.seeds))
            out[i] = np.isfinite(diff).all(axis=1) & (diff.mean(axis=1) <= n_se * se)
            out[i, j_best] = True
        return out


def weight_decay_grid(
    optimizer_cls: type,
    lrs,
    weight_decays,
    *,
    steps: int,
    seeds=(0, 1, 2),
    n_samples: int = 60,
    n_features: int = 120,
    noise_std: float = 0.5,
    batch_size: int = 10,
    n_val: int = 2000,
    **optimizer_kwargs: Any,
) -> DecayGrid:
    r"""Train ``optimizer_cls`` at every (learning rate, weight decay) pair on the over-parameterised
    regression of the module docstring (one problem per seed) and return the validation losses.

    For seed :math:`k`: features :math:`x \sim \mathcal N(0, \mathrm{diag}(s)^2)` with
    :math:`s` log-spaced from 1 to 0.1, a teacher :math:`w^* \sim \mathcal N(0, I)\cdot 3/\lVert s\rVert`
    (so :math:`\mathrm{Var}(x^\top w^*) \approx 9`), :math:`y = x^\top w^* + \sigma\varepsilon`,
    ``n_samples`` training and ``n_val`` validation samples, and a start :math:`w_0 \sim \mathcal N(0, I)`.
    Each run minimises :math:`\frac{1}{2B}\sum_{i \in \text{batch}} (x_i^\top w - y_i)^2` for
    ``steps`` steps on batches drawn with replacement from a seeded generator; the validation
    loss is :math:`\frac{1}{2 n_{val}} \sum (x^\top w - y)^2` at the end. All runs go through
    one optimizer object, one parameter group per (lr, λ) holding a ``len(seeds)`` x ``d``
    tensor (the rule is elementwise, so seeds cannot interact).
    """
    lrs, weight_decays, seeds = tuple(map(float, lrs)), tuple(map(float, weight_decays)), tuple(map(int, seeds))
    if steps < 1 or batch_size < 1 or n_samples < 1 or n_features < 1 or n_val < 1:
        raise ValueError("steps, batch_size, n_samples, n_features and n_val must be >= 1")
    if not lrs or not weight_decays or not seeds:
        raise ValueError("need at least one learning rate, one weight decay and one seed")
    scales = torch.logspace(0, -1, n_features, dtype=torch.float64)
    X, y, Xv, yv, starts = [], [], [], [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        X.append(torch.randn(n_samples, n_features, generator=gen, dtype=torch.float64) * scales)
        Xv.append(torch.randn(n_val, n_features, generator=gen, dtype=torch.float64) * scales)
        w_true = torch.randn(n_features, generator=gen, dtype=torch.float64) * 3 / scales.norm()
        y.append(X[-1] @ w_true + noise_std * torch.randn(n_samples, generator=gen, dtype=torch.float64))
        yv.append(Xv[-1] @ w_true + noise_std * torch.randn(n_val, generator=gen, dtype=torch.float64))
        starts.append(torch.randn(n_features, generator=gen, dtype=torch.float64))
    X, y, Xv, yv, start = map(torch.stack, (X, y, Xv, yv, starts))  # seeds first
    pairs = [(lr, wd) for lr in lrs for wd in weight_decays]
    params = [torch.nn.Parameter(start.clone()) for _ in pairs]
    optimizer = optimizer_cls([dict(params=[p], lr=lr, weight_decay=wd, **optimizer_kwargs)
                               for p, (lr, wd) in zip(params, pairs)])
    batches = torch.Generator().manual_seed(10_000 + seeds[0])
    rows = torch.arange(len(seeds))[:, None]
    for _ in range(steps):
        index = torch.randint(0, n_samples, (len(seeds), batch_size), generator=batches)
        residual = torch.einsum("sbd,csd->csb", X[rows, index], torch.stack(params)) - y[rows, index]
        optimizer.zero_grad()
        (0.5 * (residual ** 2).mean(dim=2).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        residual = torch.einsum("snd,csd->csn", Xv, torch.stack(params)) - yv
        val = (0.5 * (residual ** 2).mean(dim=2)).numpy()
    val = np.where(np.isfinite(val), val, np.nan).reshape(len(lrs), len(weight_decays), len(seeds))
    return DecayGrid(lrs=lrs, weight_decays=weight_decays, seeds=seeds, steps=steps, val_loss=val)
