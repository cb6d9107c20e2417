"""A static HTML copy of the course, for reading without running anything.

Executes every notebook (fast or full mode) and writes one HTML page per chapter, figures
embedded, plus an index page with the course map::

    python -m course_lib.teaching.site --mode fast --out site       # or: make site

The tool is nbconvert (its ``lab`` template, the look of JupyterLab) driven by nbclient, the
same two libraries nbval and JupyterLab's own export use: no second toolchain to install, and
pages that look like the notebooks. A chapter that fails or runs past the per-cell timeout does
not stop the build: its page shows the cells that ran, with a banner that says which cell
failed and why, and the remaining chapters are built. ``index.html`` is rewritten after every
page (chapters not built yet are listed as such), each file written to a temporary name and
renamed, so an interrupted build keeps what it finished.

Every page links to the index and to the previous and next chapter; links to ``.ipynb``
notebooks become links to their ``.html`` pages. The index renders each chapter's summary
(markdown and math). Formulas are typeset by MathJax, loaded from its CDN (nbconvert's
default): offline, the TeX source stays readable as text. The animations' player is
self-contained; its buttons, which matplotlib draws with icons from a CDN, get text symbols.
The output folder is git-ignored.
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

__all__ = ["CELL_TIMEOUT", "Chapter", "chapter_info", "build_site", "main"]

CELL_TIMEOUT = {"fast": 600, "full": 1800}
"""Seconds one cell may run, by mode. From docs/run-times.md: the slowest chapter takes 229 s in
fast mode and 282 s in full mode in all (on 2 quiet cores), and several times that on a loaded
machine; a single cell is a fraction of its chapter, so 600 s (fast) and 1800 s (full) stop
only a cell that hangs."""


@dataclass
class Chapter:
    notebook: str  # file name
    page: str  # HTML file name
    title: str
    summary: str
    figures: int = 0
    seconds: float = 0.0
    error: str | None = None  # what failed, when the chapter did not run to the end
    built: bool = False


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


_STYLE = """body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.5}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4em .6em;vertical-align:top}
td p{margin:0}.failed{color:#a00}"""


def _markdown(text: str) -> str:
    """Markdown (with $...$ math left for MathJax) as HTML, relative ``.ipynb`` links as ``.html``."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return _ipynb_links_to_html(markdown2html_mistune(text))


def _ipynb_links_to_html(page: str) -> str:
    """``href="x.ipynb"`` (and ``x.ipynb#anchor``) as ``href="x.html"``; absolute URLs are left alone."""
    return re.sub(r'href="(?![a-z]+://)([^"#]*?)\.ipynb(#[^"]*)?"', lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', page)


def _index_page(chapters: list[Chapter], mode: str, mathjax_url: str) -> str:
    def status(c: Chapter) -> str:
        if not c.built:
            return "not built yet"
        if c.error:
            return f'<span class="failed">failed: {html.escape(c.error.splitlines()[0])}</span>'
        return f"{c.seconds:.0f} s"

    rows = "\n".join(
        f"<tr><td>{i:02d}</td><td>"
        + (f'<a href="{html.escape(c.page)}">{html.escape(c.title)}</a>' if c.built else html.escape(c.title))
        + f"</td><td>{_markdown(c.summary)}</td><td>{c.figures}</td><td>{status(c)}</td></tr>"
        for i, c in enumerate(chapters, start=1)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Optimization methods for deep learning</title>
<style>{_STYLE}</style>
<script type="text/x-mathjax-config">MathJax.Hub.Config({{tex2jax: {{inlineMath: [["$", "$"]], processEscapes: true}}}});</script>
<script src="{html.escape(mathjax_url)}"></script>
</head><body>
<h1>Optimization methods for deep learning</h1>
<p>A hands-on course: every chapter below was executed in <b>{mode}</b> mode to make this copy.
Formulas need a network connection to be typeset (MathJax); without one they show as TeX.</p>
<table><tr><th>#</th><th>chapter</th><th>what it shows</th><th>figures</th><th>run time</th></tr>
{rows}
</table></body></html>
"""


_PLAYER_ICONS = {"fa fa-play fa-flip-horizontal": "\u25c0", "fa fa-fast-backward": "\u23ee",
                 "fa fa-step-backward": "\u23f4\u2759", "fa fa-fast-forward": "\u23ed",
                 "fa fa-step-forward": "\u2759\u23f5", "fa fa-pause": "\u23f8", "fa fa-play": "\u25b6",
                 "fa fa-minus": "\u2212", "fa fa-plus": "+"}  # fmt: skip


def _offline_player(page: str) -> str:
    """matplotlib's animation player with text symbols instead of its CDN icon font."""
    for cls, symbol in _PLAYER_ICONS.items():
        page = page.replace(f'<i class="{cls}"></i>', f'<span aria-hidden="true">{symbol}</span>')
    return page


def _navigation(chapters: list[Chapter], i: int) -> str:
    links = ['<a href="index.html">course index</a>']
    if i > 0:
        links.append(f'<a href="{html.escape(chapters[i - 1].page)}" rel="prev">\u2190 {html.escape(chapters[i - 1].title)}</a>')
    if i + 1 < len(chapters):
        links.append(f'<a href="{html.escape(chapters[i + 1].page)}" rel="next">{html.escape(chapters[i + 1].title)} \u2192</a>')
    return ('<nav class="course-nav" style="font-family:sans-serif;padding:.6em 1em;border-bottom:1px solid #ccc">'
            + " \u00b7 ".join(links) + "</nav>")  # fmt: skip


def _failure_banner(error: str) -> str:
    return ('<div class="course-failed" style="font-family:sans-serif;background:#fee;border:2px solid #a00;'
            'padding:1em;margin:1em">'
            "<b>This chapter did not finish while the site was built.</b> The cells above the failure "
            f"ran and show their outputs; the rest did not run.<pre>{html.escape(error)}</pre></div>")  # fmt: skip


def _static_outputs(nb) -> None:
    """A static page has no kernel: an output that also carries a picture shows the picture
    instead of a widget that cannot move (explorers, course_lib.teaching.explorers)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and "image/png" in data:
                del data["application/vnd.jupyter.widget-view+json"]


def _describe_failure(exc: BaseException, timeout: int) -> str:
    name = type(exc).__name__
    if "Timeout" in name:
        return f"{name}: a cell ran longer than the per-cell timeout of {timeout} s\n{exc}"
    text = str(exc).strip()
    if getattr(exc, "ename", None):  # nbclient's CellExecutionError: the error the cell raised, then the cell
        return f"{exc.ename}: {exc.evalue} (a cell raised it)\n{text[-3000:]}"
    return f"{name}: {text[-3000:]}" if text else name


WAIT_SLICE = 0.5
"""Seconds of one wait for a kernel message; a long wait is made of such slices (see :func:`_wait_in_slices`)."""


def _wait_in_slices(get_msg, slice_seconds: float = WAIT_SLICE):
    """``get_msg(timeout)`` of a kernel channel, rewritten to wait at most ``slice_seconds`` at a
    time and ask again until the message comes or the caller's ``timeout`` (None: none) is spent.

    Why: nbclient waits for a cell's reply with one call as long as the whole cell timeout, and a
    wake-up can be missed while it also reads the other channel (nbclient issue 312): the reply
    sits in the socket and the wait runs to its end. Here chapter 01's explorer cell (widgets
    and a picture) finished in 0.1 s and nbclient went on 600 s later; each new wait checks the
    socket first, so a missed wake-up now costs one slice.
    """
    from queue import Empty

    async def sliced(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_seconds if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=min(slice_seconds, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return sliced


def _notebook_client(nb, **options):
    """An nbclient ``NotebookClient`` for ``nb`` whose kernel client waits in slices
    (:func:`_wait_in_slices`) on its shell and IOPub channels; ``options`` go to the client."""
    from nbclient import NotebookClient

    class SlicedWaits(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            for channel in (kc.shell_channel, kc.iopub_channel):
                channel.get_msg = _wait_in_slices(channel.get_msg)
            return kc

    return SlicedWaits(nb, **options)


def build_site(notebooks_dir: str | os.PathLike, out: str | os.PathLike, *, fast: bool = True,
               timeout: int | None = None, only: list[str] | None = None, log=print) -> list[Chapter]:  # fmt: skip
    """Execute the notebooks in ``notebooks_dir`` and write ``out/index.html`` and one page each.

    ``timeout``: seconds per cell (default :data:`CELL_TIMEOUT` of the mode); ``only``: notebook
    file names to build (default: all). A chapter that fails is reported on its page and in the
    index (``Chapter.error``), and the build goes on. Raises ``FileNotFoundError`` when there
    are no notebooks.
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebooks = sorted(Path(notebooks_dir).glob("*.ipynb"))
    if only is not None:
        notebooks = [p for p in notebooks if p.name in set(only)]
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {notebooks_dir}")
    mode = "fast" if fast else "full"
    timeout = CELL_TIMEOUT[mode] if timeout is None else timeout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    loaded = [nbformat.read(path, as_version=4) for path in notebooks]
    chapters = [chapter_info(nb, path.name) for nb, path in zip(loaded, notebooks)]
    with _environment(COURSE_FAST="1" if fast else "0", CI=os.environ.get("CI", "1")):
        for i, (path, nb, chapter) in enumerate(zip(notebooks, loaded, chapters)):
            start = time.perf_counter()
            try:
                _notebook_client(nb, timeout=timeout, kernel_name="python3",
                                 resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
            except Exception as exc:  # a failing or hanging chapter must not lose the others
                chapter.error = _describe_failure(exc, timeout)
            chapter.seconds = time.perf_counter() - start
            chapter.figures = _count_figures(nb)
            _static_outputs(nb)
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": chapter.title}})
            body = _offline_player(_ipynb_links_to_html(body))
            nav = _navigation(chapters, i)
            banner = _failure_banner(chapter.error) if chapter.error else ""
            body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav + banner, body, count=1)
            body = body.replace("</body>", nav + "</body>", 1)
            atomic_write_text(out / chapter.page, body)
            chapter.built = True
            atomic_write_text(out / "index.html", _index_page(chapters, mode, exporter.mathjax_url))
            what = f"FAILED ({chapter.error.splitlines()[0]})" if chapter.error else "ok"
            log(f"{path.name}: {what}, {chapter.figures} figures, {chapter.seconds:.0f} s -> {out / chapter.page}")
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.teaching.site", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("fast", "full"), default="fast")
    parser.add_argument("--notebooks", type=Path, default=config.repo_root() / "notebooks")
    parser.add_argument("--out", type=Path, default=config.repo_root() / "site")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: 600 fast, 1800 full)")
    parser.add_argument("--only", nargs="+", default=None, help="notebook file names to build (default: all)")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        chapters = build_site(args.notebooks, args.out, fast=args.mode == "fast", timeout=args.timeout, only=args.only)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [c.notebook for c in chapters if c.error]
    print(f"built {len(chapters)} chapter pages + index.html in {args.out} ({time.perf_counter() - start:.0f} s)"
          + (f"; FAILED: {', '.join(failed)} (see their pages)" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
