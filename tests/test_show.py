"""course_lib.teaching.show: a function's source, whole or one part selected by a marker comment."""

import pytest

from course_lib import optim
from course_lib.teaching.show import Source, parts, show, source


def test_whole_source_with_and_without_docstring():
    full = source(optim.sgd_rule)
    assert full.startswith("def sgd_rule(") and "Nesterov" in full and "param.add_(grad, alpha=-lr)" in full
    bare = source(optim.sgd_rule, docstring=False)
    assert "Nesterov's look-ahead" not in bare and "param.add_(grad, alpha=-lr)" in bare
    assert len(bare.splitlines()) < len(full.splitlines())


def test_a_part_runs_from_its_marker_to_the_next():
    assert source(optim.sgd_rule, "weight decay") == (
        "if weight_decay != 0:\n    grad = grad.add(param, alpha=weight_decay)")
    step = source(optim.adam_rule, "step").splitlines()
    assert step[0].startswith("# m_hat / (sqrt(v_hat) + eps)")  # the marker's own comment is kept
    assert step[-1] == "param.addcdiv_(m, denom, value=-step_size)"
    assert parts(optim.adam_rule) == ["state", "weight decay", "moments", "step"]


def test_an_unknown_part_names_the_parts_there_are():
    with pytest.raises(ValueError, match=r"no part marked '# \[nesterov\]'.*'weight decay', 'momentum', 'step'"):
        source(optim.sgd_rule, "nesterov")


def test_show_renders_html_and_prints_plain_text():
    shown = show(optim.sgd_rule, "momentum")
    assert isinstance(shown, Source)
    assert str(shown).splitlines()[0] == "# course_lib.optim.rules.sgd_rule  [momentum]"
    html = shown._repr_html_()
    assert "momentum_buffer" in html and "<span" in html  # highlighted
    assert "course_lib.optim.rules.sgd_rule" in html


def test_methods_and_classes():
    assert source(optim.schedules.ScheduledLR.get_lr).startswith("def get_lr(self)")
    assert source(optim.SGD, docstring=False).startswith("class SGD(RuleOptimizer):")
