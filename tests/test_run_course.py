"""scripts/run_course.py: notebook selection and execution in a kernel of this environment."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from _notebook_files import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import run_course  # noqa: E402

FAKE = [Path(f"/n/{name}.ipynb") for name in ("01_dark_knowledge", "02_kd_loss", "03_feature_distillation")]


def test_select():
    assert run_course.select(FAKE, None) == FAKE
    assert run_course.select(FAKE, "01,02") == FAKE[:2]
    assert run_course.select(FAKE, "03_feature_distillation, 01") == [FAKE[0], FAKE[2]]
    assert run_course.select(FAKE, "02_kd_loss.ipynb") == [FAKE[1]]
    with pytest.raises(SystemExit, match="no notebook matches '09'"):
        run_course.select(FAKE, "09")


def test_kernel_environment(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env = run_course.kernel_environment()
    assert env["COURSE_OFFLINE"] == "1"
    assert env["MPLBACKEND"] == "module://matplotlib_inline.backend_inline"  # figures end up in the HTML
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert "COURSE_OFFLINE" not in run_course.kernel_environment()


@pytest.mark.slow
def test_execute_uses_this_python_offline_in_notebook_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, sys, course_lib.netguard as g\n"
            "print(sys.executable, os.getcwd(), g.network_blocked(), sep='|')"
        ),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()"),
    ]
    path = tmp_path / "01_probe.ipynb"
    nbformat.write(nb, str(path))
    executed, seconds, error = run_course.execute(path, timeout=120)
    assert error is None, error
    assert seconds > 0
    printed = executed.cells[0].outputs[0]["text"].strip().split("|")
    assert printed == [sys.executable, str(tmp_path), "True"]
    assert any("image/png" in out.get("data", {}) for out in executed.cells[1].outputs)


@pytest.mark.slow
def test_execute_reports_a_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')"), nbformat.v4.new_code_cell("print('never')")]
    path = tmp_path / "02_fail.ipynb"
    nbformat.write(nb, str(path))
    executed, _, error = run_course.execute(path, timeout=120)
    assert error is not None and "boom" in str(error)
    assert executed.cells[1].get("outputs", []) == []
