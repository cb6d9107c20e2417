"""Notebooks are committed without outputs or execution counts, with a kernel spec nbval can use.

The test reads what git tracks (the staged version of each notebook: what the next commit
holds), not the file on disk, which JupyterLab may have saved with outputs while an instructor
presented it (students work in the untracked copy `work/`). Outside a git checkout (an
unpacked archive) it reads the files.
"""

import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def tracked_notebooks(root: Path) -> list[str]:
    """Paths (relative to ``root``) of the notebooks in notebooks/ that git tracks, or, outside
    git, that exist."""
    listed = _git(root, "ls-files", "--", "notebooks/*.ipynb")
    if listed is None:
        return sorted(p.relative_to(root).as_posix() for p in (root / "notebooks").glob("*.ipynb"))
    return sorted(line for line in listed.splitlines() if line)


def tracked_text(root: Path, path: str) -> str:
    """The staged content of ``path`` (``git show :path``), or the file when git cannot say."""
    text = _git(root, "show", f":{path}")
    return text if text is not None else (root / path).read_text(encoding="utf-8")


def dirty_cells(nb) -> list[int]:
    return [i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]  # fmt: skip


NOTEBOOKS = tracked_notebooks(ROOT)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks tracked in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_committed_without_outputs(path):
    nb = nbformat.reads(tracked_text(ROOT, path), as_version=4)
    nbformat.validate(nb)
    dirty = dirty_cells(nb)
    assert not dirty, f"{path}: cells {dirty} have outputs or execution counts; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_git_copy_is_checked_not_the_working_file(tmp_path):
    """A notebook saved with outputs (JupyterLab's autosave) does not count until it is staged;
    once staged, the check catches it."""
    if _git(tmp_path, "--version") is None:
        pytest.skip("git is not installed")
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "01-x.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, path)
    assert _git(tmp_path, "init", "-q") is not None
    assert _git(tmp_path, "add", "notebooks/01-x.ipynb") is not None
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, path)  # the autosave
    assert tracked_notebooks(tmp_path) == ["notebooks/01-x.ipynb"]
    assert dirty_cells(nbformat.reads(tracked_text(tmp_path, "notebooks/01-x.ipynb"), as_version=4)) == []
    assert _git(tmp_path, "add", "notebooks/01-x.ipynb") is not None
    assert dirty_cells(nbformat.reads(tracked_text(tmp_path, "notebooks/01-x.ipynb"), as_version=4)) == [0]
