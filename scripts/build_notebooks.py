"""Build notebooks/NN_*.ipynb from their readable sources in notebooks/src/NN_*.py.

Source format (percent cells, like jupytext's, plus a slide type)::

    # %% md slide          a markdown cell that starts a new slide; lines keep their "# " prefix
    # %% code              a code cell, slide type "-" (continues the current slide)
    # %% code fragment     slide types: slide, subslide, fragment, skip, notes, -
    # %% code skip tags=solution,hide   optional comma-separated cell tags

The .ipynb files are what students open and nbval executes; they are committed with outputs
stripped. ``python scripts/build_notebooks.py --check`` fails if any is out of date.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC, DST = ROOT / "notebooks" / "src", ROOT / "notebooks"
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}


def parse(text: str) -> nbformat.NotebookNode:
    cells, header, lines = [], None, []

    def flush():
        if header is None:
            return
        kind, slide, tags = header
        body = "\n".join(lines).strip("\n")
        if kind == "md":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        cell.metadata["slideshow"] = {"slide_type": slide}
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.split("\n"):
        if line.startswith("# %%"):
            flush()
            words = line[4:].split()
            kind = words[0] if words else "code"
            if kind not in ("md", "code"):
                raise ValueError(f"cell kind must be md or code: {line!r}")
            slide = next((w for w in words[1:] if w in SLIDE_TYPES), "slide" if kind == "md" else "-")
            tags = next((w[5:].split(",") for w in words[1:] if w.startswith("tags=")), [])
            header, lines = (kind, slide, tags), []
        elif header is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids keep the committed files reproducible
        cell["id"] = f"cell-{i:03d}"
    return nb


def home(pyproject: Path | None = None) -> tuple[str, str]:
    """The course's public home, ``(repository, branch)``: ``[tool.kd-course]`` of pyproject.toml, the one
    place it is written (``repository`` is GitHub's ``owner/name``)."""
    config = tomllib.loads((pyproject or ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["kd-course"]
    repository, branch = config["repository"], config["branch"]
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository) or not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"[tool.kd-course] needs repository = 'owner/name' and a branch, got {repository!r}, "
                         f"{branch!r}")
    return repository, branch


def with_home(text: str, repository: str, branch: str) -> str:
    """A notebook source with its ``{{COURSE_REPOSITORY}}`` and ``{{COURSE_BRANCH}}`` filled in."""
    return text.replace("{{COURSE_REPOSITORY}}", repository).replace("{{COURSE_BRANCH}}", branch)


COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+?/notebooks/")
HOME_TEXT = re.compile(r"`github\.com/[\w.-]+/[\w.-]+`(?=, the course's public home)")


def readme_with_home(text: str, repository: str, branch: str) -> str:
    """The README with its Colab links and its "course's public home" pointing at ``repository``."""
    text = COLAB_LINK.sub(f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/", text)
    return HOME_TEXT.sub(f"`github.com/{repository}`", text)


def build(check: bool = False) -> list[str]:
    stale = []
    repository, branch = home()
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        out = DST / (src.stem + ".ipynb")
        text = nbformat.writes(parse(with_home(src.read_text(), repository, branch)))
        if not out.exists() or out.read_text() != text:
            stale.append(out.name)
            if not check:
                out.write_text(text)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    updated = readme_with_home(text, repository, branch)
    if updated != text:
        stale.append(readme.name)
        if not check:
            readme.write_text(updated, encoding="utf-8")
    return stale


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook is out of date")
    args = parser.parse_args()
    stale = build(check=args.check)
    if args.check and stale:
        sys.exit(f"out of date (run python scripts/build_notebooks.py): {', '.join(stale)}")
    print(("stale: " if args.check else "built: ") + (", ".join(stale) or "nothing to do"))
