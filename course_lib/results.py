"""The course's results file: every figure a notebook reports, recorded where the report can find it.

``build/results.json`` (or ``$COURSE_RESULTS``) maps a notebook id to its figures and ``suite``
to the seconds each notebook took::

    {"02_kd_loss": {"gap_recovered": 0.64, "seeds": {"0": {"acc": 0.81}}, "headline": ["gap_recovered"]},
     "suite": {"01_dark_knowledge": 61.3, "02_kd_loss": 74.0}}

A notebook calls ``record("02_kd_loss", "gap_recovered", gap)``; ``make course`` renders
``build/report.md`` and the README's results table from the file
(``python -m course_lib.results report``). Keys listed under ``"headline"`` are the ones the
README shows. ``build/`` is :func:`course_lib.paths.build_dir`: the repository's in a checkout,
the working directory's when the package is installed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

from . import paths

__all__ = [
    "results_path",
    "record",
    "record_many",
    "record_suite",
    "record_meta",
    "load_results",
    "render_report",
    "render_readme_table",
    "update_readme",
]

RESULTS_ENV = paths.RESULTS_ENV
SUITE_KEY = "suite"
META_KEY = "_meta"  # optional run information, e.g. {"profile": "quick"}
HEADLINE_KEY = "headline"
README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"


def results_path() -> Path:
    """``$COURSE_RESULTS`` if set, else ``build/results.json`` (:func:`course_lib.paths.build_dir`)."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else paths.build_dir() / "results.json"


# ---------------------------------------------------------------------------------------------
# JSON conversion


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types.

    Python scalars pass through; NumPy/PyTorch scalars (and one-element arrays/tensors) become
    ``int``/``float``/``bool``; dicts (string or int keys) and lists/tuples are converted
    recursively. Anything else raises ``TypeError``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"results keys must be str or int, got {type(key).__name__}: {key!r}")
            out[str(key)] = to_jsonable(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    module = type(value).__module__.split(".", 1)[0]
    if module in ("numpy", "torch"):
        numel = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
        if numel == 1:
            item = value.item()
            if isinstance(item, bool):
                return item
            if isinstance(item, int):
                return int(item)
            if isinstance(item, float):
                return float(item)
            if isinstance(item, complex):
                raise TypeError(f"cannot record a complex number: {value!r}")
            return to_jsonable(item)
        raise TypeError(
            f"cannot record a {type(value).__name__} with {numel} elements; "
            "record a scalar, or convert with .tolist()"
        )
    raise TypeError(f"cannot record a value of type {type(value).__name__}: {value!r}")


# ---------------------------------------------------------------------------------------------
# Reading and writing


def load_results(path: str | os.PathLike | None = None) -> dict:
    """The results dict from ``path`` (default :func:`results_path`); ``{}`` if there is none yet."""
    path = Path(path) if path is not None else results_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to start afresh") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write cycles between processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the results file is meant to be read by all
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty string, got {name!r}")


def _check_notebook(notebook: Any) -> None:
    _check_name(notebook, "notebook")
    if notebook in (SUITE_KEY, META_KEY):
        raise ValueError(f"{notebook!r} is reserved in the results file; use the notebook's id, e.g. '02_kd_loss'")


def _update(path: str | os.PathLike | None, keys: tuple[str, ...], figures: Mapping[str, Any]) -> None:
    """Read-modify-write: ``results[keys[0]][keys[1]]... .update(figures)``, atomically."""
    converted = {}
    for name, value in figures.items():
        _check_name(name, "figure names")
        converted[name] = to_jsonable(value)  # convert (and fail) before touching the file
    path = Path(path) if path is not None else results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        data = load_results(path)
        entry = data
        for key in keys:
            child = entry.get(key)
            if not isinstance(child, dict):
                child = entry[key] = {}
            entry = child
        entry.update(converted)
        _write_atomic(path, data)


def record(notebook: str, name: str, value: Any, *, path: str | os.PathLike | None = None) -> None:
    """Store ``results[notebook][name] = value`` (JSON-converted); prints nothing.

    NumPy/PyTorch scalars become ``int``/``float``, dicts and lists are converted recursively,
    anything else raises ``TypeError``. ``record("02_kd_loss", "headline", ["gap_recovered"])``
    chooses the figures the README shows.
    """
    _check_notebook(notebook)
    _update(path, (notebook,), {name: value})


def record_many(notebook: str, figures: Mapping[str, Any], *, path: str | os.PathLike | None = None) -> None:
    """Store several figures of one notebook in one read-modify-write."""
    _check_notebook(notebook)
    if not isinstance(figures, Mapping):
        raise TypeError(f"figures must be a mapping, got {type(figures).__name__}")
    _update(path, (notebook,), figures)


def record_suite(notebook: str, seconds: float, *, path: str | os.PathLike | None = None) -> None:
    """Store the wall time of a whole notebook under ``results["suite"][notebook]``."""
    _check_name(notebook, "notebook")
    seconds = to_jsonable(seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {seconds!r}")
    _update(path, (SUITE_KEY,), {notebook: round(float(seconds), 2)})


def record_meta(path: str | os.PathLike | None = None, **info: Any) -> None:
    """Store run information (profile, date, versions) under ``results["_meta"]``."""
    _update(path, (META_KEY,), info)


# ---------------------------------------------------------------------------------------------
# Rendering


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def format_value(value: Any) -> str:
    """Floats to 4 significant digits, everything else as text (Markdown-safe)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten(figures: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}``; non-scalar leaves (lists) are dropped."""
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif _is_scalar(value):
            flat[name] = value
    return flat


def notebook_ids(results: Mapping[str, Any]) -> list[str]:
    """Every notebook named in the results (figures or suite timing), sorted."""
    ids = {k for k, v in results.items() if k not in (SUITE_KEY, META_KEY) and isinstance(v, Mapping)}
    suite = results.get(SUITE_KEY)
    if isinstance(suite, Mapping):
        ids.update(suite)
    return sorted(ids)


def _profile(results: Mapping[str, Any]) -> str:
    meta = results.get(META_KEY)
    return str(meta.get("profile", "quick")) if isinstance(meta, Mapping) else "quick"


def _table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_report(results: Mapping[str, Any]) -> str:
    """A Markdown report: suite timing (with total), then one table of scalar figures per notebook."""
    lines = ["# Course results", ""]
    meta = results.get(META_KEY)
    if isinstance(meta, Mapping) and meta:
        lines += ["Run: " + ", ".join(f"{k} = {format_value(v)}" for k, v in sorted(flatten(meta).items())), ""]
    suite = results.get(SUITE_KEY) if isinstance(results.get(SUITE_KEY), Mapping) else {}
    lines += ["## Suite timing", ""]
    if suite:
        numbers = {nb: s for nb, s in suite.items() if isinstance(s, (int, float)) and not isinstance(s, bool)}
        rows = [[nb, format_value(float(s)) if nb in numbers else format_value(s)] for nb, s in sorted(suite.items())]
        rows.append(["**total**", f"**{format_value(float(sum(numbers.values())))}**"])
        lines += _table(["notebook", "seconds"], rows, ["---", "---:"])
    else:
        lines.append("No timings recorded yet.")
    lines.append("")
    for nb in notebook_ids(results):
        figures = results.get(nb)
        if not isinstance(figures, Mapping):
            continue
        flat = {k: v for k, v in flatten({k: v for k, v in figures.items() if k != HEADLINE_KEY}).items()}
        lines += [f"## {nb}", ""]
        if flat:
            lines += _table(["figure", "value"], [[k, format_value(v)] for k, v in flat.items()], ["---", "---:"])
        else:
            lines.append("No scalar figures recorded.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def headline_figures(results: Mapping[str, Any], notebook: str) -> list[tuple[str, Any]]:
    """``(name, value)`` for each key in ``results[notebook]["headline"]`` that was recorded
    (dotted names reach into nested dicts)."""
    figures = results.get(notebook)
    if not isinstance(figures, Mapping):
        return []
    names = figures.get(HEADLINE_KEY, [])
    if isinstance(names, str):
        names = [names]
    flat = flatten(figures)
    return [(name, flat[name]) for name in names if name in flat]


def render_readme_table(results: Mapping[str, Any]) -> str:
    """A compact Markdown table: notebook, seconds, headline figures (one row per notebook)."""
    suite = results.get(SUITE_KEY) if isinstance(results.get(SUITE_KEY), Mapping) else {}
    header = ["notebook", f"{_profile(results)}-profile seconds", "headline figures"]
    rows = []
    for nb in notebook_ids(results):
        seconds = suite.get(nb)
        is_number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        shown = format_value(float(seconds)) if is_number else "-"
        heads = "; ".join(f"{name} = {format_value(value)}" for name, value in headline_figures(results, nb))
        rows.append([nb, shown, heads or "-"])
    if not rows:
        return "_No results yet: run `make course`._\n"
    return "\n".join(_table(header, rows, ["---", "---:", "---"])) + "\n"


def update_readme(readme_path: str | os.PathLike, results: Mapping[str, Any]) -> bool:
    """Replace the text between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with
    :func:`render_readme_table`. Returns whether the file changed; raises ``ValueError`` if the
    markers are missing."""
    path = Path(readme_path)
    text = path.read_text(encoding="utf-8")
    start = text.find(README_BEGIN)
    end = text.find(README_END, start + len(README_BEGIN)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(f"{path} lacks the markers {README_BEGIN} ... {README_END}")
    new = text[: start + len(README_BEGIN)] + "\n" + render_readme_table(results) + text[end:]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


# Figures that measure this machine's speed at this moment (seconds, latencies, speedups, epoch-time
# ratios): against the published table they say nothing about reproducibility, so drift() skips them.
TIMING_WORDS = ("seconds", "speedup", "faster", "_ms", "latency", "cached_over_alone", "time_vs")


def published_figures(readme_path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """The headline figures of the README's published results table: notebook -> {name: value}."""
    text = Path(readme_path).read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme_path} lacks the markers {README_BEGIN} ... {README_END}")
    table: dict[str, dict[str, float]] = {}
    for line in text[start + len(README_BEGIN):end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("notebook", "") or set(cells[0]) <= {"-", ":"}:
            continue
        figures = {}
        for item in cells[2].split(";"):
            name, sep, value = item.partition(" = ")
            try:
                figures[name.strip()] = float(value)
            except ValueError:
                continue
        table[cells[0]] = figures
    return table


def tolerance(value: float, *, points: float = 1.0, relative: float = 0.01, fraction: float = 0.05) -> float:
    """How far a figure may move between builds before it counts as moved: ``fraction`` for values up
    to 1.5 in size (fractions of a gap, entropies, ratios near 1), else ``points`` or ``relative`` of
    the value, whichever is larger (accuracies in percent, perplexities, size ratios)."""
    return fraction if abs(value) <= 1.5 else max(points, relative * abs(value))


def drift(results: Mapping[str, Any], published: Mapping[str, Mapping[str, float]]) -> list[tuple]:
    """``(notebook, figure, published, now, tolerance)`` for every published headline figure (timing
    figures aside) that this run moved by more than :func:`tolerance`, or no longer reports."""
    moved = []
    for notebook, figures in published.items():
        now = dict(headline_figures(results, notebook)) if notebook in results else {}
        for name, before in figures.items():
            if any(word in name for word in TIMING_WORDS):
                continue
            value = now.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                if notebook in results:
                    moved.append((notebook, name, before, None, tolerance(before)))
                continue
            if abs(value - before) > tolerance(before):
                moved.append((notebook, name, before, float(value), tolerance(before)))
    return moved


def render_drift(moved: list[tuple]) -> str:
    if not moved:
        return "drift: no published figure moved beyond its tolerance\n"
    lines = ["drift: figures that moved beyond their tolerance against the published README table", ""]
    lines += _table(["notebook", "figure", "published", "this run", "tolerance"],
                    [[nb, name, format_value(before), "missing" if now is None else format_value(now),
                      format_value(tol)] for nb, name, before, now, tol in moved],
                    ["---", "---", "---:", "---:", "---:"])
    return "\n".join(lines) + "\n"


def write_report(
    results_file: str | os.PathLike | None = None,
    report_file: str | os.PathLike | None = None,
) -> Path:
    """Render ``build/report.md`` from the results file; returns the report's path.

    A user's run writes only under ``build/``: the README's table is refreshed by a maintainer, from
    a run they choose to publish (:func:`publish_readme`, ``make publish-results``).
    """
    results = load_results(results_file)
    report = Path(report_file) if report_file is not None else paths.build_dir() / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(results), encoding="utf-8")
    return report


def publish_readme(results_file: str | os.PathLike | None = None,
                   readme_file: str | os.PathLike | None = None) -> Path:
    """Copy the results table of ``results_file`` into the README (the repository's by default)."""
    repo = paths.repo_root()
    if readme_file is None and repo is None:
        raise FileNotFoundError("no repository README to publish to (installed package): pass readme_file")
    readme = Path(readme_file) if readme_file is not None else repo / "README.md"
    update_readme(readme, load_results(results_file))
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.results", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="write build/report.md from the results file")
    rep.add_argument("--results", help="results file (default: $COURSE_RESULTS or build/results.json)")
    rep.add_argument("--out", help="report file (default: build/report.md)")
    dr = sub.add_parser("drift", help="print the published figures this run moved beyond their tolerance")
    dr.add_argument("--results", help="results file (default: $COURSE_RESULTS or build/results.json)")
    dr.add_argument("--readme", help="README with the published table (default: the repository's)")
    pub = sub.add_parser("publish", help="maintainers: copy the results table into README.md")
    pub.add_argument("--results", help="results file (default: $COURSE_RESULTS or build/results.json)")
    pub.add_argument("--readme", help="README to update (default: README.md at the repository root)")
    args = parser.parse_args(argv)
    if args.command == "report":
        print(f"wrote {write_report(args.results, args.out)}")
    elif args.command == "drift":
        readme = Path(args.readme) if args.readme else (paths.repo_root() or Path.cwd()) / "README.md"
        print(render_drift(drift(load_results(args.results), published_figures(readme))), end="")
    else:
        print(f"updated {publish_readme(args.results, args.readme)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
