"""Showing the algorithm itself in a notebook: a function's source, whole or one marked part.

The chapters show the very code that runs, not a copy: ``show(optim.sgd_rule)`` renders the
rule's source as highlighted Python in JupyterLab (and as plain text anywhere else).

A part of a function is selected by a **marker comment**, a line ``# [name]`` (optionally
followed by more comment text) inside the function. The part runs from its marker to the next
marker or the end of the function::

    def sgd_rule(...):
        # [weight decay]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        # [momentum]
        ...

``show(optim.sgd_rule, "weight decay")`` shows just those two lines. Asking for a part the
function does not mark raises a ``ValueError`` that lists the parts it has, so a renamed or
moved marker fails loudly instead of showing the wrong lines.
"""

from __future__ import annotations

import ast
import html
import inspect
import re
import textwrap
from typing import Any

__all__ = ["Source", "source", "parts", "show"]

_MARKER = re.compile(r"^\s*# \[(?P<name>[^\]]+)\](?P<rest>.*)$")


def _docstring_span(lines: list[str]) -> tuple[int, int] | None:
    """Line indices [start, end) of the docstring of the function or class in ``lines``, if any."""
    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not node.body:
        return None
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.lineno - 1, first.end_lineno
    return None


def parts(obj: Any) -> list[str]:
    """The names of the marked parts of ``obj``'s source, in order."""
    return [m.group("name") for m in map(_MARKER.match, inspect.getsource(obj).splitlines()) if m]


def source(obj: Any, part: str | None = None, *, docstring: bool = True) -> str:
    """The source of ``obj`` (a function, method or class), or of its marked ``part``, dedented.

    ``docstring=False`` leaves the docstring out. A part starts after its ``# [part]`` marker
    (text after the marker is kept as a comment) and ends before the next marker.
    """
    lines = inspect.getsource(obj).splitlines()
    if part is None:
        if not docstring:
            span = _docstring_span(lines)
            if span is not None:
                lines = lines[: span[0]] + lines[span[1]:]
        return textwrap.dedent("\n".join(lines))
    starts = [i for i, line in enumerate(lines) if (m := _MARKER.match(line)) and m.group("name") == part]
    if not starts:
        have = parts(obj)
        name = getattr(obj, "__qualname__", repr(obj))
        raise ValueError(f"{name} has no part marked '# [{part}]'; its parts: {have or 'none'}")
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if _MARKER.match(lines[i])), len(lines))
    rest = _MARKER.match(lines[start]).group("rest").strip()
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    body = ([f"{indent}# {rest}"] if rest else []) + lines[start + 1 : end]
    return textwrap.dedent("\n".join(body)).strip("\n")


class Source:
    """Source code that a notebook displays highlighted (HTML) and prints as plain text."""

    def __init__(self, code: str, title: str = "") -> None:
        self.code, self.title = code, title

    def __str__(self) -> str:
        return (f"# {self.title}\n" if self.title else "") + self.code

    __repr__ = __str__

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer
        except ImportError:  # pragma: no cover - pygments comes with IPython
            body = f"<pre>{html.escape(self.code)}</pre>"
        else:
            body = highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
        title = f'<div style="font-family: monospace; opacity: 0.7">{html.escape(self.title)}</div>' if self.title else ""
        return title + body


def show(obj: Any, part: str | None = None, *, docstring: bool = True) -> Source:
    """``obj``'s source (or its marked ``part``) as a :class:`Source`: highlighted when it is a
    notebook cell's value, plain text when printed. See :func:`source` for the arguments."""
    module = getattr(obj, "__module__", "")
    title = f"{module}.{getattr(obj, '__qualname__', '')}" + (f"  [{part}]" if part else "")
    return Source(source(obj, part, docstring=docstring), title)
