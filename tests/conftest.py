"""Session set-up shared by the unit tests and the notebook tests (nbval).

* The test session writes its figures to ``build/test-results.json`` (``$COURSE_RESULTS``),
  never to the course's ``build/results.json``.
* ``COURSE_OFFLINE=1`` (the quick profile's network guard, see ``course_lib.netguard``; not with
  ``COURSE_PROFILE=full``) is set before any kernel starts, so nbval's kernels inherit it.
  ``MPLBACKEND=Agg`` holds for this process; nbval's kernels start with the inline backend (as
  ``make course``'s do), so the outputs kept below have their figures.
* The time nbval spends on each notebook (kernel start and every cell) is summed and recorded
  with ``course_lib.results.record_suite`` at the end of the session.
* Every notebook nbval executes without a failure is written, with the outputs of that execution,
  to ``build/nbval/<name>.ipynb`` and registered (:class:`ExecutedNotebooks`): the deck tests
  (``tests/test_slides_render.py``) check the decks of those real quick-profile outputs instead of
  executing the notebook a second time. ``make test`` runs ``notebooks`` before ``tests`` for that.

``make test`` runs ``pytest --nbval-lax --nbval-current-env -p no:cacheprovider
--nbval-cell-timeout=900 notebooks tests``. This file is loaded because ``tests`` is on the
command line; its timing plugin is registered globally so it also sees the items under
``notebooks/``.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("COURSE_RESULTS", str(REPO_ROOT / "build" / "test-results.json"))
os.environ["MPLBACKEND"] = "Agg"
if os.environ.get("COURSE_PROFILE", "quick").lower() != "full":  # the full profile may download
    os.environ["COURSE_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class NotebookTimer:
    """Sums setup + call + teardown durations of every ``*.ipynb`` item, per notebook."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.started = time.perf_counter()

    @staticmethod
    def notebook_of(nodeid: str) -> str | None:
        file_part = nodeid.split("::", 1)[0]
        return Path(file_part).stem if file_part.endswith(".ipynb") else None

    def pytest_runtest_logreport(self, report) -> None:
        notebook = self.notebook_of(report.nodeid)
        if notebook is not None:
            self.seconds[notebook] += float(getattr(report, "duration", 0.0) or 0.0)

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if not self.seconds:
            return
        from course_lib.results import record_suite

        for notebook, seconds in sorted(self.seconds.items()):
            record_suite(notebook, seconds)


class ExecutedNotebooks:
    """Keeps what nbval executed: each cell's outputs (``IPyNbCell.test_outputs``) go into the
    notebook nbval read; after a notebook's last cell, a notebook with no failed cell is written to
    ``build/nbval/`` and registered in ``paths`` (name -> file) for the rest of the session."""

    FOLDER = REPO_ROOT / "build" / "nbval"

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        self.failed: set[str] = set()

    def pytest_runtest_logreport(self, report) -> None:
        notebook = NotebookTimer.notebook_of(report.nodeid)
        if notebook is not None and report.failed:
            self.failed.add(notebook)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        """nbval starts a notebook's kernel in its first cell's set-up, from this process's environment:
        for that moment, the inline backend (the kernels of ``make course``), so the kept outputs
        have their figures; this process keeps Agg."""
        if not hasattr(item, "test_outputs"):
            yield
            return
        before = os.environ.get("MPLBACKEND")
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("MPLBACKEND", None)
            else:
                os.environ["MPLBACKEND"] = before

    def pytest_runtest_teardown(self, item, nextitem) -> None:
        if not (hasattr(item, "test_outputs") and hasattr(item, "cell")):
            return                                      # not an nbval cell
        item.cell.outputs = list(item.test_outputs or [])
        if nextitem is not None and nextitem.parent is item.parent:
            return
        import nbformat

        name = Path(str(item.parent.fspath)).stem
        if name in self.failed:
            return
        self.FOLDER.mkdir(parents=True, exist_ok=True)
        path = self.FOLDER / f"{name}.ipynb"
        nbformat.write(item.parent.nb, str(path))
        self.paths[name] = path


def pytest_configure(config) -> None:
    if not config.pluginmanager.has_plugin("kd-course-notebook-timer"):
        config.pluginmanager.register(NotebookTimer(), "kd-course-notebook-timer")
    if not config.pluginmanager.has_plugin("kd-course-executed-notebooks"):
        config.pluginmanager.register(ExecutedNotebooks(), "kd-course-executed-notebooks")


# Skips that are allowed in CI (CI is set by .ci/run): what `make test` does not build (the decks of
# `make course`) and what the machine may lack (IPv6). Any other skip there - a dependency or a data
# set the set-up should have installed - fails the session instead of hiding a broken set-up.
CI_ALLOWED_SKIPS = ("run make course", "no IPv6", "IPv6 loopback unavailable")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    hidden = []
    for report in skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in CI_ALLOWED_SKIPS):
            hidden.append(f"{report.nodeid}: {reason}")
    if hidden:
        print("\nCI: skips that would hide a broken set-up:\n  " + "\n  ".join(hidden))
        session.exitstatus = 1
