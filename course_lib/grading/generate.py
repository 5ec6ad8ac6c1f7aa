"""Solutions -> exercises, and the static scan of an answer's source.

One source of truth, the nbgrader/otter convention: ``solutions/`` holds reference answers whose
solution regions are marked ::

    def entropy(probs):
        \"\"\"The docstring states the task and the equation; it is kept in the exercise.\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

and ``exercises/`` is generated from it (``generate_exercises``): each marked region becomes a stub
at the markers' indentation, ``raise NotImplementedError("Exercise: implement entropy()")``;
everything outside the markers is copied unchanged. Never edit ``exercises/`` by hand:
``check_exercises_in_sync`` (``python -m course_lib.grading check-sync``, and a test) reports a
stale one.

``forbidden_references`` is the scan the grader runs on an answer's source before anything runs:
``import course_lib`` (whose reference answers are graded against) in any form scores the file zero.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from course_lib.paths import exercises_dir, solutions_dir

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HEADER = ("# GENERATED from {source} by `python -m course_lib.grading generate` - do not edit.\n"
          "# (Course authors: edit {source} and regenerate. Students: replace each\n"
          "# `raise NotImplementedError` below with your code.)\n")
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
    return (Path(src) if src is not None else solutions_dir(),
            Path(dst) if dst is not None else exercises_dir())


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


# --------------------------------------------------------------------------- static scan

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


def _is_forbidden(name: str) -> bool:
    return name == FORBIDDEN_PACKAGE or name.startswith(FORBIDDEN_PACKAGE + ".")
