"""Looking at what distillation did: the teacher's "dark knowledge", accuracy gains, costs, plots.

- :func:`dataset_logits`: a model's logits on a whole data set, in eval mode;
- :func:`runner_up`: for each image, the class the teacher ranks second and its probability,
  the soft information a one-hot label does not carry;
- :func:`accuracy_gain`: the accuracy difference of two models' predictions on the same images,
  with its paired standard error;
- :func:`seconds_per_image`: inference time per image (what a smaller student buys);
- :func:`plot_soft_targets`, :func:`plot_temperature_sweep`: the chapter's figures.
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..engine.device_data import DeviceData
from ..engine.loop import autocast, to_memory_format
from .distillation import teacher_logits

__all__ = ["dataset_logits", "runner_up", "accuracy_gain", "seconds_per_image", "plot_soft_targets", "log_floor",
           "typical_images",
           "plot_temperature_sweep"]


@torch.no_grad()
def dataset_logits(model: nn.Module, data: DeviceData, batch_size: int = 1000) -> Tensor:
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


def log_floor(probabilities) -> float:
    """The floor of a logarithmic probability axis that shows every bar: the power of ten at or
    below a third of the smallest positive probability (1e-12 at the lowest)."""
    p = np.asarray(probabilities, dtype=float)
    smallest = p[p > 0].min() if (p > 0).any() else 1e-12
    return float(10 ** np.floor(np.log10(max(smallest / 3, 1e-12))))


def typical_images(confidence: Tensor, labels: Tensor, wanted: Sequence[int]) -> list[int]:
    """For each class in ``wanted``, the index of the image of that class whose ``confidence``
    (e.g. the teacher's probability of the true class) is the median among that class's images:
    a typical image, not the one the teacher is surest about."""
    picked = []
    for c in wanted:
        idx = torch.where(labels == c)[0]
        if len(idx) == 0:
            raise ValueError(f"no image of class {c}")
        order = idx[torch.argsort(confidence[idx])]
        picked.append(int(order[(len(order) - 1) // 2]))
    return picked


@torch.no_grad()
def seconds_per_image(model: nn.Module, data: DeviceData, *, batch_size: int = 500,
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
            with autocast(data.device):
                model(to_memory_format(x))
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
    probabilities, the "dark knowledge", are visible next to the large ones; its floor is a
    power of ten below the smallest probability drawn (:func:`log_floor`), so no bar is clipped:
    every class of every row shows. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from .. import plots

    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    n, K = len(images), len(classes)
    names = list(probabilities)
    floor = log_floor(np.concatenate([np.asarray(probabilities[name]).ravel() for name in names]))
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
                bars = ax.bar(np.arange(K) + offset, p - floor, bottom=floor, width=width,
                              color=plots.COLORS[j % len(plots.COLORS)], label=name if i == 0 else None)  # fmt: skip
                bars[labels[i]].set_edgecolor("black")
                bars[labels[i]].set_linewidth(1.5)
            ax.set_yscale("log")
            ax.set_ylim(floor, 1.5)
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

    from .. import plots

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
