"""Mutation tests of the graded exercises, shared by tests/grading/test_exNN*.py.

A test file describes its exercise's mutations: ``MUTATIONS`` (name -> ``(function, [(old, new), ...],
checks that must fail, text the failure message must contain)``) and ``GROUPS`` (lists of mutation
names applied together to the reference solution, at most one per function, so one child grades
several mistakes), and runs the tests every graded exercise shares by subclassing
``MutationTests``::

    class TestMutations(MutationTests):
        module = MODULE
        mutations = MUTATIONS
        groups = GROUPS
        points = {"attention_map": 7, ...}   # points per graded function
        exactly = True                       # each mutation fails only its checks in its function

which checks the table (``check_groups``), the points per function, that each group of mistakes
loses exactly the points of the checks it is about with a message naming each mistake
(``grade_mutated``, ``assert_mistakes_named``), and that the reference solution earns every point
while the generated stub earns none (``assert_solution_full_and_stub_zero``). The helpers are
also there for a file's own tests (``grade_text``, ``assert_inputs_modified``).
"""
from __future__ import annotations

from pathlib import Path

from course_lib.grading import UNPAID, grade
from course_lib.grading.checks import CHECKS
from course_lib.paths import exercises_dir, solutions_dir


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
        # course_lib.grading.grader._paid_with_a_value) did not fail on its own; every other failure must be listed
        unpaid = {r.check for r in report.rows if r.message.startswith(UNPAID)}
        for name in group:
            function, _, must_fail, _ = mutations[name]
            own = {r.check for r in report.rows if r.function == function and r.earned < r.points} - unpaid
            assert own == must_fail, name
            if unpaid & {r.check for r in report.rows if r.function == function}:
                assert not {r.check for r in report.rows if r.function == function and r.earned}, name


def assert_solution_full_and_stub_zero(module: str, solution: Path, stubs: Path, total: int = 20) -> None:
    """The reference solution earns every point without a flag; the generated stub earns none, every
    graded check saying "not implemented" (test_grader.py covers all modules at once; this grades one)."""
    report = grade(solution.parent, only=module)
    assert report.earned == report.total == total and not any(report.flags().values()), report.table(verbose=True)
    stub = grade(stubs, only=module)
    graded = [r for r in stub.rows if r.points]
    assert stub.earned == 0 and graded and all(r.message.startswith("not implemented") for r in graded)


def assert_inputs_modified(report, module: str, rows) -> None:
    """``rows`` (the checks of an answer that modifies its inputs in place) are there, each scored zero
    with a message that says "in place", and the file's only flag is "inputs modified"."""
    assert rows and all(r.earned == 0 and "in place" in r.message for r in rows), report.table(verbose=True)
    assert report.flags() == {module: ["inputs modified"]}


class MutationTests:
    """The tests every graded exercise's test file runs (see the module docstring); a subclass named
    ``Test...`` sets ``module``, ``mutations``, ``groups``, ``points`` and ``exactly``."""

    module: str
    mutations: dict
    groups: list[list[str]]
    points: dict[str, int]
    exactly: bool = True
    total: int = 20

    @property
    def solution(self) -> Path:
        return solutions_dir() / f"{self.module}.py"

    def pytest_generate_tests(self, metafunc) -> None:  # pytest calls a test class's own hook too
        if "group" in metafunc.fixturenames:
            metafunc.parametrize("group", self.groups, ids="+".join)

    def test_groups_cover_every_mutation_once_and_each_function_at_most_once(self):
        check_groups(self.module, self.mutations, self.groups)

    def test_points_per_function(self):
        assert points_per_function(self.module) == self.points
        assert sum(self.points.values()) == self.total

    def test_a_wrong_answer_loses_points_with_a_message_naming_its_mistake(self, tmp_path, group):
        report = grade_mutated(tmp_path, self.module, self.solution, self.mutations, group)
        assert_mistakes_named(report, self.module, self.mutations, group, exactly=self.exactly)

    def test_the_solution_gets_full_marks_and_the_stub_zero(self):
        assert_solution_full_and_stub_zero(self.module, self.solution, exercises_dir(), self.total)
