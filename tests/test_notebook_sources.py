"""notebooks/NN_*.ipynb are built from notebooks/src/NN_*.py (scripts/build_notebooks.py)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
build_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_notebooks)


def test_every_notebook_has_a_source_and_is_up_to_date():
    sources = {p.stem for p in (ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py")}
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert sources == notebooks
    assert build_notebooks.build(check=True) == [], "run: python scripts/build_notebooks.py"


def test_parser_cells_slides_and_tags():
    nb = build_notebooks.parse("# %% md slide\n# # Title\n# text\n# %% code fragment tags=a,b\nx = 1\n# %% code\ny = 2\n")
    kinds = [(c.cell_type, c.metadata["slideshow"]["slide_type"]) for c in nb.cells]
    assert kinds == [("markdown", "slide"), ("code", "fragment"), ("code", "-")]
    assert nb.cells[0].source == "# Title\ntext"
    assert nb.cells[1].metadata["tags"] == ["a", "b"] and nb.cells[1].source == "x = 1"
    with pytest.raises(ValueError, match="md or code"):
        build_notebooks.parse("# %% raw\nx")
