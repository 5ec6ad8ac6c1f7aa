"""The command line, ``python -m course_lib.grading`` (from the repository root)::

    python -m course_lib.grading exercises [--only ex01] [--min-score 0.8] [-v]   # score table
    python -m course_lib.grading class SUBMISSIONS --out gradebook.csv [--solutions DIR]
    python -m course_lib.grading generate                                       # solutions/ -> exercises/
    python -m course_lib.grading check-sync                                     # exit 1 if stale

``--time-limit``, ``--file-time-limit``, ``--memory-limit`` and ``--isolation`` set the limits for
grading and ``class``. ``main(argv)`` returns the exit status (``__main__`` exits with it).
"""
from __future__ import annotations

import argparse
import sys

from course_lib.grading.base import GradingError, Limits
from course_lib.grading.generate import MarkerError, check_exercises_in_sync, generate_exercises
from course_lib.grading.grader import grade, grade_class
from course_lib.grading.sandbox import LEVELS, network_isolation, set_isolation


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=None, help="module prefix to grade, e.g. ex01 (repeatable)")
    parser.add_argument("--time-limit", type=float, default=Limits.time_limit, metavar="SECONDS",
                        help="seconds to import a file and for each check (default %(default)g)")
    parser.add_argument("--file-time-limit", type=float, default=Limits.file_time_limit, metavar="SECONDS",
                        help="seconds for all checks of one file (default %(default)g)")
    parser.add_argument("--memory-limit", type=int, default=Limits.memory_limit, metavar="MIB",
                        help="MiB an answer may allocate, POSIX only (default %(default)d)")
    parser.add_argument("--isolation", choices=LEVELS, default=None,
                        help="use at most this isolation (default: the strongest this system supports)")


def _limits(args) -> dict:
    set_isolation(args.isolation)
    return {"time_limit": args.time_limit, "file_time_limit": args.file_time_limit,
            "memory_limit": args.memory_limit}


def _main_class(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading class", description=(
        "Grade every student folder of SUBMISSIONS (files named as in exercises/), each file in its own "
        "child process, and write a gradebook: one CSV row per student and exercise."))
    parser.add_argument("submissions", help="folder with one folder per student")
    parser.add_argument("--out", required=True, help="gradebook CSV to write")
    parser.add_argument("--solutions", default=None, metavar="DIR",
                        help="reference answers kept outside the course repository: graded first (must get "
                             "full marks) and unreadable from the answers")
    _add_limits(parser)
    args = parser.parse_args(argv)
    try:
        if args.solutions is not None:
            reference = grade(args.solutions, args.only, forbid=[args.submissions], **_limits(args))
            if reference.fraction < 1.0:
                print(reference.table(verbose=True))
                print(f"error: the solutions in {args.solutions} do not get full marks: the checks and the "
                      "solutions disagree", file=sys.stderr)
                return 2
            print(f"solutions in {args.solutions}: full marks")
        print(f"isolation: one process per file; {network_isolation()}", flush=True)

        def progress(student, report):
            print(f"  {student}: {report.earned}/{report.total}", flush=True)

        book = grade_class(args.submissions, args.only, solutions=args.solutions, progress=progress,
                           **_limits(args))
    except (FileNotFoundError, ValueError, GradingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(book.table())
    print(f"wrote {book.write_csv(args.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("grade", "class", "generate", "check-sync", "table") \
        else "grade"
    prog = f"python -m course_lib.grading {command}"
    if command == "class":
        return _main_class(argv)
    if command == "table":
        parser = argparse.ArgumentParser(prog=prog, description=(
            "Print the exercise table (function, level, points, time, task) of exercise files, for their "
            "notebook's exercise cell."))
        parser.add_argument("modules", nargs="+", help="exercise file stems, e.g. ex02_kd_loss")
        args = parser.parse_args(argv)
        from course_lib.grading.checks import CHECK_MODULES, exercise_table
        unknown = [m for m in args.modules if m not in CHECK_MODULES]
        if unknown:
            print(f"error: unknown exercise files {unknown}; known: {CHECK_MODULES}", file=sys.stderr)
            return 2
        for module in args.modules:
            print(f"{module}:\n{exercise_table(module)}\n")
        return 0
    if command in ("generate", "check-sync"):
        parser = argparse.ArgumentParser(prog=prog, description=(
            "Write exercises/ from solutions/." if command == "generate"
            else "Exit 1 if exercises/ differs from what `generate` would write."))
        parser.add_argument("--src", default=None, help="solutions folder (default: <repo>/solutions)")
        parser.add_argument("--dst", default=None, help="exercises folder (default: <repo>/exercises)")
        args = parser.parse_args(argv)
        try:
            if command == "generate":
                for path in generate_exercises(args.src, args.dst):
                    print(f"wrote {path}")
                return 0
            problems = check_exercises_in_sync(args.src, args.dst)
        except (MarkerError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for p in problems:
            print(p)
        print("exercises/ is out of date: run `python -m course_lib.grading generate`" if problems
              else "exercises/ is in sync with solutions/")
        return 1 if problems else 0

    parser = argparse.ArgumentParser(prog="python -m course_lib.grading", description=(
        "Grade a folder of answers (each file in its own child process) and print a score table. Exit "
        "status 0 unless --min-score is given and not reached. Other commands: class, generate, check-sync, table."))
    parser.add_argument("folder", nargs="?", default=None, help="folder to grade (default: <repo>/exercises)")
    parser.add_argument("--min-score", type=float, default=None, metavar="FRACTION",
                        help="exit 1 if the earned fraction of points is below FRACTION (0..1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="full messages and tracebacks")
    _add_limits(parser)
    args = parser.parse_args(argv)
    try:
        report = grade(args.folder, only=args.only, **_limits(args))
    except (FileNotFoundError, ValueError, GradingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table(verbose=args.verbose))
    if args.min_score is not None and report.fraction < args.min_score:
        print(f"score {report.fraction:.3f} is below --min-score {args.min_score}")
        return 1
    return 0
