"""Nothing is registered by hand-edited lists: exercise check modules are found by name."""
from __future__ import annotations

from pathlib import Path

from course_lib import grading_checks
from course_lib.grading_checks import CHECKS

REPO = Path(__file__).resolve().parent.parent


def test_every_solution_file_has_a_check_module_and_checks():
    solutions = sorted(p.stem for p in (REPO / "solutions").glob("ex*.py"))
    assert solutions, "no solutions/ex*.py found"
    assert grading_checks.CHECK_MODULES == solutions
    assert {c.module for c in CHECKS} == set(solutions)

