"""Comparing an answer with the expected one, and saying in a few words how they differ.

:func:`_compare` walks numbers, NumPy arrays, torch tensors and tuples/lists/dicts of those
recursively and returns the first mismatch (path, what differs, expected vs got); the
formatting helpers keep every message short enough to read in a notebook, and the hints name
the usual mistakes (off by a factor, off by one, sign flipped, transposed, wrong precision, a
missing bias correction). The checkers of :mod:`course_lib.teaching.exercises` build their
messages from these pieces.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

Hints = Callable[[Any, Any, Any], "str | None"]
"""``hints(case, expected, got)``: a chapter's own hint for a mismatch, or None."""


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
    off_by_one = _off_by_one_hint(ef, gf)
    if off_by_one:
        return off_by_one
    bias = _bias_correction_hint(ew, gw, loose)
    if bias:
        return bias
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


def _off_by_one_hint(ef: np.ndarray, gf: np.ndarray) -> str | None:
    """Integer answers that are all exactly 1 too large (or all 1 too small): a counting slip.

    Checked before the factor hints, since 1 against an expected 2 is also "half"."""
    if not (np.all(ef == np.round(ef)) and np.all(gf == np.round(gf))):
        return None
    d = gf - ef
    if np.all(d == 1) or np.all(d == -1):
        more = "larger" if d.flat[0] > 0 else "smaller"
        return (f"every answer is exactly 1 {more} than expected: off by one (< instead of <=, a "
                "count that starts at 0 instead of 1, or one step too many/few in a loop?)")
    return None


def _bias_correction_hint(ew: np.ndarray, gw: np.ndarray, loose: dict) -> str | None:
    """A 1-D sequence that is the expected one times 1 - b**t (t = 1, 2, ...) for one b in (0, 1):
    a zero-started average without its bias correction (or, with the inverse factor, a
    correction applied where none was expected)."""
    if ew.ndim != 1 or ew.size < 2 or np.iscomplexobj(ew) or np.iscomplexobj(gw):
        return None
    t = np.arange(1, ew.size + 1)
    nz = np.isfinite(ew) & np.isfinite(gw) & (np.abs(ew) > 1e-300) & (np.abs(gw) > 1e-300)
    if nz.sum() < 2:
        return None
    ratio = gw[nz] / ew[nz]
    for factor, text in ((ratio, "looks like the bias correction is missing: divide the zero-started "
                                 "average by 1 - beta**t, with t counted from 1"),
                         (1 / ratio, "looks like a bias correction was applied where none is expected: "
                                     "the reference is the plain zero-started average")):
        # factor = 1 - b**t at the first nonzero entry gives b; the rest must follow
        b = (1 - factor[0]) ** (1 / t[nz][0])
        if 0 < b < 1 and np.allclose(factor, 1 - b ** t[nz], **loose):
            return text
    return None


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
