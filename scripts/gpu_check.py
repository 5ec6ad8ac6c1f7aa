"""The GPU smoke check: run every notebook's code as plain Python (no Jupyter, no nbval) on this
machine's GPU, record how long each took and whether its claims held, in one JSON file.

    python scripts/gpu_check.py                  # every notebook, CUDA required
    python scripts/gpu_check.py --only 01,02 --out /tmp/gpu.json --timeout 600
    python scripts/gpu_check.py --only 01 --allow-cpu   # the same run on a CPU (what the test does)

Each notebook's code cells (from ``notebooks/src/NN_*.py``, with the course's home filled in) run in
order as one script, in a fresh process, from ``notebooks/`` with ``MPLBACKEND=Agg`` and its own
results file; a notebook asserts its claims in its cells, so "ok" means every cell ran and every
asserted claim held. The profile is the environment's (``COURSE_PROFILE``, quick by default) and the
device the notebooks pick (``get_device``: CUDA when present). Written for a lent GPU machine that has
torch, torchvision, transformers and matplotlib but no Jupyter: carry the data a notebook needs
(Fashion-MNIST fits in 64 MiB; notebook 06's GGUF teacher does not, so check 06 where the assets are).
The JSON holds, per notebook: seconds, ok, return code, the last lines of output when it failed, and
the machine (device name, torch version, CUDA version).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_notebooks  # noqa: E402


def notebook_script(source: Path) -> str:
    """The code cells of a notebook source, in order, as one Python script."""
    repository, branch = build_notebooks.home()
    nb = build_notebooks.parse(build_notebooks.with_home(source.read_text(encoding="utf-8"), repository, branch))
    cells = [f"# --- cell {i}\n{cell.source}" for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return "\n\n".join(cells) + "\n"


def machine() -> dict:
    import torch
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None, "python": sys.version.split()[0]}


def run_notebook(source: Path, timeout: float, workdir: Path) -> dict:
    script = workdir / f"{source.stem}.py"
    script.write_text(notebook_script(source), encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "COURSE_RESULTS": str(workdir / f"{source.stem}-results.json"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT / "notebooks", env=env, capture_output=True,
                              text=True, timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code = None
        output = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
        output += f"\n(stopped after {timeout:g} s)"
    seconds = round(time.perf_counter() - start, 1)
    row = {"notebook": source.stem, "seconds": seconds, "ok": code == 0, "returncode": code}
    if code != 0:
        row["tail"] = output[-3000:]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 01,02")
    parser.add_argument("--out", default=str(ROOT / "build" / "gpu_check.json"), help="the JSON file to write")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per notebook")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (default: refuse)")
    parser.add_argument("--sources", default=str(ROOT / "notebooks" / "src"),
                        help="folder of notebook sources NN_*.py (default: the course's)")
    args = parser.parse_args(argv)
    info = machine()
    if info["cuda"] is None and not args.allow_cpu:
        print("gpu_check: no CUDA device here (use --allow-cpu to run on the CPU anyway)", file=sys.stderr)
        return 2
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    sources = [s for s in sorted(Path(args.sources).glob("[0-9][0-9]_*.py"))
               if not wanted or s.stem[:2] in wanted]
    if not sources:
        print(f"gpu_check: no notebook matches --only {args.only!r}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        for source in sources:
            row = run_notebook(source, args.timeout, Path(tmp))
            rows.append(row)
            print(f"{row['notebook']}: {'ok' if row['ok'] else 'FAILED'} in {row['seconds']:.1f} s", flush=True)
            if not row["ok"]:
                print(row["tail"][-1500:], flush=True)
    report = {"machine": info, "profile": os.environ.get("COURSE_PROFILE", "quick"), "notebooks": rows,
              "total_seconds": round(sum(r["seconds"] for r in rows), 1), "all_ok": all(r["ok"] for r in rows)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"gpu_check: {sum(r['ok'] for r in rows)}/{len(rows)} notebooks ok, {report['total_seconds']:.0f} s in all "
          f"on {info['device']}; wrote {out}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
