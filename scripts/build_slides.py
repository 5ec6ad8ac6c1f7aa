"""Build offline reveal.js decks (and HTML pages) from the course notebooks.

    python scripts/build_slides.py                       # every notebooks/NN_*.ipynb -> build/slides/
    python scripts/build_slides.py notebooks/02_kd_loss.ipynb --out /tmp/decks

Decks never contain exercise solutions: a cell whose source holds ``### BEGIN SOLUTION``, whose
tags mention ``solution`` or that nbgrader marks as a solution is dropped before export.

Decks work without a network: nbconvert's CDN defaults (reveal.js from unpkg; require.js, jQuery,
MathJax and mermaid from cdnjs) are replaced by relative paths to copies that
``scripts/install_assets.sh`` fetched from npm into ``.cache/assets/revealjs`` (the assets folder
is :func:`course_lib.paths.assets_dir`) and that this module copies next to the decks
(``reveal.js/`` and ``vendor/``). Our notebooks draw no mermaid diagrams, so mermaid is a stub
module. Decks and pages go to ``build/`` (:func:`course_lib.paths.build_dir`).

The module is importable (``scripts/run_course.py`` and ``tests/test_slides.py`` use it).
"""
from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent  # scripts/ lives in the checkout
if str(REPO_ROOT) not in sys.path:  # this checkout's course_lib, whatever else is installed
    sys.path.insert(0, str(REPO_ROOT))

from course_lib import paths  # noqa: E402

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
ASSETS_DIR = paths.assets_dir() / "revealjs" / "node_modules"
SOLUTION_MARKER = "### BEGIN SOLUTION"
NOTEBOOK_PATTERN = re.compile(r"^\d\d_.+\.ipynb$")

REVEAL_PREFIX = "reveal.js"  # relative to the deck
VENDOR = "vendor"
VENDOR_URLS = {
    "require_js_url": f"{VENDOR}/require.js",
    "jquery_url": f"{VENDOR}/jquery.min.js",
    "mathjax_url": f"{VENDOR}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "mermaid_js_url": f"./{VENDOR}/mermaid-stub.mjs",  # ES module specifiers need ./
    "mermaid_layout_elk_js_url": "",
}
# (source under ASSETS_DIR, destination under the output folder)
_COPIES = [
    ("reveal.js/dist", f"{REVEAL_PREFIX}/dist"),
    ("reveal.js/plugin", f"{REVEAL_PREFIX}/plugin"),
    ("reveal.js/LICENSE", f"{REVEAL_PREFIX}/LICENSE"),
    ("requirejs/require.js", f"{VENDOR}/require.js"),
    ("jquery/dist/jquery.min.js", f"{VENDOR}/jquery.min.js"),
    ("mathjax/MathJax.js", f"{VENDOR}/mathjax/MathJax.js"),
    ("mathjax/LICENSE", f"{VENDOR}/mathjax/LICENSE"),
    ("mathjax/config/TeX-AMS_CHTML-full.js", f"{VENDOR}/mathjax/config/TeX-AMS_CHTML-full.js"),
    ("mathjax/config/Safe.js", f"{VENDOR}/mathjax/config/Safe.js"),
    ("mathjax/extensions", f"{VENDOR}/mathjax/extensions"),
    ("mathjax/jax/input/TeX", f"{VENDOR}/mathjax/jax/input/TeX"),
    ("mathjax/jax/output/CommonHTML", f"{VENDOR}/mathjax/jax/output/CommonHTML"),
    ("mathjax/jax/element", f"{VENDOR}/mathjax/jax/element"),
    ("mathjax/fonts/HTML-CSS/TeX/woff", f"{VENDOR}/mathjax/fonts/HTML-CSS/TeX/woff"),
]
_MERMAID_STUB = (
    "// The course's notebooks draw no mermaid diagrams; this stub keeps the decks offline.\n"
    "export default { initialize() {}, run() {}, registerLayoutLoaders() {} };\n"
)
CDN_HOSTS = ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "jsdelivr", "cdn.mathjax.org")


class MissingAssets(RuntimeError):
    """The local reveal.js/MathJax copies are not installed."""


def course_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_*.ipynb`` in ``folder``, in course order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def assets_available(assets_dir: Path = ASSETS_DIR) -> bool:
    return all((assets_dir / src).exists() for src, _ in _COPIES)


def copy_web_assets(out_dir: Path, assets_dir: Path = ASSETS_DIR, reveal: bool = True) -> None:
    """Copy reveal.js (decks only) and the vendored scripts next to the pages (skips what is
    already there)."""
    copies = [(src, dst) for src, dst in _COPIES if reveal or not dst.startswith(REVEAL_PREFIX + "/")]
    missing = [src for src, _ in copies if not (assets_dir / src).exists()]
    if missing:
        raise MissingAssets(
            f"offline slide assets missing under {assets_dir} ({', '.join(missing[:3])} ...): "
            "run `bash scripts/install_assets.sh` (or `make setup`)"
        )
    out_dir = Path(out_dir)
    for src, dst in copies:
        source, target = assets_dir / src, out_dir / dst
        if source.is_dir():
            if not target.exists():
                shutil.copytree(source, target)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    stub = out_dir / VENDOR_URLS["mermaid_js_url"]
    if not stub.exists():
        stub.write_text(_MERMAID_STUB, encoding="utf-8")


def is_solution_cell(cell) -> bool:
    """A cell that holds an exercise solution (marker, tag or nbgrader flag)."""
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    if SOLUTION_MARKER in source:
        return True
    metadata = cell.get("metadata", {}) or {}
    if any("solution" in str(tag).lower() for tag in metadata.get("tags", []) or []):
        return True
    return bool((metadata.get("nbgrader") or {}).get("solution"))


def strip_solutions(nb):
    """A copy of ``nb`` without solution cells."""
    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if not is_solution_cell(cell)]
    return nb


def collapse_progress(nb):
    """A copy of ``nb`` whose stream outputs keep only what a terminal would show.

    Text progress bars (tqdm without widgets) redraw themselves with carriage returns; a live
    notebook front end collapses them, but nbconvert's HTML would show every intermediate state
    (hundreds of lines per training loop). Keep, on each line, the text after its last ``\r``.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        merged = []   # nbclient keeps every write as its own output: merge consecutive ones first
        for out in cell.get("outputs", []):
            if (merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == out.get("name")):
                merged[-1]["text"] += out.get("text", "")
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "\r" in out.get("text", ""):
                lines = [line.rsplit("\r", 1)[-1] for line in out["text"].split("\n")]
                out["text"] = "\n".join(line for line in lines if line.strip() or not line)
    return nb


def _configure(exporter) -> None:
    for name, value in VENDOR_URLS.items():
        if exporter.has_trait(name):
            setattr(exporter, name, value)


def slides_exporter():
    from nbconvert import SlidesExporter

    from traitlets.config import Config

    # cells tagged "hide-input" (long plotting code) show only their figures in the decks
    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_input_tags = {"hide-input"}
    exporter = SlidesExporter(config=config)
    exporter.reveal_url_prefix = REVEAL_PREFIX
    exporter.reveal_scroll = True  # long code cells scroll instead of overflowing
    exporter.reveal_number = "c/t"
    _configure(exporter)
    return exporter


def html_exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    _configure(exporter)
    return exporter


def _load(nb_or_path):
    if isinstance(nb_or_path, (str, Path)):
        return nbformat.read(str(nb_or_path), as_version=4), Path(nb_or_path).stem
    return nb_or_path, None


def build_deck(notebook, out_dir: Path, name: str | None = None, assets_dir: Path = ASSETS_DIR) -> Path:
    """Write ``out_dir/<name>.slides.html`` for a notebook (path or node), solutions removed."""
    nb, stem = _load(notebook)
    name = name or stem
    if not name:
        raise ValueError("name is required when passing a notebook node")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_web_assets(out_dir, assets_dir)
    body, _ = slides_exporter().from_notebook_node(collapse_progress(strip_solutions(nb)),
                                                   resources={"metadata": {"name": name}})
    target = out_dir / f"{name}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def build_html(notebook, out_dir: Path, name: str | None = None, assets_dir: Path = ASSETS_DIR) -> Path:
    """Write ``out_dir/<name>.html`` (the whole notebook, solutions included, offline scripts)."""
    nb, stem = _load(notebook)
    name = name or stem
    if not name:
        raise ValueError("name is required when passing a notebook node")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_web_assets(out_dir, assets_dir, reveal=False)
    body, _ = html_exporter().from_notebook_node(collapse_progress(nb), resources={"metadata": {"name": name}})
    target = out_dir / f"{name}.html"
    target.write_text(body, encoding="utf-8")
    return target


def deck_sources(names: list[str] | None = None) -> list[Path]:
    """The notebook to build each deck from: the executed copy in build/notebooks when it
    exists, else the stripped notebook in notebooks/."""
    executed = paths.build_dir() / "notebooks"
    sources = []
    for path in course_notebooks():
        if names and not any(path.stem == n or path.stem.startswith(n + "_") for n in names):
            continue
        candidate = executed / path.name
        sources.append(candidate if candidate.exists() else path)
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every course notebook)")
    parser.add_argument("--out", type=Path, default=paths.build_dir() / "slides")
    args = parser.parse_args(argv)
    sources = args.notebooks or deck_sources()
    if not sources:
        print("no notebooks to build", file=sys.stderr)
        return 1
    for source in sources:
        print(f"deck: {build_deck(source, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
