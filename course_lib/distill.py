"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): a small student learns from a teacher.

Notation: a batch of :math:`B` examples and :math:`K` classes; student logits :math:`s`,
teacher logits :math:`t`, hard labels :math:`y`, temperature :math:`T > 0`, mixing weight
:math:`\\alpha \\in [0, 1]`.

Soft targets at temperature :math:`T` are :math:`p^T = \\operatorname{softmax}(t / T)`; the
student's are :math:`q^T = \\operatorname{softmax}(s / T)`. The distillation loss is

.. math::

    L = \\alpha \\, T^2 \\, \\mathrm{KL}(p^T \\,\\|\\, q^T) + (1 - \\alpha) \\, \\mathrm{CE}(s, y),

with :math:`\\mathrm{KL}(p \\| q) = \\frac1B \\sum_b \\sum_k p_{bk} (\\log p_{bk} - \\log q_{bk})`
(summed over classes, averaged over the batch) and :math:`\\mathrm{CE}` the usual mean
cross-entropy at temperature 1.

**Convention for alpha (read this before comparing with other write-ups):** here ``alpha``
weights the *soft* (teacher) term and ``1 - alpha`` the *hard*-label term, so ``alpha = 0`` is
plain cross-entropy training and ``alpha = 1`` ignores the labels. Several tutorials put alpha on
the hard-label term instead (``alpha * CE + (1 - alpha) * soft``): their alpha is our
``1 - alpha``.

**Why** :math:`T^2`: the gradient of the KL term with respect to the student logits is
:math:`(q^T - p^T) / (B T)`. For :math:`T` large compared with the logits,
:math:`\\operatorname{softmax}(z/T)_k \\approx (1 + (z_k - \\bar z)/T) / K`, so

.. math::

    \\frac{\\partial\\, \\mathrm{KL}}{\\partial s_{bk}} \\approx
    \\frac{(s_{bk} - \\bar s_b) - (t_{bk} - \\bar t_b)}{B \\, K \\, T^2},

which shrinks like :math:`1/T^2`. Multiplying the KL term by :math:`T^2` keeps the soft term's
gradient roughly independent of :math:`T` (the paper's reason), so that changing :math:`T` does
not silently change the balance with the hard-label term. :func:`soft_gradient_limit` is that
limit, times :math:`T^2`.

Training: :class:`DistillationLoss` plugs into :func:`course_lib.train.train` (it sets
``uses_inputs = True``, so the loop passes it the augmented batch, and it asks the teacher about
the same images). :func:`train_teacher` and :func:`train_student` are thin wrappers over
:func:`course_lib.train.train`; students built by :func:`train_student` with the same
``model_fn`` and ``init_seed`` start from identical weights and see identical batches.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import optim, train

__all__ = [
    "soft_targets",
    "soft_kl",
    "distillation_loss",
    "soft_gradient_limit",
    "soft_term_gradient",
    "teacher_logits",
    "TeacherMemo",
    "DistillationLoss",
    "linear_decay",
    "train_teacher",
    "train_student",
    "compare_students",
    "dataset_logits",
    "runner_up",
    "accuracy_gain",
    "seconds_per_image",
    "plot_soft_targets",
    "plot_temperature_sweep",
]


def _check_temperature(T: float) -> None:
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"the temperature T must be a positive number, got {T!r}")


def soft_targets(logits: Tensor, T: float) -> Tensor:
    """Softened probabilities :math:`\\operatorname{softmax}(z / T)` along the last dimension.

    ``T = 1`` is the ordinary softmax; larger ``T`` flattens the distribution (all classes tend
    to :math:`1/K` as :math:`T \\to \\infty`) while keeping the order of the classes.
    """
    _check_temperature(T)
    return torch.softmax(logits / T, dim=-1)


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """:math:`\\mathrm{KL}(\\operatorname{softmax}(t/T) \\,\\|\\, \\operatorname{softmax}(s/T))`,
    summed over classes and averaged over the batch (``reduction="batchmean"``), *without* the
    :math:`T^2` factor.

    Computed from log-probabilities on both sides, so a teacher probability that underflows to
    zero contributes exactly zero (:math:`0 \\log 0 = 0`). The teacher logits are detached: no
    gradient flows into the teacher.
    """
    _check_temperature(T)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student and teacher logits must both be B x K, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")  # fmt: skip
    log_q = F.log_softmax(student_logits / T, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, T: float,
                      alpha: float) -> Tensor:  # fmt: skip
    """Hinton et al.'s loss: ``alpha * T**2 * KL(p_teacher^T || q_student^T) + (1 - alpha) * CE``.

    ``alpha`` weights the soft (teacher) term, ``1 - alpha`` the hard-label cross-entropy (at
    temperature 1, averaged over the batch): ``alpha = 0`` is plain cross-entropy, ``alpha = 1``
    uses the teacher only. The KL term is :func:`soft_kl` (summed over classes, averaged over the
    batch); the factor ``T**2`` keeps its gradient comparable across temperatures (see the module
    docstring). Returns a scalar tensor.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    soft = soft_kl(student_logits, teacher_logits, T)
    return alpha * T**2 * soft + (1 - alpha) * hard


def soft_gradient_limit(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """The large-T limit of the gradient of ``T**2 * soft_kl(s, t, T)`` with respect to ``s``.

    .. math::  \\frac{(s_{bk} - \\bar s_b) - (t_{bk} - \\bar t_b)}{B K}

    where :math:`\\bar s_b` is the mean of row :math:`b` over the :math:`K` classes: the logits'
    differences, centred per example, divided by batch size times number of classes. It does
    not depend on :math:`T`; without the :math:`T^2` factor the gradient would be this divided by
    :math:`T^2`.
    """
    B, K = student_logits.shape
    centred = (student_logits - student_logits.mean(-1, keepdim=True)) - (
        teacher_logits - teacher_logits.mean(-1, keepdim=True))  # fmt: skip
    return centred / (B * K)


def soft_term_gradient(student_logits: Tensor, teacher_logits: Tensor, T: float, scaled: bool = True) -> Tensor:
    r"""The gradient, with respect to the student's logits, of the soft term ``T**2 * soft_kl``
    (``scaled=True``) or of ``soft_kl`` alone (``scaled=False``).

    Exactly :math:`(q^T - p^T)\,T / B` when scaled and :math:`(q^T - p^T) / (B T)` when not;
    computed here with autograd, to compare with :func:`soft_gradient_limit`.
    """
    s = student_logits.detach().clone().requires_grad_(True)
    loss = soft_kl(s, teacher_logits, T) * (T**2 if scaled else 1.0)
    (grad,) = torch.autograd.grad(loss, s)
    return grad


class TeacherMemo:
    """The teacher's logits for a sequence of batches, recorded once and replayed by later runs.

    Students trained with the same ``seed`` see exactly the same (augmented) batches in the same
    order, so a temperature sweep needs the teacher's answers only once. Call :meth:`rewind`
    before each run; each call ``memo(x)`` then returns the logits recorded at that position if
    the batch is the same (checked on a fingerprint: its shape and a strided sample of its
    values), and otherwise runs the teacher and records the result. The answers are exactly
    the ones the teacher would give (same model, same batch, eval mode). ``seconds`` is the
    time spent in the teacher's forward passes; ``hits``/``misses`` count replays and passes.
    """

    def __init__(self, teacher: nn.Module, stride: int = 509):
        self.teacher, self.stride = teacher, stride
        self.records: list[tuple[tuple[int, ...], Tensor, Tensor]] = []
        self.position, self.hits, self.misses, self.seconds = 0, 0, 0, 0.0

    def rewind(self) -> None:
        """Start replaying from the first recorded batch."""
        self.position = 0

    def _fingerprint(self, x: Tensor) -> tuple[tuple[int, ...], Tensor]:
        return tuple(x.shape), x.detach().reshape(-1)[:: self.stride].clone()

    def __call__(self, x: Tensor) -> Tensor:
        shape, sample = self._fingerprint(x)
        if self.position < len(self.records):
            old_shape, old_sample, logits = self.records[self.position]
            if old_shape == shape and torch.equal(old_sample, sample):
                self.position += 1
                self.hits += 1
                return logits
        start = time.perf_counter()
        logits = teacher_logits(self.teacher, x)
        self.seconds += time.perf_counter() - start
        self.misses += 1
        record = (shape, sample, logits)
        if self.position < len(self.records):
            self.records[self.position] = record
        else:
            self.records.append(record)
        self.position += 1
        return logits


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: Tensor) -> Tensor:
    """The teacher's logits for the batch ``x``: eval mode (batch-norm running statistics, no
    dropout), no gradient, float32; the teacher's train/eval mode is restored afterwards."""
    was_training = teacher.training
    teacher.eval()
    with train._autocast(x.device):
        logits = teacher(train._memory_format(x)).float()
    teacher.train(was_training)
    return logits


class DistillationLoss:
    """A loss for :func:`course_lib.train.train`: ``loss_fn=DistillationLoss(teacher, T, alpha)``.

    ``uses_inputs = True`` makes the training loop call ``loss(logits, y, x)`` with the batch
    ``x`` the student just saw (augmented, if the run augments); the teacher is run on that same
    ``x`` in eval mode (batch-norm running statistics, no dropout) under ``torch.no_grad()``
    (:func:`teacher_logits`), and the result is :func:`distillation_loss` of the student
    logits, the teacher logits and ``y``. The teacher is never updated. ``teacher_seconds``
    accumulates the wall time spent getting the teacher's logits (the extra training cost
    distillation brings). With ``memo`` (a :class:`TeacherMemo` of the same teacher) the logits
    of batches seen before are replayed instead of recomputed.
    """

    uses_inputs = True

    def __init__(self, teacher: nn.Module, T: float = 4.0, alpha: float = 0.9, memo: TeacherMemo | None = None):
        _check_temperature(T)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if memo is not None and memo.teacher is not teacher:
            raise ValueError("the memo must record this teacher")
        self.teacher, self.T, self.alpha, self.memo = teacher, float(T), float(alpha), memo
        self.teacher_seconds = 0.0

    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits for ``x`` (from the memo when it has them)."""
        start = time.perf_counter()
        logits = self.memo(x) if self.memo is not None else teacher_logits(self.teacher, x)
        self.teacher_seconds += time.perf_counter() - start
        return logits

    def __call__(self, logits: Tensor, y: Tensor, x: Tensor) -> Tensor:
        return distillation_loss(logits, self.teacher_logits(x), y, self.T, self.alpha)

    def __repr__(self) -> str:
        return f"DistillationLoss(T={self.T:g}, alpha={self.alpha:g})"


OptimizerSpec = tuple[type, Mapping[str, Any]]
DEFAULT_OPTIMIZER: OptimizerSpec = (optim.Adam, {"lr": 3e-3})
"""The optimizer the wrappers use unless told otherwise: the course's Adam, lr 3e-3."""


def linear_decay(total_steps: int) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]:
    r"""A ``scheduler_fn``: the learning rate falls linearly from its initial value to zero
    over ``total_steps`` optimizer steps, :math:`\eta_k = \eta_0 (1 - k / \text{total})`.

    Ending at zero makes the final weights (and so the final accuracy) much less noisy than a
    constant rate, which matters when comparing runs that differ only in the loss.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: max(0.0, 1.0 - k / total_steps))


def _fit(model: nn.Module, train_data: train.DeviceData, optimizer: OptimizerSpec,
         scheduler_fn: Callable | None, *, epochs: int, batch_size: int, **train_kwargs) -> train.History:  # fmt: skip
    optimizer_cls, optimizer_kwargs = optimizer
    opt = optimizer_cls(model.parameters(), **dict(optimizer_kwargs))
    if isinstance(scheduler_fn, str):
        if scheduler_fn != "linear":
            raise ValueError(f"scheduler_fn must be 'linear', None or a callable, got {scheduler_fn!r}")
        scheduler_fn = linear_decay(epochs * math.ceil(len(train_data) / batch_size))
    scheduler = scheduler_fn(opt) if scheduler_fn is not None else None
    return train.train(model, opt, train_data, scheduler=scheduler, epochs=epochs, batch_size=batch_size,
                       **train_kwargs)  # fmt: skip


def train_teacher(model: nn.Module, train_data: train.DeviceData, *, epochs: int, batch_size: int,
                  optimizer: OptimizerSpec = DEFAULT_OPTIMIZER, scheduler_fn: Callable | str | None = "linear",
                  seed: int = 0, desc: str = "teacher", **train_kwargs) -> train.History:  # fmt: skip
    """Train ``model`` in place with plain cross-entropy; return its History.

    ``optimizer = (class, kwargs)`` (default :data:`DEFAULT_OPTIMIZER`); ``scheduler_fn(opt)``
    builds a per-step scheduler: ``"linear"`` (the default) is :func:`linear_decay` to zero over
    the whole run, ``None`` keeps the rate constant; the rest (``augment``, ``val_data``, ...)
    goes to :func:`course_lib.train.train`. Same ``seed``, same batches as :func:`train_student`.
    """
    model.to(train_data.device)
    return _fit(model, train_data, optimizer, scheduler_fn, epochs=epochs, batch_size=batch_size,
                seed=seed, desc=desc, **train_kwargs)  # fmt: skip


def train_student(model_fn: Callable[[], nn.Module], train_data: train.DeviceData, *,
                  teacher: nn.Module | None = None, T: float = 4.0, alpha: float = 0.9,
                  epochs: int, batch_size: int, optimizer: OptimizerSpec = DEFAULT_OPTIMIZER,
                  scheduler_fn: Callable | str | None = "linear", init_seed: int = 0, seed: int = 0,
                  memo: TeacherMemo | None = None, desc: str | None = None,
                  **train_kwargs) -> tuple[nn.Module, train.History]:  # fmt: skip
    """Build a student with ``model_fn()`` after ``torch.manual_seed(init_seed)`` and train it.

    Optimizer and ``scheduler_fn`` as in :func:`train_teacher`. ``teacher=None``: plain
    cross-entropy (the student alone); otherwise the loss is
    ``DistillationLoss(teacher, T, alpha)``. The same ``model_fn`` and ``init_seed`` give
    identical initial weights, the same ``seed`` identical batches (order and augmentation), so
    runs with and without a teacher differ only in the loss. ``memo``: a :class:`TeacherMemo`
    to replay the teacher's logits from (rewound here). Returns ``(model, history)``; the
    history gets an extra attribute ``teacher_seconds`` (0 without a teacher).
    """
    torch.manual_seed(init_seed)
    model = model_fn().to(train_data.device)
    if memo is not None:
        memo.rewind()
    loss_fn = DistillationLoss(teacher, T, alpha, memo=memo) if teacher is not None else None
    if desc is None:
        desc = "student alone" if teacher is None else f"student, T={T:g}"
    history = _fit(model, train_data, optimizer, scheduler_fn, epochs=epochs, batch_size=batch_size,
                   loss_fn=loss_fn, seed=seed, desc=desc, **train_kwargs)  # fmt: skip
    history.teacher_seconds = loss_fn.teacher_seconds if loss_fn is not None else 0.0
    return model, history


def compare_students(model_fn: Callable[[], nn.Module], teacher: nn.Module, train_data: train.DeviceData,
                     temperatures: Sequence[float], *, alpha: float = 0.9, replay: bool = True,
                     **kwargs) -> dict[str, tuple[nn.Module, train.History]]:  # fmt: skip
    """The student alone, then distilled at each temperature, all from the same initial weights
    and on the same batches: ``{"alone": (model, history), "T=1": ..., "T=4": ...}``.

    ``replay=True`` shares one :class:`TeacherMemo` between the distilled runs: the teacher
    runs during the first one only (its ``history.teacher_seconds`` is the real extra cost of
    distillation), the later ones replay its exact logits. ``kwargs`` go to
    :func:`train_student` (``epochs``, ``batch_size``, ``augment``, ...).
    """
    memo = TeacherMemo(teacher) if replay else None
    runs = {"alone": train_student(model_fn, train_data, teacher=None, **kwargs)}
    for T in temperatures:
        runs[f"T={T:g}"] = train_student(model_fn, train_data, teacher=teacher, T=T, alpha=alpha, memo=memo,
                                         **kwargs)  # fmt: skip
    return runs


@torch.no_grad()
def dataset_logits(model: nn.Module, data: train.DeviceData, batch_size: int = 1000) -> Tensor:
    """The logits of ``model`` on every example of ``data`` (N x K, float32), in eval mode
    without gradient, in the data's order; the model's train/eval mode is restored."""
    out = [teacher_logits(model, data.batch(torch.arange(i, min(i + batch_size, len(data)), device=data.device))[0])
           for i in range(0, len(data), batch_size)]  # fmt: skip
    return torch.cat(out)


def runner_up(probabilities: Tensor, labels: Tensor, classes: Sequence[str]) -> list[tuple[str, str, float]]:
    """For each true class: the *wrong* class that gets the most probability on average.

    ``probabilities``: N x K (e.g. a teacher's soft targets on the test set), ``labels``: N true
    classes. Returns ``[(class, runner-up class, its mean probability), ...]`` in class order
    (classes without examples are skipped): the similarity structure the soft targets carry.
    """
    out = []
    for k, name in enumerate(classes):
        rows = probabilities[labels == k]
        if len(rows) == 0:
            continue
        mean = rows.mean(0).clone()
        mean[k] = -1.0
        j = int(mean.argmax())
        out.append((name, classes[j], float(mean[j])))
    return out


def accuracy_gain(logits_new: Tensor, logits_base: Tensor, labels: Tensor) -> tuple[float, float]:
    r"""Accuracy of ``logits_new`` minus that of ``logits_base`` on the same examples, and the
    standard error of that difference.

    Paired: with :math:`d_i = [\text{new right on } i] - [\text{base right on } i]`, the gain is
    :math:`\bar d` and its standard error :math:`\operatorname{std}(d) / \sqrt{N}` (only the
    examples the two models disagree on contribute), so a gain of under about two standard
    errors is within the noise of this test set.
    """
    d = (logits_new.argmax(1) == labels).double() - (logits_base.argmax(1) == labels).double()
    n = len(d)
    se = float(d.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return float(d.mean()), se


@torch.no_grad()
def seconds_per_image(model: nn.Module, data: train.DeviceData, *, batch_size: int = 500,
                      repeats: int = 5, max_images: int | None = None) -> float:  # fmt: skip
    """Inference wall time per image: forward passes over ``data`` in eval mode, no gradient.

    One warm-up pass, then ``repeats`` timed passes over (the first ``max_images`` of) ``data``
    in batches of ``batch_size``; returns the *median* pass time divided by the number of
    images (the median resists a busy machine's outliers). Synchronises CUDA before reading
    the clock.
    """
    n = len(data) if max_images is None else min(len(data), max_images)
    batches = [data.batch(torch.arange(i, min(i + batch_size, n), device=data.device))[0]
               for i in range(0, n, batch_size)]  # fmt: skip
    was_training = model.training
    model.eval()

    def one_pass() -> float:
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        start = time.perf_counter()
        for x in batches:
            with train._autocast(data.device):
                model(train._memory_format(x))
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        return time.perf_counter() - start

    one_pass()
    times = [one_pass() for _ in range(repeats)]
    model.train(was_training)
    return float(np.median(times)) / n


# --------------------------------------------------------------------------------------------
# Plots (course style; each returns what it drew on and never calls plt.show())
# --------------------------------------------------------------------------------------------


def plot_soft_targets(images: np.ndarray, probabilities: Mapping[str, np.ndarray], labels: Sequence[int],
                      classes: Sequence[str], predicted: Sequence[int] | None = None):  # fmt: skip
    """One row per image: the picture, then a bar chart of the class probabilities.

    ``images``: n x H x W x 3 uint8 (or n x 3 x H x W, transposed here); ``probabilities``:
    label (e.g. ``"T=1"``) -> n x K array, drawn as side-by-side bars per class; ``labels``: the
    true classes (their bars are outlined and the title names them); ``predicted``: optional
    predictions to name in the title. The probability axis is logarithmic so that the small
    probabilities, the "dark knowledge", are visible next to the large ones. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from . import plots

    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    n, K = len(images), len(classes)
    names = list(probabilities)
    width = 0.8 / len(names)
    with plots.course_style():
        fig, axes = plt.subplots(n, 2, figsize=(11, 2.6 * n), gridspec_kw={"width_ratios": [1, 5]},
                                 squeeze=False)  # fmt: skip
        for i in range(n):
            axes[i, 0].imshow(images[i])
            axes[i, 0].axis("off")
            title = f"true: {classes[labels[i]]}"
            if predicted is not None:
                title += f"\nteacher: {classes[predicted[i]]}"
            axes[i, 0].set_title(title, fontsize=12)
            ax = axes[i, 1]
            for j, name in enumerate(names):
                p = np.asarray(probabilities[name])[i]
                offset = (j - (len(names) - 1) / 2) * width
                bars = ax.bar(np.arange(K) + offset, p, width=width, color=plots.COLORS[j % len(plots.COLORS)],
                              label=name if i == 0 else None)  # fmt: skip
                bars[labels[i]].set_edgecolor("black")
                bars[labels[i]].set_linewidth(1.5)
            ax.set_yscale("log")
            ax.set_ylim(1e-5, 1.5)
            ax.set_xticks(np.arange(K))
            ax.set_xticklabels(classes if i == n - 1 else [], rotation=30, fontsize=11)
            ax.set_ylabel("probability", fontsize=12)
            ax.grid(True, axis="y", alpha=0.3)
        fig.legend(loc="upper right", fontsize=12, ncol=len(names))
    return fig


def plot_temperature_sweep(temperatures: Sequence[float], accuracies: Sequence[float], *,
                           alone: float, teacher: float | None = None, ax=None,
                           ylabel: str = "test accuracy"):  # fmt: skip
    """Student accuracy against the distillation temperature (log-2 axis), with horizontal lines
    for the student trained alone and (optionally) the teacher. Returns the Axes."""
    import matplotlib.pyplot as plt

    from . import plots

    with plots.course_style():
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(temperatures, accuracies, "-o", color=plots.COLORS[0], label="distilled student")
        ax.axhline(alone, color=plots.COLORS[1], ls="--", label="student alone")
        if teacher is not None:
            ax.axhline(teacher, color=plots.COLORS[2], ls=":", label="teacher")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(temperatures))
        ax.set_xticklabels([f"{T:g}" for T in temperatures])
        ax.set_xlabel("temperature T")
        ax.set_ylabel(ylabel)
        ax.legend()
    return ax
