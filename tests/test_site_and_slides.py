"""The static HTML course and the slide metadata."""

import re
from pathlib import Path

import nbformat
import pytest

from course_lib.teaching import site, slides

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_carries_the_slide_metadata(path):
    nb = nbformat.read(path, as_version=4)
    assert slides.apply_slide_metadata(nb) == 0, f"run: python -m course_lib.teaching.slides {path.relative_to(ROOT)}"
    assert nb.cells[0].metadata.slideshow.slide_type == "slide"


def test_slide_rule():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\nintro"),
        nbformat.v4.new_code_cell("import numpy"),
        nbformat.v4.new_markdown_cell("## A section"),
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(20))),
        nbformat.v4.new_markdown_cell("### a sub-part"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print(x)"),
    ])  # fmt: skip
    assert slides.apply_slide_metadata(nb) == 7
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells] == ["slide", "skip", "slide", "subslide", "subslide", "skip", "-"]
    assert slides.apply_slide_metadata(nb) == 0


def _notebook(*cells):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_a_failing_or_hanging_chapter_does_not_lose_the_others(tmp_path):
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    (tmp_path / "nb").mkdir()
    notebooks = {
        "01-fine.ipynb": _notebook(md("# Fine\n\nThe **loss** $f(\\theta)$, then [the next](02-broken.ipynb)."),
                                   code("print('ran 01')")),
        "02-broken.ipynb": _notebook(md("# Broken\n\nIt fails.\n\nMore."), code("print('before')"), code("1 / 0"),
                                     code("print('never')")),
        "03-hangs.ipynb": _notebook(md("# Hangs\n\nIt sleeps."), code("import time\ntime.sleep(60)")),
        "04-last.ipynb": _notebook(md("# Last\n\nThe end."), code("print('ran 04')")),
    }  # fmt: skip
    for name, nb in notebooks.items():
        nbformat.write(nb, tmp_path / "nb" / name)
    info = site.chapter_info(notebooks["02-broken.ipynb"], "02-broken.ipynb")
    assert (info.title, info.summary, info.page) == ("Broken", "It fails.", "02-broken.html")
    indexes = []
    chapters = site.build_site(tmp_path / "nb", tmp_path / "out", timeout=5,
                               log=lambda *_: indexes.append((tmp_path / "out" / "index.html").read_text()))  # fmt: skip
    assert [c.error is None for c in chapters] == [True, False, False, True]
    assert "ZeroDivisionError" in chapters[1].error and "timeout of 5 s" in chapters[2].error
    # the index is written as pages finish: after the first page, the others are still pending
    assert indexes[0].count("not built yet") == 3 and indexes[-1].count("not built yet") == 0
    index = (tmp_path / "out" / "index.html").read_text()
    assert "failed: ZeroDivisionError" in index and "failed: CellTimeoutError" in index
    assert "<strong>loss</strong>" in index and "**" not in index  # summaries rendered
    assert "$f(\\theta)$" in index and "MathJax" in index  # math left for MathJax, readable without it
    broken = (tmp_path / "out" / "02-broken.html").read_text()
    assert "did not finish" in broken and "ZeroDivisionError" in broken and "before" in broken
    assert "CellTimeoutError" in (tmp_path / "out" / "03-hangs.html").read_text()
    fine = (tmp_path / "out" / "01-fine.html").read_text()
    assert 'href="02-broken.html"' in fine and ".ipynb" not in re.sub(r"<script.*?</script>", "", fine, flags=re.S)
    assert 'href="index.html"' in fine and 'rel="next"' in fine and 'rel="prev"' not in fine
    last = (tmp_path / "out" / "04-last.html").read_text()
    assert 'href="03-hangs.html" rel="prev"' in last and "ran 04" in last and "did not finish" not in last
    assert site.main(["--notebooks", str(tmp_path / "nb"), "--out", str(tmp_path / "o2"), "--timeout", "5",
                      "--only", "01-fine.ipynb"]) == 0  # fmt: skip
    assert site.main(["--notebooks", str(tmp_path / "nb"), "--out", str(tmp_path / "o3"), "--timeout", "5",
                      "--only", "02-broken.ipynb"]) == 1  # fmt: skip


def test_the_animation_player_needs_no_icon_font():
    from course_lib.plots import animation_html
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1], [0, 1])
    player = animation_html(FuncAnimation(fig, lambda i: line.set_ydata([0, i]), frames=3)).data
    assert 'class="fa fa-play"' in player
    offline = site._offline_player(player)
    assert "fa fa-" not in offline and "\u25b6" in offline


def test_the_site_has_every_chapter_with_its_figures(tmp_path):
    chapters = site.build_site(ROOT / "notebooks", tmp_path, fast=True, log=lambda *_: None)
    assert [c.notebook for c in chapters] == [p.name for p in NOTEBOOKS]
    index = (tmp_path / "index.html").read_text()
    for chapter in chapters:
        assert chapter.error is None, f"{chapter.notebook}: {chapter.error}"
        page = (tmp_path / chapter.page).read_text()
        assert html_title(page) == chapter.title
        assert chapter.figures > 0, f"{chapter.notebook} has no figures"
        assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) >= chapter.figures
        assert f'href="{chapter.page}"' in index


def html_title(page: str) -> str:
    import html

    return html.unescape(re.search(r"<title>(.*?)</title>", page, flags=re.S).group(1).strip())


# --------------------------------------------------------------------------------------------
# the presentation copy (make slides)
# --------------------------------------------------------------------------------------------


def test_headings_start_their_own_slide_in_the_presentation_copy():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\nintro"),
        nbformat.v4.new_code_cell("import numpy"),
        nbformat.v4.new_markdown_cell("text first\n\n## Section 5\n\nbody\n\n```python\n## not a heading\n```"),
        nbformat.v4.new_markdown_cell("## Summary\n\n- a\n\n## Exercises\n\n**1.** Write `f`.\n\n$$\n## x\n$$"),
        nbformat.v4.new_code_cell("def f():\n    return 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("exercises.check_function(f, g, [()])"),
        nbformat.v4.new_markdown_cell("**2.** Why?"),
        nbformat.v4.new_markdown_cell("*Answer:* because", metadata={"tags": ["solution"]}),
    ])  # fmt: skip
    out = slides.presentation_copy(nb)
    assert len(nb.cells) == 8  # the original is left alone
    kinds = [(c.cell_type, c.source.split("\n")[0], c.metadata['slideshow']['slide_type']) for c in out.cells]
    assert kinds == [
        ("markdown", "# Title", "slide"), ("code", "import numpy", "skip"),
        ("markdown", "text first", "-"), ("markdown", "## Section 5", "slide"),
        ("markdown", "## Summary", "slide"), ("markdown", "## Exercises", "slide"),
        ("code", "def f():", "skip"), ("code", "exercises.check_function(f, g, [()])", "skip"),
        ("markdown", "**2.** Why?", "-"), ("markdown", "*Answer:* because", "skip"),
    ]  # fmt: skip
    assert "## not a heading" in out.cells[3].source and "## x" in out.cells[5].source
    assert out.metadata.rise["width"] == 1280 and out.metadata.rise["height"] == 720
    assert out.metadata.rise["scroll"] is True


def test_long_markdown_becomes_sub_slides_at_blank_lines():
    paragraphs = [f"paragraph {i} line a\nparagraph {i} line b\nparagraph {i} line c" for i in range(10)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Long\n\n" + "\n\n".join(paragraphs))])
    assert slides.split_long_markdown(nb, max_lines=9) == 1
    assert all(len(c.source.split("\n")) <= 9 for c in nb.cells)
    assert "\n\n".join(c.source for c in nb.cells) == "## Long\n\n" + "\n\n".join(paragraphs)
    assert [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells[1:]] == ["subslide"] * (len(nb.cells) - 1)
    # a single paragraph longer than the limit cannot be cut
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("\n".join(f"l{i}" for i in range(30)))])
    assert slides.split_long_markdown(nb, max_lines=9) == 0 and len(nb.cells) == 1


def test_every_chapter_presents_a_slide_per_section_without_solutions(tmp_path):
    written = slides.write_presentation(ROOT / "notebooks", tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    assert ".jp-Notebook-footer { display: none" in (tmp_path / "rise.css").read_text()
    for path in written:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        original = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
        headings = sum(len(re.findall(r"^## ", c.source, flags=re.M)) for c in original.cells if c.cell_type == "markdown")
        starts = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
        assert len(starts) >= headings, path.name  # (a "## " inside a code fence is not a heading)
        assert all(c.metadata['slideshow']['slide_type'] == "slide" for c in starts), path.name
        for cell in nb.cells:
            if "solution" in cell.metadata.get("tags", []) or "exercises.check_" in cell.source:
                assert cell.metadata['slideshow']['slide_type'] == "skip", (path.name, cell.source[:40])
            if cell.cell_type == "markdown" and cell.metadata['slideshow']['slide_type'] != "skip":
                lines = len(cell.source.split("\n"))
                assert lines <= slides.SLIDE_MARKDOWN_LINES or "\n\n" not in cell.source, (path.name, cell.source[:60])


class _DeafChannel:
    """A kernel channel whose wait misses the wake-up: a call made before the message arrives
    sleeps its whole timeout, then finds the message (what nbclient saw after explorer cells)."""

    def __init__(self, arrives_after: float | None):
        import time

        self.arrives = None if arrives_after is None else time.monotonic() + arrives_after
        self.calls = 0

    async def get_msg(self, timeout=None):
        import asyncio
        import time
        from queue import Empty

        self.calls += 1
        if self.arrives is not None and time.monotonic() >= self.arrives:
            return {"msg": "reply"}
        await asyncio.sleep(3600 if timeout is None else timeout)
        if self.arrives is not None and time.monotonic() >= self.arrives:
            return {"msg": "reply"}
        raise Empty


def _timed(coroutine):
    import asyncio
    import time

    t0 = time.monotonic()
    result = asyncio.run(coroutine)
    return result, time.monotonic() - t0


def test_sliced_waits_get_a_message_whose_wake_up_was_missed():
    deaf = _DeafChannel(arrives_after=0.2)
    assert _timed(deaf.get_msg(timeout=1.0))[1] >= 1.0  # the plain wait runs to its end
    deaf = _DeafChannel(arrives_after=0.2)
    msg, seconds = _timed(site._wait_in_slices(deaf.get_msg, slice_seconds=0.05)(timeout=30))
    assert msg == {"msg": "reply"} and 0.2 <= seconds < 1.0 and deaf.calls >= 4
    deaf = _DeafChannel(arrives_after=0.2)  # no timeout: nbclient's IOPub wait
    msg, seconds = _timed(site._wait_in_slices(deaf.get_msg, slice_seconds=0.05)(timeout=None))
    assert msg == {"msg": "reply"} and seconds < 1.0


def test_sliced_waits_still_time_out():
    from queue import Empty

    deaf = _DeafChannel(arrives_after=None)
    with pytest.raises(Empty):
        _timed(site._wait_in_slices(deaf.get_msg, slice_seconds=0.05)(timeout=0.3))
    _, seconds = _timed(_expect_empty(site._wait_in_slices(deaf.get_msg, slice_seconds=0.05)(timeout=0.3)))
    assert 0.3 <= seconds < 0.6


async def _expect_empty(coroutine):
    from queue import Empty

    with pytest.raises(Empty):
        await coroutine
