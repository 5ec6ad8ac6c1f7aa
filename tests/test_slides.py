"""Decks: built offline (local reveal.js, no CDN) and free of exercise solutions."""
from __future__ import annotations

import html
import os
import re
import sys

import nbformat
import pytest

from _notebook_files import NOTEBOOKS, REPO_ROOT, ids, solution_lines

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_slides  # noqa: E402

CDN = re.compile(r"unpkg\.com|cdnjs\.|jsdelivr|cdn\.mathjax\.org|code\.jquery\.com")


@pytest.fixture(scope="module")
def assets():
    if not build_slides.assets_available():
        message = f"offline slide assets missing in {build_slides.ASSETS_DIR}: run bash scripts/install_assets.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return build_slides.ASSETS_DIR


def visible_text(page: str) -> str:
    """The text a reader sees (tags removed, entities decoded, whitespace collapsed)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    return re.sub(r"[ \t]+", " ", text)


def check_offline(page: str) -> None:
    assert 'src="vendor/require.js"' in page
    assert '"reveal.js/dist/reveal.js"' in page
    assert 'href="reveal.js/dist/reveal.css"' in page
    assert "vendor/mathjax/MathJax.js" in page
    hits = CDN.findall(page)
    assert not hits, f"deck loads from a CDN: {sorted(set(hits))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_deck_builds_offline_without_solutions(path, tmp_path, assets):
    deck = build_slides.build_deck(path, tmp_path)
    assert deck == tmp_path / f"{path.stem}.slides.html" and deck.stat().st_size > 0
    page = deck.read_text(encoding="utf-8")
    check_offline(page)
    for rel in ("reveal.js/dist/reveal.js", "reveal.js/plugin/notes/notes.js", "vendor/require.js",
                "vendor/jquery.min.js", "vendor/mathjax/MathJax.js", "vendor/mermaid-stub.mjs"):
        assert (tmp_path / rel).is_file(), rel
    assert "### BEGIN SOLUTION" not in page
    text = visible_text(page)
    leaked = [line for line in solution_lines(30) if line in text]
    assert not leaked, f"{path.name}: the deck shows solution code: {leaked[:3]}"


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    meta = {"slideshow": {"slide_type": "slide"}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Toy deck\n\n$$\\mathrm{KL}(p\\,\\|\\,q)$$", metadata=meta),
        nbformat.v4.new_code_cell("visible_line_of_code = 'kept in the deck'", metadata=meta),
        nbformat.v4.new_code_cell(
            "def answer():\n    ### BEGIN SOLUTION\n    return 'secret_solution_marker_cell'\n    ### END SOLUTION",
            metadata=meta,
        ),
        nbformat.v4.new_code_cell("'secret_solution_tagged_cell'", metadata={**meta, "tags": ["solution"]}),
        nbformat.v4.new_code_cell("'secret_solution_hidden_tag'", metadata={**meta, "tags": ["hide-solution"]}),
        nbformat.v4.new_code_cell("'secret_solution_nbgrader'", metadata={**meta, "nbgrader": {"solution": True}}),
        nbformat.v4.new_markdown_cell("the end", metadata=meta),
    ]
    return nb


def test_strip_solutions_drops_marked_tagged_and_nbgrader_cells():
    nb = _toy_notebook()
    stripped = build_slides.strip_solutions(nb)
    sources = [c.source for c in stripped.cells]
    assert len(stripped.cells) == 3
    assert not any("secret" in s for s in sources)
    assert len(nb.cells) == 7  # the original is untouched


def test_toy_deck(tmp_path, assets):
    deck = build_slides.build_deck(_toy_notebook(), tmp_path, name="toy")
    page = deck.read_text(encoding="utf-8")
    check_offline(page)
    text = visible_text(page)
    assert "visible_line_of_code" in text and "the end" in text
    assert "secret" not in page
    # a second build reuses the copied assets
    assert build_slides.build_deck(_toy_notebook(), tmp_path, name="toy") == deck


def test_html_page_is_offline_and_keeps_everything(tmp_path, assets):
    page = build_slides.build_html(_toy_notebook(), tmp_path, name="toy").read_text(encoding="utf-8")
    assert 'src="vendor/require.js"' in page and "vendor/mathjax/MathJax.js" in page
    assert not CDN.findall(page)
    assert "secret_solution_tagged_cell" in visible_text(page)  # HTML pages are the full notebook


def test_missing_assets_error_names_the_installer(tmp_path):
    with pytest.raises(build_slides.MissingAssets, match="install_assets.sh"):
        build_slides.build_deck(_toy_notebook(), tmp_path / "out", name="toy", assets_dir=tmp_path / "nothing")


def test_solution_lines_are_found():
    lines = solution_lines(30)
    if (REPO_ROOT / "solutions").is_dir() and any("### BEGIN SOLUTION" in p.read_text(encoding="utf-8")
                                                  for p in (REPO_ROOT / "solutions").glob("*.py")):
        assert lines, "solutions/ has solution regions but no line longer than 30 characters was found"
    assert all(len(line) > 30 for line in lines)


def test_progress_bars_are_collapsed_in_exports():
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text=t)
                           for t in ("\rbar 10%", "\rbar 50%", "\rbar 100%", "\ndone\n")]
    out = build_slides.collapse_progress(nb)
    assert len(out.cells[0].outputs) == 1
    assert out.cells[0].outputs[0]["text"] == "bar 100%\ndone\n"
    assert len(nb.cells[0].outputs) == 4  # the input is not modified


def test_hide_input_cells_show_only_their_output(tmp_path):
    import nbformat
    cell = nbformat.v4.new_code_cell("plot_code_that_should_not_show = 1", metadata={
        "tags": ["hide-input"], "slideshow": {"slide_type": "slide"}})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="visible_output_line\n")]
    nb = nbformat.v4.new_notebook(cells=[cell])
    html = build_slides.build_deck(nb, tmp_path, name="hidden").read_text()
    assert "visible_output_line" in html and "plot_code_that_should_not_show" not in html


def test_deck_is_laid_out_for_a_16_9_screen(tmp_path, assets):
    meta = {"slideshow": {"slide_type": "slide"}}
    shown = nbformat.v4.new_code_cell("code_shown_output_hidden = 1", metadata={**meta, "tags": ["hide-output"]})
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text="output_not_in_the_deck\n")]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Slide", metadata=meta),
        nbformat.v4.new_markdown_cell("speaker_notes_text", metadata={"slideshow": {"slide_type": "notes"}}),
        nbformat.v4.new_code_cell("bookkeeping_cell_left_out = 1", metadata={"slideshow": {"slide_type": "skip"}}),
        shown,
    ])
    page = build_slides.build_deck(nb, tmp_path, name="layout").read_text(encoding="utf-8")
    assert '"width": 1280' in page and '"height": 720' in page  # reveal.js canvas, scaled to the screen
    assert "white-space: pre-wrap" in page and build_slides.DECK_CSS.strip() in page  # code wraps
    assert "overflow-y', 'scroll'" not in page  # nbconvert's scrolling slides: ours fit instead
    assert re.search(r'<aside class="notes">\s*.*speaker_notes_text', page, re.S)
    assert "bookkeeping_cell_left_out" not in page
    assert "code_shown_output_hidden" in page and "output_not_in_the_deck" not in page
    assert "deckFit" not in page  # the fit probe goes into test copies only


def test_erased_progress_bars_leave_no_empty_output():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text=t)
                           for t in ("\rbar 50%", "\rbar 100%", "\r          ", "\r")]  # tqdm leave=False
    assert build_slides.collapse_progress(nb).cells[0].outputs == []
