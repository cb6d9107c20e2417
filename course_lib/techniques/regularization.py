r"""Regularization: L2 and L1 penalties, weight decay on weights only, and the train/validation gap.

Penalties (a function of a model, to add to the loss; ``engine.train(..., penalty=...)``)
------------------------------------------------------------------------------------------
The course's convention, with :math:`\lambda` the ``weight_decay`` of the optimizers:

.. math::
    R_{L2}(\theta) = \frac{\lambda}{2}\sum_i \theta_i^2, \quad \nabla R_{L2} = \lambda\theta;
    \qquad
    R_{L1}(\theta) = \lambda\sum_i |\theta_i|, \quad \partial R_{L1} \ni \lambda\,\mathrm{sign}(\theta).

The gradient :math:`\lambda\theta` of :func:`l2_penalty` is exactly what
``optim.SGD(weight_decay=λ)`` adds to :math:`g` (and what ``Adam(weight_decay=λ)`` adds, the
"coupled" L2), so adding ``l2_penalty(model, λ)`` to the loss takes the same steps as the
optimizer's ``weight_decay=λ`` (:func:`l2_vs_weight_decay` measures it). ``AdamW`` is different:
it shrinks :math:`\theta \leftarrow \theta - \eta\lambda\theta` outside the adaptive scaling.
A penalty written *without* the 1/2, :math:`\lambda\sum\theta^2` (Keras' ``l2(λ)``), has
gradient :math:`2\lambda\theta`: it equals ``weight_decay=2λ``.

By default biases and normalisation parameters (every parameter with fewer than 2 dimensions)
are left out, the common practice; ``include_bias_and_norm=True`` penalises every parameter,
as the optimizers' ``weight_decay`` does unless given :func:`parameter_groups`.

Dropout (:mod:`course_lib.techniques.dropout`) is the other regularizer the experiments compare.

Augmentation
------------
The augmentations themselves are computed on the device by :mod:`course_lib.engine.augment`
(the training loop applies them); :func:`show_augmentations` draws what they do.

Experiments
-----------
:func:`compare_regularizers` trains one model per :class:`Setting` through
:func:`course_lib.engine.compare.compare_variants` (same initial weights, same batches) and
measures each run's final train/validation gap; :func:`compare_over_seeds` repeats that for
several seeds (each seed: other initial weights, batches, augmentations and dropout masks) and
:func:`differences` turns the runs into paired differences against a baseline
(:mod:`course_lib.engine.paired`: standard errors over seeds and over validation images).

Weight decay with batch norm
----------------------------
A weight tensor followed by batch norm is *scale-invariant*: the network's output does not
change when it is multiplied by :math:`c > 0`, so its gradient is orthogonal to it and scales
as :math:`1/c`. A step of size :math:`\eta` then turns it by about :math:`\eta\|g\|/\|w\|`
for a gradient :math:`g \propto 1/\|w\|`: the *effective* learning rate is
:math:`\eta/\|w\|^2`. Without weight decay :math:`\|w\|` only grows (for plain SGD exactly
:math:`\|w_{t+1}\|^2 = \|w_t\|^2 + \eta^2\|g_t\|^2`), so the effective rate falls by itself;
weight decay holds :math:`\|w\|` down and the effective rate up. :func:`trace_weight_norm`
records it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..engine.compare import Variant, compare_variants
from ..engine.device_data import DeviceData
from ..engine.loop import History, evaluate
from ..engine.paired import PairedDifference, correct_per_example, paired_difference

__all__ = [
    # penalties
    "penalised_parameters", "parameter_groups", "squared_norm", "abs_norm", "l2_penalty",
    "l1_penalty", "penalty", "l2_vs_weight_decay", "fraction_near_zero",
    # experiments
    "Setting", "RunResult", "compare_regularizers", "compare_over_seeds", "mean_of", "differences",
    "accuracy_difference", "gap_table", "change_table", "plot_gaps", "plot_changes", "best_epoch",
    "plot_weight_histograms", "show_augmentations", "one_per_class",
    # decoupled weight decay's timescale; weight decay with batch norm
    "decay_timescale", "weight_decay_for_timescale", "trace_weight_norm",
]  # fmt: skip

# --------------------------------------------------------------------------------------------
# Penalties
# --------------------------------------------------------------------------------------------


def penalised_parameters(model: nn.Module | Iterable[Tensor], include_bias_and_norm: bool = False) -> list[Tensor]:
    """The parameters a penalty acts on: all trainable ones with >= 2 dimensions (weight
    matrices and convolution kernels), plus the 1-D ones (biases, norm scales and shifts) when
    ``include_bias_and_norm``. ``model`` may also be an iterable of tensors (all of them count)."""
    if isinstance(model, nn.Module):
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = list(model)
    return [p for p in params if include_bias_and_norm or p.ndim >= 2]


def parameter_groups(model: nn.Module, weight_decay: float, include_bias_and_norm: bool = False) -> list[dict]:
    """Optimizer parameter groups applying ``weight_decay`` only where :func:`l2_penalty` would:
    ``AdamW(parameter_groups(model, 0.05), lr=1e-3)``. The other parameters get weight decay 0."""
    decayed = penalised_parameters(model, include_bias_and_norm)
    ids = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups


def squared_norm(model: nn.Module | Iterable[Tensor], include_bias_and_norm: bool = False) -> Tensor:
    """:math:`\\sum_i \\theta_i^2` over :func:`penalised_parameters` (differentiable)."""
    params = penalised_parameters(model, include_bias_and_norm)
    if not params:
        return torch.zeros(())
    return sum(p.pow(2).sum() for p in params)


def abs_norm(model: nn.Module | Iterable[Tensor], include_bias_and_norm: bool = False) -> Tensor:
    """:math:`\\sum_i |\\theta_i|` over :func:`penalised_parameters` (differentiable a.e.)."""
    params = penalised_parameters(model, include_bias_and_norm)
    if not params:
        return torch.zeros(())
    return sum(p.abs().sum() for p in params)


def l2_penalty(model: nn.Module | Iterable[Tensor], weight_decay: float, include_bias_and_norm: bool = False) -> Tensor:
    """:math:`\\frac{\\lambda}{2}\\sum_i\\theta_i^2` with :math:`\\lambda` = ``weight_decay``.

    Its gradient is :math:`\\lambda\\theta`: the same as ``SGD(weight_decay=λ)`` adds to the
    gradient (see the module docstring for the conventions).
    """
    _check_strength(weight_decay)
    return 0.5 * weight_decay * squared_norm(model, include_bias_and_norm)


def l1_penalty(model: nn.Module | Iterable[Tensor], strength: float, include_bias_and_norm: bool = False) -> Tensor:
    """:math:`\\lambda\\sum_i|\\theta_i|` with :math:`\\lambda` = ``strength``; its (sub)gradient
    is :math:`\\lambda\\,\\mathrm{sign}(\\theta)` (autograd takes 0 at exactly 0). No optimizer
    flag adds this; it goes into the loss."""
    _check_strength(strength)
    return strength * abs_norm(model, include_bias_and_norm)


def _check_strength(value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"a penalty strength must be non-negative, got {value}")


class _Penalty:
    """A penalty bound to its strength: ``penalty(model)`` for ``engine.train(penalty=...)``."""

    def __init__(self, kind: str, strength: float, include_bias_and_norm: bool):
        if kind not in ("l1", "l2"):
            raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
        _check_strength(strength)
        self.kind, self.strength, self.include_bias_and_norm = kind, strength, include_bias_and_norm

    def __call__(self, model: nn.Module) -> Tensor:
        fn = l2_penalty if self.kind == "l2" else l1_penalty
        return fn(model, self.strength, self.include_bias_and_norm)

    def __repr__(self) -> str:
        return f"penalty({self.kind!r}, {self.strength:g}, include_bias_and_norm={self.include_bias_and_norm})"


def penalty(kind: str, strength: float, include_bias_and_norm: bool = False) -> Callable[[nn.Module], Tensor]:
    """``penalty("l2", 1e-4)``: a callable ``model -> tensor`` computing :func:`l2_penalty`
    (or :func:`l1_penalty` for ``"l1"``) with that strength, for ``engine.train(penalty=...)``."""
    return _Penalty(kind, strength, include_bias_and_norm)


def l2_vs_weight_decay(optimizer_cls: type, steps: int = 20, seed: int = 0, *, without_half: bool = False,
                       **optimizer_kwargs) -> float:  # fmt: skip
    """Largest parameter difference between two runs of ``optimizer_cls`` on the same small
    least-squares problem (float64): one with ``weight_decay=λ`` given to the optimizer, one with
    :func:`l2_penalty` (:math:`\\frac{\\lambda}{2}\\|\\theta\\|^2`, all parameters) added to the
    loss and ``weight_decay=0``. About 1e-16 where the two are the same method (SGD, Adam's
    coupled L2); far from 0 for AdamW. ``without_half=True`` adds :math:`\\lambda\\|\\theta\\|^2`
    instead (the convention without the 1/2), which is ``weight_decay=2λ``, not λ.
    """
    lam = optimizer_kwargs.pop("weight_decay")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    start = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)]
    finals = []
    for in_optimizer in (True, False):
        params = [nn.Parameter(p.clone()) for p in start]
        opt = optimizer_cls(params, weight_decay=lam if in_optimizer else 0.0, **optimizer_kwargs)
        for _ in range(steps):
            loss = ((x @ params[0] + params[1] - y) ** 2).mean()
            if not in_optimizer:
                reg = l2_penalty(params, lam, include_bias_and_norm=True)
                loss = loss + (2 * reg if without_half else reg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        finals.append(params)
    return max((a - b).abs().max().item() for a, b in zip(*finals))


@torch.no_grad()
def fraction_near_zero(model: nn.Module | Iterable[Tensor], threshold: float,
                       include_bias_and_norm: bool = False) -> float:  # fmt: skip
    """Fraction of the :func:`penalised_parameters` with :math:`|\\theta_i| \\le` ``threshold``
    (``threshold=0`` counts exact zeros)."""
    params = penalised_parameters(model, include_bias_and_norm)
    total = sum(p.numel() for p in params)
    if total == 0:
        raise ValueError("the model has no parameters to count")
    return sum((p.abs() <= threshold).sum().item() for p in params) / total


# --------------------------------------------------------------------------------------------
# Experiments: the train/validation gap under several regularizers
# --------------------------------------------------------------------------------------------


@dataclass
class Setting:
    """One regularization setting for :func:`compare_regularizers`.

    ``optimizer`` is a class (``optim.SGD``, ``optim.AdamW``, ...) built with
    ``optimizer_kwargs``; a ``weight_decay`` among them is applied through
    :func:`parameter_groups` (weights only, unless ``decay_bias_and_norm``). ``model_kwargs``
    go to the model function (e.g. ``{"p": 0.5}`` for dropout); ``penalty`` and ``augment`` go
    to the training loop.
    """

    optimizer: type
    optimizer_kwargs: dict
    model_kwargs: dict = field(default_factory=dict)
    penalty: Callable[[nn.Module], Tensor] | None = None
    augment: Callable[..., Tensor] | None = None
    decay_bias_and_norm: bool = False

    def variant(self) -> Variant:
        """This setting as a :class:`~course_lib.engine.compare.Variant` of a comparison."""
        kwargs = dict(self.optimizer_kwargs)
        groups = functools.partial(parameter_groups, weight_decay=kwargs.pop("weight_decay", 0.0),
                                   include_bias_and_norm=self.decay_bias_and_norm)  # fmt: skip
        return Variant(self.optimizer, kwargs, penalty=self.penalty, augment=self.augment,
                       model_kwargs=self.model_kwargs, parameters=groups)  # fmt: skip


@dataclass
class RunResult:
    """What :func:`compare_regularizers` keeps of one run. Accuracies are measured at the end,
    in eval mode (no dropout) and without augmentation, on the whole train and val sets."""

    history: History
    model: nn.Module
    train_acc: float
    val_acc: float
    val_correct: np.ndarray | None = None  # per validation image: right or not (compare_over_seeds)
    test_acc: float | None = None
    test_correct: np.ndarray | None = None

    @property
    def gap(self) -> float:
        """Train accuracy minus validation accuracy (the over-fitting gap)."""
        return self.train_acc - self.val_acc


def compare_regularizers(model_fn: Callable[..., nn.Module], settings: Mapping[str, Setting], train_data,
                         val_data, *, epochs: int, batch_size: int, seed: int = 0, track_val: bool = True,
                         progress: bool | None = None) -> dict[str, RunResult]:  # fmt: skip
    """Train one model per setting (label -> :class:`Setting`) and measure its final gap.

    :func:`~course_lib.engine.compare.compare_variants`: every model starts from the initial
    weights of ``model_fn()`` built with ``seed``, loaded into ``model_fn(**model_kwargs)`` (so
    the settings' architectures must have the same parameters, e.g. :func:`dropout_mlp` with
    different ``p``); every run sees the same batch order and augmentation (``seed``) and draws
    its dropout masks from a generator seeded with ``seed``. ``track_val=False`` skips the
    validation pass after every epoch (the history then has no validation curve; the final
    accuracies are measured all the same), which saves time in sweeps.
    """
    runs = compare_variants(model_fn, {label: s.variant() for label, s in settings.items()}, train_data,
                            epochs=epochs, batch_size=batch_size, val_data=val_data if track_val else None, seed=seed,
                            progress=progress)  # fmt: skip
    results = {}
    for label, run in runs.items():
        _, train_acc = evaluate(run.model, train_data)
        _, val_acc = evaluate(run.model, val_data)
        results[label] = RunResult(run.history, run.model, train_acc, val_acc)
    return results


def compare_over_seeds(model_fn: Callable[..., nn.Module], settings: Mapping[str, Setting], train_data,
                       val_data, *, seeds: Iterable[int], epochs: int, batch_size: int, test_data=None,
                       track_val: bool = False, progress: bool | None = None) -> dict[str, list[RunResult]]:  # fmt: skip
    """:func:`compare_regularizers` once per seed: label -> one :class:`RunResult` per seed.

    Within a seed every setting starts from the same weights and sees the same batches (so the
    settings are paired by seed); each result also keeps which validation images it got right
    (``val_correct``) and, given ``test_data``, its test accuracy. Never choose a setting by its
    test accuracy: choose on validation, then report the chosen one's test accuracy.
    ``track_val=True`` records the validation accuracy after every epoch (for early stopping).
    """
    out: dict[str, list[RunResult]] = {label: [] for label in settings}
    for seed in seeds:
        for label, r in compare_regularizers(model_fn, settings, train_data, val_data, epochs=epochs,
                                             batch_size=batch_size, seed=seed, track_val=track_val,
                                             progress=progress).items():  # fmt: skip
            r.val_correct = correct_per_example(r.model, val_data)
            if test_data is not None:
                r.test_correct = correct_per_example(r.model, test_data)
                r.test_acc = float(r.test_correct.mean())
            out[label].append(r)
    return out


def mean_of(runs: RunResult | Sequence[RunResult], name: str) -> float:
    """The mean of ``name`` (``"train_acc"``, ``"val_acc"``, ``"gap"``, ``"test_acc"``) over a
    setting's runs (one per seed), or its value for a single run."""
    runs = [runs] if isinstance(runs, RunResult) else list(runs)
    return float(np.mean([getattr(r, name) for r in runs]))


def differences(results: Mapping[str, Sequence[RunResult]], baseline: str, split: str = "val"
                ) -> dict[str, PairedDifference]:  # fmt: skip
    """Each setting's accuracy on ``split`` (``"val"`` or ``"test"``) minus the baseline's,
    paired by seed and by image (:func:`course_lib.engine.paired.paired_difference`)."""
    key = f"{split}_correct"
    base = np.stack([getattr(r, key) for r in results[baseline]])
    return {label: paired_difference(np.stack([getattr(r, key) for r in runs]), base)
            for label, runs in results.items() if label != baseline}  # fmt: skip


def best_epoch(histories: Sequence[History]) -> tuple[int, np.ndarray]:
    """Early stopping chosen on validation: the epoch (1-based) with the highest validation
    accuracy averaged over the runs (one per seed), and that mean curve."""
    curves = np.array([h.column("val_acc") for h in histories])
    mean = curves.mean(axis=0)
    return int(np.argmax(mean)) + 1, mean


@torch.no_grad()
def accuracy_difference(model_a: nn.Module, model_b: nn.Module, data: DeviceData,
                        batch_size: int = 1000) -> tuple[float, float]:  # fmt: skip
    r"""Accuracy of ``model_a`` minus that of ``model_b`` on ``data``, and its standard error.

    Paired over the same images: with :math:`d_i = [a \text{ right on } i] - [b \text{ right on } i]`
    (each -1, 0 or 1), the difference is :math:`\bar d` and its standard error
    :math:`s_d/\sqrt{n}`. It measures how much the difference could change with another
    draw of ``n`` validation images; it does not include run-to-run training noise (the seed).
    """
    correct = []
    for model in (model_a, model_b):
        was_training = model.training
        model.eval()
        hits = []
        for start in range(0, len(data), batch_size):
            x, y = data.batch(torch.arange(start, min(start + batch_size, len(data)), device=data.device))
            hits.append((model(x).argmax(1) == y).double().cpu())
        model.train(was_training)
        correct.append(torch.cat(hits))
    d = correct[0] - correct[1]
    n = len(d)
    se = d.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return d.mean().item(), se


def _rounded(results: Mapping, label: str) -> tuple[float, float, float]:
    """Train and validation accuracy in % rounded to 0.1 (means over seeds for a list of runs),
    and the gap computed from the rounded numbers, so that the printed gap is their difference."""
    train = round(100 * mean_of(results[label], "train_acc"), 1)
    val = round(100 * mean_of(results[label], "val_acc"), 1)
    return train, val, round(train - val, 1)


def gap_table(results: Mapping[str, RunResult | Sequence[RunResult]]) -> str:
    """The results as a text table: train and val accuracy (%) and the gap (percentage points),
    one row per setting (means over seeds where a setting has several runs). The gap is the
    difference of the two printed (rounded) accuracies."""
    width = max(len("setting"), *(len(k) for k in results))
    lines = [f"{'setting':<{width}}  train acc  val acc    gap", "-" * (width + 29)]
    for label in results:
        train, val, gap = _rounded(results, label)
        lines.append(f"{label:<{width}}  {train:8.1f}%  {val:6.1f}%  {gap:5.1f}")
    return "\n".join(lines)


def change_table(results: Mapping[str, Sequence[RunResult]], baseline: str, k: float = 2.0) -> str:
    """One row per setting: mean train and validation accuracy, the gap, and the validation
    change against ``baseline`` with ``k`` standard errors of the paired difference, each
    seed's change, and the verdict (better / worse / inconclusive)."""
    diffs = differences(results, baseline)
    width = max(len("setting"), *(len(k_) for k_ in results))
    n_seeds = len(results[baseline])
    lines = [f"{'setting':<{width}}  train   val    gap   val change ± {k:g} s.e.   per seed{'':{max(0, 6 * n_seeds - 8)}s}  verdict",
             "-" * (width + 58 + 6 * n_seeds)]  # fmt: skip
    for label in results:
        train, val, gap = _rounded(results, label)
        row = f"{label:<{width}}  {train:5.1f} {val:5.1f} {gap:5.1f}"
        if label == baseline:
            lines.append(row + "   (baseline)")
            continue
        d = diffs[label]
        seeds = " ".join(f"{100 * x:+5.1f}" for x in d.per_seed)
        lines.append(f"{row}   {100 * d.mean:+6.1f} ± {100 * k * d.se:4.1f}          {seeds}  {d.verdict(k=k)}")
    return "\n".join(lines)


def plot_gaps(results: Mapping[str, RunResult | Sequence[RunResult]], ax=None):
    """Horizontal bars per setting: train accuracy and validation accuracy side by side (in %,
    means over seeds), the gap written at the end of each pair. Returns the Axes."""
    import matplotlib.pyplot as plt

    from ..plots import COLORS

    labels = list(results)
    if ax is None:
        _, ax = plt.subplots(figsize=(8.0, 0.45 * len(labels) + 1.5))
    y = np.arange(len(labels))
    rounded = [_rounded(results, k) for k in labels]
    train_acc = np.array([r[0] for r in rounded])
    val_acc = np.array([r[1] for r in rounded])
    ax.barh(y - 0.2, train_acc, height=0.4, color=COLORS[0], label="train")
    ax.barh(y + 0.2, val_acc, height=0.4, color=COLORS[1], label="validation")
    for yi, t, v, (_, _, gap) in zip(y, train_acc, val_acc, rounded):
        ax.text(max(t, v) + 1, yi, f"gap {gap:.1f}", va="center", fontsize=11)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("accuracy (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return ax


def plot_changes(diffs: Mapping[str, PairedDifference], ax=None, k: float = 2.0, xlabel: str | None = None):
    """Each setting's paired difference (percentage points) as a dot with a ``k``-standard-error
    bar, and every seed's difference as a small mark; a line at 0. Returns the Axes."""
    import matplotlib.pyplot as plt

    from ..plots import COLORS

    labels = list(diffs)
    if ax is None:
        _, ax = plt.subplots(figsize=(8.0, 0.45 * len(labels) + 1.5))
    y = np.arange(len(labels))
    means = np.array([100 * diffs[k_].mean for k_ in labels])
    errors = np.array([100 * k * diffs[k_].se for k_ in labels])
    ax.axvline(0, color="0.4", linewidth=1)
    ax.errorbar(means, y, xerr=errors, fmt="o", color=COLORS[0], capsize=4, label=f"mean ± {k:g} s.e.")
    for yi, label in zip(y, labels):
        ax.plot([100 * d for d in diffs[label].per_seed], [yi] * diffs[label].n_seeds, "|", color=COLORS[1],
                markersize=10, label="one seed" if yi == 0 else None)  # fmt: skip
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or "validation accuracy minus the baseline's (percentage points)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    return ax


@torch.no_grad()
def plot_weight_histograms(models: Mapping[str, nn.Module], ax=None, bins: int = 121,
                           limit: float | None = None, log: bool = True):  # fmt: skip
    """Overlaid histograms of the :func:`penalised_parameters` (weights) of each model, over
    [-limit, limit] (default: the largest |weight|; weights outside are not counted), log count
    axis by default. Returns the Axes."""
    import matplotlib.pyplot as plt

    from ..plots import COLORS

    if ax is None:
        _, ax = plt.subplots()
    values = {k: torch.cat([p.detach().flatten().cpu() for p in penalised_parameters(m)]).numpy()
              for k, m in models.items()}  # fmt: skip
    limit = limit or max(float(np.abs(v).max()) for v in values.values())
    edges = np.linspace(-limit, limit, bins + 1)
    for i, (label, v) in enumerate(values.items()):
        ax.hist(v, bins=edges, histtype="step", lw=2, color=COLORS[i % len(COLORS)], label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend()
    return ax


@torch.no_grad()
def show_augmentations(data: DeviceData, augments: Mapping[str, Callable[..., Tensor]], n: int = 6,
                       seed: int = 0, index: Tensor | None = None):  # fmt: skip
    """A grid of images: the first row the originals, then one row per augmentation
    (label -> ``augment(x, generator=...)``, each with a fresh generator seeded by ``seed``).
    Images are the first ``n`` of ``data`` (or ``index``), un-normalised for display.
    Returns the Figure."""
    import matplotlib.pyplot as plt

    index = torch.arange(n) if index is None else index.cpu()
    x, _ = data.batch(index.to(data.device))
    rows = {"original": x}
    for label, fn in augments.items():
        rows[label] = fn(x, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(len(rows), len(index), figsize=(1.5 * len(index) + 1.5, 1.6 * len(rows)),
                             squeeze=False)  # fmt: skip
    for r, (label, images) in enumerate(rows.items()):
        shown = (images * data.std[:, None, None] + data.mean[:, None, None]).clamp(0, 1)
        for c in range(len(index)):
            ax = axes[r, c]
            ax.imshow(shown[c].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=12)
    return fig


def one_per_class(data: DeviceData, classes: int = 10) -> Tensor:
    """The index of the first example of each class ``0, ..., classes - 1`` (for example images)."""
    labels = data.labels.cpu()
    return torch.stack([torch.nonzero(labels == c)[0, 0] for c in range(classes)])


# --------------------------------------------------------------------------------------------
# Decoupled weight decay's timescale
# --------------------------------------------------------------------------------------------


def decay_timescale(lr: float, weight_decay: float) -> float:
    r"""The number of steps over which decoupled weight decay forgets: :math:`\tau = 1/(\eta\lambda)`.

    AdamW multiplies the weights by :math:`1 - \eta\lambda` every step, so what the weights
    held :math:`t` steps ago is weighted by :math:`(1-\eta\lambda)^t \approx e^{-t/\tau}`:
    the weights are an exponentially weighted average of recent updates with a window of about
    :math:`\tau` steps. ``inf`` without decay."""
    return math.inf if weight_decay == 0 else 1.0 / (lr * weight_decay)


def weight_decay_for_timescale(lr: float, steps: float) -> float:
    r"""AdamW's :math:`\lambda` for a target timescale of ``steps`` :math:`= \tau`: :math:`\lambda = 1/(\eta\tau)`.

    Choosing :math:`\tau` as a fixed fraction of the run (or a fixed number of epochs) and
    deriving :math:`\lambda` from it keeps the regularization comparable when the learning rate
    or the run length changes (Wang & Aitchison, 2024)."""
    if not lr > 0 or not steps > 0:
        raise ValueError(f"lr and steps must be positive, got {lr} and {steps}")
    return 1.0 / (lr * steps)


# --------------------------------------------------------------------------------------------
# Weight decay with batch norm
# --------------------------------------------------------------------------------------------


def trace_weight_norm(model: nn.Module, optimizer: torch.optim.Optimizer, weight: Tensor, data: DeviceData, *,
                      steps: int, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Train ``model`` for ``steps`` mini-batch steps (cross-entropy, batches drawn with ``seed``)
    and record, before each step, the squared norm of the tensor ``weight`` and of its gradient.

    Returns ``{"norm2": ..., "grad_norm2": ..., "cos": ..., "loss": ...}`` (arrays of length
    ``steps``; ``norm2`` has one more entry, after the last step). ``cos`` is the cosine between
    ``weight`` and its gradient: about 0 for a weight that batch norm makes scale-invariant.
    """
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(seed)
    norm2, grad_norm2, cos, losses = [], [], [], []
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(data), (batch_size,), generator=gen).to(data.device)
        x, y = data.batch(index)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        w, g = weight.detach().double(), weight.grad.detach().double()
        norm2.append(w.pow(2).sum().item())
        grad_norm2.append(g.pow(2).sum().item())
        cos.append((w * g).sum().item() / max(math.sqrt(norm2[-1] * grad_norm2[-1]), 1e-300))
        losses.append(loss.item())
        optimizer.step()
    norm2.append(weight.detach().double().pow(2).sum().item())
    return {"norm2": np.array(norm2), "grad_norm2": np.array(grad_norm2), "cos": np.array(cos),
            "loss": np.array(losses)}  # fmt: skip
