"""Static checks of the committed notebooks (no execution).

Every ``notebooks/*.ipynb`` (and ``solutions/*.ipynb``, if any) must be committed with outputs
stripped, open with a Colab badge, install ``course_lib`` only on Colab, and give every cell a
``slideshow.slide_type`` so ``make slides`` can build a deck.
"""
from __future__ import annotations

import os
import re

import nbformat
import pytest

from _notebook_files import NOTEBOOKS, SOLUTION_NOTEBOOKS, ids

ALL = NOTEBOOKS + SOLUTION_NOTEBOOKS
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
COLAB = "https://colab.research.google.com/github/"
COURSE_NOTEBOOK = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _read(path):
    return nbformat.read(str(path), as_version=4)


def test_at_least_two_notebooks():
    assert len(NOTEBOOKS) >= 2, f"expected the course notebooks in notebooks/, found {[p.name for p in NOTEBOOKS]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_course_notebook_name(path):
    assert COURSE_NOTEBOOK.match(path.name), f"{path.name}: course notebooks are named NN_snake_case.ipynb"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_valid_nbformat(path):
    nbformat.validate(_read(path))


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_outputs_stripped(path):
    nb = _read(path)
    dirty = [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or execution counts; strip them "
        "(jupyter nbconvert --clear-output --inplace)"
    )


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_first_cell_is_colab_badge(path):
    nb = _read(path)
    assert nb.cells, f"{path.name} is empty"
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be markdown with the Colab badge"
    links = re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"'>]+", _source(first))
    assert links, f"{path.name}: no Colab badge link ({COLAB}...) in the first cell"
    own = f"/{path.parent.name}/{path.name}"
    assert any(link.endswith(own) for link in links), f"{path.name}: the Colab link must open this notebook ({own}), got {links}"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_colab_guarded_install_cell(path):
    nb = _read(path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        src = _source(cell)
        if "google.colab" not in src:
            continue
        lines = src.splitlines()
        pip_lines = [i for i, line in enumerate(lines) if re.search(r"\bpip\b.*\binstall\b", line)]
        colab_line = next(i for i, line in enumerate(lines) if "google.colab" in line)
        if pip_lines and all(i > colab_line and lines[i][:1].isspace() for i in pip_lines):
            return
    pytest.fail(
        f"{path.name}: needs a code cell that pip-installs course_lib only on Colab, e.g.\n"
        "    import importlib.util\n"
        "    if importlib.util.find_spec('google.colab'):\n"
        "        %pip install -q 'kd-course @ git+https://github.com/<repository of pyproject.toml [tool.kd-course]>'"
    )


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_every_cell_has_slide_type(path):
    nb = _read(path)
    missing = [i for i, cell in enumerate(nb.cells) if cell.get("metadata", {}).get("slideshow", {}).get("slide_type") not in SLIDE_TYPES]
    assert not missing, f"{path.name}: cells {missing} lack metadata.slideshow.slide_type (one of {sorted(SLIDE_TYPES)})"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_colab_setup_cell_clones_installs_and_sets_course_home(path, monkeypatch):
    """Run the setup cell as Colab would (google.colab importable), recording its commands: it clones
    the course, pip-installs course_lib from the clone and sets COURSE_HOME to the clone, so exercises/
    and the grade cell work there (tests/test_paths.py checks what an install with COURSE_HOME finds)."""
    import importlib.util
    import subprocess

    cell = next(c for c in _read(path).cells if c.cell_type == "code" and "google.colab" in _source(c))
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "google.colab" else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(list(cmd)))
    for name in ("COURSE_HOME", "COURSE_ALLOW_DOWNLOAD"):    # set now, so that undo restores them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    exec(compile(_source(cell), path.name, "exec"), {})
    clone = next((c for c in calls if c[:2] == ["git", "clone"]), None)
    assert clone is not None, f"{path.name}: the Colab setup cell must git-clone the course ({calls})"
    home = clone[-1]
    # the clone itself, or the clone with extras (notebook 07 needs "[llm]": onnx, onnxruntime, onnxscript)
    assert any("pip" in c and "install" in c and re.fullmatch(re.escape(home) + r"(\[[a-z,]+\])?", c[-1])
               for c in calls), calls
    assert os.environ.get("COURSE_HOME") == home
    # and nothing runs outside Colab
    calls.clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    exec(compile(_source(cell), path.name, "exec"), {})
    assert calls == []
