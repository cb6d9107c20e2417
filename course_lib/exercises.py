"""Exercises: answer checkers for the notebooks, and student copies without the solutions.

Answer checkers
---------------
``check_function(student_fn, reference_fn, cases)`` calls both functions on every case and
compares the outputs (numbers, NumPy arrays, torch tensors, and tuples/lists/dicts of those,
recursively). It prints one line on success::

    PASS: softmax matches the reference on 5 cases

and, on failure, a few lines about the *first* mismatch: the input, what differs (shape,
dtype, NaN, values), expected vs got, the max abs/rel difference, and a hint when one of the
usual mistakes fits (off by a factor, sign flipped, transposed, missing bias correction, ...).
An exception raised by the student's function is reported as a failure, never a crash.

``check_optimizer_step(student_step, torch.optim.Adam, {"lr": 0.1})`` checks an update rule
written as a pure function against an optimizer class, step by step.

Both return a :class:`CheckResult` (truthy when passed).

Student copies
--------------
Solution cells carry the cell tag ``solution``. ``make_student_copy`` writes a copy of a
notebook in which each solution cell is replaced by a placeholder (``# YOUR CODE HERE`` plus
the signatures of the functions it defined, with ``raise NotImplementedError`` bodies), every
code cell's outputs and execution count are cleared, and the tag becomes ``exercise``::

    python -m course_lib.exercises student-copies --src notebooks --dst student
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import io
import math
import os
import sys
import tokenize
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported lazily (only check_optimizer_step needs it), so that the command line
# stays quick; a value can only be a tensor if torch was imported by whoever made it.

__all__ = [
    "Case",
    "CheckResult",
    "check_function",
    "check_optimizer_step",
    "make_student_copy",
    "make_student_copies",
    "student_placeholder",
    "main",
]

Hints = Callable[[Any, Any, Any], "str | None"]

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
PLACEHOLDER = "# YOUR CODE HERE"
ANSWER_PLACEHOLDER = "*YOUR ANSWER HERE*"


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


# --------------------------------------------------------------------------------------------
# Compact formatting
# --------------------------------------------------------------------------------------------

_MAX_ITEMS = 6


def _fmt_number(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        text = f"{float(x):.6g}"
        return text if any(ch in text for ch in ".eni") else text + ".0"
    if isinstance(x, (complex, np.complexfloating)):
        return f"{complex(x):.4g}"
    return repr(x)


def _fmt_array(arr: np.ndarray, prefix: str, dtype_name: str, default_dtype: str) -> str:
    dtype_part = "" if dtype_name == default_dtype else f", dtype={dtype_name}"
    if arr.ndim == 0:
        return f"{prefix}({_fmt_number(arr.item())}{dtype_part})"
    shape = tuple(arr.shape)
    if arr.ndim >= 2 and arr.size > _MAX_ITEMS:
        return f"{prefix}(shape={shape}{dtype_part})"
    body = np.array2string(
        arr, precision=4, separator=", ", threshold=_MAX_ITEMS, edgeitems=2, max_line_width=10**6
    )
    body = " ".join(body.split())
    shape_part = f", shape={shape}" if arr.size > _MAX_ITEMS else ""
    return f"{prefix}({body}{shape_part}{dtype_part})"


def _short(x: Any, limit: int = 120) -> str:
    """A one-line, length-limited description of a value (inputs and outputs in messages)."""
    s = _short_inner(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _short_inner(x: Any) -> str:
    if _is_tensor(x):
        arr = _tensor_to_numpy(x)
        return _fmt_array(arr, "tensor", str(x.dtype).replace("torch.", ""), "float32")
    if isinstance(x, np.ndarray):
        return _fmt_array(x, "array", str(x.dtype), "float64")
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return _fmt_number(x)
    if isinstance(x, str):
        return repr(x) if len(x) <= 40 else repr(x[:37] + "...")
    if isinstance(x, (tuple, list)):
        items = [_short_inner(v) for v in x[:_MAX_ITEMS]]
        if len(x) > _MAX_ITEMS:
            items.append(f"... ({len(x)} items)")
        if isinstance(x, tuple):
            return "(" + ", ".join(items) + ("," if len(x) == 1 else "") + ")"
        return "[" + ", ".join(items) + "]"
    if isinstance(x, Mapping):
        keys = list(x)
        items = [f"{k!r}: {_short_inner(x[k])}" for k in keys[:_MAX_ITEMS]]
        if len(keys) > _MAX_ITEMS:
            items.append(f"... ({len(keys)} items)")
        return "{" + ", ".join(items) + "}"
    if callable(x) and hasattr(x, "__name__"):
        return x.__name__
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def _format_call_args(args: Sequence, kwargs: Mapping) -> str:
    parts = [_short_inner(a) for a in args] + [f"{k}={_short_inner(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _format_call(name: str, args: Sequence, kwargs: Mapping, limit: int = 200) -> str:
    s = f"{name}({_format_call_args(args, kwargs)})"
    return s if len(s) <= limit else s[: limit - 4] + "...)"


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    import torch

    t = t.detach().cpu().resolve_conj().resolve_neg()
    try:
        return t.numpy()
    except TypeError:  # bfloat16 and friends have no NumPy dtype
        return t.to(torch.float64).numpy()


def _as_numeric(x: Any) -> tuple[np.ndarray, str, str] | None:
    """``(array, kind, dtype name)`` for numbers, arrays and tensors; ``None`` otherwise."""
    if _is_tensor(x):
        arr = _tensor_to_numpy(x)
        return arr, ("scalar" if arr.ndim == 0 else "tensor"), str(x.dtype).replace("torch.", "")
    if isinstance(x, np.ndarray):
        return x, ("scalar" if x.ndim == 0 else "array"), str(x.dtype)
    if isinstance(x, (bool, int, float, complex, np.generic)):
        arr = np.asarray(x)
        return arr, "scalar", type(x).__name__
    return None


_KIND_NAMES = {"tensor": "a torch.Tensor", "array": "a numpy.ndarray", "scalar": "a number"}


def _type_name(x: Any) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


@dataclass
class _Mismatch:
    path: str
    problem: str
    expected: str | None = None
    got: str | None = None
    stats: str | None = None
    hint: str | None = None


def _compare(expected: Any, got: Any, path: str, rtol: float, atol: float) -> _Mismatch | None:
    """The first difference between ``expected`` and ``got`` (depth first), or ``None``."""
    exp_num = _as_numeric(expected)
    if exp_num is not None:
        return _compare_numeric(expected, exp_num, got, path, rtol, atol)

    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return _Mismatch(
                path, f"expected a dict, got {_type_name(got)}", _short(expected), _short(got),
                hint="did the function `return` its result?" if got is None else None,
            )
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            bits = []
            if missing:
                bits.append("missing keys " + ", ".join(map(repr, missing)))
            if extra:
                bits.append("unexpected keys " + ", ".join(map(repr, extra)))
            return _Mismatch(path, "; ".join(bits), _short(list(expected)), _short(list(got)))
        for k in expected:
            m = _compare(expected[k], got[k], f"{path}[{k!r}]", rtol, atol)
            if m is not None:
                return m
        return None

    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            hint = None
            if got is None:
                hint = "did the function `return` its result?"
            elif _as_numeric(got) is not None:
                hint = f"return all {len(expected)} values, e.g. `return a, b`"
            return _Mismatch(
                path, f"expected a {type(expected).__name__} of {len(expected)} values, "
                f"got {_type_name(got)}", _short(expected), _short(got), hint=hint,
            )
        if len(got) != len(expected):
            return _Mismatch(
                path, f"expected {len(expected)} values, got {len(got)}",
                _short(expected), _short(got),
            )
        for i, (e, g) in enumerate(zip(expected, got)):
            m = _compare(e, g, f"{path}[{i}]", rtol, atol)
            if m is not None:
                return m
        return None

    # anything else (None, strings, ...): plain equality
    try:
        equal = bool(expected == got)
    except Exception:
        equal = False
    if equal:
        return None
    hint = None
    if expected is None:
        hint = "the reference returns None (it works in place): don't return a value"
    elif got is None:
        hint = "did the function `return` its result?"
    return _Mismatch(path, "values differ", _short(expected), _short(got), hint=hint)


def _compare_numeric(expected, exp_num, got, path, rtol, atol) -> _Mismatch | None:
    e, ekind, edtype = exp_num
    got_num = _as_numeric(got)
    if got_num is None:
        hint = None
        if got is None:
            hint = "did the function `return` its result?"
        elif isinstance(got, (tuple, list)) and ekind != "scalar":
            hint = f"return {_KIND_NAMES[ekind]}, not a Python {type(got).__name__}"
        return _Mismatch(
            path, f"expected {_KIND_NAMES[ekind]}, got {_type_name(got)}",
            _short(expected), _short(got), hint=hint,
        )
    g, gkind, gdtype = got_num
    if ekind != gkind and "scalar" not in (ekind, gkind):
        convert = "torch.as_tensor(...)" if ekind == "tensor" else "`.numpy()`"
        return _Mismatch(
            path, f"expected {_KIND_NAMES[ekind]}, got {_KIND_NAMES[gkind]}",
            _short(expected), _short(got), hint=f"convert with {convert}, or stay in one library",
        )
    if e.shape != g.shape:
        return _Mismatch(
            path, f"shape mismatch: expected {tuple(e.shape)}, got {tuple(g.shape)}",
            _short(expected), _short(got), hint=_shape_hint(tuple(e.shape), tuple(g.shape)),
        )

    numeric = all(a.dtype.kind in "iufc" for a in (e, g))
    if not numeric:  # bools, strings, objects: exact equality
        try:
            same = bool(np.array_equal(e, g))
        except Exception:
            same = False
        if same:
            return None
        hint = None
        if e.dtype.kind != g.dtype.kind:
            hint = f"dtype: expected {edtype}, got {gdtype}"
        return _Mismatch(path, "values differ", _short(expected), _short(got), hint=hint)

    work = np.complex128 if "c" in (e.dtype.kind, g.dtype.kind) else np.float64
    ew, gw = e.astype(work), g.astype(work)
    with np.errstate(all="ignore"):
        close = np.isclose(gw, ew, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None

    n, n_bad = close.size, int((~close).sum())
    e_nan, g_nan = np.isnan(ew), np.isnan(gw)
    g_inf = np.isinf(gw) & np.isfinite(ew)
    hint = None
    if (g_nan & ~e_nan).any():
        k = int((g_nan & ~e_nan).sum())
        problem = f"got NaN in {k} of {n} entries where the reference is finite"
        hint = ("NaN usually comes from 0/0, log of 0 or a negative number, or sqrt of a "
                "negative number: check eps placement, and that a step counter starts at 1")
    elif (e_nan & ~g_nan).any():
        k = int((e_nan & ~g_nan).sum())
        problem = f"expected NaN in {k} of {n} entries, got finite values"
    elif g_inf.any():
        k = int(g_inf.sum())
        problem = f"got inf in {k} of {n} entries where the reference is finite"
        hint = ("inf comes from overflow or division by zero: a missing eps, "
                "or exp of a large number?")
    else:
        problem = f"values differ in {n_bad} of {n} entries" if n > 1 else "values differ"
    if n > 1:
        idx = tuple(int(i) for i in np.argwhere(~close)[0])
        problem += (f" (first at index {idx}: expected {_fmt_number(e[idx])}, "
                    f"got {_fmt_number(g[idx])})")

    finite = np.isfinite(ew) & np.isfinite(gw)
    stats = None
    if finite.any():
        with np.errstate(all="ignore"):
            diff = np.abs(gw[finite] - ew[finite])
            denom = np.abs(ew[finite])
            safe = np.where(denom > 0, denom, 1.0)
            rel = np.where(denom > 0, diff / safe, np.where(diff > 0, np.inf, 0.0))
        stats = (f"max abs diff {diff.max():.3g}, max rel diff {rel.max():.3g} "
                 f"(rtol={rtol:g}, atol={atol:g})")
        if hint is None:
            hint = _value_hint(ew, gw, e.dtype, g.dtype, edtype, gdtype, rtol, atol)
    return _Mismatch(path, problem, _short(expected), _short(got), stats, hint)


def _shape_hint(es: tuple, gs: tuple) -> str:
    if gs == ():
        return "got a single number: a reduction (sum/mean) over all axes instead of one?"
    if es == ():
        return "expected a single number: missing a reduction (sum/mean)?"
    ne, ng = math.prod(es), math.prod(gs)
    if ne == ng:
        if gs == es[::-1]:
            return "looks transposed"
        if tuple(d for d in es if d != 1) == tuple(d for d in gs if d != 1):
            return "an extra or missing size-1 dimension: keepdim=True, unsqueeze or squeeze?"
        return "same number of entries, different layout: a reshape/view issue?"
    if ng > ne:
        return ("more entries than expected: unintended broadcasting, "
                "e.g. shape (n,) combined with (n, 1)?")
    return "fewer entries than expected: reduced over the wrong axis, or too many axes?"


def _float_bits(dtype: np.dtype) -> int:
    return dtype.itemsize * 8 if dtype.kind == "f" else 0


def _value_hint(ew, gw, edt, gdt, edtype, gdtype, rtol, atol) -> str | None:
    """A guess at why two equally shaped, mostly finite arrays differ."""
    finite = np.isfinite(ew) & np.isfinite(gw)
    ef, gf = ew[finite], gw[finite]
    if ef.size == 0:
        return None
    dtype_note = f" (dtype: expected {edtype}, got {gdtype})" if edtype != gdtype else ""
    if edt.kind in "fc" and gdt.kind in "iub":
        return (f"got integer dtype {gdtype}, the reference is {edtype}: integer division, or "
                "an array/tensor created from integers?")
    if np.all(gf == 0) and np.any(ef != 0):
        return "got all zeros: nothing computed or updated, or the wrong variable returned?"
    if 0 < _float_bits(gdt) < _float_bits(edt) and np.allclose(gf, ef, rtol=1e-4, atol=1e-6):
        return (f"right up to {gdtype} precision: the reference computes in {edtype}; "
                "create arrays/tensors with the input's dtype (e.g. zeros_like)")
    if np.iscomplexobj(ef) or np.iscomplexobj(gf):
        return dtype_note.strip(" ()") or None
    loose = dict(rtol=max(10 * rtol, 1e-6), atol=10 * atol)
    nz = np.abs(ef) > max(atol, 1e-300)
    if nz.any():
        c = float(np.median(gf[nz] / ef[nz]))
        if np.isfinite(c) and c != 0 and not math.isclose(c, 1.0, rel_tol=1e-6) \
                and np.allclose(gf, c * ef, **loose):
            return _factor_hint(c) + dtype_note
    d = float(np.median(gf - ef))
    if d != 0 and np.allclose(gf, ef + d, **loose):
        sign = "+" if d > 0 else "-"
        return f"got = expected {sign} {abs(d):.4g} everywhere (a constant offset)" + dtype_note
    square = ew.ndim == 2 and ew.shape[0] == ew.shape[1]
    if square and np.allclose(gw, ew.T, **loose, equal_nan=True):
        return "looks transposed"
    sorted_g, sorted_e = np.sort(gw, axis=None), np.sort(ew, axis=None)
    if ef.size > 1 and np.allclose(sorted_g, sorted_e, **loose, equal_nan=True):
        return "right values in the wrong places: the wrong axis, or a transpose/reshape?"
    return dtype_note.strip(" ()") or None


def _factor_hint(c: float) -> str:
    if math.isclose(c, -1.0, rel_tol=1e-6):
        return "got = -expected: the sign is flipped"
    text = f"got \u2248 {c:.4g} \u00d7 expected (off by a constant factor)"
    r = round(c)
    if r >= 2 and math.isclose(c, r, rel_tol=1e-6):
        text += ": a sum instead of a mean, or a factor applied twice?"
    elif c > 0 and round(1 / c) >= 2 and math.isclose(1 / c, round(1 / c), rel_tol=1e-6):
        text += ": a mean instead of a sum, or a missing factor?"
    return text


def _call_hints(hints: Hints | None, case: Any, expected: Any, got: Any) -> str | None:
    if hints is None:
        return None
    try:
        out = hints(case, expected, got)
    except Exception as exc:  # a broken hint must not hide the actual result
        return f"(the exercise's hint function failed: {type(exc).__name__}: {exc})"
    return str(out) if out else None


def _display_name(fn: Any, fallback: str = "your function") -> str:
    name = getattr(fn, "__name__", None)
    return name if name and not name.startswith("<") else fallback


def _exception_lines(exc: BaseException, fn: Any) -> list[str]:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:197] + "..."
    lines = [f"  {type(exc).__name__}: {first}" if first else f"  {type(exc).__name__}"]
    code = getattr(fn, "__code__", None)
    if code is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename == code.co_filename]
        if frames:
            f = frames[-1]
            where = f"  at line {f.lineno} in {f.name}"
            if f.line:
                where += f": {f.line.strip()}"
            lines.append(where)
    return lines


def _ordinal_note(i: int, n: int) -> str:
    return f"cases[{i}] (case {i + 1} of {n})"


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

        st_args, st_kwargs = _fresh_copy((args, kwargs))
        try:
            got = student_fn(*st_args, **st_kwargs)
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
            got = student_step(current.clone(), grad.clone(), state, **hyper)
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


# --------------------------------------------------------------------------------------------
# Student copies
# --------------------------------------------------------------------------------------------


def _strip_magics(source: str) -> str:
    """Blank out IPython magics and shell escapes so that ``ast`` can parse the rest."""
    out = []
    for line in source.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            out.append("\n" if line.endswith("\n") else "")
        else:
            out.append(line)
    return "".join(out)


def _header_end(lines: list[str], def_lineno: int) -> tuple[int, int]:
    """(1-based line, column) just after the ``:`` that closes a ``def`` header."""
    rest = "".join(lines[def_lineno - 1:])
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(rest).readline):
        if tok.type != tokenize.OP:
            continue
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
        elif tok.string == ":" and depth == 0:
            return def_lineno + tok.end[0] - 1, tok.end[1]
    raise ValueError("no ':' closing the def header")  # pragma: no cover - ast parsed it


def _function_stub(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The def (decorators, signature, docstring) of ``node`` with a ``raise`` body."""
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    end_line, end_col = _header_end(lines, node.lineno)
    header = lines[first - 1:end_line - 1] + [lines[end_line - 1][:end_col]]
    out = [ln.rstrip("\r\n") for ln in header]

    body0 = node.body[0]
    indent = " " * (node.col_offset + 4)
    if body0.lineno > end_line:
        indent = " " * body0.col_offset
        is_doc = (isinstance(body0, ast.Expr) and isinstance(body0.value, ast.Constant)
                  and isinstance(body0.value.value, str))
        if is_doc:
            doc = lines[body0.lineno - 1:body0.end_lineno]
            doc[-1] = doc[-1][:body0.end_col_offset]
            out += [ln.rstrip("\r\n") for ln in doc]
    out.append(f'{indent}raise NotImplementedError("exercise: implement {node.name}")')
    return "\n".join(out)


def student_placeholder(source: str) -> str:
    """The placeholder for a solution code cell: a comment plus stubs of its top-level defs."""
    try:
        cleaned = _strip_magics(source)
        tree = ast.parse(cleaned)
    except SyntaxError:
        return PLACEHOLDER
    lines = cleaned.splitlines(keepends=True)
    stubs = [_function_stub(lines, node) for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not stubs:
        return PLACEHOLDER
    return PLACEHOLDER + "\n\n" + "\n\n\n".join(stubs)


def _write_notebook_atomic(nb: Any, dst: Path) -> None:
    import nbformat

    from .files import atomic_write

    atomic_write(dst, lambda f: nbformat.write(nb, f), binary=False)


def make_student_copy(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Write the student version of notebook ``src`` to ``dst``; return how many cells changed.

    In the copy, each cell tagged ``solution`` gets a placeholder instead of its source:
    code cells keep ``# YOUR CODE HERE`` plus, for every top-level function the solution
    defined, its decorators, signature and docstring with a
    ``raise NotImplementedError("exercise: implement <name>")`` body (found with ``ast``;
    IPython magics are ignored, unparsable code gets the comment only); markdown cells get
    ``*YOUR ANSWER HERE*``. The tag ``solution`` becomes ``exercise``. Every code cell's
    outputs and execution count are cleared (later outputs may reveal solutions); other
    sources and metadata are kept. ``dst`` is written atomically and may not be ``src``.
    """
    import nbformat

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"refusing to overwrite the solution notebook {src} with its student copy")
    try:
        nb = nbformat.read(src, as_version=4)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{src} is not a readable notebook: {exc}") from exc

    changed = 0
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if SOLUTION_TAG in tags:
            changed += 1
            if cell.cell_type == "code":
                cell.source = student_placeholder(cell.source)
            elif cell.cell_type == "markdown":
                cell.source = ANSWER_PLACEHOLDER
            else:
                cell.source = ""
            new_tags: list[str] = []
            for tag in tags:
                tag = EXERCISE_TAG if tag == SOLUTION_TAG else tag
                if tag not in new_tags:
                    new_tags.append(tag)
            cell.metadata["tags"] = new_tags
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    _write_notebook_atomic(nb, dst)
    return changed


def make_student_copies(
    src_dir: str | os.PathLike, dst_dir: str | os.PathLike
) -> list[tuple[Path, int]]:
    """Student copies of every ``*.ipynb`` in ``src_dir`` (not recursive) into ``dst_dir``.

    Returns ``[(written path, number of solution cells replaced), ...]``; raises
    ``FileNotFoundError`` when ``src_dir`` is missing or holds no notebooks.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"source directory {src_dir} does not exist")
    if dst_dir.resolve() == src_dir.resolve():
        raise ValueError(f"the student folder must differ from the source folder {src_dir}: "
                         "the copies would overwrite the solutions")
    notebooks = sorted(src_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) found in {src_dir}")
    written = []
    for nb_path in notebooks:
        out = dst_dir / nb_path.name
        written.append((out, make_student_copy(nb_path, out)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m course_lib.exercises student-copies [--src DIR] [--dst DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.exercises",
        description="Exercise tooling for the course notebooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("student-copies",
                        help="write notebooks with the solution cells blanked out")
    sc.add_argument("--src", default="notebooks",
                    help="folder with the solution notebooks (default: notebooks)")
    sc.add_argument("--dst", default="student",
                    help="folder for the student copies (default: student)")
    args = parser.parse_args(argv)

    try:
        written = make_student_copies(args.src, args.dst)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        print(f"error: {exc}; install it with `pip install nbformat`", file=sys.stderr)
        return 1
    for path, n in written:
        print(f"wrote {path} ({n} solution cell{'' if n == 1 else 's'} replaced)")
    print(f"{len(written)} student notebook{'' if len(written) == 1 else 's'} in {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
