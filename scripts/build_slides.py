"""Build offline reveal.js decks (and HTML pages) from the course notebooks.

    python scripts/build_slides.py                       # every notebooks/NN_*.ipynb -> build/slides/
    python scripts/build_slides.py notebooks/02_kd_loss.ipynb --out /tmp/decks
    python scripts/build_slides.py --check-fit           # does every slide of build/slides/*.slides.html fit?
    python scripts/build_slides.py --check-fit build/slides/01_dark_knowledge.slides.html --screenshot 5/1

Decks are for presenting on a 16:9 screen: reveal.js lays every slide out on a 1280x720 canvas
(:data:`REVEAL_CONFIG`) and scales it to the window; :data:`DECK_CSS` hides the prompts, wraps long
code and output lines instead of cutting them at the right edge, and caps figures' height. Cells
whose slide type is ``skip`` (bookkeeping: recording results, asserting claims, source dumps) are
left out, ``notes`` cells become the speaker notes (press ``s``), and the tags ``hide-input`` /
``hide-output`` keep only a cell's output / code. :func:`check_fit` renders a deck in headless
Chromium (Debian's ``chromium``, which ``scripts/install_assets.sh`` installs) and measures, slide
by slide, how far anything reaches past the slide or is clipped (``tests/test_slides_render.py``).

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
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
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

# Decks are laid out for a 16:9 screen: reveal.js draws every slide on a 1280x720 canvas and scales
# it to the window (4% margin; up to 2x on a large screen, down to 0.2x on a small one).
SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720
REVEAL_CONFIG = {
    "controls": True, "progress": True, "history": True, "transition": "slide", "slideNumber": "c/t",
    "width": SLIDE_WIDTH, "height": SLIDE_HEIGHT, "margin": 0.04, "minScale": 0.2, "maxScale": 2.0,
    "center": True,
}
# Applied after nbconvert's and the reveal theme's styles. No prompts ("In [3]:"), code that wraps
# instead of running off the right edge, outputs and figures no wider than the slide.
DECK_CSS = """
:root {
  --jp-code-font-size: 16px;
  --jp-code-line-height: 1.3;
  --jp-content-font-size1: 22px;
  --jp-ui-font-size1: 18px;
  --jp-cell-prompt-width: 0px;
}
.reveal .slides > section:not(.stack), .reveal .slides > section > section {
  box-sizing: border-box;
  padding: 8px 32px;
}
.reveal .jp-InputPrompt, .reveal .jp-OutputPrompt, .reveal .jp-Collapser { display: none; }
.reveal .jp-Cell { padding: 2px 0; }
.reveal pre, .reveal .jp-OutputArea-output pre, .reveal div.highlight > pre {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
  word-break: normal;
  overflow: visible;
  max-height: none;
  width: 100%;
  box-sizing: border-box;
}
.reveal div.highlight > pre { font-size: var(--jp-code-font-size); line-height: var(--jp-code-line-height); }
.reveal div.jp-OutputArea-output > pre { font-size: 15px; line-height: 1.25; width: 100%; padding: 2px 6px; }
.reveal .jp-RenderedImage img {
  display: block;
  margin: 4px auto;
  max-width: 100%;
  max-height: 500px;
  width: auto;
  height: auto;
}
.reveal .jp-RenderedHTMLCommon table { font-size: 17px; }
.reveal .jp-RenderedMarkdown h1 { font-size: 52px; }
.reveal .jp-RenderedMarkdown h2 { font-size: 40px; margin-bottom: 12px; }
"""
# nbconvert's reveal template, with our Reveal.initialize (no "scroll" hack: slides fit instead)
# and DECK_CSS last, so that it wins over the theme.
DECK_SCRIPT = """<script>
require({waitSeconds: 15}, ["%(prefix)s/dist/reveal.js", "%(prefix)s/plugin/notes/notes.js"],
  function (Reveal, RevealNotes) {
    var config = %(config)s;
    config.plugins = [RevealNotes];
    Reveal.initialize(config);
    // typeset formulas change the slides' heights: lay the slides out again once MathJax is done
    var relayout = function () {
      if (window.MathJax && MathJax.Hub) MathJax.Hub.Queue(function () { Reveal.layout(); });
    };
    Reveal.on("ready", function () {
      if (window.MathJax && MathJax.Hub) MathJax.Hub.Register.StartupHook("End", relayout);
    });
    window.addEventListener("load", function () { if (Reveal.isReady()) Reveal.layout(); });  // figures decoded
    Reveal.on("slidechanged", function () {
      if (window.MathJax && MathJax.Hub.getAllJax(Reveal.getCurrentSlide())) {
        MathJax.Hub.Rerender(Reveal.getCurrentSlide());
        relayout();
      }
    });
  });
</script>
"""
DECK_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}\n"
    "{% block footer_js %}{% raw %}\n" + DECK_SCRIPT % {"prefix": REVEAL_PREFIX, "config": json.dumps(REVEAL_CONFIG)}
    + "{% endraw %}{% endblock footer_js %}\n"
    "{% block body_footer %}\n</div>\n</div>\n</main>\n{% raw %}<style type=\"text/css\">"
    + DECK_CSS + "</style>{% endraw %}\n</body>\n{% endblock body_footer %}\n"
)


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
        if "outputs" in cell:  # a bar that erased itself (leave=False) leaves an empty box otherwise
            cell["outputs"] = [out for out in cell["outputs"]
                               if out.get("output_type") != "stream" or out.get("text", "").strip()]
    return nb


def _configure(exporter) -> None:
    for name, value in VENDOR_URLS.items():
        if exporter.has_trait(name):
            setattr(exporter, name, value)


def slides_exporter():
    from nbconvert import SlidesExporter

    from traitlets.config import Config

    # cells tagged "hide-input" (long plotting code) show only their figures in the decks,
    # cells tagged "hide-output" only their code
    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_input_tags = {"hide-input"}
    config.TagRemovePreprocessor.remove_all_outputs_tags = {"hide-output"}
    exporter = SlidesExporter(config=config)
    exporter.raw_template = DECK_TEMPLATE
    exporter.reveal_url_prefix = REVEAL_PREFIX
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


# ---------------------------------------------------------------------------------------------
# Does every slide fit? Render a copy of a deck in headless Chromium and measure each slide.

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FIT_TOLERANCE_PX = 2  # sub-pixel rounding, borders
FIT_REPORT_ID = "deck-fit-report"

# Injected into a *copy* of the deck (never into the decks instructors get). Once Reveal is ready,
# MathJax has typeset and the images have loaded, it shows every slide in turn (all fragments
# take their space whether shown or not) and measures, in slide pixels, how far any element of
# the slide reaches past the slide's box, and how much content any element clips (hidden or
# scrolled away: a code line cut at the right edge, an output in a scroll box). The results go
# to the parent page (the harness) with postMessage.
FIT_PROBE_JS = r"""
(function () {
  var errors = [], sent = false;
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  function send(result) {
    if (sent) return;
    sent = true;
    result.errors = errors;
    parent.postMessage({deckFit: JSON.stringify(result)}, "*");
  }
  setTimeout(function () { send({error: "the deck did not finish loading (reveal.js, MathJax or images)"}); }, 580000);
  function describe(el) {
    var s = el.tagName.toLowerCase();
    if (typeof el.className === "string" && el.className.trim()) {
      s += "." + el.className.trim().split(/\s+/).slice(0, 2).join(".");
    }
    var text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60);
    return text ? s + " '" + text + "'" : s;
  }
  var SKIP = "aside.notes, script, style, .MathJax_Preview, .MJX_Assistive_MathML";
  function measure(Reveal, slide) {
    var cfg = Reveal.getConfig(), W = cfg.width, H = cfg.height, scale = Reveal.getScale();
    var box = Reveal.getSlidesElement().getBoundingClientRect();
    var worst = {right: 0, bottom: 0, left: 0, top: 0, clipped_x: 0, clipped_y: 0}, offenders = [], extent = [0, 0];
    function check(r, clipped, el, leaf) {  // r: a box in viewport pixels; clipped: [x, y] slide pixels
      var o = {
        right: (r.right - box.left) / scale - W, bottom: (r.bottom - box.top) / scale - H,
        left: (box.left - r.left) / scale, top: (box.top - r.top) / scale,
        clipped_x: clipped[0], clipped_y: clipped[1]
      };
      extent = [Math.max(extent[0], Math.round(o.right + W)), Math.max(extent[1], Math.round(o.bottom + H))];
      var bad = false;
      Object.keys(o).forEach(function (k) {
        if (o[k] > %(tolerance)s) { bad = true; worst[k] = Math.max(worst[k], Math.round(o[k])); }
      });
      if (bad && leaf && offenders.length < 4) offenders.push(describe(el));
    }
    // every element's box, and what an element with overflow other than visible hides or scrolls away
    [slide].concat(Array.prototype.slice.call(slide.querySelectorAll("*"))).forEach(function (el) {
      if (el.closest(SKIP)) return;
      var st = getComputedStyle(el);
      if (st.display === "none") return;
      var r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) return;
      check(r, [st.overflowX !== "visible" ? el.scrollWidth - el.clientWidth : 0,
                st.overflowY !== "visible" ? el.scrollHeight - el.clientHeight : 0],
            el, el.children.length === 0 || /^(PRE|IMG|TABLE)$/.test(el.tagName));
    });
    // every run of text: a line that runs out of its (overflow: visible) box is no element's box
    var walker = document.createTreeWalker(slide, NodeFilter.SHOW_TEXT), range = document.createRange();
    while (walker.nextNode()) {
      var text = walker.currentNode, parent = text.parentElement;
      if (!text.nodeValue.trim() || !parent || parent.closest(SKIP)) continue;
      range.selectNodeContents(text);
      var r = range.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      check(r, [0, 0], parent, true);
    }
    var heading = slide.querySelector("h1, h2, h3");
    return {title: heading ? heading.textContent.replace(/\u00b6/g, "").trim().slice(0, 80) : "",
            overflow_px: Math.max(worst.right, worst.bottom, worst.left, worst.top, worst.clipped_x, worst.clipped_y),
            worst: worst, offenders: offenders, extent: extent};
  }
  function signature(slide) {
    return [slide.scrollHeight, slide.scrollWidth].concat(Array.prototype.map.call(slide.children, function (c) {
      var r = c.getBoundingClientRect();
      return [Math.round(r.top), Math.round(r.height), Math.round(r.width)].join(",");
    })).join(";");
  }
  // MathJax re-typesets a slide when it is shown, in several steps: wait until the slide's layout
  // has not changed for half a second (at most 10 s)
  function settle(then) {
    var last = null, stable = 0, waited = 0;
    (function poll() {
      var slide = window.__deckFitReveal ? __deckFitReveal.getCurrentSlide() : null;
      var now = slide ? signature(slide) : "";
      stable = now === last ? stable + 1 : 0;
      last = now;
      var busy = window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.running;
      if ((stable >= 5 && !busy) || waited > 10000) { then(); return; }
      waited += 100;
      setTimeout(poll, 100);
    })();
  }
  function typeset(then) {  // MathJax's first pass over the page
    if (window.MathJax && MathJax.Hub && MathJax.Hub.Register) MathJax.Hub.Register.StartupHook("End", then);
    else then();
  }
  function run(Reveal) {
    Reveal.configure({transition: "none", backgroundTransition: "none"});
    var targets = [];
    Reveal.getHorizontalSlides().forEach(function (section, h) {
      var stack = section.querySelectorAll(":scope > section");
      if (stack.length === 0) targets.push([h, 0]);
      for (var v = 0; v < stack.length; v++) targets.push([h, v]);
    });
    var slides = [], i = 0;
    (function next() {
      if (i >= targets.length) {
        send({viewport: [innerWidth, innerHeight], slide_size: [Reveal.getConfig().width, Reveal.getConfig().height],
              scale: Reveal.getScale(), slides: slides});
        return;
      }
      var t = targets[i++];
      Reveal.slide(t[0], t[1]);
      settle(function () {
        var m = measure(Reveal, Reveal.getCurrentSlide());
        m.number = i; m.h = t[0]; m.v = t[1];
        slides.push(m);
        next();
      });
    })();
  }
  function images() {
    return Promise.all(Array.prototype.map.call(document.images, function (img) {
      return img.complete ? null : new Promise(function (ok) { img.onload = img.onerror = ok; });
    }));
  }
  require(["%(prefix)s/dist/reveal.js"], function (Reveal) {
    window.__deckFitReveal = Reveal;
    images().then(function () {
      typeset(function () {
        if (Reveal.isReady()) run(Reveal); else Reveal.on("ready", function () { run(Reveal); });
      });
    });
  }, function (err) { send({error: "reveal.js did not load: " + err}); });
})();
"""
FIT_HARNESS = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
html, body { margin: 0; padding: 0; overflow: hidden; }
iframe { position: absolute; left: 0; top: 0; border: 0; }
</style>
</head><body>
<iframe src="%(deck)s" width="%(width)d" height="%(height)d"></iframe>
<script>
window.addEventListener("message", function (event) {
  if (!event.data || typeof event.data.deckFit !== "string" || document.getElementById("%(report)s")) return;
  var pre = document.createElement("pre");
  pre.id = "%(report)s";
  pre.textContent = event.data.deckFit;
  document.body.appendChild(pre);
});
</script>
</body></html>
"""


class ChromiumMissing(RuntimeError):
    """No headless Chromium (Debian's ``chromium``) to render the decks with."""


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first of chromium, chromium-browser, google-chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _chromium_command(chromium: str, profile_dir: Path, *args: str) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--allow-file-access-from-files", f"--user-data-dir={profile_dir}", *args]


@dataclass
class SlideFit:
    """One slide: its number in the deck (1-based, as reveal.js's "c/t" counter shows it), its
    position (h, v), its heading, and how many slide pixels its content overflows by."""

    number: int
    h: int
    v: int
    title: str
    overflow_px: int
    worst: dict = field(default_factory=dict)
    offenders: list = field(default_factory=list)
    extent: tuple = (0, 0)  # how far right and down the content reaches, in slide pixels


@dataclass
class DeckFit:
    deck: Path
    viewport: tuple
    slide_size: tuple
    scale: float
    slides: list[SlideFit]
    errors: list[str]

    @property
    def overflowing(self) -> list[SlideFit]:
        return [s for s in self.slides if s.overflow_px > FIT_TOLERANCE_PX]

    @property
    def worst_px(self) -> int:
        return max((s.overflow_px for s in self.slides), default=0)

    def summary(self) -> str:
        lines = [f"{self.deck.name}: {len(self.slides)} slides at {self.viewport[0]}x{self.viewport[1]} "
                 f"(slide {self.slide_size[0]}x{self.slide_size[1]}, scale {self.scale:.3f}); "
                 f"{len(self.overflowing)} overflow, worst {self.worst_px} px"]
        for s in self.overflowing:
            parts = ", ".join(f"{k} {v}" for k, v in s.worst.items() if v)
            lines.append(f"  slide {s.number} (#/{s.h}/{s.v}) {s.title!r}: {parts}; {'; '.join(s.offenders[:2])}")
        return "\n".join(lines)


def check_fit(deck: Path, width: int = SLIDE_WIDTH, height: int = SLIDE_HEIGHT, chromium: str | None = None,
              timeout: float = 240) -> DeckFit:
    """Render ``deck`` (a built ``.slides.html`` with its ``reveal.js/`` and ``vendor/`` folders
    next to it) in headless Chromium, in a ``width`` x ``height`` window, and measure every slide.

    The deck itself is not modified: a copy with :data:`FIT_PROBE_JS` injected, and a harness page
    that frames it at exactly ``width`` x ``height``, go to a temporary folder. Raises
    :class:`ChromiumMissing` without a browser, RuntimeError when the deck does not load.
    """
    chromium = chromium or find_chromium()
    if not chromium:
        raise ChromiumMissing("headless Chromium not found: apt-get install chromium "
                              "(bash scripts/install_assets.sh installs it), or set $CHROMIUM")
    deck = Path(deck).resolve()
    page = deck.read_text(encoding="utf-8")
    cut = page.rfind("</body>")
    if cut < 0:
        raise ValueError(f"{deck}: no </body>")
    probe = FIT_PROBE_JS % {"prefix": REVEAL_PREFIX, "tolerance": FIT_TOLERANCE_PX}
    with tempfile.TemporaryDirectory(prefix="deck-fit-") as tmp:
        tmp = Path(tmp)
        for name in (REVEAL_PREFIX, VENDOR):
            if (deck.parent / name).exists():
                (tmp / name).symlink_to(deck.parent / name, target_is_directory=True)
        (tmp / "deck.html").write_text(page[:cut] + f"<script>{probe}</script>\n" + page[cut:], encoding="utf-8")
        harness = tmp / "harness.html"
        harness.write_text(FIT_HARNESS % {"deck": "deck.html", "width": width, "height": height,
                                          "report": FIT_REPORT_ID}, encoding="utf-8")
        command = _chromium_command(chromium, tmp / "profile", f"--window-size={width + 64},{height + 64}",
                                    "--virtual-time-budget=600000", "--dump-dom", harness.as_uri())
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    found = re.search(rf'<pre id="{FIT_REPORT_ID}">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise RuntimeError(f"{deck.name}: no measurement from Chromium (exit {done.returncode}): "
                           f"{done.stderr.strip()[-1500:]}")
    report = json.loads(html.unescape(found.group(1)))
    if "error" in report:
        raise RuntimeError(f"{deck.name}: {report['error']} (page errors: {report.get('errors')})")
    slides = [SlideFit(**{k: s[k] for k in ("number", "h", "v", "title", "overflow_px", "worst", "offenders")},
                       extent=tuple(s["extent"])) for s in report["slides"]]
    return DeckFit(deck, tuple(report["viewport"]), tuple(report["slide_size"]), report["scale"], slides,
                   report["errors"])


def screenshot(deck: Path, out: Path, slide: str = "0", width: int = SLIDE_WIDTH, height: int = SLIDE_HEIGHT,
               chromium: str | None = None, timeout: float = 120) -> Path:
    """A PNG of one slide (``slide`` as in the deck's URL: ``"5"``, ``"5/1"``, or ``"5/1/0"`` with
    its first fragment shown), framed at exactly ``width`` x ``height`` like :func:`check_fit`."""
    from PIL import Image

    chromium = chromium or find_chromium()
    if not chromium:
        raise ChromiumMissing("headless Chromium not found: apt-get install chromium")
    deck, out = Path(deck).resolve(), Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="deck-shot-") as tmp:
        tmp = Path(tmp)
        harness = tmp / "harness.html"
        harness.write_text(FIT_HARNESS % {"deck": f"{deck.as_uri()}#/{slide}", "width": width, "height": height,
                                          "report": FIT_REPORT_ID}, encoding="utf-8")
        command = _chromium_command(chromium, tmp / "profile", f"--window-size={width + 64},{height + 64}",
                                    "--virtual-time-budget=20000", f"--screenshot={tmp / 'shot.png'}",
                                    harness.as_uri())
        subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
        with Image.open(tmp / "shot.png") as image:
            image.crop((0, 0, width, height)).save(out)
    return out


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
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks (default: every course notebook); decks with --check-fit")
    parser.add_argument("--out", type=Path, default=paths.build_dir() / "slides")
    parser.add_argument("--check-fit", action="store_true",
                        help=f"render decks (default: OUT/*.slides.html) in headless Chromium at "
                             f"{SLIDE_WIDTH}x{SLIDE_HEIGHT}; exit 1 if any slide overflows")
    parser.add_argument("--screenshot", metavar="SLIDE", action="append", default=[],
                        help="with --check-fit: also save OUT/<deck>-<SLIDE>.png (SLIDE as in the URL: 5/1)")
    args = parser.parse_args(argv)
    if args.check_fit:
        decks = args.notebooks or sorted(args.out.glob("*.slides.html"))
        if not decks:
            print(f"no decks in {args.out}", file=sys.stderr)
            return 1
        failed = False
        for deck in decks:
            fit = check_fit(deck)
            failed = failed or bool(fit.overflowing)
            print(fit.summary())
            for slide in args.screenshot:
                shot = Path(deck).parent / f"{Path(deck).name.split('.')[0]}-{slide.replace('/', '-')}.png"
                print(f"  screenshot: {screenshot(deck, shot, slide)}")
        return 1 if failed else 0
    sources = args.notebooks or deck_sources()
    if not sources:
        print("no notebooks to build", file=sys.stderr)
        return 1
    for source in sources:
        print(f"deck: {build_deck(source, args.out)}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
