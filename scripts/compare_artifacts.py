"""Compare two builds of a cached experiment, figure by figure: the check after a refactor that changed
an artifact's key (the code moved, what it computes must not have).

    python scripts/compare_artifacts.py OLD_FOLDER NEW_FOLDER [--json OUT]

Walks both ``results.json`` files leaf by leaf and reports, per leaf, whether it is identical,
differs, or exists on one side only. Leaves that measure wall-clock time or name the machine
(``*seconds*``, ``*_ms``, ``*per_second*``, ``speedup``, ``rate``, ``machine``, ``build_*``, the
measured cost ratios ``verify_ratio`` and what is derived from them, ``required_acceptance``, and runs
matched on wall time) are counted apart: they differ between any two runs and say nothing about the
code. The saved weights (``*.pt`` files, when both folders have them) are compared tensor by tensor.
Exit status 1 if any
figure that is not a timing differs.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TIMING = re.compile(r"(\[timed\]|seconds|_ms\b|_ms$|ms_|per_second|speedup|\brate\b|_rate$|rates|machine|build_|"
                    r"latency|timing|forward_ms|cost|verify_ratio|required_acceptance)", re.I)


TIMED_RUN = re.compile(r"wall[ -]?(time|clock)", re.I)


def leaves(value, path: str = ""):
    """``(path, value)`` for every leaf of a JSON value. A run whose ``name`` says it is matched on wall
    time (``"alone (equal wall time)"``: its step count is what fits in a measured time) has every
    leaf marked ``[timed]`` in its path: timing-dependent by design."""
    if isinstance(value, dict):
        if isinstance(value.get("name"), str) and TIMED_RUN.search(value["name"]):
            path = f"{path}[timed]"
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def compare(old: Path, new: Path) -> dict:
    a = dict(leaves(json.loads((old / "results.json").read_text(encoding="utf-8"))))
    b = dict(leaves(json.loads((new / "results.json").read_text(encoding="utf-8"))))
    report = {"identical": 0, "timing_leaves": 0, "differ": [], "only_old": [], "only_new": []}
    for path in sorted(set(a) | set(b)):
        if TIMING.search(path):
            report["timing_leaves"] += 1
        elif path not in b:
            report["only_old"].append(path)
        elif path not in a:
            report["only_new"].append(path)
        elif a[path] == b[path]:
            report["identical"] += 1
        else:
            report["differ"].append({"path": path, "old": a[path], "new": b[path]})
    weights = sorted(p.name for p in old.glob("*.pt") if (new / p.name).exists())
    if weights:
        import torch
        report["weights"] = {}
        for name in weights:
            x, y = torch.load(old / name), torch.load(new / name)
            same = x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
            report["weights"][name] = "identical" if same else "differ"
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = compare(args.old, args.new)
    print(f"{args.old.name} -> {args.new.name}: {report['identical']} figures identical, "
          f"{len(report['differ'])} differ, {report['timing_leaves']} timing leaves not compared, "
          f"{len(report['only_old'])} only in the old, {len(report['only_new'])} only in the new")
    for d in report["differ"][:40]:
        print(f"  differs: {d['path']}: {d['old']!r} -> {d['new']!r}")
    for p in report["only_old"][:10] + report["only_new"][:10]:
        print(f"  one side only: {p}")
    for name, verdict in report.get("weights", {}).items():
        print(f"  weights {name}: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    bad = report["differ"] or any(v != "identical" for v in report.get("weights", {}).values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
