"""Student copies: the notebooks with each exercise's solution replaced by a placeholder.

Solution cells carry the cell tag ``solution``. :func:`make_student_copy` writes a copy of a
notebook in which each solution cell is replaced by a placeholder (``# YOUR CODE HERE`` plus
the signatures of the functions it defined, with ``raise NotImplementedError`` bodies), every
code cell's outputs and execution count are cleared, and the tag becomes ``exercise``. An
exercise answered in prose gets a markdown cell to write into: its markdown solution becomes
``*YOUR ANSWER HERE*``, and an exercise whose solution is only a computation (code that defines
no function, so no checker can judge it) gets such a cell after the code::

    python -m course_lib.teaching.student_copies --src notebooks --dst student

:func:`make_working_copy` is what ``make lab`` uses: it adds the student copy of every chapter
that is not yet in the working folder and never overwrites a file there.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import sys
import tokenize
from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_write_notebook

__all__ = ["SOLUTION_TAG", "EXERCISE_TAG", "student_placeholder", "make_student_copy", "make_student_copies",
           "make_working_copy", "main"]

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
PLACEHOLDER = "# YOUR CODE HERE"
ANSWER_PLACEHOLDER = "*YOUR ANSWER HERE*"
COMPUTATION_ANSWER = "*YOUR ANSWER HERE: what does your computation show, and why?*"

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

    _add_answer_cells(nb)
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
    atomic_write_notebook(dst, nb)
    return changed


def _defines_function(source: str) -> bool:
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in tree.body)


def _add_answer_cells(nb) -> int:
    """Insert a markdown answer cell after each exercise answered only by a computation.

    An exercise's solution is a run of ``solution`` cells (other cells may sit between them)
    up to the next markdown cell that is not a solution. A run with no markdown solution and
    no function definition (so no checker judges it) gets a markdown cell tagged ``exercise``
    with :data:`COMPUTATION_ANSWER`, right after its last solution cell. Returns how many."""
    import nbformat

    runs, current = [], []
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            current.append(i)
        elif cell.cell_type == "markdown" and current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    inserted = 0
    for run in reversed(runs):
        cells = [nb.cells[i] for i in run]
        if any(c.cell_type == "markdown" for c in cells) or any(_defines_function(c.source) for c in cells):
            continue
        answer = nbformat.v4.new_markdown_cell(COMPUTATION_ANSWER, metadata={"tags": [EXERCISE_TAG]})
        answer.metadata["slideshow"] = {"slide_type": "skip"}
        nb.cells.insert(run[-1] + 1, answer)
        inserted += 1
    return inserted


def notebooks_to_copy(src_dir: Path, dst_dir: Path, what: str) -> list[Path]:
    """The notebooks of ``src_dir`` (sorted) for a derived copy ``what`` in ``dst_dir``, which is
    created; errors when there are none or when ``dst_dir`` is ``src_dir`` (git tracks it)."""
    notebooks = sorted(src_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) found in {src_dir}")
    if dst_dir.resolve() == src_dir.resolve():
        raise ValueError(f"{what} must differ from {src_dir}, which git tracks")
    dst_dir.mkdir(parents=True, exist_ok=True)
    return notebooks


def make_working_copy(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Add the student copy of each notebook of ``src_dir`` that ``dst_dir`` lacks.

    A notebook already in ``dst_dir`` is a student's work and is never overwritten (delete it
    to start that chapter afresh). Returns ``(added, kept)``: the paths written and the paths
    left alone. ``dst_dir`` is created when missing and may not be ``src_dir``.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    notebooks = notebooks_to_copy(src_dir, dst_dir, "the working copy")
    added, kept = [], []
    for nb_path in notebooks:
        out = dst_dir / nb_path.name
        if out.exists():
            kept.append(out)
        else:
            make_student_copy(nb_path, out)
            added.append(out)
    return added, kept


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
    """Command line: ``python -m course_lib.teaching.student_copies [--src DIR] [--dst DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.teaching.student_copies",
        description="Write copies of the course notebooks with the solution cells blanked out.",
    )
    parser.add_argument("--src", default="notebooks", help="folder with the solution notebooks (default: notebooks)")
    parser.add_argument("--dst", default="student", help="folder for the student copies (default: student)")
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
