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

Training: :class:`DistillationLoss` plugs into :func:`course_lib.engine.loop.train` (it sets
``uses_inputs = True``, so the loop passes it the augmented batch, and it asks the teacher about
the same images). :func:`train_teacher`, :func:`train_student` and :func:`compare_students` are
thin adapters over :mod:`course_lib.engine.compare`: students built with the same ``model_fn``
and ``init_seed`` start from identical weights and see identical batches, and by default the
learning rate falls linearly to zero over the run
(:func:`~course_lib.optim.schedules.warmup_linear_decay` without warm-up).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..engine.compare import Variant, compare_variants, train_variant
from ..engine.device_data import DeviceData
from ..engine.loop import History, autocast, steps_per_epoch, to_memory_format
from ..optim import Adam
from ..optim.schedules import warmup_linear_decay

__all__ = [
    "soft_targets",
    "soft_kl",
    "distillation_loss",
    "soft_gradient_limit",
    "soft_term_gradient",
    "teacher_logits",
    "TeacherMemo",
    "DistillationLoss",
    "train_teacher",
    "train_student",
    "compare_students",
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
    with autocast(x.device):
        logits = teacher(to_memory_format(x)).float()
    teacher.train(was_training)
    return logits


class DistillationLoss:
    """A loss for :func:`course_lib.engine.loop.train`: ``loss_fn=DistillationLoss(teacher, T, alpha)``.

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
DEFAULT_OPTIMIZER: OptimizerSpec = (Adam, {"lr": 3e-3})
"""The optimizer the wrappers use unless told otherwise: the course's Adam, lr 3e-3."""


def _variant(optimizer: OptimizerSpec, decay: bool, total_steps: int, **fields: Any) -> Variant:
    """A run with ``optimizer``; with ``decay`` the rate falls linearly to zero over ``total_steps``.

    Ending at zero makes the final weights (and so the final accuracy) much less noisy than a
    constant rate, which matters when comparing runs that differ only in the loss.
    """
    optimizer_cls, optimizer_kwargs = optimizer
    schedule = functools.partial(warmup_linear_decay, warmup_steps=0, total_steps=total_steps) if decay else None
    return Variant(optimizer_cls, optimizer_kwargs, schedule=schedule, **fields)


def _total_steps(train_data: DeviceData, epochs: int, batch_size: int) -> int:
    return epochs * steps_per_epoch(len(train_data), batch_size)


def train_teacher(model: nn.Module, train_data: DeviceData, *, epochs: int, batch_size: int,
                  optimizer: OptimizerSpec = DEFAULT_OPTIMIZER, decay: bool = True, seed: int = 0,
                  augment: Callable[..., Tensor] | None = None, val_data: DeviceData | None = None,
                  progress: bool | None = None, desc: str = "teacher") -> History:  # fmt: skip
    """Train ``model`` in place with plain cross-entropy; return its History.

    ``optimizer = (class, kwargs)`` (default :data:`DEFAULT_OPTIMIZER`); ``decay=True`` (the
    default) lowers the rate linearly to zero over the whole run, ``False`` keeps it constant.
    Same ``seed``, same batches as :func:`train_student`.
    """
    model.to(train_data.device)
    variant = _variant(optimizer, decay, _total_steps(train_data, epochs, batch_size), augment=augment)
    return train_variant(model, variant, train_data, epochs=epochs, batch_size=batch_size, val_data=val_data,
                         seed=seed, progress=progress, desc=desc).history  # fmt: skip


def _student(teacher: nn.Module | None, T: float, alpha: float, memo: TeacherMemo | None, optimizer: OptimizerSpec,
             decay: bool, total_steps: int, augment) -> Variant:  # fmt: skip
    if teacher is None:
        return _variant(optimizer, decay, total_steps, augment=augment)
    return _variant(optimizer, decay, total_steps, augment=augment,
                    loss_fn=DistillationLoss(teacher, T, alpha, memo=memo),
                    before_run=memo.rewind if memo is not None else None)  # fmt: skip


def _students(model_fn: Callable[[], nn.Module], train_data: DeviceData, variants: Mapping[str, Variant], *,
              epochs: int, batch_size: int, init_seed: int, seed: int, val_data: DeviceData | None,
              progress: bool | None) -> dict[str, tuple[nn.Module, History]]:  # fmt: skip
    runs = compare_variants(model_fn, variants, train_data, epochs=epochs, batch_size=batch_size, val_data=val_data,
                            seed=seed, init_seed=init_seed, progress=progress)  # fmt: skip
    for label, run in runs.items():
        loss_fn = variants[label].loss_fn
        run.history.teacher_seconds = loss_fn.teacher_seconds if loss_fn is not None else 0.0
    return {label: (run.model, run.history) for label, run in runs.items()}


def train_student(model_fn: Callable[[], nn.Module], train_data: DeviceData, *,
                  teacher: nn.Module | None = None, T: float = 4.0, alpha: float = 0.9,
                  epochs: int, batch_size: int, optimizer: OptimizerSpec = DEFAULT_OPTIMIZER,
                  decay: bool = True, init_seed: int = 0, seed: int = 0, memo: TeacherMemo | None = None,
                  augment: Callable[..., Tensor] | None = None, val_data: DeviceData | None = None,
                  progress: bool | None = None, desc: str | None = None) -> tuple[nn.Module, History]:  # fmt: skip
    """Build a student from ``model_fn()``'s initial weights for ``init_seed`` and train it.

    Optimizer and ``decay`` as in :func:`train_teacher`. ``teacher=None``: plain cross-entropy
    (the student alone); otherwise the loss is ``DistillationLoss(teacher, T, alpha)``. The same
    ``model_fn`` and ``init_seed`` give identical initial weights, the same ``seed`` identical
    batches (order and augmentation), so runs with and without a teacher differ only in the
    loss. ``memo``: a :class:`TeacherMemo` to replay the teacher's logits from (rewound before
    the run). Returns ``(model, history)``; the history gets an extra attribute
    ``teacher_seconds`` (0 without a teacher).
    """
    if desc is None:
        desc = "student alone" if teacher is None else f"student, T={T:g}"
    variant = _student(teacher, T, alpha, memo, optimizer, decay, _total_steps(train_data, epochs, batch_size), augment)
    return _students(model_fn, train_data, {desc: variant}, epochs=epochs, batch_size=batch_size, init_seed=init_seed,
                     seed=seed, val_data=val_data, progress=progress)[desc]  # fmt: skip


def compare_students(model_fn: Callable[[], nn.Module], teacher: nn.Module, train_data: DeviceData,
                     temperatures: Sequence[float], *, alpha: float = 0.9, replay: bool = True, epochs: int,
                     batch_size: int, optimizer: OptimizerSpec = DEFAULT_OPTIMIZER, decay: bool = True,
                     init_seed: int = 0, seed: int = 0, augment: Callable[..., Tensor] | None = None,
                     val_data: DeviceData | None = None,
                     progress: bool | None = None) -> dict[str, tuple[nn.Module, History]]:  # fmt: skip
    """The student alone, then distilled at each temperature, all from the same initial weights
    and on the same batches: ``{"alone": (model, history), "T=1": ..., "T=4": ...}``.

    ``replay=True`` shares one :class:`TeacherMemo` between the distilled runs: the teacher
    runs during the first one only (its ``history.teacher_seconds`` is the real extra cost of
    distillation), the later ones replay its exact logits. The other settings are those of
    :func:`train_student`.
    """
    memo = TeacherMemo(teacher) if replay else None
    total = _total_steps(train_data, epochs, batch_size)
    variants = {"alone": _student(None, 1.0, alpha, None, optimizer, decay, total, augment)}
    for T in temperatures:
        variants[f"T={T:g}"] = _student(teacher, T, alpha, memo, optimizer, decay, total, augment)
    return _students(model_fn, train_data, variants, epochs=epochs, batch_size=batch_size, init_seed=init_seed,
                     seed=seed, val_data=val_data, progress=progress)  # fmt: skip
