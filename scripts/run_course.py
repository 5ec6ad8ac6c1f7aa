"""Run the whole course: execute every notebook, time it, export HTML and slides, write the report.

    python scripts/run_course.py                 # what `make course` runs
    python scripts/run_course.py --only 01,02    # a subset (by number or full name)
    python scripts/run_course.py --slides-only   # decks only, nothing executed (`make slides`)

For each ``notebooks/NN_*.ipynb`` in order: execute it with nbclient in a kernel of this very
Python (cwd ``notebooks/``, 900 s per cell), record its wall time under ``suite`` in
``build/results.json`` (or ``$COURSE_RESULTS``), and write ``build/notebooks/NAME.ipynb``
(executed), ``build/html/NAME.html`` and ``build/slides/NAME.slides.html`` (solutions removed,
reveal.js and MathJax copied alongside, so everything opens offline). Then render
``build/report.md``. Nothing outside ``build/`` is written: the README's results table is
refreshed only by a maintainer (``make publish-results``). The quick profile (default) runs with
``COURSE_OFFLINE=1``; ``COURSE_PROFILE=full`` allows downloads. Exits non-zero if any notebook
failed (after trying them all).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent  # scripts/ lives in the checkout; its course_lib is the one imported
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import build_slides  # noqa: E402  (scripts/build_slides.py)
from course_lib import paths  # noqa: E402

BUILD = paths.build_dir()
CELL_TIMEOUT = 900
KERNEL_NAME = "kd-course-current-env"


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """Keep the notebooks named in ``only`` ("01,02" or "02_kd_loss"); error on an unknown name."""
    if not only:
        return notebooks
    wanted = [w.strip().removesuffix(".ipynb") for w in only.split(",") if w.strip()]
    chosen = []
    for want in wanted:
        hits = [p for p in notebooks if p.stem == want or p.stem.startswith(want + "_")]
        if not hits:
            raise SystemExit(f"--only: no notebook matches {want!r} (have: {', '.join(p.stem for p in notebooks)})")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def kernel_environment() -> dict[str, str]:
    """The kernels' environment: offline unless COURSE_PROFILE=full, inline figures, passive OpenMP."""
    env = dict(os.environ)
    if env.get("COURSE_PROFILE", "quick").lower() != "full":
        env["COURSE_OFFLINE"] = "1"
    # make exports MPLBACKEND=Agg for scripts; the kernel needs the inline backend so that the
    # executed notebooks, HTML pages and decks keep their figures
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silences a debugpy warning on frozen modules
    return env


def _kernel_manager():
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher`` (this environment),
    whatever kernelspecs are installed."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == KERNEL_NAME:
                return KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name="KD course (current env)",
                    language="python",
                    resource_dir="",
                )
            return super().get_kernel_spec(kernel_name)

    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=CurrentEnvSpecs())


def execute(path: Path, timeout: int = CELL_TIMEOUT):
    """Execute a notebook in ``notebooks/``; returns (executed node, seconds, error or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.util import run_sync

    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=timeout,
        startup_timeout=120,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute(env=kernel_environment())
    except Exception as exc:  # CellExecutionError, timeouts, dead kernels: keep going
        error = exc
    finally:
        # nbclient shuts down only kernels whose manager it created (owns_km); this one is ours, so an
        # executed notebook's kernel (torch, its data, ~1 GB) would otherwise live until the run ends
        if client.km is not None and client.km.has_kernel:
            run_sync(client.km.shutdown_kernel)(now=True)
    return nb, time.perf_counter() - start, error


def _write_outputs(nb, name: str) -> None:
    import nbformat

    (BUILD / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(BUILD / "notebooks" / f"{name}.ipynb"))
    build_slides.build_html(nb, BUILD / "html", name=name)
    build_slides.build_deck(nb, BUILD / "slides", name=name)


def _record_run_info() -> None:
    from course_lib.results import record_meta

    versions = {}
    for dist in ("torch", "torchvision", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    record_meta(
        profile=os.environ.get("COURSE_PROFILE", "quick").lower(),
        python=sys.version.split()[0],
        cpus=os.cpu_count(),
        date=time.strftime("%Y-%m-%d"),
        **versions,
    )


def run(notebooks: list[Path], timeout: int = CELL_TIMEOUT) -> list[str]:
    """Execute and export each notebook; returns the names of those that failed."""
    from course_lib.results import record_suite

    failed = []
    _record_run_info()
    for path in notebooks:
        name = path.stem
        print(f"[run_course] {name}: executing ...", flush=True)
        nb, seconds, error = execute(path, timeout)
        record_suite(name, seconds)
        status = "ok" if error is None else "FAILED"
        print(f"[run_course] {name}: {status} in {seconds:.1f} s", flush=True)
        if error is not None:
            failed.append(name)
            print(f"[run_course] {name}: {type(error).__name__}: {str(error)[-3000:]}", file=sys.stderr, flush=True)
        try:
            _write_outputs(nb, name)
        except Exception:
            failed.append(f"{name} (export)")
            traceback.print_exc()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 01,02")
    parser.add_argument("--slides-only", action="store_true",
                        help="build decks without executing (from build/notebooks/ when present, else notebooks/)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)

    notebooks = select(build_slides.course_notebooks(), args.only)
    if not notebooks:
        print("[run_course] no notebooks/NN_*.ipynb found", file=sys.stderr)
        return 1

    if args.slides_only:
        names = [p.stem for p in notebooks]
        for source in build_slides.deck_sources(names):
            deck = build_slides.build_deck(source, BUILD / "slides")
            print(f"[run_course] deck {deck.relative_to(REPO_ROOT)} (from {source.relative_to(REPO_ROOT)})")
        return 0

    failed = run(notebooks, args.timeout)

    from course_lib.results import results_path, write_report

    report = write_report()
    print(f"[run_course] results: {results_path()}  report: {report}")
    if failed:
        print(f"[run_course] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"[run_course] all {len(notebooks)} notebooks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
