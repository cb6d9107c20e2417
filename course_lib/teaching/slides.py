"""Slide metadata for presenting the notebooks in JupyterLab (jupyterlab-rise / RISE).

Every cell carries ``metadata.slideshow.slide_type``, set by one rule so that every chapter
presents the same way:

====================================================  ==============
cell                                                   slide type
====================================================  ==============
the title cell (first cell, ``# Title``)               ``slide``
markdown opening with a ``## `` heading                 ``slide``
markdown opening with a ``### `` heading                ``subslide``
the set-up cell (first code cell: imports, seeding)    ``skip``
a solution cell (tag ``solution``)                      ``skip``
a code cell longer than :data:`LONG_CELL_LINES` lines   ``subslide``
any other cell                                          ``-`` (continues the slide)
====================================================  ==============

Skipped cells still run; they are only left out of the slideshow. Apply it with::

    python -m course_lib.teaching.slides notebooks/*.ipynb

**The presentation copy.** A slide ends where a cell ends, so the tracked notebooks alone cannot
give every heading its slide (a markdown cell may hold ``## Summary`` and ``## Exercises``).
``make slides`` presents a copy made by :func:`presentation_copy` (written into the git-ignored
``slides/``, remade on every start), in which, by rule:

- every markdown cell is split before each ``#``/``##``/``###`` heading that is not on its first
  line (not inside a code fence or a ``$$`` block), so each ``##`` heading starts a slide;
- a markdown cell longer than :data:`SLIDE_MARKDOWN_LINES` lines is split at blank lines into
  parts of at most that many lines (where the text allows), each later part a ``subslide``;
- solutions (tag ``solution``) and the cells that run a checker (``exercises.check_...``) are
  ``skip``: the slideshow shows each exercise's question, not its answer;
- the notebook's ``rise`` metadata (read by jupyterlab-rise) fixes a 1280x720 slide and turns
  on ``scroll`` as the fallback for a slide that is still too tall (a long figure output);
- ``rise.css`` beside the copies (jupyterlab-rise loads it) hides JupyterLab's
  "Click to add a cell" footer.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from pathlib import Path

from ..files import atomic_write_notebook, atomic_write_text
from .student_copies import notebooks_to_copy

__all__ = ["LONG_CELL_LINES", "SLIDE_MARKDOWN_LINES", "RISE_SETTINGS", "RISE_CSS", "slide_type",
           "apply_slide_metadata", "split_at_headings", "split_long_markdown", "presentation_copy",
           "write_presentation", "main"]

LONG_CELL_LINES = 15
"""Code cells longer than this start a sub-slide of their own."""


SLIDE_MARKDOWN_LINES = 14
"""Markdown longer than this (source lines) is split into sub-slides in the presentation copy:
at the slides' 1280x720 and the theme's font, about 14 lines of prose and a heading fit."""

RISE_SETTINGS = {"width": 1280, "height": 720, "scroll": True, "center": False, "margin": 0.05,
                 "minScale": 0.2, "maxScale": 1.0, "slideNumber": True, "transition": "none"}  # fmt: skip
"""Notebook metadata ``rise`` of the presentation copy (jupyterlab-rise's configuration)."""

RISE_CSS = """/* written by course_lib.teaching.slides: jupyterlab-rise loads rise.css beside a notebook */
.jp-Notebook-footer { display: none !important; }  /* no "Click to add a cell" box on the slides */
.reveal .jp-Cell-inputCollapser, .reveal .jp-OutputCollapser { display: none; }
"""

_CHECK_CALL = re.compile(r"\bexercises\.check_\w+\(")
_HEADING = re.compile(r"^#{1,3} ")


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _blocks(source: str) -> list[tuple[int, bool]]:
    """(line index, whether a split is allowed before it) for every line: not inside a code
    fence or a ``$$`` display block."""
    out, fence, math = [], False, False
    for i, line in enumerate(source.split("\n")):
        out.append((i, not fence and not math))
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = not fence
        elif not fence and stripped.count("$$") % 2 == 1:
            math = not math
    return out


def _split_cell(cell, cut_before: list[int], later_type: str | None) -> list:
    """``cell`` cut before the given line indices; later parts get ``later_type`` (None: by rule)."""
    lines = _source(cell).split("\n")
    bounds = [0, *sorted(set(cut_before)), len(lines)]
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        text = "\n".join(lines[a:b]).strip("\n")
        if not text.strip():
            continue
        part = copy.deepcopy(cell)
        part.source = text
        if parts and "id" in part:
            from nbformat.corpus.words import generate_corpus_id

            part["id"] = generate_corpus_id()
        if parts and later_type is not None:
            part.metadata.setdefault("slideshow", {})["slide_type"] = later_type
        parts.append(part)
    return parts or [cell]


def split_at_headings(nb) -> int:
    """Split markdown cells before every heading (``#`` to ``###``) that is not on their first
    line, outside code fences and ``$$`` blocks; return how many cells were split."""
    cells, split = [], 0
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            cells.append(cell)
            continue
        lines = _source(cell).split("\n")
        cuts = [i for i, allowed in _blocks(_source(cell)) if allowed and i > 0 and _HEADING.match(lines[i])
                and any(line.strip() for line in lines[:i])]  # fmt: skip
        parts = _split_cell(cell, cuts, None) if cuts else [cell]
        split += len(parts) > 1
        cells.extend(parts)
    nb.cells = cells
    return split


def split_long_markdown(nb, max_lines: int = SLIDE_MARKDOWN_LINES) -> int:
    """Split markdown cells longer than ``max_lines`` at blank lines (outside code fences and
    ``$$`` blocks) into parts of at most ``max_lines`` lines where the text allows (a paragraph
    longer than that stays whole); later parts become sub-slides. Returns how many were split."""
    cells, split = [], 0
    for cell in nb.cells:
        lines = _source(cell).split("\n")
        if cell.cell_type != "markdown" or len(lines) <= max_lines:
            cells.append(cell)
            continue
        allowed = {i for i, ok in _blocks(_source(cell)) if ok and i > 0 and not lines[i - 1].strip()}
        cuts, start = [], 0
        for i in range(1, len(lines) + 1):
            if i - start > max_lines:
                best = max((j for j in allowed if start < j < i), default=None)
                if best is not None:
                    cuts.append(best)
                    start = best
        parts = _split_cell(cell, cuts, "subslide") if cuts else [cell]
        split += len(parts) > 1
        cells.extend(parts)
    nb.cells = cells
    return split


def presentation_copy(nb):
    """A copy of ``nb`` laid out for the slideshow (see the module's docstring); ``nb`` is left alone."""
    out = copy.deepcopy(nb)
    split_at_headings(out)
    apply_slide_metadata(out)  # headings now start their cells: the rule gives each its slide
    split_long_markdown(out)
    for cell in out.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and ("solution" in tags or _CHECK_CALL.search(_source(cell))):
            cell.metadata.setdefault("slideshow", {})["slide_type"] = "skip"
        elif "solution" in tags:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = "skip"
    out.metadata["rise"] = dict(RISE_SETTINGS)
    return out


def write_presentation(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> list[Path]:
    """Write the presentation copy of every notebook of ``src_dir`` and ``rise.css`` into
    ``dst_dir`` (replacing earlier copies: they are derived); return the notebooks written."""
    import nbformat

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    notebooks = notebooks_to_copy(src_dir, dst_dir, "the presentation copy")
    atomic_write_text(dst_dir / "rise.css", RISE_CSS)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        written.append(atomic_write_notebook(dst_dir / path.name, presentation_copy(nb)))
    return written


def slide_type(cell, index: int, first_code_index: int | None) -> str:
    """The slide type the course's rule gives ``cell`` (the ``index``-th cell of its notebook)."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    first_line = source.lstrip().split("\n", 1)[0]
    if cell["cell_type"] == "markdown":
        if index == 0 or first_line.startswith("# ") or first_line.startswith("## "):
            return "slide"
        if first_line.startswith("### "):
            return "subslide"
        return "-"
    if cell["cell_type"] != "code":
        return "-"
    if index == first_code_index or "solution" in cell.get("metadata", {}).get("tags", []):
        return "skip"
    if len(source.strip().splitlines()) > LONG_CELL_LINES:
        return "subslide"
    return "-"


def apply_slide_metadata(nb) -> int:
    """Set every cell's slide type by the rule; return how many cells changed."""
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    changed = 0
    for i, cell in enumerate(nb.cells):
        wanted = slide_type(cell, i, first_code)
        if cell.metadata.get("slideshow", {}).get("slide_type") != wanted:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = wanted
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python -m course_lib.teaching.slides", description="Set slide metadata by the course's rule.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report notebooks whose metadata is off; exit 1 if any")
    args = parser.parse_args(argv)
    off = []
    for path in args.notebooks:
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
        nb = nbformat.read(path, as_version=4)
        changed = apply_slide_metadata(nb)
        if changed:
            off.append(path)
            if not args.check:
                atomic_write_notebook(path, nb)
        print(f"{path}: {changed} cell(s) {'off' if args.check else 'updated'}" if changed else f"{path}: up to date")
    return 1 if (args.check and off) else 0


if __name__ == "__main__":
    sys.exit(main())
