"""A static HTML copy of the course, for reading without running anything.

Executes every notebook (fast or full mode) and writes one HTML page per chapter, figures
embedded, plus an index page with the course map::

    python -m course_lib.teaching.site --mode fast --out site       # or: make site

Each page is written as soon as its notebook has run (to a temporary name, then renamed), so
an interrupted build keeps the pages it finished. The output folder is git-ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..files import atomic_write_text

__all__ = ["Chapter", "chapter_info", "build_site", "main"]


@dataclass
class Chapter:
    notebook: str  # file name
    page: str  # HTML file name
    title: str
    summary: str
    figures: int = 0
    seconds: float = 0.0


def chapter_info(nb, notebook_name: str) -> Chapter:
    """Title (the first ``# `` heading) and summary (the paragraph under it) of a notebook."""
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    text = first.source if first is not None else ""
    title_match = re.search(r"^# (.+)$", text, flags=re.M)
    title = title_match.group(1).strip() if title_match else notebook_name
    body = text[title_match.end():] if title_match else text
    paragraph = next((p.strip() for p in body.split("\n\n") if p.strip()), "")
    return Chapter(notebook=notebook_name, page=Path(notebook_name).with_suffix(".html").name,
                   title=title, summary=" ".join(paragraph.split()))  # fmt: skip


@contextlib.contextmanager
def _environment(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _count_figures(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))  # fmt: skip


def _index_page(chapters: list[Chapter], mode: str) -> str:
    rows = "\n".join(
        f"<tr><td>{i:02d}</td><td><a href=\"{html.escape(c.page)}\">{html.escape(c.title)}</a></td>"
        f"<td>{html.escape(c.summary)}</td><td>{c.figures}</td><td>{c.seconds:.0f} s</td></tr>"
        for i, c in enumerate(chapters, start=1)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Optimization methods for deep learning</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.5}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.4em .6em;vertical-align:top}}</style>
</head><body>
<h1>Optimization methods for deep learning</h1>
<p>A hands-on course: every chapter below was executed in <b>{mode}</b> mode to make this copy.</p>
<table><tr><th>#</th><th>chapter</th><th>what it shows</th><th>figures</th><th>run time</th></tr>
{rows}
</table></body></html>
"""


def build_site(notebooks_dir: str | os.PathLike, out: str | os.PathLike, *, fast: bool = True,
               timeout: int = 900, log=print) -> list[Chapter]:  # fmt: skip
    """Execute every notebook in ``notebooks_dir`` and write ``out/index.html`` and one page each."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    notebooks = sorted(Path(notebooks_dir).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {notebooks_dir}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    chapters = []
    with _environment(COURSE_FAST="1" if fast else "0", CI=os.environ.get("CI", "1")):
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            chapter = chapter_info(nb, path.name)
            start = time.perf_counter()
            try:
                NotebookClient(nb, timeout=timeout, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
            except CellExecutionError as exc:
                raise RuntimeError(f"{path.name} failed while building the site:\n{exc}") from None
            chapter.seconds = time.perf_counter() - start
            chapter.figures = _count_figures(nb)
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": chapter.title}})
            atomic_write_text(out / chapter.page, body)
            chapters.append(chapter)
            log(f"{path.name}: {chapter.figures} figures, {chapter.seconds:.0f} s -> {out / chapter.page}")
    atomic_write_text(out / "index.html", _index_page(chapters, "fast" if fast else "full"))
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.teaching.site", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("fast", "full"), default="fast")
    parser.add_argument("--notebooks", type=Path, default=config.repo_root() / "notebooks")
    parser.add_argument("--out", type=Path, default=config.repo_root() / "site")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        chapters = build_site(args.notebooks, args.out, fast=args.mode == "fast")
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {len(chapters)} chapter pages + index.html in {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
