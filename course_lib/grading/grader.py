"""Grading: each answer file in its own child, each check's outcome a ``Row``.

``grade`` grades a folder (one child per file, see ``sandbox``), ``grade_class`` one folder per
student, ``self_check`` is a notebook's grade cell. ``_grade_file`` runs a file's checks (from the
registry, ``checks.CHECKS``) against one child, goes on in a fresh child when one is lost (the
lost check and the rest of that function's checks score zero), and ends with
``_paid_with_a_value``: a ``property`` or ``rejects`` check pays only when a ``value`` check of the
same function passed. Nothing is raised for wrong or misbehaving answers.
"""
from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from course_lib import paths
from course_lib.grading.base import (FORBIDDEN_IMPORT, MEMORY, MISSING, SYNTAX, ChildLost, Limits, MissingFunction,
                                     StudentError, student_error_from)
from course_lib.grading.checks import CHECKS, Check
from course_lib.grading.generate import FORBIDDEN_PACKAGE, forbidden_references
from course_lib.grading.remote import RemoteFunction
from course_lib.grading.report import Gradebook, GradeReport, Row
from course_lib.grading.sandbox import Child, isolation

LOAD_ROW = "(loads; no course_lib use)"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # course_lib: the answers may not read it
UNPAID = "passed, but not counted"  # how a row starts whose check passed but is not paid (_paid_with_a_value)


def _run_check(c: Check, child: Child, deadline: float, limit: str) -> tuple[Row, ChildLost | None]:
    flags: set[str] = set()

    def row(earned, message, details=""):
        return Row(c.module, c.name, c.function, c.points, earned, message, details, tuple(sorted(flags)))

    try:
        c.run(RemoteFunction(child, c.function, flags, deadline, limit))
    except ChildLost as lost:
        flags.add(lost.flag)
        return row(0, lost.message), lost
    except MissingFunction as e:
        return row(0, f"no function {c.function}() in {c.module}.py ({e})"), None
    except StudentError as e:
        if isinstance(e, NotImplementedError):
            return row(0, f"not implemented: {c.function}()"), None
        return row(0, f"error in {c.function}(): {e.kind}: {e.message}", e.details), None
    except AssertionError as e:
        return row(0, f"wrong: {e}" if str(e) else "wrong (an assertion failed)", traceback.format_exc()), None
    except Exception as e:  # noqa: BLE001 - e.g. a result of an unexpected type
        return row(0, f"error while checking {c.function}(): {type(e).__name__}: {e}", traceback.format_exc()), None
    return row(c.points, "ok"), None


def _grade_file(folder: Path, module: str, checks: list[Check], limits: Limits, forbidden: list[Path]) -> list[Row]:
    """The rows of one answer file: its load row, then one per check (in ``checks`` order)."""
    path = (folder / f"{module}.py").resolve()

    def not_graded(c: Check, message: str, flags=()) -> Row:
        return Row(c.module, c.name, c.function, c.points, 0, f"not graded: {message}", flags=tuple(flags))

    def all_zero(message: str, flags=(), details="") -> list[Row]:
        load = Row(module, LOAD_ROW, "", 0, 0, message, details, tuple(sorted(flags)))
        return [load] + [not_graded(c, message) for c in checks]

    if not path.is_file():
        return all_zero(f"missing file {path.name}", {MISSING})
    try:
        source = path.read_text(encoding="utf-8")
        forbidden_refs = forbidden_references(source)
    except (SyntaxError, ValueError) as e:  # ValueError: undecodable text, NUL bytes
        where = f" at line {e.lineno}" if isinstance(e, SyntaxError) else ""
        return all_zero(f"{type(e).__name__}{where}: {getattr(e, 'msg', e)}", {SYNTAX})
    except OSError as e:
        return all_zero(f"unreadable file {path.name}: {e}", {MISSING})
    if forbidden_refs:
        return all_zero(f"uses {FORBIDDEN_PACKAGE} (not allowed in an answer): {'; '.join(forbidden_refs)}",
                        {FORBIDDEN_IMPORT})

    load = Row(module, LOAD_ROW, "", 0, 0, "ok")
    rows: dict[str, Row] = {}
    pending = list(checks)
    spent = 0.0  # seconds of the file's time used by earlier children
    while pending:
        child = Child(path, limits, forbidden)
        start = time.monotonic()
        try:
            file_deadline = start + limits.file_time_limit - spent
            try:
                loaded = child.receive(min(start + limits.time_limit, file_deadline),
                                       f"importing {path.name} took more than {limits.time_limit:g} s")
            except ChildLost as lost:
                load = Row(module, LOAD_ROW, "", 0, 0, lost.message, flags=(lost.flag,))
                rows.update({c.name: not_graded(c, lost.message) for c in pending})
                break
            if "error" in loaded:
                error = student_error_from(loaded["error"])
                flags = (MEMORY,) if isinstance(loaded["error"], dict) and loaded["error"].get("memory") else ()
                message = f"import failed: {error.kind}: {error.message}"
                load = Row(module, LOAD_ROW, "", 0, 0, message, error.details, flags)
                rows.update({c.name: not_graded(c, message) for c in pending})
                break
            while pending:
                c = pending.pop(0)
                now = time.monotonic()
                per_check = now + limits.time_limit
                limit = (f"{limits.time_limit:g} s" if per_check <= file_deadline
                         else f"the file's {limits.file_time_limit:g} s")
                row, lost = _run_check(c, child, min(per_check, file_deadline), limit)
                rows[c.name] = row
                if lost is None:
                    continue
                if lost.flag == FORBIDDEN_IMPORT:  # the whole file scores zero
                    rows.update({k.name: not_graded(k, lost.message) for k in checks if k.name != c.name})
                    pending = []
                elif time.monotonic() >= file_deadline:
                    message = f"the file used up its {limits.file_time_limit:g} s"
                    rows.update({k.name: not_graded(k, message) for k in pending})
                    pending = []
                else:  # the same function would most likely fail the same way: skip it, go on in a new child
                    skipped = [k for k in pending if k.function == c.function]
                    rows.update({k.name: not_graded(k, f"{c.function}() was stopped in an earlier check ({lost.flag})")
                                 for k in skipped})
                    pending = [k for k in pending if k.function != c.function]
                break
        finally:
            spent += time.monotonic() - start
            child.close()
    return [load] + _paid_with_a_value([(c, rows[c.name]) for c in checks])


def _paid_with_a_value(graded: list[tuple[Check, Row]]) -> list[Row]:
    """The rows, where a passed ``property`` or ``rejects`` check of a function that passed none of
    its ``value`` checks earns nothing (``checks.check``): an answer that raises on every
    input, or returns a constant of the right shape, must not collect the points of the checks
    that such an answer can pass."""
    valued = {c.function for c, r in graded if c.kind == "value" and r.earned > 0}
    out = []
    for c, r in graded:
        if c.kind != "value" and r.earned > 0 and c.function not in valued:
            r = dataclasses.replace(r, earned=0, message=(
                f"{UNPAID}: {c.function}() passed none of its value checks (a {c.kind} check "
                f"pays only together with a correct value)"))
        out.append(r)
    return out


def _selected(modules, only) -> list[str]:
    if only is None:
        return list(modules)
    prefixes = (only,) if isinstance(only, str) else tuple(only)
    return [m for m in modules if m.startswith(prefixes)]


def _forbidden_roots(extra=()) -> list[Path]:
    roots = [PACKAGE_DIR, paths.solutions_dir(), *(Path(p) for p in extra)]
    return list(dict.fromkeys(p.resolve() for p in roots))


def grade(folder: str | Path | None = None, only: str | list[str] | None = None,
          time_limit: float = 10.0, *, file_time_limit: float = 60.0, memory_limit: int = 2048,
          forbid: tuple[str | Path, ...] | list[str | Path] = ()) -> GradeReport:
    """Grade the answers in ``folder`` (default ``<project root>/exercises``; ``solutions/`` or a
    student's copy), each file in its own child process (see the module docstring).

    ``only``: a module-name prefix (or a list of them), e.g. ``"ex01"``. ``time_limit``: seconds
    for importing a file and for each check; ``file_time_limit``: seconds for all checks of a
    file; ``memory_limit``: MiB. ``forbid``: more folders the answers may not read. Nothing is
    raised for wrong or misbehaving answers: each check's outcome is a row of the report.
    """
    folder = Path(folder) if folder is not None else paths.exercises_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder.resolve()} to grade")
    modules = _selected(dict.fromkeys(c.module for c in CHECKS), only)
    if not modules:
        raise ValueError(f"no graded exercises match only={only!r}")
    limits = Limits(float(time_limit if time_limit is not None else Limits.time_limit),
                    float(file_time_limit), int(memory_limit))
    report = GradeReport(folder.resolve())
    forbidden = _forbidden_roots(forbid)
    for module in modules:
        report.rows += _grade_file(folder, module, [c for c in CHECKS if c.module == module], limits, forbidden)
    report.isolation = isolation()  # levels only ever go down, so this is the weakest one used
    return report


def self_check(only: str | list[str]) -> GradeReport | None:
    """A notebook's grade cell: grade ``exercises/`` (the checkout's, or on Colab the clone's, see
    ``paths.exercises_dir``) for ``only``; without that folder, say how to get it and return None."""
    folder = paths.exercises_dir()
    if not folder.is_dir():
        print(f"{folder} not found: clone the course repository (on Colab, run the setup cell at the top)")
        return None
    return grade(folder, only=only)


def grade_class(submissions: str | Path, only: str | list[str] | None = None, time_limit: float = 10.0, *,
                file_time_limit: float = 60.0, memory_limit: int = 2048, solutions: str | Path | None = None,
                progress: Callable[[str, GradeReport], None] | None = None) -> Gradebook:
    """Grade every student folder of ``submissions`` (one after another), each file in its own child.

    Answers may not read other submissions, ``<project root>/solutions`` or ``solutions``.
    """
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no folder {submissions.resolve()} of submissions")
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not students:
        raise ValueError(f"{submissions} holds no student folders (one folder per student)")
    forbid = [submissions] + ([Path(solutions)] if solutions is not None else [])
    book = Gradebook(submissions.resolve())
    for student in students:
        report = grade(student, only, time_limit, file_time_limit=file_time_limit, memory_limit=memory_limit,
                       forbid=forbid)
        book.reports[student.name] = report
        if progress is not None:
            progress(student.name, report)
    return book
