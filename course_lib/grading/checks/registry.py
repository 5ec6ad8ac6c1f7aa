"""The check registry: ``CHECKS`` and the ``check`` decorator that fills it.

A check module (``exNN_*.py``) registers its checks on import; ``checks/__init__.py`` imports every
one. This module imports nothing of the grader, so registering a check never imports the
orchestration.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    points: int
    module: str  # exercise file stem, e.g. "ex01_dark_knowledge"
    function: str  # the function under test in that file
    run: Callable[[Callable], None]
    description: str = ""
    kind: str = "value"  # "value", "property" or "rejects" (see ``check``)


CHECKS: list[Check] = []
KINDS = ("value", "property", "rejects")
LEVELS = ("warm-up", "core", "stretch")
ASKS = ("implement", "derive", "predict", "choose", "apply")


@dataclass(frozen=True)
class Task:
    """What one graded function asks of a student, for the notebook's exercise table.

    A check module's ``TASKS`` maps each graded function to one: ``level`` on the notebook's ladder
    (each notebook has a warm-up, a core task and a stretch), ``minutes`` the estimated time of a
    student who worked through the notebook, and ``asks`` what the task is: ``implement`` (a
    contract the notebook's code shows), ``derive`` (a result on paper, checked by its
    consequences), ``predict`` (a number before the notebook measures it), ``choose`` (a choice
    with a reason: a function returning a choice key) or ``apply`` (the idea on a case the notebook
    did not show). ``tests/grading/test_ladder.py`` checks the tables against the notebooks.
    """
    level: str
    minutes: int
    asks: str

    def __post_init__(self):
        if self.level not in LEVELS or self.asks not in ASKS or self.minutes <= 0:
            raise ValueError(f"bad task {self}: level in {LEVELS}, asks in {ASKS}, minutes > 0")


def check(module: str, function: str, points: int, kind: str = "value"):
    """Register the decorated function as a check worth ``points`` on ``module.function``.

    ``kind``: ``"value"`` compares results with the reference (hand-computed numbers, limits,
    ``course_lib``); ``"property"`` checks a property that a wrong answer can also have
    (monotone, a gradient's scale, shapes, no side effects); ``"rejects"`` passes invalid input
    only. A property or rejects check pays only when a value check of the same function passed
    in the same file (``grader._paid_with_a_value``): raising everywhere, or returning something of the
    right shape, earns nothing. Every graded function has at least one value check.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def register(run):
        CHECKS.append(Check(run.__name__, points, module, function, run, (run.__doc__ or "").strip(), kind))
        return run
    return register
