"""The kinds of the autograder's checks (``check(..., kind=...)``) and the rule that pays a ``property``
or ``rejects`` check only together with a passed ``value`` check of the same function
(``course_lib.grading.grader._paid_with_a_value``).

The degenerate answers below are the issue's: a file whose every function raises ``ValueError`` (which
passes every "rejects bad input" check), ``kd_loss = student_logits.sum()`` (which passes the
gradient-scale check) and ``entropy = log C`` (which passes the monotonicity check). Each must score 0.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

from course_lib.grading import Row, grade, grader
from course_lib.grading.checks import CHECK_MODULES, CHECKS, KINDS, Check

NOT_COUNTED = "not counted"
# A comparison with a reference value: the shared helpers, or a module's own ``_xxx_close``.
COMPARES = re.compile(r"\b(close|close_naming|value_naming|tensors_close|\w+_close)\(")
REJECTS = re.compile(r"\bexpect_value_error\(|except ValueError\b")


def _functions(module: str) -> list[str]:
    return list(dict.fromkeys(c.function for c in CHECKS if c.module == module))


# --------------------------------------------------------------------------- the registry

def test_kinds_are_known_and_every_function_has_a_value_check():
    assert CHECKS and set(CHECK_MODULES) == {c.module for c in CHECKS}
    assert {c.kind for c in CHECKS} <= set(KINDS)
    missing = sorted({(c.module, c.function) for c in CHECKS}
                     - {(c.module, c.function) for c in CHECKS if c.kind == "value"})
    assert not missing, f"functions without a value check: {missing}"


def test_kinds_rejection_checks_are_rejects_or_also_compare_values():
    wrong = []
    for c in CHECKS:
        source = inspect.getsource(c.run)
        if REJECTS.search(source) and c.kind != "rejects" and not (c.kind == "value" and COMPARES.search(source)):
            wrong.append(f"{c.module}.{c.name} ({c.kind})")
    assert not wrong, f"checks that pass invalid input only must be kind='rejects': {wrong}"


def test_kinds_a_rejects_check_compares_nothing():
    """The converse: a check marked ``rejects`` passes invalid input only (no comparison with a reference)."""
    for c in CHECKS:
        if c.kind == "rejects":
            source = inspect.getsource(c.run)
            assert REJECTS.search(source), f"{c.module}.{c.name}"
            assert not COMPARES.search(source), f"{c.module}.{c.name} compares values: kind='value'"


# --------------------------------------------------------------------------- _paid_with_a_value

def _check(name: str, function: str, kind: str, points: int = 2) -> Check:
    return Check(name, points, "ex99_fake", function, lambda f: None, kind=kind)


def _row(c: Check, earned: int, message: str = "ok") -> Row:
    return Row(c.module, c.name, c.function, c.points, earned, message)


def test_kinds_rejects_without_a_passed_value_check_earns_nothing():
    value, rejects, prop = _check("v", "f", "value"), _check("r", "f", "rejects", 1), _check("p", "f", "property")
    failed_value = _row(value, 0, "f(x): expected 1, got 2")
    rows = grader._paid_with_a_value([(value, failed_value), (rejects, _row(rejects, 1)), (prop, _row(prop, 2))])
    assert rows[0] == failed_value                                   # value rows are never changed
    for row in rows[1:]:
        assert row.earned == 0 and NOT_COUNTED in row.message and "f()" in row.message
        assert row.points in (1, 2)                                  # the points at stake stay visible
    # a function with no value row at all, and a value check of ANOTHER function that passed
    other = _check("v2", "g", "value")
    rows = grader._paid_with_a_value([(other, _row(other, 2)), (rejects, _row(rejects, 1))])
    assert rows[0].earned == 2 and rows[1].earned == 0 and NOT_COUNTED in rows[1].message


def test_kinds_rejects_with_a_passed_value_check_keeps_its_points():
    v1, v2 = _check("v1", "f", "value"), _check("v2", "f", "value", 3)
    rejects, prop = _check("r", "f", "rejects", 1), _check("p", "f", "property")
    graded = [(v1, _row(v1, 0, "wrong")), (v2, _row(v2, 3)), (rejects, _row(rejects, 1)), (prop, _row(prop, 2))]
    rows = grader._paid_with_a_value(graded)
    assert rows == [r for _, r in graded]                            # one passed value check is enough
    # a failed property/rejects check stays as it was, paid or not
    failed = _row(prop, 0, "not monotone")
    assert grader._paid_with_a_value([(v1, _row(v1, 0, "wrong")), (prop, failed)])[1] == failed


def test_kinds_value_rows_are_never_changed():
    checks = [_check(f"v{i}", "f", "value", i + 1) for i in range(3)]
    graded = [(c, _row(c, earned, msg)) for c, earned, msg in zip(checks, (0, 2, 0), ("a", "ok", "not implemented"))]
    assert grader._paid_with_a_value(graded) == [r for _, r in graded]
    assert grader._paid_with_a_value([]) == []


# --------------------------------------------------------------------------- degenerate answers, graded

def _answer(folder: Path, module: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(body, encoding="utf-8")
    return folder


def _raising(functions, skip=()) -> str:
    return "".join(f'\n\ndef {name}(*args, **kwargs):\n    raise ValueError("no")\n'
                   for name in functions if name not in skip)


def _rows(report, module: str, function: str | None = None) -> list[Row]:
    return [r for r in report.rows if r.module == module and r.points and (function is None or r.function == function)]


@pytest.mark.parametrize("module", CHECK_MODULES)
def test_kinds_an_answer_that_raises_value_error_everywhere_scores_zero(tmp_path, module):
    folder = _answer(tmp_path / "answers", module, "import torch\n" + _raising(_functions(module)))
    report = grade(folder, only=module)
    assert report.earned == 0, report.table(verbose=True)
    rows = {r.check: r for r in _rows(report, module)}
    assert set(rows) == {c.name for c in CHECKS if c.module == module}
    rejects = [c.name for c in CHECKS if c.module == module and c.kind == "rejects"]
    for name in rejects:        # they passed (a ValueError is what they ask for), and were not counted
        assert NOT_COUNTED in rows[name].message, (name, rows[name].message)


def test_kinds_kd_loss_as_the_sum_of_the_student_logits_scores_zero(tmp_path):
    module = "ex02_kd_loss"
    folder = _answer(tmp_path / "answers", module, textwrap.dedent("""\
        import torch


        def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                    temperature: float, alpha: float) -> torch.Tensor:
            return student_logits.sum()
        """) + _raising(_functions(module), skip=("kd_loss",)))
    report = grade(folder, only=module)
    rows = _rows(report, module, "kd_loss")
    assert rows and sum(r.earned for r in rows) == 0, report.table(verbose=True)
    scale = next(r for r in rows if r.check == "kd_loss_gradient_scale_is_temperature_independent")
    assert NOT_COUNTED in scale.message, scale.message     # the ratio of its gradient norms is 1: passed, unpaid
    assert report.earned == 0, report.table(verbose=True)


def test_kinds_entropy_as_the_constant_log_c_scores_zero(tmp_path):
    """log C in every row (of the right shape [...]: a 0-dim log C already fails the monotonicity check on its shape)."""
    module = "ex01_dark_knowledge"
    folder = _answer(tmp_path / "answers", module, textwrap.dedent("""\
        import torch


        def entropy(probs: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.tensor(float(probs.shape[-1]))).expand(probs.shape[:-1])
        """) + _raising(_functions(module), skip=("entropy",)))
    report = grade(folder, only=module)
    rows = _rows(report, module, "entropy")
    assert rows and sum(r.earned for r in rows) == 0, report.table(verbose=True)
    monotone = next(r for r in rows if r.check == "entropy_grows_with_temperature")
    assert NOT_COUNTED in monotone.message, monotone.message
    assert report.earned == 0, report.table(verbose=True)
