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
