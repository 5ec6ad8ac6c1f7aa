"""Reports: a ``Row`` per check, a ``GradeReport`` per graded folder, a ``Gradebook`` per class.

``GradeReport`` prints as a score table (``table``; in Jupyter as markdown) and names the isolation
its children ran under; ``Gradebook`` holds one report per student and writes the class's CSV:
one row per student and exercise, with the points of each check, total, max, percent, flags and
isolation.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.grading.checks import CHECKS
from course_lib.grading.sandbox import ISOLATION_TEXT, LEVELS


@dataclass
class Row:
    module: str
    check: str
    function: str
    points: int
    earned: int
    message: str
    details: str = ""  # traceback of a failed check (shown with --verbose)
    flags: tuple[str, ...] = ()


@dataclass
class GradeReport:
    folder: Path
    rows: list[Row] = field(default_factory=list)
    isolation: str = ""  # the weakest isolation any child of this report ran under (ISOLATION_TEXT key)

    @property
    def earned(self) -> int:
        return sum(r.earned for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.points for r in self.rows)

    @property
    def fraction(self) -> float:
        return self.earned / self.total if self.total else 0.0

    def by_module(self) -> dict[str, tuple[int, int]]:
        """``{module: (earned, total)}``."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.rows:
            e, t = out.get(r.module, (0, 0))
            out[r.module] = (e + r.earned, t + r.points)
        return out

    def flags(self) -> dict[str, list[str]]:
        """``{module: sorted flags raised anywhere in that file}``."""
        out: dict[str, set[str]] = {}
        for r in self.rows:
            out.setdefault(r.module, set()).update(r.flags)
        return {m: sorted(f) for m, f in out.items()}

    def table(self, verbose: bool = False, width: int = 72) -> str:
        name_w = max([len(r.check) + 2 for r in self.rows] + [len("check")])
        lines = [f"Grading {self.folder}", f"{'check':<{name_w}}  points  earned  message"]
        module = None
        for r in self.rows:
            if r.module != module:
                module = r.module
                e, t = self.by_module()[module]
                lines.append(f"{module}  ({e}/{t})")
            message = _with_flags(r)
            message = message if verbose else shorten(message, width)
            lines.append(f"  {r.check:<{name_w - 2}}  {r.points:>6}  {r.earned:>6}  {message}")
            if verbose and r.details:
                lines += ["      " + d for d in r.details.rstrip().splitlines()]
        lines.append(f"{'TOTAL':<{name_w}}  {self.total:>6}  {self.earned:>6}  {100 * self.fraction:.1f}%")
        if self.isolation:
            lines.append(f"isolation: {ISOLATION_TEXT[self.isolation]}")
        if not verbose and any(r.earned < r.points for r in self.rows):
            lines.append(MORE_DETAILS)
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:  # rendered by Jupyter when a cell ends with grade(...)
        head = ["| check | points | earned | message |", "|---|---:|---:|---|"]
        body = [f"| {r.module}.{r.check} | {r.points} | {r.earned} | {_with_flags(r).replace('|', '/')} |"
                for r in self.rows]
        total = f"| **total** | **{self.total}** | **{self.earned}** | **{100 * self.fraction:.1f}%** |"
        return "\n".join(head + body + [total])


MORE_DETAILS = ("some checks failed: run with -v for the full messages and tracebacks "
                "(python -m course_lib.grading -v ..., or print(report.table(verbose=True)) in a notebook)")
HINT_SEPARATOR = " - "          # checks write "<what>: expected ..., got ... - <what the mistake is>"


_HINT_START = re.compile(r" - (?=[A-Za-z])")  # the first " - " before a word: "(1 - 2^-20)" is a number


def shorten(message: str, width: int = 72, keep: int = 24) -> str:
    """``message`` in about ``width`` characters for the terminal table, never cutting its hint: the
    text from the first ``" - "`` followed by a letter (a check's "that is what ... gives", which may
    itself hold a ``" - "``) stays whole, and the numbers before it are shortened instead (at least
    ``keep`` characters of them are kept)."""
    if len(message) <= width:
        return message
    found = _HINT_START.search(message)
    if not found:
        return message[: width - 3] + "..."
    head, sep, hint = message[:found.start()], HINT_SEPARATOR, message[found.end():]
    room = max(keep, width - len(sep) - len(hint) - 3)
    return (head if len(head) <= room else head[:room] + "...") + sep + hint


def _with_flags(row: Row) -> str:
    return f"[{', '.join(row.flags)}] {row.message}" if row.flags else row.message


@dataclass
class Gradebook:
    """One ``GradeReport`` per student of a submissions folder."""
    submissions: Path
    reports: dict[str, GradeReport] = field(default_factory=dict)

    def columns(self) -> list[str]:
        checks = [(c.module, c.name) for c in CHECKS if any(c.module in r.by_module() for r in self.reports.values())]
        names = [name for _, name in checks]
        return [name if names.count(name) == 1 else f"{module}:{name}" for module, name in checks]

    def records(self) -> list[dict[str, object]]:
        """One dict per student and exercise: student, exercise, a column per check, total, max, percent, flags."""
        checks = [(c.module, c.name) for c in CHECKS]
        column = dict(zip([k for k in checks if any(k[0] in r.by_module() for r in self.reports.values())],
                          self.columns()))
        out = []
        for student, report in self.reports.items():
            flags = report.flags()
            for module, (earned, total) in report.by_module().items():
                record: dict[str, object] = {"student": student, "exercise": module}
                record.update({column[(r.module, r.check)]: r.earned for r in report.rows
                               if r.module == module and (r.module, r.check) in column})
                record.update(total=earned, max=total, percent=round(100 * earned / total, 1) if total else 0.0,
                              flags="; ".join(flags.get(module, [])), isolation=report.isolation)
                out.append(record)
        return out

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = ["student", "exercise", *self.columns(), "total", "max", "percent", "flags", "isolation"]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(self.records())
        return path

    def table(self) -> str:
        modules = list(dict.fromkeys(m for r in self.reports.values() for m in r.by_module()))
        name_w = max([len(s) for s in self.reports] + [len("student")])
        col_w = {m: max(len(m), 7) for m in modules}
        lines = [f"Gradebook {self.submissions}",
                 "  ".join([f"{'student':<{name_w}}", *(f"{m:>{col_w[m]}}" for m in modules), " total", "flags"])]
        for student, report in self.reports.items():
            scores = {m: "{}/{}".format(*report.by_module()[m]) for m in report.by_module()}
            cells = [f"{scores.get(m, '-'):>{col_w[m]}}" for m in modules]
            flags = "; ".join(f"{m.split('_')[0]}: {', '.join(f)}" for m, f in report.flags().items() if f)
            lines.append("  ".join([f"{student:<{name_w}}", *cells, f"{100 * report.fraction:5.1f}%", flags]))
        used = sorted({r.isolation for r in self.reports.values() if r.isolation}, key=LEVELS.index)
        lines += [f"isolation: {ISOLATION_TEXT[level]}" for level in used]
        return "\n".join(lines)

    __str__ = table
