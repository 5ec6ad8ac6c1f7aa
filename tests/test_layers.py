"""The package's layer rules (README, "How the package is organised"), checked on the import graph.

Every ``import`` / ``from ... import`` statement of every module, at any depth (inside functions
too: an import moved into a function to dodge a cycle is still an edge), resolved to the
``course_lib`` module it names. Three rules: a module imports only from its own layer or lower; the
two application packages (``llm``, ``encoder``) do not import each other; and the graph has no
cycle at all. And one size rule: no module over ``MAX_LINES`` lines except those named in
``LONG_MODULES``, each with its reason in its docstring.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "course_lib"

# Lowest first. A module's layer is its top-level name's (course_lib.llm.trainer -> "llm").
LAYERS = {
    "foundation": {"__init__", "paths", "validation", "modes", "netguard", "profiles", "artifacts", "results",
                   "plots", "experiments", "trainers"},
    "image core": {"data", "losses", "vit", "deit", "models", "stacking", "engine", "hooks", "timing", "teachers",
                   "analysis", "estimate"},
    "methods": {"features", "online", "compress"},
    "applications": {"llm", "encoder"},
    "grading": {"grading"},
}
LEVEL = {name: i for i, names in enumerate(LAYERS.values()) for name in names}
MAX_LINES = 520
LONG_MODULES = {"course_lib.engine", "course_lib.compress", "course_lib.grading.checks.ex05_born_again",
                "course_lib.grading.checks.ex06_speculative",
                "course_lib.grading.checks.ex07_quantization", "course_lib.grading.checks.ex08_distilbert"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The course_lib modules ``name`` imports (a package's ``__init__`` counts as the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:               # `from x import y`: the module x.y, else x (y a name in it)
                if f"{base}.{alias.name}" in MODULES:
                    out.add(f"{base}.{alias.name}")
                elif base in MODULES:
                    out.add(base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
    out.discard(name)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _level(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return LEVEL[top]


def test_every_module_has_a_layer():
    tops = {m.split(".")[1] if "." in m else "__init__" for m in MODULES}
    assert tops <= set(LEVEL), f"modules with no layer in LAYERS (add them, and to the README): {tops - set(LEVEL)}"


def test_no_import_runs_up_a_layer():
    up = [f"{m} ({_layer_name(m)}) imports {t} ({_layer_name(t)})"
          for m, targets in GRAPH.items() for t in targets if _level(t) > _level(m)]
    assert not up, "imports that run up a layer:\n" + "\n".join(sorted(up))


def _layer_name(module: str) -> str:
    return list(LAYERS)[_level(module)]


def test_the_applications_do_not_import_each_other():
    crossing = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                if m.startswith(("course_lib.llm", "course_lib.encoder")) and t.split(".")[:2] != m.split(".")[:2]
                and _level(t) == LEVEL["llm"]]
    assert not crossing, crossing


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_resolver_sees_every_form():
    """Relative imports one and two levels up, `from . import module`, imports inside functions."""
    assert {"course_lib.llm.losses", "course_lib.trainers", "course_lib.llm.teacher"} <= GRAPH["course_lib.llm.trainer"]
    assert "course_lib.llm.experiment" in GRAPH["course_lib.llm.speculative_experiment"]
    assert "course_lib.compress" in GRAPH["course_lib.llm.speculative_experiment"]     # imported in a function
    assert {"course_lib.llm.teacher", "course_lib.llm.corpus"} <= GRAPH["course_lib.llm"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_short(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    if name in LONG_MODULES:
        doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))) or ""
        assert "one idea" in doc.lower(), f"{name} is allowed {lines} lines: its docstring must say why (one idea)"
    else:
        assert lines <= MAX_LINES, f"{name}: {lines} lines; split it by idea, or list it in LONG_MODULES with a reason"
