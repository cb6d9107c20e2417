r"""Parity with torch: how far course_lib's optimizers and schedules are from torch's.

:func:`max_difference` runs two optimizer classes on the same start and the same gradients and
returns the largest difference between the parameters they reach (0.0 means bit-identical
steps). :func:`max_schedule_difference` does the same for a schedule function driven through
:class:`~course_lib.optim.schedules.ScheduledLR` and a ``torch.optim.lr_scheduler`` scheduler.
:func:`optimizer_parity` and :func:`schedule_parity` run a list of such checks and return a
:class:`ParityTable` that prints one row per check and can assert that every row is within its
tolerance: the table each optimizer chapter shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from .schedules import Schedule, ScheduledLR, run_scheduler

__all__ = ["max_difference", "max_schedule_difference", "ParityRow", "ParityTable", "optimizer_parity",
           "schedule_parity", "modern_parity_checks", "MATRIX_SHAPES"]


def max_difference(
    optimizer_a: type[torch.optim.Optimizer],
    optimizer_b: type[torch.optim.Optimizer],
    steps: int = 100,
    shapes: tuple[tuple[int, ...], ...] = ((10, 5), (5,)),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **kwargs: Any,
) -> float:
    """Largest absolute difference between the parameters two optimizer classes reach.

    Both get the same initial parameters (standard normal) and the same ``steps`` pre-generated
    gradients, and the same ``kwargs``; e.g. ``max_difference(course_lib.optim.Adam,
    torch.optim.Adam, lr=0.01)`` is 0.0 when the two take bit-identical steps. An optimizer with
    ``train()``/``eval()`` switches (schedule-free) is put in train mode first, and compared
    both at the end of training and after ``eval()``. Muon takes matrices only: give it
    ``shapes`` of two dimensions.
    """
    gen = torch.Generator().manual_seed(seed)
    start = [torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes]
    grads = [[torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes] for _ in range(steps)]
    finals = []
    for cls in (optimizer_a, optimizer_b):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = cls(params, **kwargs)
        switches = _has_train_eval(opt)
        if switches:
            opt.train()
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
        reached = [p.detach().clone() for p in params]
        if switches:  # schedule-free: the averaged point x as well as the gradient point y
            opt.eval()
            reached += [p.detach().clone() for p in params]
        finals.append(reached)
    return max((a - b).abs().max().item() for a, b in zip(*finals))


def _has_train_eval(opt: torch.optim.Optimizer) -> bool:
    """A schedule-free optimizer: it has ``train()`` and ``eval()`` switches (torch's have neither)."""
    return callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))


def max_schedule_difference(schedule: Schedule, make_torch_scheduler: Callable[[torch.optim.Optimizer], Any],
                            steps: int, optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                            lr: float = 0.1, **optimizer_kwargs: Any) -> float:  # fmt: skip
    """Largest absolute difference between the rates (and momenta) set by :class:`ScheduledLR`
    with ``schedule`` and by ``make_torch_scheduler(optimizer)``, over ``steps`` steps.

    E.g. ``max_schedule_difference(functools.partial(step_decay, step_size=10), lambda o: StepLR(o, 10), 50)``.
    Momenta are compared where both runs have one (NaN in neither).
    """
    ours = run_scheduler(lambda opt: ScheduledLR(opt, schedule), steps, optimizer_cls, lr, **optimizer_kwargs)
    theirs = run_scheduler(make_torch_scheduler, steps, optimizer_cls, lr, **optimizer_kwargs)
    diff = float(np.max(np.abs(ours["lr"] - theirs["lr"])))
    both = ~np.isnan(ours["momentum"]) & ~np.isnan(theirs["momentum"])
    if both.any():
        diff = max(diff, float(np.max(np.abs(ours["momentum"][both] - theirs["momentum"][both]))))
    return diff


@dataclass(frozen=True)
class ParityRow:
    """One check: what was compared, the largest difference found, and the tolerance it must meet."""

    name: str
    setting: str
    difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.difference <= self.tolerance


class ParityTable(list):
    """A list of :class:`ParityRow` that prints as a table (``print(table)``).

    :meth:`check` raises ``AssertionError`` naming every row whose difference exceeds its
    tolerance; :attr:`worst` is the largest difference.
    """

    @property
    def worst(self) -> float:
        return max((row.difference for row in self), default=0.0)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self)

    def check(self) -> "ParityTable":
        failed = [row for row in self if not row.passed]
        if failed:
            lines = [f"{r.name} {r.setting}: difference {r.difference:.3g} > tolerance {r.tolerance:.3g}" for r in failed]
            raise AssertionError("not equal to torch:\n" + "\n".join(lines))
        return self

    def __str__(self) -> str:
        name_w = max([len("compared")] + [len(r.name) for r in self])
        setting_w = max([len("setting")] + [len(r.setting) for r in self])
        head = f"{'compared':<{name_w}}  {'setting':<{setting_w}}  {'max |difference|':>16}  {'tolerance':>9}  equal"
        lines = [head, "-" * len(head)]
        for r in self:
            lines.append(f"{r.name:<{name_w}}  {r.setting:<{setting_w}}  {r.difference:>16.1e}  "
                         f"{r.tolerance:>9.0e}  {'yes' if r.passed else 'NO'}")  # fmt: skip
        verdict = ("every row within its tolerance" if self.passed
                   else f"{sum(not r.passed for r in self)} row(s) NOT within tolerance")  # fmt: skip
        return "\n".join(lines + [verdict])

    __repr__ = __str__


def _setting(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


def _class_name(cls: Any) -> str:
    module = getattr(cls, "__module__", "") or ""
    owner = module.split(".")[0] if module else ""  # torch, course_lib, lion_pytorch, schedulefree, ...
    name = getattr(cls, "__name__", repr(cls))
    return f"{owner}.{name}" if owner else name


def optimizer_parity(checks: Iterable[tuple], *, steps: int = 100, tolerance: float = 0.0,
                     **common: Any) -> ParityTable:  # fmt: skip
    """Run :func:`max_difference` for each ``(ours, theirs, kwargs)`` and collect the rows.

    ``tolerance`` 0.0 (the default) demands bit-identical parameters after ``steps`` steps;
    ``common`` (``dtype``, ``shapes``, ``seed``) goes to every call. A check may carry a fourth
    item, a dict of its own ``steps``, ``tolerance``, ``dtype``, ``shapes`` or ``seed`` (e.g.
    matrix shapes for Muon, 1e-12 for a reference outside torch).
    """
    table = ParityTable()
    for check in checks:
        ours, theirs, kwargs, *rest = check
        options = {**dict(steps=steps, tolerance=tolerance), **common, **(dict(rest[0]) if rest else {})}
        row_tolerance = options.pop("tolerance")
        diff = max_difference(ours, theirs, **options, **dict(kwargs))
        table.append(ParityRow(f"{_class_name(ours)} vs {_class_name(theirs)}", _setting(kwargs), diff,
                               row_tolerance))  # fmt: skip
    return table


MATRIX_SHAPES = ((10, 5), (4, 9))  # Muon takes matrices only (a tall one and a wide one)


def modern_parity_checks() -> list[tuple]:
    """The checks of the modern optimizers against their references, for :func:`optimizer_parity`:
    ``optimizer_parity(modern_parity_checks())`` is chapter 12's table. Lion is checked against
    ``lion_pytorch`` and the schedule-free classes against ``schedulefree`` (the course's test
    extra installs both; an ``ImportError`` says which is missing), the rest against torch.
    Every row demands bit-identical results except Lion's (1e-12: its reference updates the
    average with ``mul_``/``add_`` where the course's EWMA is a ``lerp``)."""
    from . import modern

    try:
        import lion_pytorch
        import schedulefree
    except ImportError as err:  # pragma: no cover - the test extra installs both
        raise ImportError(f"the modern parity table needs the references lion-pytorch and schedulefree "
                          f"(pip install -e '.[test]'): {err}") from err  # fmt: skip
    matrices = {"shapes": MATRIX_SHAPES}
    return [
        (modern.Muon, torch.optim.Muon, dict(lr=0.02), matrices),
        (modern.Muon, torch.optim.Muon, dict(lr=0.02, nesterov=False, weight_decay=0.05), matrices),
        (modern.Muon, torch.optim.Muon, dict(lr=0.02, adjust_lr_fn="match_rms_adamw", ns_steps=3), matrices),
        (modern.Adafactor, torch.optim.Adafactor, dict()),
        (modern.Adafactor, torch.optim.Adafactor, dict(lr=0.05, beta2_decay=-0.5, d=2.0, weight_decay=0.1)),
        (modern.Lion, lion_pytorch.Lion, dict(lr=1e-3, weight_decay=0.1), {"tolerance": 1e-12}),
        (modern.ScheduleFreeAdamW, schedulefree.AdamWScheduleFree, dict(lr=0.01, warmup_steps=10, foreach=False)),
        (modern.ScheduleFreeSGD, schedulefree.SGDScheduleFree, dict(lr=0.1, warmup_steps=10, foreach=False)),
        (modern.NAdam, torch.optim.NAdam, dict(lr=0.01)),
        (modern.NAdam, torch.optim.NAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
        (modern.RAdam, torch.optim.RAdam, dict(lr=0.01)),
        (modern.RAdam, torch.optim.RAdam, dict(lr=0.01, weight_decay=0.1)),
    ]


def schedule_parity(checks: Sequence[tuple[str, Schedule, Callable, int, type, Mapping[str, Any]]], *,
                    lr: float = 0.1, tolerance: float = 1e-12) -> ParityTable:  # fmt: skip
    """Run :func:`max_schedule_difference` for each ``(name, schedule, make_torch_scheduler,
    steps, optimizer_cls, optimizer_kwargs)`` and collect the rows (within ``tolerance``)."""
    table = ParityTable()
    for name, schedule, make_torch, steps, optimizer_cls, optimizer_kwargs in checks:
        diff = max_schedule_difference(schedule, make_torch, steps, optimizer_cls, lr, **dict(optimizer_kwargs))
        table.append(ParityRow(name, f"{steps} steps, {_class_name(optimizer_cls)}", diff, tolerance))
    return table
