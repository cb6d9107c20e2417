"""The student side of course_lib.teaching: the working copy `make lab` opens, answer cells in
student copies, the hints a wrong answer gets, and the references the check cells hide."""

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_lib.optim import ewma
from course_lib.teaching import lab, references
from course_lib.teaching.exercises import check_function
from course_lib.teaching.student_copies import COMPUTATION_ANSWER, make_student_copy, make_working_copy

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# --------------------------------------------------------------------------------------------
# hints that match the mistake
# --------------------------------------------------------------------------------------------


def test_off_by_one_half_life_is_called_off_by_one():
    def half_life(beta):  # the largest k with beta**k >= 1/2: one too few
        return int(np.floor(np.log(0.5) / np.log(beta)))

    result = check_function(half_life, references.half_life, [0.5, 0.8, 0.9], verbose=False)
    assert not result.passed
    assert "off by one" in result.message and "1 smaller" in result.message
    assert "mean instead of a sum" not in result.message


def test_an_off_by_two_answer_is_not_called_off_by_one():
    result = check_function(lambda b: references.half_life(b) + 2, references.half_life, [0.9], verbose=False)
    assert not result.passed and "off by one" not in result.message


def test_forgotten_bias_correction_gets_its_hint():
    def corrected_average(values, beta):  # the zero-started average, not divided by 1 - beta**t
        return ewma.ewma(values, beta)

    temps = np.random.default_rng(0).normal(15, 3, size=30)
    result = check_function(corrected_average, lambda v, b: ewma.ewma(v, b, bias_correction=True),
                            [(temps, 0.9)], verbose=False)  # fmt: skip
    assert not result.passed
    assert "bias correction is missing" in result.message
    # the other way round: a correction where the reference has none
    result = check_function(lambda v, b: ewma.ewma(v, b, bias_correction=True), lambda v, b: ewma.ewma(v, b),
                            [(temps, 0.9)], verbose=False)  # fmt: skip
    assert "bias correction was applied where none is expected" in result.message
    # a plain factor is still a factor, not a bias correction
    result = check_function(lambda v, b: 2 * ewma.ewma(v, b), lambda v, b: ewma.ewma(v, b), [(temps, 0.9)], verbose=False)
    assert "bias correction" not in result.message and "2 \u00d7 expected" in result.message


def test_reference_half_life():
    for beta in (0.0, 0.5, 0.8, 0.9, 0.98, 0.999):
        k = references.half_life(beta)
        assert beta**k < 0.5 <= beta ** (k - 1)
    assert references.half_life(0.5) == 2  # 0.5**1 is exactly 1/2, not below it
    with pytest.raises(ValueError):
        references.half_life(1.0)


def test_newton_schulz_step_reference_maps_singular_values_by_the_polynomial():
    from course_lib.optim import modern_rules
    X = torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    X = X / X.norm()
    coefficients = modern_rules.MUON_NS_COEFFICIENTS
    got = torch.linalg.svdvals(references.newton_schulz_step(X, *coefficients))
    want = modern_rules.newton_schulz_polynomial(torch.linalg.svdvals(X), coefficients)
    torch.testing.assert_close(got, want.sort(descending=True).values, rtol=1e-12, atol=1e-14)
    # the library's Muon iteration (one step, float64) is the same map on a normalised matrix
    torch.testing.assert_close(references.newton_schulz_step(X, *coefficients),
                               modern_rules.newton_schulz(X, steps=1, dtype=torch.float64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_check_cell_defines_a_reference_answer(path):
    """A check cell (run in the student copies) must not show the answer: references live in
    course_lib, and no cell outside a solution defines a `reference_*` function."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "solution" not in cell.metadata.get("tags", []):
            assert not re.search(r"^def reference_\w*", cell.source, re.M), f"{path.name} cell {i}"


# --------------------------------------------------------------------------------------------
# student copies and the working copy
# --------------------------------------------------------------------------------------------


def _exercise_notebook():
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Exercises\n\n**1.** Write `f`."),
        nbformat.v4.new_code_cell("def f(x):\n    return x", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("check(f)"),
        nbformat.v4.new_markdown_cell("**2.** How many steps? Compute it."),
        nbformat.v4.new_code_cell("steps = 3\nprint(steps)", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("**3.** Explain."),
        nbformat.v4.new_markdown_cell("*Answer:* because.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('a cell after the answer')"),
    ])  # fmt: skip


def test_computation_exercises_get_an_answer_cell(tmp_path):
    nbformat.write(_exercise_notebook(), tmp_path / "src.ipynb")
    make_student_copy(tmp_path / "src.ipynb", tmp_path / "dst.ipynb")
    cells = nbformat.read(tmp_path / "dst.ipynb", as_version=4).cells
    sources = [(c.cell_type, c.source) for c in cells]
    assert sources[1][1].startswith("# YOUR CODE HERE") and "raise NotImplementedError" in sources[1][1]
    assert sources[4] == ("code", "# YOUR CODE HERE")
    assert sources[5] == ("markdown", COMPUTATION_ANSWER)  # inserted after the computation
    assert sources[7] == ("markdown", "*YOUR ANSWER HERE*")  # the prose answer emptied
    assert len(cells) == 9
    assert all("solution" not in c.metadata.get("tags", []) for c in cells)
    assert "because" not in json.dumps(nbformat.writes(nbformat.read(tmp_path / "dst.ipynb", as_version=4)))


def test_working_copy_is_made_once_and_keeps_the_students_work(tmp_path):
    src, work = tmp_path / "notebooks", tmp_path / "work"
    src.mkdir()
    nbformat.write(_exercise_notebook(), src / "01-a.ipynb")
    added, kept = make_working_copy(src, work)
    assert [p.name for p in added] == ["01-a.ipynb"] and kept == []
    mine = nbformat.read(work / "01-a.ipynb", as_version=4)
    mine.cells[1].source = "def f(x):\n    return x  # my answer"
    nbformat.write(mine, work / "01-a.ipynb")
    nbformat.write(_exercise_notebook(), src / "02-b.ipynb")  # a new chapter arrives
    added, kept = make_working_copy(src, work)
    assert [p.name for p in added] == ["02-b.ipynb"] and [p.name for p in kept] == ["01-a.ipynb"]
    assert "# my answer" in nbformat.read(work / "01-a.ipynb", as_version=4).cells[1].source
    with pytest.raises(ValueError, match="git tracks"):
        make_working_copy(src, src)


def test_lab_command_adds_allow_root_only_for_root():
    assert lab.lab_command("work", ["--port=1"], as_root=False) == ["jupyter", "lab", "--ServerApp.root_dir=work", "--port=1"]
    assert "--allow-root" in lab.lab_command("work", [], as_root=True)
    assert lab.lab_command("work", ["--allow-root"], as_root=True).count("--allow-root") == 1


def test_lab_dry_run_makes_the_working_copy_and_prints_the_command(tmp_path, capsys):
    assert lab.main(["--dir", str(tmp_path / "w"), "--dry-run", "--port=1234"]) == 0
    out = capsys.readouterr().out
    assert "Created your working copy" in out
    assert f"--ServerApp.root_dir={tmp_path / 'w'}" in out and "--port=1234" in out
    assert sorted(p.name for p in (tmp_path / "w").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


def test_instructor_settings_turn_autosave_off(tmp_path):
    folder = lab.instructor_settings_dir(tmp_path)
    path = folder / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    assert json.loads(path.read_text()) == {"autosave": False}
