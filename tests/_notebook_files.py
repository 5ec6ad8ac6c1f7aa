"""Shared helpers for the notebook tests: which notebooks exist, and the solution code lines."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
SOLUTION_NOTEBOOKS = sorted((REPO_ROOT / "solutions").glob("*.ipynb"))
SOLUTION_DIR = REPO_ROOT / "solutions"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def ids(paths):
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _solution_sources():
    if not SOLUTION_DIR.is_dir():
        return
    for path in sorted(SOLUTION_DIR.rglob("*")):
        if "__pycache__" in path.parts or "checkpoint" in str(path):
            continue
        if path.suffix == ".py":
            yield path.read_text(encoding="utf-8")
        elif path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            for cell in nb.get("cells", []):
                src = cell.get("source", "")
                yield "".join(src) if isinstance(src, list) else src


def solution_lines(min_length: int = 30) -> set[str]:
    """Stripped lines inside ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` regions of solutions/,
    longer than ``min_length`` characters."""
    lines: set[str] = set()
    for text in _solution_sources():
        inside = False
        for line in text.splitlines():
            stripped = line.strip()
            if BEGIN in stripped:
                inside = True
            elif END in stripped:
                inside = False
            elif inside and len(stripped) > min_length:
                lines.add(re.sub(r"\s+", " ", stripped))
    return lines


def run_with_stand_in(name: str, cell: str, tmp_path, monkeypatch, timeout: int = 600, cache=None):
    """Execute notebook ``name`` under ``COURSE_PROFILE=full``, offline, with ``cell`` (stand-in data and
    models) prepended, its cache (or ``cache``: one shared by notebooks on the same stand-ins, so a
    stand-in teacher is trained once) and results in ``tmp_path``; returns ``(printed text, recorded
    results)`` and fails on any cell's error. The full-profile path tests' one way to run a notebook."""
    import nbformat

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import run_course

    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_OFFLINE", "1")                              # still no download
    monkeypatch.setenv("COURSE_CACHE", str(cache or tmp_path / "cache"))   # never the real caches
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results.json"))
    nb = nbformat.read(str(REPO_ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(cell))
    copy = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, str(copy))
    nb, _, error = run_course.execute(copy, timeout=timeout)              # the course runner's kernel
    assert error is None, error
    printed = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    return printed, json.loads((tmp_path / "results.json").read_text())
