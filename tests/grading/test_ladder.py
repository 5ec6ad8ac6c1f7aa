"""The exercises' ladder and the notebooks' exercise cells: every graded function has a ``Task``
(level, minutes, what it asks), every notebook a warm-up, a core task and a stretch and at least
one task that is not "implement", input validation is at most 10% of an exercise's points, and
each notebook's exercise cell shows its files' tables exactly as the checks define them
(``checks.exercise_table``), so the notebook and the grader cannot disagree on a function's name,
points or level."""
from __future__ import annotations

import re
from collections import defaultdict

import pytest

from course_lib.grading.checks import CHECK_MODULES, CHECKS, LEVELS, Task, exercise_table, tasks
from course_lib.paths import repo_root

SOURCES = repo_root() / "notebooks" / "src"


def _graded(module: str) -> set[str]:
    return {c.function for c in CHECKS if c.module == module}


def _notebook(module: str):
    (path,) = SOURCES.glob(f"{module[2:4]}_*.py")
    return path


def _markdown_cells(path) -> list[str]:
    """The markdown cells of a notebook source (``# %% md``), comment markers removed."""
    cells = re.split(r"^# %%", path.read_text(encoding="utf-8"), flags=re.M)
    out = []
    for cell in cells:
        head, _, body = cell.partition("\n")
        if head.strip().startswith("md"):
            out.append("\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines()))
    return out


@pytest.mark.parametrize("module", CHECK_MODULES)
def test_every_graded_function_has_one_task(module):
    assert set(tasks(module)) == _graded(module), f"{module}: TASKS must name exactly the graded functions"


@pytest.mark.parametrize("number", sorted({m[2:4] for m in CHECK_MODULES}))
def test_every_notebook_has_a_ladder_and_more_than_transcription(number):
    mine = [t for m in CHECK_MODULES if m[2:4] == number for t in tasks(m).values()]
    assert {t.level for t in mine} == set(LEVELS), f"notebook {number}: levels {sorted({t.level for t in mine})}"
    assert any(t.asks != "implement" for t in mine), f"notebook {number}: every task is 'implement'"


@pytest.mark.parametrize("module", CHECK_MODULES)
def test_input_validation_is_at_most_a_tenth_of_the_points(module):
    points = defaultdict(int)
    for c in CHECKS:
        if c.module == module:
            points[c.kind] += c.points
    assert points["rejects"] * 10 <= sum(points.values()), f"{module}: {dict(points)}"


@pytest.mark.parametrize("module", CHECK_MODULES)
def test_the_notebooks_exercise_cell_shows_the_table(module):
    cells = [c for c in _markdown_cells(_notebook(module)) if f"exercises/{module}.py" in c]
    assert cells, f"{_notebook(module).name}: no markdown cell names exercises/{module}.py"
    table = exercise_table(module)
    assert any(table in c for c in cells), (f"{_notebook(module).name}: the exercise cell must show "
                                            f"(python -m course_lib.grading table {module}):\n{table}")


def test_the_table_is_ordered_by_level_and_counts_points():
    import course_lib.grading.checks.ex02_kd_loss as ex02
    table = exercise_table("ex02_kd_loss").splitlines()
    levels = [LEVELS.index(line.split("|")[2].strip()) for line in table[2:]]
    assert levels == sorted(levels) and len(table) == 2 + len(ex02.TASKS)
    assert sum(int(line.split("|")[3]) for line in table[2:]) == 20


def test_a_task_rejects_unknown_levels_and_kinds():
    with pytest.raises(ValueError):
        Task("easy", 10, "implement")
    with pytest.raises(ValueError):
        Task("core", 10, "copy")
    with pytest.raises(ValueError):
        Task("core", 0, "derive")


def test_a_choice_names_why_a_wrong_key_fails_and_never_the_right_one():
    from course_lib.grading.checks import choice
    wrong = {"reverse": "the reverse KL drops modes"}
    choice("forward", "q", "forward", wrong)
    with pytest.raises(AssertionError, match="drops modes") as e:
        choice("reverse", "q", "forward", wrong)
    assert "'forward'" not in str(e.value)
    with pytest.raises(AssertionError, match=r"return one of \['forward', 'reverse'\]"):
        choice("Forward", "q", "forward", wrong)
    with pytest.raises(AssertionError, match="return one of"):
        choice(1, "q", "forward", wrong)


class _Fake:
    """A stand-in RemoteFunction whose siblings return fixed values or raise."""

    def __init__(self, values):
        self.values = values

    def sibling(self, name):
        def f(*args):
            value = self.values[name]
            if isinstance(value, BaseException):
                raise value
            return value
        return f


def test_fix_first_names_a_wrong_dependency_only():
    from course_lib.grading.base import MissingFunction, StudentError
    from course_lib.grading.checks import fix_first
    assert "fix it first" in fix_first(_Fake({"g": 2.5}), "g", (0.5, 3), 1.875)
    assert "g(0.5, 3)" in fix_first(_Fake({"g": 2.5}), "g", (0.5, 3), 1.875)
    assert fix_first(_Fake({"g": 1.875}), "g", (0.5, 3), 1.875) == ""
    for error in (StudentError("x"), MissingFunction("g"), NotImplementedError()):
        error = StudentError("not implemented") if isinstance(error, NotImplementedError) else error
        assert fix_first(_Fake({"g": error}), "g", (0.5, 3), 1.875) == ""
    pair = _Fake({"g": (0.1, 3)})                        # a result that is not a number: judged by right()
    assert fix_first(pair, "g", (1,), right=lambda got: got == (0.1, 3)) == ""
    assert "your g(1) is wrong too" in fix_first(pair, "g", (1,), right=lambda got: got == (0.2, 3))
    assert fix_first(pair, "g", (1,), right=lambda got: got[5] == 0) == ""          # cannot tell: no hint
    assert fix_first(pair, "g", (1,), right=lambda got: False, wrong=lambda got: f" - off: {got}") == " - off: (0.1, 3)"
