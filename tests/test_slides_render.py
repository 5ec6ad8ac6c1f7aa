"""Decks rendered in headless Chromium: every slide fits a 1280x720 (16:9) screen, and the decks of
*executed* notebooks show no solution code.

How a deck is measured: ``build_slides.check_fit`` frames a copy of the deck, with a probe script
injected, at exactly 1280x720 in Debian's ``chromium`` (``--headless --dump-dom``), shows every slide
in turn and reports, in slide pixels, how far any element reaches past the slide and how much
content any element clips (a code line cut at the right edge, an output in a scroll box). The
first two tests check that measurement on synthetic decks: it must flag an overlong code line, a
too-tall image and a too-long output, and must pass what our deck styles make of the same content.

Which executed notebooks: when nbval has executed the notebook earlier in the same session (``make
test`` runs ``notebooks`` before ``tests``), its outputs, the real quick-profile run
(``conftest.ExecutedNotebooks``). Otherwise (these tests run alone; executing 02 as the course runs
it takes 3-5 minutes on two cores), the ``executed`` fixture runs each course notebook once per
session with ``run_course.execute`` (the kernel ``make course`` uses) into a temporary folder,
results going to a temporary results file, as follows.

* 01 runs unchanged (about 25 s).
* every later notebook (02, 03, ...) runs with one cell prepended that shrinks the quick profile's
  *work*, not its *shape*: 200 transfer images instead of 2,000, a 1,000-image test set and
  monitor subset of 200 (notebook 04: 200 images x 2 views, 2 epochs), and that notebook's claims not
  asserted (small runs do not meet them). Every cell runs; every print, table, progress
  bar and figure is the one a full run makes (same epochs, seeds, figure sizes, table rows); only
  the numbers differ (about 55 s). That cell is ``skip`` and not in the deck.

``test_course_decks_fit`` additionally checks the decks built from ``build/notebooks/`` (the real
quick-profile outputs ``make course`` writes) when those exist and have the current notebooks'
cells; it skips otherwise.

Chromium is installed by ``scripts/install_assets.sh``. Without it these tests skip, except under
CI (``CI`` set), where they fail.
"""
from __future__ import annotations

import ast
import base64
import io
import os
import re
import sys

import nbformat
import pytest

from _notebook_files import NOTEBOOKS, REPO_ROOT, SOLUTION_DIR, solution_lines

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_slides  # noqa: E402
import run_course  # noqa: E402
from test_slides import visible_text  # noqa: E402

COURSE_NOTEBOOKS = NOTEBOOKS        # every notebook's deck, found by name

# Prepended (as a skipped cell) to every notebook after 01 before the tests execute it: see the
# module docstring. {number} is the notebook's number, whose claims are not asserted on so little data.
SHRINK = '''# deck tests: the quick profile's shapes with less work, and no {number}.* claims asserted
import dataclasses
from course_lib import profiles
_quick = profiles.PROFILES["quick"]
profiles.PROFILES["quick"] = dataclasses.replace(
    _quick.replace_vision(student_train_size=200, monitor_size=200, test_size=1000, deit_train_size=200,
                          deit_views=2, deit_epochs=2, transfer_size=400, transfer_epochs=4, transfer_sweep=(400,)),
    claims={{k: (None if k.startswith("{number}.") else v) for k, v in _quick.claims.items()}})'''


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(message: str):
    if _in_ci():
        pytest.fail(f"{message} (CI is set: the set-up must provide it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium():
    found = build_slides.find_chromium()
    if not found:
        _unavailable("headless Chromium not found (apt-get install chromium, or bash scripts/install_assets.sh): "
                     "decks cannot be rendered")
    if not build_slides.assets_available():
        _unavailable(f"offline slide assets missing in {build_slides.ASSETS_DIR}: run bash scripts/install_assets.sh")
    return found


# ---------------------------------------------------------------------------------------------
# The measurement itself

def _svg(width: int, height: int) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
           f'<rect width="{width}" height="{height}" fill="teal"/></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _raw_deck(folder, sections: list[str]):
    """A bare reveal.js deck (no course styles) at 1280x720, loaded the way ours are."""
    build_slides.copy_web_assets(folder)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<script src="vendor/require.js"></script>
<link rel="stylesheet" href="reveal.js/dist/reveal.css">
<link rel="stylesheet" href="reveal.js/dist/theme/white.css">
</head><body><div class="reveal"><div class="slides">
{''.join(sections)}
</div></div>
<script>
require(["reveal.js/dist/reveal.js"], function (Reveal) {{
  Reveal.initialize({{width: 1280, height: 720, margin: 0.04, center: true, transition: "slide"}});
}});
</script>
</body></html>"""
    deck = folder / "raw.slides.html"
    deck.write_text(page, encoding="utf-8")
    return deck


def test_fit_check_flags_long_code_tall_images_and_long_outputs(tmp_path, chromium):
    long_line = "result = " + " + ".join(f"term_{i}" for i in range(60))   # ~600 characters, one line
    lines = "\n".join(f"line {i}" for i in range(60))
    deck = _raw_deck(tmp_path, [
        "<section><h2>Fits</h2><pre><code>x = 1</code></pre></section>",
        f'<section><h2>Long code line</h2><pre style="white-space: pre">{long_line}</pre></section>',
        f'<section><h2>Tall image</h2><img src="{_svg(400, 1200)}" width="400" height="1200"></section>',
        "<section><section><h2>Stack</h2><p>top of a vertical stack</p></section>"
        f'<section><h2>Long output in a scroll box</h2><pre style="max-height: 300px; overflow: auto">'
        f"{lines}</pre></section></section>",
    ])
    fit = build_slides.check_fit(deck, chromium=chromium)
    assert fit.viewport == (1280, 720) and fit.slide_size == (1280, 720)
    by_title = {s.title: s for s in fit.slides}
    assert [s.number for s in fit.slides] == [1, 2, 3, 4, 5]
    assert set(by_title) == {"Fits", "Long code line", "Tall image", "Stack", "Long output in a scroll box"}
    assert by_title["Fits"].overflow_px == 0 and by_title["Stack"].overflow_px == 0
    wide = by_title["Long code line"]
    assert wide.overflow_px > 1000 and (wide.worst["right"] > 1000 or wide.worst["clipped_x"] > 1000), wide
    tall = by_title["Tall image"]
    assert tall.worst["bottom"] > 400 and any(o.startswith("img") for o in tall.offenders), tall
    scroll = by_title["Long output in a scroll box"]
    assert (scroll.h, scroll.v) == (3, 1) and scroll.worst["clipped_y"] > 500, scroll
    assert {s.title for s in fit.overflowing} == {"Long code line", "Tall image", "Long output in a scroll box"}
    assert "3 overflow" in fit.summary() and "Long code line" in fit.summary()


def _png(width_in: float, height_in: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=100)
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def test_course_deck_styles_wrap_code_cap_figures_and_keep_notes(tmp_path, chromium):
    """The same kind of content, through build_deck: long lines wrap, figures are capped, speaker
    notes go to the notes view (not on the slide), skipped cells are left out."""
    def meta(kind):
        return {"slideshow": {"slide_type": kind}}
    code = nbformat.v4.new_code_cell(
        "result = " + " + ".join(f"term_{i}" for i in range(60)), metadata=meta("-"))
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="=" * 400 + "\n")]
    figure = nbformat.v4.new_code_cell("plt.show()", metadata=meta("slide"))
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png(6, 16), "text/plain": "<Figure>"})]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Long lines", metadata=meta("slide")),
        code,
        nbformat.v4.new_markdown_cell("say_this_in_the_notes: the long line wraps", metadata=meta("notes")),
        nbformat.v4.new_code_cell("record_many('toy', figures_kept_out_of_the_deck)", metadata=meta("skip")),
        figure,
    ])
    deck = build_slides.build_deck(nb, tmp_path, name="styled")
    page = deck.read_text(encoding="utf-8")
    assert re.search(r'<aside class="notes">.*say_this_in_the_notes', page, re.S)
    assert "figures_kept_out_of_the_deck" not in page
    fit = build_slides.check_fit(deck, chromium=chromium)
    assert len(fit.slides) == 2, fit.summary()
    assert not fit.overflowing, fit.summary()


# ---------------------------------------------------------------------------------------------
# Decks of executed notebooks

@pytest.fixture(scope="session")
def executed(tmp_path_factory, request):
    """name -> executed notebook node (see the module docstring); each notebook runs once: by nbval
    earlier in this session when it did (``conftest.ExecutedNotebooks``), else here."""
    done = {}
    folder = tmp_path_factory.mktemp("executed")
    by_nbval = request.config.pluginmanager.get_plugin("kd-course-executed-notebooks")

    def run(path):
        if path.stem not in done and by_nbval is not None and path.stem in by_nbval.paths:
            node = nbformat.read(str(by_nbval.paths[path.stem]), as_version=4)
            assert [c.source for c in node.cells] == [c.source for c in nbformat.read(str(path), as_version=4).cells]
            done[path.stem] = node
        if path.stem not in done:
            nb = nbformat.read(str(path), as_version=4)
            if path.stem[:2] != "01":           # 01 is cheap: it runs as it is
                shrink = SHRINK.format(number=path.stem[:2])
                nb.cells.insert(0, nbformat.v4.new_code_cell(shrink, metadata={"slideshow": {"slide_type": "skip"}}))
            copy = folder / path.name
            nbformat.write(nb, str(copy))
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("COURSE_RESULTS", str(folder / "results.json"))
                mp.delenv("COURSE_PROFILE", raising=False)
                node, seconds, error = run_course.execute(copy)
            assert error is None, f"{path.name} failed to execute: {error}"
            done[path.stem] = node
        return done[path.stem]
    return run


def exercise_functions() -> set[str]:
    """Names of the functions the exercises ask for (those with a solution region in solutions/)."""
    names = set()
    for path in sorted(SOLUTION_DIR.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and "### BEGIN SOLUTION" in (ast.get_source_segment(text, node) or ""):
                names.add(node.name)
    return names


def solution_code_in(page: str) -> list[str]:
    """What of the exercises' answers a deck shows: lines of solution regions, definitions of the
    functions the exercises ask for (a printed ``inspect.getsource``), the solution marker."""
    text = visible_text(page)
    found = [line for line in solution_lines(30) if line in text]
    found += [f"def {name}(" for name in sorted(exercise_functions()) if re.search(rf"\bdef {name}\(", text)]
    if "### BEGIN SOLUTION" in page:
        found.append("### BEGIN SOLUTION")
    return found


def test_solution_check_sees_printed_sources(tmp_path):
    """A deck that prints the reference implementation of an exercise's function is caught."""
    import inspect

    from course_lib import losses

    names = exercise_functions()
    assert {"softmax_with_temperature", "kd_loss"} <= names, names
    cell = nbformat.v4.new_code_cell("print(inspect.getsource(losses.kd_loss))",
                                     metadata={"slideshow": {"slide_type": "slide"}})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=inspect.getsource(losses.kd_loss))]
    deck = build_slides.build_deck(nbformat.v4.new_notebook(cells=[cell]), tmp_path, name="leak")
    assert "def kd_loss(" in solution_code_in(deck.read_text(encoding="utf-8"))


def _deck_of(nb, tmp_path, name):
    deck = build_slides.build_deck(nb, tmp_path, name=name)
    return deck, deck.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=[p.stem for p in COURSE_NOTEBOOKS])
def test_executed_deck_fits_and_shows_no_solution(path, tmp_path, chromium, executed):
    deck, page = _deck_of(executed(path), tmp_path, path.stem)
    leaked = solution_code_in(page)
    assert not leaked, f"{path.name}: the executed deck shows solution code: {leaked[:5]}"
    fit = build_slides.check_fit(deck, chromium=chromium)
    print(fit.summary())
    assert fit.viewport == (1280, 720) and fit.slide_size == (1280, 720)
    assert len(fit.slides) >= 10, fit.summary()
    assert not fit.overflowing, fit.summary()


def _same_cells(a, b) -> bool:
    def key(nb):
        return [(c.cell_type, c.source, c.metadata.get("slideshow"), c.metadata.get("tags")) for c in nb.cells]
    return key(a) == key(b)


@pytest.mark.notebook
@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=[p.stem for p in COURSE_NOTEBOOKS])
def test_course_decks_fit(path, tmp_path, chromium):
    """The deck of the notebook ``make course`` executed (build/notebooks/), real outputs."""
    built = build_slides.paths.build_dir() / "notebooks" / path.name
    if not built.exists():
        pytest.skip(f"{built} not found: run make course")
    nb = nbformat.read(str(built), as_version=4)
    if not _same_cells(nb, nbformat.read(str(path), as_version=4)):
        pytest.skip(f"{built} was executed from an older {path.name}: run make course")
    deck, page = _deck_of(nb, tmp_path, path.stem)
    leaked = solution_code_in(page)
    assert not leaked, f"{path.name}: the executed deck shows solution code: {leaked[:5]}"
    fit = build_slides.check_fit(deck, chromium=chromium)
    print(fit.summary())
    assert not fit.overflowing, fit.summary()
