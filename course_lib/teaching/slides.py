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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..files import atomic_write_notebook

__all__ = ["LONG_CELL_LINES", "slide_type", "apply_slide_metadata", "main"]

LONG_CELL_LINES = 15
"""Code cells longer than this start a sub-slide of their own."""


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
