"""course_lib.teaching: answer checkers (exercises) and student copies."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import torch

from course_lib.teaching.exercises import Case, CheckResult, check_function, check_optimizer_step
from course_lib.teaching.student_copies import make_student_copies, make_student_copy, student_placeholder


# --------------------------------------------------------------------------------------------
# check_function
# --------------------------------------------------------------------------------------------


def reference_softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


def softmax(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def _cases():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.tensor([1.0, 2.0, 3.0]),),
        (torch.randn(4, generator=g),),
        Case(torch.randn(3, 4, generator=g), dim=0),
        {"x": torch.randn(2, 5, generator=g), "dim": 1},
        (torch.zeros(3),),
    ]


def test_correct_function_passes(capsys):
    result = check_function(softmax, reference_softmax, _cases())
    assert isinstance(result, CheckResult)
    assert result.passed and bool(result)
    assert result.case_index is None
    assert result.message == "PASS: softmax matches the reference on 5 cases"
    assert capsys.readouterr().out.strip() == result.message
    assert str(result) == result.message
    assert "PASS" in result._repr_markdown_()


def test_verbose_false_prints_nothing(capsys):
    result = check_function(softmax, reference_softmax, _cases(), verbose=False)
    assert result.passed
    assert capsys.readouterr().out == ""


def test_wrong_function_reports_first_mismatching_case():
    def wrong(x, dim=-1):  # right on 1-D inputs, wrong on the rest (ignores dim)
        e = torch.exp(x - x.max())
        return e / e.sum()

    result = check_function(wrong, reference_softmax, _cases(), verbose=False)
    assert not result.passed and not bool(result)
    assert result.case_index == 2
    lines = result.message.splitlines()
    assert lines[0] == "FAIL: wrong differs from the reference on cases[2] (case 3 of 5)"
    assert "dim=0" in lines[1]  # the input, shown compactly
    assert "expected:" in result.message and "got:" in result.message
    assert "max abs diff" in result.message and "max rel diff" in result.message
    assert len(lines) <= 8


def test_off_by_a_factor_hint_and_name():
    result = check_function(lambda x: 2 * x.mean(), lambda x: x.mean(), [np.arange(4.0)],
                            name="mean", verbose=False)
    assert result.message.startswith("FAIL: mean differs")
    assert "2 \u00d7 expected" in result.message


def test_scalar_types_are_interchangeable_but_tensor_and_array_are_not():
    assert check_function(lambda x: float(x.sum()), lambda x: x.sum(), [torch.ones(3)],
                          verbose=False)
    result = check_function(lambda x: torch.as_tensor(x), lambda x: x, [np.ones(3)], verbose=False)
    assert not result.passed
    assert "expected a numpy.ndarray, got a torch.Tensor" in result.message


def test_tolerances_are_respected():
    assert check_function(lambda x: x + 1e-8, lambda x: x, [np.ones(3)], verbose=False)
    assert not check_function(lambda x: x + 1e-3, lambda x: x, [np.ones(3)], verbose=False)
    assert check_function(lambda x: x + 1e-3, lambda x: x, [np.ones(3)], atol=1e-2, verbose=False)


def test_exception_in_student_function_is_a_failure_not_a_crash():
    def broken(x, dim=-1):
        raise ValueError("dimension 7 is out of range")

    result = check_function(broken, reference_softmax, _cases(), verbose=False)
    assert not result.passed
    assert result.case_index == 0
    assert isinstance(result.exception, ValueError)
    assert "raised ValueError on cases[0]" in result.message
    assert "dimension 7 is out of range" in result.message
    assert "input:" in result.message
    assert 'raise ValueError("dimension 7 is out of range")' in result.message  # the failing line


def test_not_implemented_placeholder_is_reported_kindly():
    def softmax(x, dim=-1):
        raise NotImplementedError("exercise: implement softmax")

    result = check_function(softmax, reference_softmax, _cases(), verbose=False)
    assert not result.passed
    assert result.message == "FAIL: softmax is not implemented yet (it raised NotImplementedError)"


def test_exception_in_reference_propagates():
    with pytest.raises(RuntimeError, match="reference implementation failed on cases\\[0\\]"):
        check_function(lambda x: x, lambda x: 1 / 0, [1.0], verbose=False)


def test_shape_mismatch_message():
    result = check_function(lambda x, dim=-1: reference_softmax(x, dim).T, reference_softmax,
                            [(torch.randn(3, 4),)], verbose=False)
    assert not result.passed
    assert "shape mismatch: expected (3, 4), got (4, 3)" in result.message
    assert "transposed" in result.message

    result = check_function(lambda x: x.sum(0), lambda x: x.sum(0, keepdims=True),
                            [np.ones((3, 4))], verbose=False)
    assert "shape mismatch: expected (1, 4), got (4,)" in result.message
    assert "keepdim" in result.message


def test_nan_is_reported():
    def unstable(x, dim=-1):
        x = x * 1000.0  # exp overflows: inf / inf = nan
        return torch.exp(x) / torch.exp(x).sum(dim=dim, keepdim=True)

    result = check_function(unstable, lambda x, dim=-1: reference_softmax(1000.0 * x, dim),
                            [(torch.tensor([1.0, 2.0, 3.0]),)], verbose=False)
    assert not result.passed
    assert "NaN" in result.message
    assert "where the reference is finite" in result.message


def test_nan_in_both_counts_as_equal():
    assert check_function(lambda x: x * np.nan, lambda x: np.full_like(x, np.nan),
                          [np.ones(2)], verbose=False)


def test_nested_tuple_and_dict_outputs():
    def reference(x):
        return x.sum(), (x * 2, {"m": x - 1, "v": [x**2]})

    def student(x):
        return x.sum(), (x * 2, {"m": x - 1, "v": [x**2]})

    def student_wrong(x):
        return x.sum(), (x * 2, {"m": x - 1, "v": [x**3]})

    cases = [(np.arange(3.0),), (np.arange(4.0) + 2,)]
    assert check_function(student, reference, cases, verbose=False)
    result = check_function(student_wrong, reference, cases, verbose=False)
    assert not result.passed and result.case_index == 0
    assert "output[1][1]['v'][0]" in result.message

    result = check_function(lambda x: (x.sum(),), reference, cases, verbose=False)
    assert "expected 2 values, got 1" in result.message
    result = check_function(lambda x: (x.sum(), (x * 2, {"m": x - 1})), reference, cases,
                            verbose=False)
    assert "missing keys 'v'" in result.message


def test_missing_return_is_hinted():
    result = check_function(lambda x: None, lambda x: x, [np.ones(2)], verbose=False)
    assert "got NoneType" in result.message
    assert "return" in result.message


def test_hints_are_called_with_case_expected_and_got():
    calls = []

    def hints(case, expected, got):
        calls.append((case, expected, got))
        return "did you forget to subtract the max?"

    cases = [(np.array([1.0, 2.0]),), (np.array([3.0, 4.0]),)]
    result = check_function(lambda x: x + 1 if x[0] > 2 else x, lambda x: x, cases, hints=hints,
                            verbose=False)
    assert not result.passed and result.case_index == 1
    assert len(calls) == 1
    case, expected, got = calls[0]
    assert case is cases[1]
    np.testing.assert_array_equal(expected, [3.0, 4.0])
    np.testing.assert_array_equal(got, [4.0, 5.0])
    assert "hint: did you forget to subtract the max?" in result.message


def test_hint_returning_none_keeps_the_builtin_guess():
    result = check_function(lambda x: -x, lambda x: x, [np.ones(2)], hints=lambda *a: None,
                            verbose=False)
    assert "sign is flipped" in result.message


def test_an_answer_that_changes_its_input_in_place_is_reported():
    def student(x):
        x += 1  # mutates its input: the right output, but the caller's array changes
        return x

    case = np.zeros(2)
    result = check_function(student, lambda x: x + 1, [np.ones(3), case], name="add_one", verbose=False)
    assert not result.passed and result.case_index == 0
    assert result.message.splitlines()[0] == ("FAIL: add_one changed its input in place on cases[0] (case 1 of 2) "
                                              "(argument 1); the reference leaves its inputs alone")
    assert (case == 0).all()  # and the caller's data was not touched: each call gets a copy


def test_in_place_is_fine_when_the_reference_does_it_too_and_for_keywords_and_lists():
    def both(x):
        x *= 2
        return x

    assert check_function(both, both, [np.ones(2)], verbose=False).passed

    def appends(values, extra=None):
        values.append(0)
        return len(values)

    result = check_function(appends, lambda values, extra=None: len(values) + 1,
                            [Case([1, 2], extra=np.ones(1))], verbose=False)  # fmt: skip
    assert "(argument 1)" in result.message

    def zeroes_keyword(values, extra=None):
        extra[:] = 0
        return len(values)

    result = check_function(zeroes_keyword, lambda values, extra=None: len(values),
                            [Case([1, 2], extra=np.ones(1))], verbose=False)  # fmt: skip
    assert "(keyword extra)" in result.message


def test_an_endless_loop_ends_in_a_fail_that_says_so():
    def spins(x):
        while True:
            try:
                x = x + 1
            except Exception:  # a broad except in the student's code cannot swallow the stop
                pass

    import time

    start = time.monotonic()
    result = check_function(spins, lambda x: x, [1, 2], name="spins", time_limit=0.3, verbose=False)
    assert time.monotonic() - start < 5
    assert not result.passed and result.case_index == 0
    assert result.message.splitlines()[0] == (
        "FAIL: spins did not finish within 0.3 s on cases[0] (case 1 of 2) (an endless loop?); it was stopped there")
    assert check_function(lambda x: x, lambda x: x, [1], time_limit=0.3, verbose=False).passed


def test_the_time_limit_restores_an_outer_timer():
    import signal

    fired = []

    def outer(*args):
        fired.append(1)

    old = signal.signal(signal.SIGALRM, outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        check_function(lambda x: x, lambda x: x, [1], time_limit=1.0, verbose=False)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < left <= 100 and signal.getsignal(signal.SIGALRM) is outer and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_empty_cases_rejected():
    with pytest.raises(ValueError):
        check_function(lambda x: x, lambda x: x, [])


# --------------------------------------------------------------------------------------------
# check_optimizer_step
# --------------------------------------------------------------------------------------------


def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              bias_correction=True):
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["m"] = torch.zeros_like(param)
        state["v"] = torch.zeros_like(param)
    if weight_decay:
        grad = grad + weight_decay * param
    state["step"] += 1
    t = state["step"]
    state["m"] = beta1 * state["m"] + (1 - beta1) * grad
    state["v"] = beta2 * state["v"] + (1 - beta2) * grad**2
    m, v = state["m"], state["v"]
    if bias_correction:
        m = m / (1 - beta1**t)
        v = v / (1 - beta2**t)
    return param - lr * m / (v.sqrt() + eps)


ADAM_KWARGS = {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8}


def test_from_scratch_adam_passes(capsys):
    result = check_optimizer_step(adam_step, torch.optim.Adam, ADAM_KWARGS)
    assert result.passed, result.message
    assert result.message == "PASS: adam_step matches torch.optim.Adam over 20 steps"
    assert capsys.readouterr().out.strip() == result.message
    result = check_optimizer_step(adam_step, torch.optim.Adam, dict(ADAM_KWARGS, weight_decay=0.1),
                                  shape=(2, 3), steps=10, seed=3, verbose=False)
    assert result.passed, result.message


def test_adam_without_bias_correction_fails_at_step_1():
    step = functools.partial(adam_step, bias_correction=False)
    result = check_optimizer_step(step, torch.optim.Adam, ADAM_KWARGS, name="adam_step",
                                  verbose=False)
    assert not result.passed
    assert result.step == 1
    assert result.message.startswith(
        "FAIL: adam_step differs from torch.optim.Adam at step 1 of 20")
    assert "bias correction" in result.message
    assert len(result.message.splitlines()) <= 8


def test_optimizer_state_not_kept_fails_at_step_2():
    def forgetful(param, grad, state, **hyper):
        return adam_step(param, grad, {}, **hyper)  # fresh state every call

    result = check_optimizer_step(forgetful, torch.optim.Adam, ADAM_KWARGS, verbose=False)
    assert not result.passed and result.step == 2
    assert "state" in result.message


def test_an_endless_optimizer_step_is_stopped():
    def step(param, grad, state, lr):
        if state.setdefault("t", 0) == 2:
            while True:
                pass
        state["t"] += 1
        return param - lr * grad

    result = check_optimizer_step(step, torch.optim.SGD, {"lr": 0.1}, time_limit=0.3, verbose=False)
    assert not result.passed and result.step == 3
    assert result.message.startswith("FAIL: step did not finish within 0.3 s at step 3 of 20 (an endless loop?)")


def test_optimizer_student_exception_and_none_are_failures():
    def crashes(param, grad, state, lr):
        raise KeyError("m")

    result = check_optimizer_step(crashes, torch.optim.SGD, {"lr": 0.1}, verbose=False)
    assert not result.passed and result.step == 1
    assert "raised KeyError at step 1" in result.message

    result = check_optimizer_step(lambda p, g, s, lr: None, torch.optim.SGD, {"lr": 0.1},
                                  verbose=False)
    assert not result.passed and "got None" in result.message


def test_optimizer_sign_hint_and_student_kwargs():
    def sgd(param, grad, state, learning_rate):
        return param + learning_rate * grad

    result = check_optimizer_step(sgd, torch.optim.SGD, {"lr": 0.1},
                                  student_kwargs={"learning_rate": 0.1}, verbose=False)
    assert not result.passed and result.step == 1
    assert "wrong sign" in result.message


# --------------------------------------------------------------------------------------------
# Student copies
# --------------------------------------------------------------------------------------------

SOLUTION = '''\
%matplotlib inline

def adam_update(m, v, grad, t, *,
                betas=(0.9, 0.999)):
    """Return the new (m, v) and the bias-corrected moments."""
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    return m, v


def helper(x): return x * 2

LR = 0.1'''


def _make_notebook(path):
    nb = nbformat.v4.new_notebook()
    md = nbformat.v4.new_markdown_cell("## Exercise 1\nWrite `adam_update`.")
    code = nbformat.v4.new_code_cell("import numpy as np\nx = np.ones(3)", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", text="hi\n")])
    secret = nbformat.v4.new_output("stream", text="SECRET-OUTPUT\n")
    sol = nbformat.v4.new_code_cell(SOLUTION, execution_count=2, outputs=[secret])
    sol.metadata["tags"] = ["solution", "keep-me"]
    md_sol = nbformat.v4.new_markdown_cell("The answer is forty-two.")
    md_sol.metadata["tags"] = ["solution"]
    nb.cells = [md, code, sol, md_sol]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return nb


def test_placeholder_keeps_signatures_only():
    out = student_placeholder(SOLUTION)
    assert out.startswith("# YOUR CODE HERE")
    assert "def adam_update(m, v, grad, t, *,\n                betas=(0.9, 0.999)):" in out
    assert '"""Return the new (m, v) and the bias-corrected moments."""' in out
    assert 'raise NotImplementedError("exercise: implement adam_update")' in out
    assert "def helper(x):\n    raise NotImplementedError(\"exercise: implement helper\")" in out
    assert "beta1 * m" not in out and "LR = 0.1" not in out and "x * 2" not in out
    compile(out, "<placeholder>", "exec")
    assert student_placeholder("LR = 0.1") == "# YOUR CODE HERE"
    assert student_placeholder("this is not python (") == "# YOUR CODE HERE"


def test_make_student_copy(tmp_path):
    src, dst = tmp_path / "ch01.ipynb", tmp_path / "student" / "ch01.ipynb"
    original = _make_notebook(src)
    assert make_student_copy(src, dst) == 2

    nb = nbformat.read(dst, as_version=4)
    nbformat.validate(nb)
    md, code, sol, md_sol = nb.cells
    # untouched cells
    assert md.source == original.cells[0].source
    assert code.source == original.cells[1].source
    assert md.get("metadata", {}).get("tags") is None
    # outputs and execution counts cleared everywhere
    assert code.outputs == [] and code.execution_count is None
    assert sol.outputs == [] and sol.execution_count is None
    # the solution is gone, the signature stays
    assert sol.source.startswith("# YOUR CODE HERE")
    assert "def adam_update(m, v, grad, t, *," in sol.source
    assert "NotImplementedError" in sol.source
    assert "beta1 * m" not in sol.source
    assert sol.metadata["tags"] == ["exercise", "keep-me"]
    assert md_sol.source == "*YOUR ANSWER HERE*" and md_sol.metadata["tags"] == ["exercise"]
    assert "SECRET-OUTPUT" not in dst.read_text() and "forty-two" not in dst.read_text()
    # the source notebook is unchanged, and no temporary files are left behind
    assert nbformat.read(src, as_version=4) == original
    assert sorted(p.name for p in dst.parent.iterdir()) == ["ch01.ipynb"]


def test_make_student_copy_refuses_to_overwrite_the_source(tmp_path):
    src = tmp_path / "ch01.ipynb"
    _make_notebook(src)
    with pytest.raises(ValueError, match="refusing"):
        make_student_copy(src, src)


def test_make_student_copies(tmp_path):
    _make_notebook(tmp_path / "nb" / "a.ipynb")
    _make_notebook(tmp_path / "nb" / "b.ipynb")
    written = make_student_copies(tmp_path / "nb", tmp_path / "out" / "student")
    assert [(p.name, n) for p, n in written] == [("a.ipynb", 2), ("b.ipynb", 2)]
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        make_student_copies(tmp_path / "out", tmp_path / "x")  # holds no notebooks itself


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "course_lib.teaching.student_copies", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_student_copies(tmp_path):
    _make_notebook(tmp_path / "notebooks" / "ch01.ipynb")
    proc = _cli("--src", str(tmp_path / "notebooks"),
                "--dst", str(tmp_path / "student"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ch01.ipynb" in proc.stdout and "2 solution cells replaced" in proc.stdout
    nb = json.loads((tmp_path / "student" / "ch01.ipynb").read_text())
    assert "NotImplementedError" in "".join(nb["cells"][2]["source"])

    proc = _cli(cwd=tmp_path)  # defaults: notebooks -> student
    assert proc.returncode == 0, proc.stderr


def test_cli_errors_clearly_on_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _cli("--src", str(tmp_path / "empty"), "--dst",
                str(tmp_path / "student"), cwd=tmp_path)
    assert proc.returncode != 0
    assert "no notebooks" in proc.stderr and "empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "student").exists()
