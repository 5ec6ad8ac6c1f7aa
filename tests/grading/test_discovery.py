"""Nothing is registered by hand-edited lists: exercise check modules are found by name."""
from __future__ import annotations

from pathlib import Path

from course_lib.grading import checks
from course_lib.grading.checks import CHECKS

REPO = Path(__file__).resolve().parents[2]


def test_every_solution_file_has_a_check_module_and_checks():
    solutions = sorted(p.stem for p in (REPO / "solutions").glob("ex*.py"))
    assert solutions, "no solutions/ex*.py found"
    assert checks.CHECK_MODULES == solutions
    assert {c.module for c in CHECKS} == set(solutions)



def test_notebook_self_check_grades_the_exercises_folder_or_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    from course_lib import grading, paths
    monkeypatch.setattr(paths, "exercises_dir", lambda: tmp_path / "missing")
    assert grading.self_check("ex01") is None and "clone the course repository" in capsys.readouterr().out
    monkeypatch.setattr(paths, "exercises_dir", lambda: REPO / "solutions")
    report = grading.self_check("ex01")
    assert report.fraction == 1.0 and set(report.by_module()) == {"ex01_dark_knowledge"}
