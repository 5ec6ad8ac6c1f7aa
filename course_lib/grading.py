"""Exercises and autograder.

One source of truth, the nbgrader/otter convention: ``solutions/`` holds reference answers whose
solution regions are marked ::

    def entropy(probs):
        \"\"\"The docstring states the task and the equation; it is kept in the exercise.\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

and ``exercises/`` is generated from it: each marked region becomes a stub at the markers'
indentation, ``raise NotImplementedError("Exercise: implement entropy()")``; everything outside the
markers is copied unchanged. Never edit ``exercises/`` by hand (a test fails when it is out of date).

The autograder runs point-weighted checks (``course_lib.grading_checks``) against a folder of
answers: each exercise file is loaded by path, so ``solutions/`` and ``exercises/`` never collide in
``sys.modules``; a check earns its points if it raises nothing. CI grades ``solutions/`` (full marks)
and ``exercises/`` (zero).

Command line (from the repository root)::

    python -m course_lib.grading exercises [--only ex01] [--min-score 0.8] [-v]   # score table
    python -m course_lib.grading generate                                       # solutions/ -> exercises/
    python -m course_lib.grading check-sync                                     # exit 1 if stale

From a notebook: ``from course_lib.grading import grade; grade("../exercises", only="ex01")``.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.util
import io
import re
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from course_lib.grading_checks import CHECKS, Check

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HEADER = ("# GENERATED from {source} by `python -m course_lib.grading generate` - do not edit.\n"
          "# (Course authors: edit {source} and regenerate. Students: replace each\n"
          "# `raise NotImplementedError` below with your code.)\n")
ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_PACKAGE = "course_lib"

# Anything that looks like a marker but is not exactly one ("## BEGIN SOLUTION", "### end solution").
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)\s+SOLUTION\b", re.IGNORECASE)
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")


class MarkerError(ValueError):
    """Unbalanced, nested or malformed solution markers."""


# --------------------------------------------------------------------------- generator

def strip_solutions(text: str, filename: str = "<string>") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region with a stub.

    The stub (``# YOUR CODE HERE`` and ``raise NotImplementedError("Exercise: implement f()")``)
    takes the BEGIN marker's indentation; ``f`` is the innermost enclosing ``def``. Raises
    ``MarkerError`` (with the line number) for an END without BEGIN, a BEGIN without END, nested
    regions, an END indented differently from its BEGIN, or a malformed marker.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    open_at = None  # (line number, indentation) of the open BEGIN marker
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        where = f"{filename}:{number}"
        if stripped == BEGIN:
            if open_at is not None:
                raise MarkerError(f"{where}: nested {BEGIN} (the one at line {open_at[0]} is not closed)")
            indent = line[: len(line) - len(line.lstrip())]
            open_at = (number, indent)
            newline = line[len(line.rstrip("\r\n")):] or "\n"
            name = _enclosing_function(lines[: number - 1], indent)
            task = f"implement {name}()" if name else f"complete the block at line {number}"
            out.append(f"{indent}# YOUR CODE HERE{newline}")
            out.append(f'{indent}raise NotImplementedError("Exercise: {task}"){newline}')
        elif stripped == END:
            if open_at is None:
                raise MarkerError(f"{where}: {END} without a matching {BEGIN}")
            indent = line[: len(line) - len(line.lstrip())]
            if indent != open_at[1]:
                raise MarkerError(f"{where}: {END} is indented differently from the {BEGIN} at line {open_at[0]}")
            open_at = None
        elif _MARKER_LIKE.match(line):
            raise MarkerError(f"{where}: malformed marker {stripped!r}; write exactly {BEGIN!r} or {END!r}")
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise MarkerError(f"{filename}:{open_at[0]}: {BEGIN} is never closed by {END}")
    return "".join(out)


def _enclosing_function(previous_lines: list[str], indent: str) -> str | None:
    """Name of the innermost ``def`` above the marker whose body contains it."""
    for line in reversed(previous_lines):
        match = _DEF.match(line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def _sources(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def _render(src: Path, path: Path) -> str:
    source = f"{src.name}/{path.relative_to(src).as_posix()}"
    return HEADER.format(source=source) + strip_solutions(path.read_text(encoding="utf-8"), str(path))


def _default_dirs(src, dst) -> tuple[Path, Path]:
    return (Path(src) if src is not None else ROOT / "solutions",
            Path(dst) if dst is not None else ROOT / "exercises")


def _expected(src: Path, dst: Path) -> dict[Path, str]:
    if not src.is_dir():
        raise FileNotFoundError(f"no solutions folder at {src}")
    return {dst / p.relative_to(src): _render(src, p) for p in _sources(src)}


def _generated_files(dst: Path) -> list[Path]:
    """Files in ``dst`` that carry our header (so a stale one can be recognised and removed)."""
    if not dst.is_dir():
        return []
    return [p for p in _sources(dst)
            if p.read_text(encoding="utf-8").startswith(HEADER.split("{source}")[0])]


def generate_exercises(src: str | Path | None = None, dst: str | Path | None = None) -> list[Path]:
    """Write ``dst`` (default ``<repo>/exercises``) from ``src`` (default ``<repo>/solutions``).

    Every ``*.py`` file is copied with a GENERATED header and its solution regions stubbed out;
    previously generated files whose source is gone are deleted. Returns the files written. All
    files are rendered before any is written, so a marker error leaves ``dst`` untouched.
    """
    src, dst = _default_dirs(src, dst)
    expected = _expected(src, dst)
    for path in _generated_files(dst):
        if path not in expected:
            path.unlink()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    return sorted(expected)


def check_exercises_in_sync(src: str | Path | None = None, dst: str | Path | None = None) -> list[str]:
    """Problems that make ``dst`` differ from what ``generate_exercises`` would write; [] if in sync."""
    src, dst = _default_dirs(src, dst)
    problems = []
    expected = _expected(src, dst)
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"out of date: {path}")
    problems += [f"stale (its source is gone): {p}" for p in _generated_files(dst) if p not in expected]
    return problems


# --------------------------------------------------------------------------- loading answers

def forbidden_references(source: str) -> list[str]:
    """Ways in which an answer's source reaches into ``course_lib`` (whose reference answers are graded against).

    Flags ``import course_lib...``, ``from course_lib... import`` and string constants naming the
    package outside docstrings (``importlib.import_module("course_lib.losses")``, ``sys.modules[...]``).
    """
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and _is_forbidden(node.module or ""):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and _is_forbidden(node.value)):
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def _origin(value) -> str:
    """The module a global of an answer comes from (a module's own name for a module)."""
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
    return name if isinstance(name, str) else ""


def _is_forbidden(name: str) -> bool:
    return name == FORBIDDEN_PACKAGE or name.startswith(FORBIDDEN_PACKAGE + ".")


def load_module(path: str | Path) -> ModuleType:
    """Execute a Python file as a fresh module, named after its full path.

    The source is compiled afresh on every call (no ``__pycache__``, so an answer edited and
    regraded within the same second is never served stale bytecode).
    """
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_graded_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look modules up by name
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load_answer(folder: Path, module_name: str) -> tuple[ModuleType | None, str]:
    """The answer module, or None and the reason every check on it earns zero."""
    path = folder / f"{module_name}.py"
    if not path.exists():
        return None, f"missing file {path.name}"
    source = path.read_text(encoding="utf-8")
    try:
        forbidden = forbidden_references(source)
    except SyntaxError as e:
        return None, f"SyntaxError at line {e.lineno}: {e.msg}"
    if forbidden:
        return None, f"uses {FORBIDDEN_PACKAGE} (not allowed in an answer): {'; '.join(forbidden)}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            module = load_module(path)
    except Exception as e:  # noqa: BLE001 - any failure to import is reported, not raised
        return None, f"import failed: {type(e).__name__}: {e}"
    leaked = [k for k, v in vars(module).items() if _is_forbidden(_origin(v))]
    if leaked:
        return None, f"uses {FORBIDDEN_PACKAGE} (not allowed in an answer): {', '.join(leaked)}"
    return module, "ok"


# --------------------------------------------------------------------------- grading

@dataclass
class Row:
    module: str
    check: str
    function: str
    points: int
    earned: int
    message: str
    details: str = ""  # traceback of a failed check (shown with --verbose)


@dataclass
class GradeReport:
    folder: Path
    rows: list[Row] = field(default_factory=list)

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

    def table(self, verbose: bool = False, width: int = 72) -> str:
        name_w = max([len(r.check) + 2 for r in self.rows] + [len("check")])
        lines = [f"Grading {self.folder}", f"{'check':<{name_w}}  points  earned  message"]
        module = None
        for r in self.rows:
            if r.module != module:
                module = r.module
                e, t = self.by_module()[module]
                lines.append(f"{module}  ({e}/{t})")
            message = r.message if verbose or len(r.message) <= width else r.message[: width - 3] + "..."
            lines.append(f"  {r.check:<{name_w - 2}}  {r.points:>6}  {r.earned:>6}  {message}")
            if verbose and r.details:
                lines += ["      " + d for d in r.details.rstrip().splitlines()]
        lines.append(f"{'TOTAL':<{name_w}}  {self.total:>6}  {self.earned:>6}  {100 * self.fraction:.1f}%")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:  # rendered by Jupyter when a cell ends with grade(...)
        head = ["| check | points | earned | message |", "|---|---:|---:|---|"]
        body = [f"| {r.module}.{r.check} | {r.points} | {r.earned} | {r.message.replace('|', '/')} |"
                for r in self.rows]
        total = f"| **total** | **{self.total}** | **{self.earned}** | **{100 * self.fraction:.1f}%** |"
        return "\n".join(head + body + [total])


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise TimeoutError after ``seconds`` (only where SIGALRM exists and in the main thread)."""
    usable = (seconds and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_check(c: Check, module: ModuleType, time_limit: float | None) -> Row:
    def row(earned, message, details=""):
        return Row(c.module, c.name, c.function, c.points, earned, message, details)

    function = getattr(module, c.function, None)
    if not callable(function):
        return row(0, f"no function {c.function}() in {c.module}.py")
    try:
        with _time_limit(time_limit), contextlib.redirect_stdout(io.StringIO()):
            c.run(function)
    except NotImplementedError:
        return row(0, f"not implemented: {c.function}()")
    except AssertionError as e:
        return row(0, f"wrong: {e}" if str(e) else "wrong (an assertion failed)", traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - a student's error is a result, not a crash
        return row(0, f"error in {c.function}(): {type(e).__name__}: {e}", traceback.format_exc())
    return row(c.points, "ok")


def _selected(modules, only) -> list[str]:
    if only is None:
        return list(modules)
    prefixes = (only,) if isinstance(only, str) else tuple(only)
    return [m for m in modules if m.startswith(prefixes)]


def grade(folder: str | Path = "exercises", only: str | list[str] | None = None,
          time_limit: float | None = 10.0) -> GradeReport:
    """Grade the answers in ``folder`` (``solutions/``, ``exercises/`` or a student's copy).

    ``only``: a module-name prefix (or a list of them), e.g. ``"ex01"``. ``time_limit``: seconds per
    check. Nothing is raised for wrong answers: each check's outcome is a row of the report.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder.resolve()} to grade")
    report = GradeReport(folder.resolve())
    modules = _selected(dict.fromkeys(c.module for c in CHECKS), only)
    if not modules:
        raise ValueError(f"no graded exercises match only={only!r}")
    for module_name in modules:
        module, status = _load_answer(folder, module_name)
        report.rows.append(Row(module_name, "(loads; no course_lib use)", "", 0, 0, status))
        for c in (c for c in CHECKS if c.module == module_name):
            if module is None:
                report.rows.append(Row(c.module, c.name, c.function, c.points, 0, f"not graded: {status}"))
            else:
                report.rows.append(_run_check(c, module, time_limit))
    return report


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("grade", "generate", "check-sync") else "grade"
    prog = f"python -m course_lib.grading {command}"
    if command in ("generate", "check-sync"):
        parser = argparse.ArgumentParser(prog=prog, description=(
            "Write exercises/ from solutions/." if command == "generate"
            else "Exit 1 if exercises/ differs from what `generate` would write."))
        parser.add_argument("--src", default=None, help="solutions folder (default: <repo>/solutions)")
        parser.add_argument("--dst", default=None, help="exercises folder (default: <repo>/exercises)")
        args = parser.parse_args(argv)
        try:
            if command == "generate":
                for path in generate_exercises(args.src, args.dst):
                    print(f"wrote {path}")
                return 0
            problems = check_exercises_in_sync(args.src, args.dst)
        except (MarkerError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for p in problems:
            print(p)
        print("exercises/ is out of date: run `python -m course_lib.grading generate`" if problems
              else "exercises/ is in sync with solutions/")
        return 1 if problems else 0

    parser = argparse.ArgumentParser(prog="python -m course_lib.grading", description=(
        "Grade a folder of answers and print a score table. Exit status 0 unless --min-score is "
        "given and not reached. Other commands: generate, check-sync."))
    parser.add_argument("folder", nargs="?", default="exercises", help="folder to grade (default: exercises)")
    parser.add_argument("--only", action="append", default=None, help="module prefix to grade, e.g. ex01 (repeatable)")
    parser.add_argument("--min-score", type=float, default=None, metavar="FRACTION",
                        help="exit 1 if the earned fraction of points is below FRACTION (0..1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="full messages and tracebacks")
    args = parser.parse_args(argv)
    try:
        report = grade(args.folder, only=args.only)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table(verbose=args.verbose))
    if args.min_score is not None and report.fraction < args.min_score:
        print(f"score {report.fraction:.3f} is below --min-score {args.min_score}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
