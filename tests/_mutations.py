"""Mutation tests of the graded exercises, shared by tests/test_grading_exNN.py.

A test file defines ``MUTATIONS`` (name -> ``(function, [(old, new), ...], checks that must fail,
text the failure message must contain)``) and ``GROUPS`` (lists of mutation names applied together
to the reference solution, at most one per function). These helpers check that table and grade a
mutated solution.
"""
from __future__ import annotations

from pathlib import Path

from course_lib.grading import UNPAID, grade
from course_lib.grading_checks import CHECKS


def check_groups(module: str, mutations: dict, groups: list[list[str]]) -> None:
    """Every mutation in exactly one group, one per function per group, its checks belong to its function."""
    names = [n for g in groups for n in g]
    assert sorted(names) == sorted(mutations)
    for group in groups:
        functions = [mutations[n][0] for n in group]
        assert len(functions) == len(set(functions)), group
    checks = {c.name: c.function for c in CHECKS if c.module == module}
    for name, (function, _, must_fail, _) in mutations.items():
        assert must_fail and all(checks[c] == function for c in must_fail), name


def points_per_function(module: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for c in CHECKS:
        if c.module == module:
            points[c.function] = points.get(c.function, 0) + c.points
    return points


def grade_text(tmp_path: Path, module: str, filename: str, text: str):
    """Grade ``text`` saved as ``filename`` in a fresh folder (only ``module``'s checks)."""
    folder = tmp_path / "answer"
    folder.mkdir()
    (folder / filename).write_text(text)
    return grade(folder, only=module)


def grade_mutated(tmp_path: Path, module: str, solution: Path, mutations: dict, group: list[str]):
    """Apply the group's mutations to the reference solution (each target found exactly once), grade it."""
    text = solution.read_text()
    for name in group:
        for old, new in mutations[name][1]:
            assert text.count(old) == 1, f"mutation target not found once: {old!r}"
            text = text.replace(old, new)
    return grade_text(tmp_path, module, solution.name, text)


def assert_mistakes_named(report, module: str, mutations: dict, group: list[str], *, exactly: bool = False) -> None:
    """Each mutation fails its checks with its hint in the message; the other functions' checks pass.
    ``exactly``: each mutation fails only its checks among its function's (so a check's points follow
    the mistakes it is about)."""
    failed = {r.check for r in report.rows if r.earned < r.points}
    for name in group:
        function, _, must_fail, hint = mutations[name]
        assert must_fail <= failed, (name, report.table(verbose=True))
        messages = " ".join(r.message for r in report.rows if r.check in must_fail)
        assert hint in messages, (name, messages)
    broken = {mutations[n][0] for n in group}
    intact = {c.name for c in CHECKS if c.module == module and c.function not in broken}
    assert not intact & failed, report.table(verbose=True)
    assert not any(report.flags().values()), report.flags()
    if exactly:
        # a property or rejects check that passed but is not paid (its function passed no value check:
        # course_lib.grading._paid_with_a_value) did not fail on its own; every other failure must be listed
        unpaid = {r.check for r in report.rows if r.message.startswith(UNPAID)}
        for name in group:
            function, _, must_fail, _ = mutations[name]
            own = {r.check for r in report.rows if r.function == function and r.earned < r.points} - unpaid
            assert own == must_fail, name
            if unpaid & {r.check for r in report.rows if r.function == function}:
                assert not {r.check for r in report.rows if r.function == function and r.earned}, name


def assert_solution_full_and_stub_zero(module: str, solution: Path, stubs: Path, total: int = 20) -> None:
    """The reference solution earns every point without a flag; the generated stub earns none, every
    graded check saying "not implemented" (test_grading.py covers all modules at once; this grades one)."""
    report = grade(solution.parent, only=module)
    assert report.earned == report.total == total and not any(report.flags().values()), report.table(verbose=True)
    stub = grade(stubs, only=module)
    graded = [r for r in stub.rows if r.points]
    assert stub.earned == 0 and graded and all(r.message.startswith("not implemented") for r in graded)
