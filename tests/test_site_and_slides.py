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


def test_chapter_info_and_a_failing_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Broken\n\nIt fails.\n\nMore."),
                                         nbformat.v4.new_code_cell("1 / 0")])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    info = site.chapter_info(nb, "99-broken.ipynb")
    assert (info.title, info.summary, info.page) == ("Broken", "It fails.", "99-broken.html")
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "99-broken.ipynb")
    with pytest.raises(RuntimeError, match="99-broken.ipynb failed"):
        site.build_site(tmp_path / "nb", tmp_path / "out", log=lambda *_: None)
    assert not (tmp_path / "out" / "index.html").exists()


def test_the_site_has_every_chapter_with_its_figures(tmp_path):
    chapters = site.build_site(ROOT / "notebooks", tmp_path, fast=True, log=lambda *_: None)
    assert [c.notebook for c in chapters] == [p.name for p in NOTEBOOKS]
    index = (tmp_path / "index.html").read_text()
    for chapter in chapters:
        page = (tmp_path / chapter.page).read_text()
        assert html_title(page) == chapter.title
        assert chapter.figures > 0, f"{chapter.notebook} has no figures"
        assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) >= chapter.figures
        assert f'href="{chapter.page}"' in index


def html_title(page: str) -> str:
    import html

    return html.unescape(re.search(r"<title>(.*?)</title>", page, flags=re.S).group(1).strip())
