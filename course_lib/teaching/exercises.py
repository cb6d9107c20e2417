"""Answer checkers for the notebooks' exercises: PASS, or the first mismatch and why.

``check_function(student_fn, reference_fn, cases)`` calls both functions on every case and
compares the outputs (numbers, NumPy arrays, torch tensors, and tuples/lists/dicts of those,
recursively; :mod:`course_lib.teaching.answers`). It prints one line on success::

    PASS: softmax matches the reference on 5 cases

and, on failure, a few lines about the *first* mismatch: the input, what differs (shape,
dtype, NaN, values), expected vs got, the max abs/rel difference, and a hint when one of the
usual mistakes fits (off by a factor, sign flipped, transposed, missing bias correction, ...).
An exception raised by the student's function is reported as a failure, never a crash; so is a
call that runs longer than ``time_limit`` seconds (an endless loop is stopped, the kernel does
not hang), and an answer that changes its inputs in place when the reference does not.

``check_optimizer_step(student_step, torch.optim.Adam, {"lr": 0.1})`` checks an update rule
written as a pure function against an optimizer class, step by step.

Both return a :class:`CheckResult` (truthy when passed). Student copies of the notebooks, with
the solutions removed, are made by :mod:`course_lib.teaching.student_copies`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .answers import (Hints, _call_hints, _compare, _display_name, _exception_lines, _format_call,
                      _format_call_args, _is_tensor, _Mismatch, _ordinal_note, _short, _short_inner, _type_name)

if TYPE_CHECKING:
    import torch

# torch is imported lazily (only check_optimizer_step needs it), so that importing the checkers
# stays quick; a value can only be a tensor if torch was imported by whoever made it.

__all__ = ["Case", "CheckResult", "check_function", "check_optimizer_step", "DEFAULT_TIME_LIMIT"]

#: seconds one call of a student's function may take before the check stops it and fails
DEFAULT_TIME_LIMIT = 30.0


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """Outcome of a check: ``passed``, a short human-readable ``message``, and where it failed.

    ``case_index`` is the 0-based index into ``cases`` of the first failing case
    (``check_function``); ``step`` is the 1-based optimizer step of the first mismatch
    (``check_optimizer_step``). Both are ``None`` when the check passed. ``bool(result)`` is
    ``result.passed``, so ``assert check_function(...)`` works in tests.
    """

    passed: bool
    message: str
    case_index: int | None = None
    step: int | None = None
    expected: Any = field(default=None, repr=False, compare=False)
    got: Any = field(default=None, repr=False, compare=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    _shown: bool = field(default=False, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def _repr_markdown_(self) -> str:
        first, _, rest = self.message.partition("\n")
        icon = "\u2705" if self.passed else "\u274c"
        out = f"{icon} **{first}**"
        if rest:
            out += "\n\n```text\n" + rest + "\n```"
        return out

    def _ipython_display_(self) -> None:
        # check_* already printed the message (verbose=True): showing it again as the cell's
        # value would print it twice, so the result stays silent then.
        if self._shown:
            return
        from IPython.display import display

        display({"text/plain": self.message, "text/markdown": self._repr_markdown_()}, raw=True)


class Case:
    """One call with both positional and keyword arguments: ``Case(x, dim=0)``.

    In ``cases``, a plain tuple means positional arguments, a dict means keyword arguments,
    and any other value a single positional argument; ``Case`` covers the mixed case.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return "Case(" + _format_call_args(self.args, self.kwargs) + ")"


def _split_case(case: Any) -> tuple[tuple, dict]:
    if isinstance(case, Case):
        return tuple(case.args), dict(case.kwargs)
    if isinstance(case, tuple):
        return case, {}
    if isinstance(case, Mapping):
        return (), dict(case)
    return (case,), {}


def _fresh_copy(value: Any) -> Any:
    """A deep copy so that a function mutating its inputs cannot affect the other call."""
    try:
        return copy.deepcopy(value)
    except Exception:  # e.g. non-leaf tensors that require grad
        return value

class _TimeLimit(BaseException):
    """Raised inside a student's function that ran past its time limit. A BaseException, so
    that an ``except Exception`` in the student's loop cannot swallow it."""


def _can_time_limit() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_TimeLimit` in the block after ``seconds`` (a real-time timer, SIGALRM).

    Only in the main thread of a Unix process (a notebook's kernel); elsewhere, or with
    ``seconds=None``, there is no limit. An outer timer that would fire first is left alone
    (then no limit is set); otherwise the previous handler and timer are restored afterwards.
    Code inside one long C call (a huge matrix product) is only stopped when the call returns.
    """
    if seconds is None or not _can_time_limit():
        yield
        return
    if seconds <= 0:
        raise ValueError(f"time_limit must be positive seconds or None, got {seconds}")
    old_delay, _ = signal.getitimer(signal.ITIMER_REAL)
    if 0 < old_delay <= seconds:
        yield
        return

    def stop(signum, frame):
        raise _TimeLimit

    old_handler = signal.signal(signal.SIGALRM, stop)
    start = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - start), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def _timeout_head(name: str, limit: float, where: str) -> str:
    return f"FAIL: {name} did not finish within {limit:g} s {where} (an endless loop?); it was stopped there"


def _changed_in_place(before: Any, after: Any) -> bool:
    """Whether ``after`` (an argument after the call) differs from ``before`` (a copy made
    before it): arrays, tensors, lists, dicts and tuples of those are compared exactly (NaN
    equal to NaN); other objects count as unchanged (they cannot be compared reliably)."""
    if _is_tensor(before) and _is_tensor(after):
        import torch

        a, b = before.detach(), after.detach()
        if a.shape != b.shape or a.dtype != b.dtype:
            return True
        if a.is_floating_point() or a.is_complex():
            return not torch.equal(torch.isnan(a), torch.isnan(b)) or not torch.equal(a.nan_to_num(), b.nan_to_num())
        return not torch.equal(a, b)
    if isinstance(before, np.ndarray) and isinstance(after, np.ndarray):
        if before.shape != after.shape or before.dtype != after.dtype:
            return True
        try:
            return not np.array_equal(before, after, equal_nan=True)
        except TypeError:  # dtypes without NaN
            return not np.array_equal(before, after)
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        return len(before) != len(after) or any(_changed_in_place(a, b) for a, b in zip(before, after))
    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() != after.keys() or any(_changed_in_place(before[k], after[k]) for k in before)
    return False


def _changed_arguments(pristine: tuple[tuple, dict], called: tuple[tuple, dict]) -> list[str]:
    """Names (``argument 1``, ``keyword x``) of the arguments a call changed in place."""
    (args0, kwargs0), (args1, kwargs1) = pristine, called
    names = [f"argument {i + 1}" for i, (a, b) in enumerate(zip(args0, args1)) if _changed_in_place(a, b)]
    return names + [f"keyword {k}" for k in kwargs0 if k in kwargs1 and _changed_in_place(kwargs0[k], kwargs1[k])]


# --------------------------------------------------------------------------------------------
# check_function
# --------------------------------------------------------------------------------------------


def check_function(
    student_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Any],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    name: str | None = None,
    hints: Hints | None = None,
    verbose: bool = True,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
) -> CheckResult:
    """Compare ``student_fn`` with ``reference_fn`` on every case; report the first mismatch.

    ``cases``: a list whose items are argument tuples (positional), dicts (keyword
    arguments), :class:`Case` objects (both), or any other single value (one positional
    argument). Each function gets its own deep copy of the arguments, so in-place changes
    by one cannot affect the other.

    Outputs may be numbers, NumPy arrays, torch tensors, or (nested) tuples/lists/dicts of
    those; anything else is compared with ``==``. Numbers compare as in ``numpy.isclose``
    (``|got - expected| <= atol + rtol * |expected|``, NaN equal to NaN); shapes must match
    exactly; a tensor and an ndarray are not interchangeable, scalars (Python numbers, 0-d
    arrays and tensors) are.

    ``hints(case, expected, got) -> str | None`` is called on a value mismatch (not on an
    exception) with the failing case and the two full outputs; a string it returns replaces
    the built-in guess. An exception in ``student_fn`` is a failure, reported with its type
    and message; an exception in ``reference_fn`` is a bug in the exercise and propagates.

    Each call of ``student_fn`` may take ``time_limit`` seconds (``None``: no limit); a call
    that runs longer is stopped and the check fails, saying so (in the main thread of a Unix
    process, e.g. a notebook's kernel; elsewhere there is no limit). A ``student_fn`` that
    changes an argument (array, tensor, list, dict) in place where ``reference_fn`` leaves it
    alone fails too, naming the argument, even when its output is right.

    Prints the result message when ``verbose`` and returns a :class:`CheckResult`.
    """
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one case")
    name = name or _display_name(student_fn)
    n = len(cases)

    result: CheckResult | None = None
    for i, case in enumerate(cases):
        args, kwargs = _split_case(case)
        call = _format_call(name, args, kwargs)
        ref_args, ref_kwargs = _fresh_copy((args, kwargs))
        try:
            expected = reference_fn(*ref_args, **ref_kwargs)
        except Exception as exc:
            raise RuntimeError(
                f"the reference implementation failed on {_ordinal_note(i, n)}: {call}"
            ) from exc

        ref_changed = set(_changed_arguments((args, kwargs), (ref_args, ref_kwargs)))
        st_args, st_kwargs = _fresh_copy((args, kwargs))
        try:
            with _time_limit(time_limit):
                got = student_fn(*st_args, **st_kwargs)
        except _TimeLimit:
            lines = [_timeout_head(name, time_limit, f"on {_ordinal_note(i, n)}"), f"  input: {call}"]
            result = CheckResult(False, "\n".join(lines), case_index=i, expected=expected)
            break
        except Exception as exc:
            if isinstance(exc, NotImplementedError):
                head = f"FAIL: {name} is not implemented yet (it raised NotImplementedError)"
                lines = [head]
            else:
                head = f"FAIL: {name} raised {type(exc).__name__} on {_ordinal_note(i, n)}"
                lines = [head, f"  input: {call}", *_exception_lines(exc, student_fn)]
            result = CheckResult(False, "\n".join(lines), case_index=i, expected=expected,
                                 exception=exc)
            break

        changed = [a for a in _changed_arguments((args, kwargs), (st_args, st_kwargs)) if a not in ref_changed]
        if changed:
            lines = [f"FAIL: {name} changed its input in place on {_ordinal_note(i, n)} "
                     f"({', '.join(changed)}); the reference leaves its inputs alone",
                     f"  input: {call}",
                     "  hint: compute a new value (y = x * 2, not x *= 2; x.copy() or x.clone() first if needed)"]
            result = CheckResult(False, "\n".join(lines), case_index=i, expected=expected, got=got)
            break

        mismatch = _compare(expected, got, "output", rtol, atol)
        if mismatch is not None:
            mismatch.hint = _call_hints(hints, case, expected, got) or mismatch.hint
            lines = [f"FAIL: {name} differs from the reference on {_ordinal_note(i, n)}",
                     f"  input:    {call}", *_mismatch_lines(mismatch)]
            result = CheckResult(False, "\n".join(lines), case_index=i, expected=expected, got=got)
            break

    if result is None:
        plural = "case" if n == 1 else "cases"
        result = CheckResult(True, f"PASS: {name} matches the reference on {n} {plural}")
    return _emit(result, verbose)


def _mismatch_lines(m: _Mismatch) -> list[str]:
    lines = [f"  {m.path}: {m.problem}"]
    if m.expected is not None:
        lines.append(f"  expected: {m.expected}")
    if m.got is not None:
        lines.append(f"  got:      {m.got}")
    if m.stats:
        lines.append(f"  {m.stats}")
    if m.hint:
        lines.append(f"  hint: {m.hint}")
    return lines


def _emit(result: CheckResult, verbose: bool) -> CheckResult:
    if verbose:
        print(result.message)
        result._shown = True
    return result


# --------------------------------------------------------------------------------------------
# check_optimizer_step
# --------------------------------------------------------------------------------------------


def _class_name(cls: Any) -> str:
    module = getattr(cls, "__module__", "") or ""
    qual = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", repr(cls))
    if module.startswith("torch.optim"):
        return f"torch.optim.{qual}"
    return qual


def _default_hyper(cls: Any, key: str) -> Any:
    try:
        p = inspect.signature(cls).parameters.get(key)
    except (TypeError, ValueError):
        return None
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def check_optimizer_step(
    student_step: Callable,
    reference_optimizer_cls: Callable,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    *,
    steps: int = 20,
    shape: tuple[int, ...] = (5,),
    seed: int = 0,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    name: str | None = None,
    hints: Hints | None = None,
    student_kwargs: Mapping[str, Any] | None = None,
    grads: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    verbose: bool = True,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
) -> CheckResult:
    """Check an update rule written as a pure function against a torch-style optimizer.

    The contract for ``student_step``::

        new_param = student_step(param, grad, state, **hyper)

    - ``param``, ``grad``: ``torch.float64`` tensors of ``shape``. They are fresh copies on
      every call, so modifying them in place is allowed but has no effect unless the result
      is returned.
    - ``state``: a ``dict``, empty on the first call, and the *same* dict object on every
      later call; keep whatever the rule needs between steps in it (moments, a step count,
      ...), mutating it in place.
    - ``hyper``: ``optimizer_kwargs`` as keyword arguments (e.g. ``lr=0.1,
      betas=(0.9, 0.999)``), or ``student_kwargs`` when given (for other names).
    - returns the updated parameter (a tensor, or anything ``torch.as_tensor`` accepts, of
      the same shape). Returning ``None`` is a failure.

    The reference is ``reference_optimizer_cls([p], **optimizer_kwargs)`` on a float64
    ``torch.nn.Parameter`` ``p`` (e.g. ``torch.optim.Adam``, or any class with the same
    constructor and ``.step()``). Both start from the same ``init`` (default: standard normal,
    seeded by ``seed``) and receive the same pre-generated gradients ``grads[t]`` (default:
    standard normal times per-entry scales from 1e-3 to 10, float64, seeded; the gradients do
    not depend on the parameter). Before each reference step ``p.grad`` is set to the
    gradient. After every step (1-based) the two parameters are compared like
    ``numpy.isclose(rtol, atol)``; the first step where they differ is reported, with a guess
    at the cause (missing bias correction, wrong sign, learning rate, state not kept).

    ``hints(case, expected, got)`` is called on a mismatch with ``case = {"step": t,
    "param": param before the step, "grad": grad, "state": state}`` and the two parameters.
    Each call of ``student_step`` may take ``time_limit`` seconds (``None``: no limit), as in
    :func:`check_function`; a longer one is stopped and reported as a failure.
    Prints the message when ``verbose`` and returns a :class:`CheckResult` (``step`` is the
    first failing step).
    """
    import torch

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    optimizer_kwargs = dict(optimizer_kwargs or {})
    hyper = dict(student_kwargs if student_kwargs is not None else optimizer_kwargs)
    name = name or _display_name(student_step, "your update rule")
    ref_name = _class_name(reference_optimizer_cls)

    gen = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if init is None:
        init = torch.randn(shape, generator=gen, dtype=torch.float64)
    else:
        init = torch.as_tensor(init, dtype=torch.float64).clone()
        shape = tuple(init.shape)
    if grads is None:
        numel = max(math.prod(shape), 1)
        scales = torch.logspace(-3, 1, numel, dtype=torch.float64).reshape(shape)
        grads = torch.randn((steps, *shape), generator=gen, dtype=torch.float64) * scales
    else:
        grads = torch.as_tensor(grads, dtype=torch.float64)
        if grads.shape[1:] != init.shape or grads.shape[0] < steps:
            raise ValueError(f"grads must have shape ({steps}, *{tuple(init.shape)}), "
                             f"got {tuple(grads.shape)}")

    p = torch.nn.Parameter(init.clone())
    opt = reference_optimizer_cls([p], **optimizer_kwargs)
    state: dict = {}
    current = init.clone()
    hyper_text = ", ".join(f"{k}={_short_inner(v)}" for k, v in hyper.items())

    result: CheckResult | None = None
    for t in range(1, steps + 1):
        grad = grads[t - 1]
        ref_before = p.detach().clone()
        p.grad = grad.clone()
        opt.step()
        expected = p.detach().clone()

        head = f"FAIL: {name} differs from {ref_name} at step {t} of {steps}"
        try:
            with _time_limit(time_limit):
                got = student_step(current.clone(), grad.clone(), state, **hyper)
        except _TimeLimit:
            lines = [_timeout_head(name, time_limit, f"at step {t} of {steps}"),
                     f"  hyperparameters: {hyper_text or '(none)'}"]
            result = CheckResult(False, "\n".join(lines), step=t, expected=expected)
            break
        except Exception as exc:
            if isinstance(exc, NotImplementedError):
                lines = [f"FAIL: {name} is not implemented yet (it raised NotImplementedError)"]
            else:
                lines = [f"FAIL: {name} raised {type(exc).__name__} at step {t} of {steps}",
                         f"  hyperparameters: {hyper_text or '(none)'}",
                         *_exception_lines(exc, student_step)]
            result = CheckResult(False, "\n".join(lines), step=t, expected=expected, exception=exc)
            break

        if got is None:
            lines = [head, "  param: got None instead of the updated parameter",
                     "  hint: `return` the new parameter (the step must not only update in place)"]
            result = CheckResult(False, "\n".join(lines), step=t, expected=expected, got=got)
            break
        if _is_tensor(got):
            got_t = got.detach()
        else:
            try:
                got_t = torch.as_tensor(np.asarray(got))
            except Exception:
                got_t = None
        mismatch = (_compare(expected, got_t, "param", rtol, atol) if got_t is not None else
                    _Mismatch("param", f"expected a tensor, got {_type_name(got)}",
                              _short(expected), _short(got)))
        if mismatch is not None:
            case = {"step": t, "param": current.clone(), "grad": grad.clone(), "state": state}
            auto = None
            if got_t is not None and got_t.shape == expected.shape and got_t.is_floating_point():
                auto = _optimizer_hint(
                    t, (expected - ref_before).numpy(),
                    (got_t.to(torch.float64) - current).numpy(),
                    reference_optimizer_cls, optimizer_kwargs,
                )
            mismatch.hint = _call_hints(hints, case, expected, got) or auto or mismatch.hint
            lines = [head, f"  hyperparameters: {hyper_text or '(none)'}",
                     *_mismatch_lines(mismatch)]
            result = CheckResult(False, "\n".join(lines), step=t, expected=expected, got=got)
            break
        current = got_t.to(torch.float64).clone()

    if result is None:
        plural = "step" if steps == 1 else "steps"
        result = CheckResult(True, f"PASS: {name} matches {ref_name} over {steps} {plural}")
    return _emit(result, verbose)


def _optimizer_hint(t: int, exp_delta: np.ndarray, got_delta: np.ndarray,
                    cls: Any, kwargs: Mapping[str, Any]) -> str | None:
    """Guess why the update (new - old parameter) differs, from how the two updates relate."""
    matched = "step 1" if t == 2 else f"steps 1 to {t - 1}"
    later = ("" if t == 1 else
             f"; {matched} matched, so also check what is kept in `state` between steps")
    if not np.isfinite(got_delta).all():
        return None  # the generic NaN/inf hint is better
    if np.all(got_delta == 0) and np.any(exp_delta != 0):
        return "the parameter did not change: return the updated parameter" + later
    nz = np.abs(exp_delta) > 1e-300
    if not nz.any():
        return None
    c = float(np.median(got_delta[nz] / exp_delta[nz]))
    if not np.isfinite(c) or not np.allclose(got_delta, c * exp_delta, rtol=1e-3, atol=1e-12):
        if t > 1:
            return (f"{matched} matched: check that everything the rule needs between "
                    "steps (moments, step count) is stored in `state` and updated every step")
        wd = kwargs.get("weight_decay", 0) or 0
        if wd:
            return ("check the weight decay: Adam-style L2 adds weight_decay * param to the "
                    "gradient, AdamW shrinks the parameter by lr * weight_decay * param")
        return None

    betas = kwargs.get("betas", _default_hyper(cls, "betas"))
    if isinstance(betas, (tuple, list)) and len(betas) == 2:
        b1, b2 = float(betas[0]), float(betas[1])
        if 0 < b1 < 1 and 0 < b2 < 1:
            guesses = {
                "looks like bias correction is missing: divide m by (1 - beta1**t) and v by "
                "(1 - beta2**t), with t starting at 1": (1 - b1**t) / math.sqrt(1 - b2**t),
                "looks like the bias correction of the first moment m, (1 - beta1**t), "
                "is missing": 1 - b1**t,
                "looks like the bias correction of the second moment v, (1 - beta2**t), "
                "is missing": 1 / math.sqrt(1 - b2**t),
            }
            for text, factor in guesses.items():
                if math.isclose(c, factor, rel_tol=1e-3):
                    return text
    if math.isclose(c, -1.0, rel_tol=1e-6):
        return "the update has the wrong sign: step against the gradient (param - lr * ...)"
    lr = kwargs.get("lr", _default_hyper(cls, "lr"))
    if isinstance(lr, (int, float)) and lr > 0 and not math.isclose(lr, 1.0):
        if math.isclose(c, lr, rel_tol=1e-6):
            return "the update is lr times too small: is lr applied twice?"
        if math.isclose(c, 1 / lr, rel_tol=1e-6):
            return "the update is 1/lr times too large: is lr missing?"
    return f"the update is {c:.4g} \u00d7 the reference's update (off by a constant factor)" + later
