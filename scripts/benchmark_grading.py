"""How long the autograder's class mode takes here: a class of N copies of solutions/ graded at each
isolation level this machine supports. Writes build/benchmark_grading.json (figures go to a file,
never into a test).

    .venv/bin/python scripts/benchmark_grading.py [--students 16] [--only ex01 --only ex02]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from course_lib import grading
from course_lib.paths import build_dir, solutions_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=16)
    parser.add_argument("--only", action="append", default=None, help="exercise prefix (repeatable; default all)")
    parser.add_argument("--out", default=str(build_dir() / "benchmark_grading.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kd-grading-bench-"))
    try:
        for i in range(args.students):
            shutil.copytree(solutions_dir(), root / f"student{i:02d}")
        figures = {"students": args.students, "only": args.only, "levels": {}}
        for level in grading.supported_levels():
            grading.set_isolation(level)
            start = time.perf_counter()
            book = grading.grade_class(root, args.only)
            seconds = time.perf_counter() - start
            files = sum(len(r.by_module()) for r in book.reports.values())
            full = all(r.fraction == 1.0 for r in book.reports.values())
            figures["levels"][level] = {"seconds": round(seconds, 1), "files": files,
                                        "seconds_per_file": round(seconds / files, 2), "all_full_marks": full}
            print(f"{level:<18} {seconds:6.1f} s for {args.students} students, {files} files "
                  f"({seconds / files:.2f} s per file), full marks: {full}", flush=True)
        grading.set_isolation(None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
