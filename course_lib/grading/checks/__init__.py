"""The autograder's checks, one module per exercise file (``ex01_dark_knowledge.py`` grades
``exercises/ex01_dark_knowledge.py``).

A check runs in the grader's own process and never sees the student's code: it receives a
stand-in for the student's function (``course_lib.grading.remote.RemoteFunction``) whose calls run
in a separate child process, and raises ``AssertionError`` (with a message a student can act on)
when the answer is wrong; it earns its points when it raises nothing. So each check has three
parts: the inputs it builds (seeded tensors, from its own generators, so grading never touches a
notebook's global random state), the calls it makes (``f(*args)``, or ``f.value_and_grad(*args,
wrt=0)`` for a result and its gradient with respect to an argument) and the comparison with
``course_lib.losses`` (the tested reference), hand-computed numbers and limits (``T -> inf``,
student == teacher, ``alpha = 0``). Arguments travel as copies, and a function that modifies
them in place fails the check. How a value was computed is not checked (an answer may use
``torch.autograd`` where the task asks for a derivation: no guard inside the answer's process can
tell, see ``course_lib.grading``); a derivation is checked by its values. A model argument is a
description (``module_arg``: ``torch.nn`` layers, their state, mode and frozen parameters) that the
child builds; a model that comes back is a ``ModuleReport`` (identity, modes, ``requires_grad``,
values, storage addresses), and ``f.inspect(model_arg, probe_input=x)`` also returns the model as
the function left it and the returned model's outputs before and after the original was
re-initialised (``ex05_born_again.py`` uses all of it).

Layout: ``registry`` holds ``CHECKS`` and the ``check`` decorator, ``helpers`` the inputs and
comparisons the check modules share (both re-exported here); a check module imports those two and
``course_lib.grading.base`` (``StudentError``, ``ModuleReport``), never the grader. This package
imports every ``exNN_*`` module (found by name, so a new exercise's checks need no hand-edited
list): importing a module registers its checks.

To add one::

    @check("ex02_kd_loss", "kd_loss", points=2)
    def kd_loss_is_zero_for_identical_logits(kd_loss):
        \"\"\"One line for the table's readers.\"\"\"
        ...
"""
from __future__ import annotations

import importlib
import pkgutil

from course_lib.grading.base import ModuleReport, StudentError
from course_lib.grading.checks.helpers import (as_tensor, build, choice, close, close_naming, expect_value_error,
                                               fix_first, matches, module_arg, randint, randn, scalar, student_error,
                                               tensors_close, value_naming)
from course_lib.grading.checks.registry import ASKS, CHECKS, KINDS, LEVELS, Check, Task, check

CHECK_MODULES = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ex"))
for _name in CHECK_MODULES:
    importlib.import_module(f"{__name__}.{_name}")



def tasks(module: str) -> dict[str, Task]:
    """The ``TASKS`` of a check module (graded function -> ``Task``), in the ladder's order."""
    table = getattr(importlib.import_module(f"{__name__}.{module}"), "TASKS", {})
    return dict(sorted(table.items(), key=lambda item: LEVELS.index(item[1].level)))


def exercise_table(module: str) -> str:
    """The markdown table of ``module``'s tasks the notebook's exercise cell shows (function, level,
    points, estimated minutes, what it asks), from ``TASKS`` and the checks' points: a test keeps
    the notebook's copy equal to it (``python -m course_lib.grading table exNN`` prints it)."""
    points: dict[str, int] = {}
    for c in CHECKS:
        if c.module == module:
            points[c.function] = points.get(c.function, 0) + c.points
    rows = ["| function | level | points | time | task |", "|---|---|---:|---:|---|"]
    for function, task in tasks(module).items():
        rows.append(f"| `{function}` | {task.level} | {points.get(function, 0)} | ~{task.minutes} min | {task.asks} |")
    return "\n".join(rows)


__all__ = ["ASKS", "CHECKS", "CHECK_MODULES", "KINDS", "LEVELS", "Check", "ModuleReport", "StudentError", "Task",
           "as_tensor", "build", "check", "choice", "close", "close_naming", "exercise_table", "expect_value_error",
           "fix_first", "matches", "module_arg", "randint", "randn", "scalar", "student_error", "tasks",
           "tensors_close", "value_naming"]
