"""Exercises and autograder.

One source of truth, the nbgrader/otter convention: ``solutions/`` holds reference answers whose
solution regions are marked ::

    def entropy(probs):
        \"\"\"The docstring states the task and the equation; it is kept in the exercise.\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

and ``exercises/`` is generated from it: each marked region becomes a stub at the markers'
indentation, ``raise NotImplementedError("Exercise: implement entropy()")``; everything outside the
markers is copied unchanged. Never edit ``exercises/`` by hand (a test fails when it is out of date).

What runs where
---------------
Each answer file is graded in its own child process, ``python -I -B grading_runner.py ANSWER``
(``course_lib/grading_runner.py``, executed by path: it imports torch and the answer, never
``course_lib``, so nothing of the reference is in the child's memory). A check
(``course_lib.grading_checks``) is plain Python in this, the parent, process, in three parts:

(a) inputs: built here from seeded generators;
(b) calls: the check receives a stand-in for the student's function (``RemoteFunction``); calling
    it sends the function's name and the arguments to the child, which runs the student's
    function and sends back its result and the arguments as the function left them.
    ``f.value_and_grad(*args, wrt=0)`` also returns the gradient of the 0-dim result with respect
    to argument ``wrt`` (``grad_outputs=w``: of ``(result * w).sum()``), computed in the child. A
    model travels as a description (``grading_checks.module_arg``) that the child builds, and a
    model comes back as a ``ModuleReport`` (its identity, modes, ``requires_grad`` flags, values
    and storage addresses); ``f.inspect(*args, probe_input=x)`` also returns the arguments as the
    function left them and the returned model's outputs before and after the child re-initialised
    the model it was given;
(c) comparison: here, against ``course_lib.losses`` (the tested reference), hand-computed values
    and limits; a wrong value that matches a known mistake is named in the message.

The checks, the reference and the scores never share a process with the student's code, so an
answer cannot reach the reference (through the call stack, ``sys.modules`` or an import), patch
the grader, or change its own or anyone else's score. All checks of one file share one child (one
torch import, 1-2 s, per file). A lost child (timeout, exit, crash) costs the running check and
the remaining checks of the same function; the file's other functions go on in a fresh child.

Limits and guards (``Limits``; the flags they raise are in brackets):

- time, enforced from outside: ``time_limit`` seconds (default 10) to import the answer and for
  each check, ``file_time_limit`` (default 60) for all of a file's checks; past it the parent
  kills the child's whole process group [timeout]. Starting python and torch is not counted.
- memory: ``memory_limit`` MiB (default 2048) of address space on top of what python and torch
  reserve at import (about 3 GiB of mostly untouched virtual memory), as ``RLIMIT_AS``, with
  ``RLIMIT_CPU`` and ``RLIMIT_FSIZE`` (64 MiB) as backstops, set by the child on itself, soft and
  hard, before the answer runs [memory]. POSIX only: on Windows there is no memory limit.
- isolation, structural where the system allows it (``isolation()``; each report and gradebook
  says which level was in force): (1) ``namespaces``: the child starts (``unshare -rnmpf``) in
  its own user, mount, process and network namespaces, chrooted into a tmpfs that holds only
  python, torch (read-only), a copy of the runner, the answer file (read-only) and its scratch
  folder: the reference answers, ``course_lib``, other submissions and the grader's ``/proc``
  entries do not exist for it, whatever call it uses; (2) ``network namespace`` (``unshare
  -rn``) where mounts are not allowed; (3) the audit hook alone. A level whose child does not
  start is dropped for the rest of the run (with a message on stderr); ``--isolation`` caps it.
- at every level an audit hook (``sys.addaudithook``, which cannot be removed) ends the child at
  the first socket operation [network]; when the answer imports ``course_lib`` under any
  spelling, or reads a file of ``course_lib``, of the solutions or, in class mode, of another
  submission [forbidden import]; and when it starts a process, sends a signal, uses ``ctypes``,
  opens a folder with ``os.open`` (a handle for ``dir_fd=`` paths) or writes outside its scratch
  folder [sandbox]. ``import course_lib`` written in the source is rejected
  by a static scan before anything runs [forbidden import]; either way the file scores zero.
- inputs: the parent compares the arguments the child sends back with those it sent (tensors,
  lists of tensors, a model's parameters and buffers); a function that modifies its inputs in
  place scores zero on that check [inputs modified].
- how a value is computed is not policed. An earlier version banned ``torch.autograd`` in
  ``kd_gradient`` by wrapping torch's autograd functions in the child; an answer read the original
  out of the wrapper's ``__closure__`` (a fresh ``torch._C._ImperativeEngine``, forward-mode AD or
  ``gc.get_objects()`` would do as well). Inside the process that runs the answer, no guard can
  tell autograd from algebra, so the rule was dropped rather than kept as a false promise: a
  derivation is graded by its values (and by questions whose answer is the derivation's
  consequence), never by which torch functions ran.
- replies: a reply larger than its request plus 4 MiB (a call's arguments come back with it; no
  check expects more) ends the child unread [memory].
- exits: ``sys.exit`` is caught in the child and reported; ``os._exit`` and crashes show as a
  missing reply and the exit status [exit], [crash]. Grading always finishes and prints its table.

These guards make a cheating or broken answer fail loudly and keep it away from the grader, the
reference and other students' files. Under ``namespaces`` the files are out of reach structurally;
at the weaker levels the hook is a list of intercepted calls that a torch extension or another
native route could go around: there, grade under an account without secrets, or in a container.
What an answer prints is discarded.

Class mode and the solutions
----------------------------
``solutions/`` ships with the course: students who clone the repository have the reference
answers, so scores from it are feedback, not an exam. For marks, keep the solutions elsewhere,
give students a copy without them (``generate --src DIR`` writes ``exercises/`` from any folder),
and grade with ``class``: SUBMISSIONS holds one folder per student with files named as in
``exercises/``; students are graded one after another. ``--solutions DIR`` grades DIR first and
stops (exit status 2) unless it gets full marks, and keeps it unreadable from the answers, as are
``<repo>/solutions`` and the other submissions. The checks compare with ``course_lib``'s tested
functions, not with the solution files. The gradebook (CSV) has one row per student and exercise:
the points of each check, total, max, percent and flags.

Command line (from the repository root)::

    python -m course_lib.grading exercises [--only ex01] [--min-score 0.8] [-v]   # score table
    python -m course_lib.grading class SUBMISSIONS --out gradebook.csv [--solutions DIR]
    python -m course_lib.grading generate                                       # solutions/ -> exercises/
    python -m course_lib.grading check-sync                                     # exit 1 if stale

``--time-limit``, ``--file-time-limit`` and ``--memory-limit`` set the limits for ``grade`` and
``class``. From a notebook: ``from course_lib.grading import grade; grade("../exercises",
only="ex01")`` (the same isolation; a few seconds per file).
"""
from __future__ import annotations

import argparse
import ast
import builtins
import csv
import dataclasses
import functools
import io
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from course_lib import grading_runner as _runner
from course_lib.grading_checks import CHECKS, Check, ModuleReport
from course_lib.paths import exercises_dir, solutions_dir

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HEADER = ("# GENERATED from {source} by `python -m course_lib.grading generate` - do not edit.\n"
          "# (Course authors: edit {source} and regenerate. Students: replace each\n"
          "# `raise NotImplementedError` below with your code.)\n")
FORBIDDEN_PACKAGE = "course_lib"
PACKAGE_DIR = Path(__file__).resolve().parent
RUNNER = PACKAGE_DIR / "grading_runner.py"

# Flags: what happened to an answer, besides its points (a gradebook column).
TIMEOUT, EXIT, CRASH, MEMORY = "timeout", "exit", "crash", "memory"
FORBIDDEN_IMPORT, NETWORK, SANDBOX = "forbidden import", "network", "sandbox"
INPUTS_MODIFIED, MISSING, SYNTAX = "inputs modified", "missing", "syntax error"
_EXIT_STATUS_FLAGS = {_runner.FORBIDDEN: FORBIDDEN_IMPORT, _runner.NETWORK: NETWORK, _runner.SANDBOX: SANDBOX}
LOAD_ROW = "(loads; no course_lib use)"
MAX_REPLY_BYTES = 256 * 2**20
# A reply may be this much larger than its request (which it echoes: the arguments come back) plus a
# fixed allowance: no check expects more, and reading a larger one would only cost the grader memory.
REPLY_ALLOWANCE = 4 * 2**20
UNPAID = "passed, but not counted"  # how a row starts whose check passed but is not paid (_paid_with_a_value)

# Anything that looks like a marker but is not exactly one ("## BEGIN SOLUTION", "### end solution").
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)\s+SOLUTION\b", re.IGNORECASE)
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")


class MarkerError(ValueError):
    """Unbalanced, nested or malformed solution markers."""


# --------------------------------------------------------------------------- generator

def strip_solutions(text: str, filename: str = "<string>") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region with a stub.

    The stub (``# YOUR CODE HERE`` and ``raise NotImplementedError("Exercise: implement f()")``)
    takes the BEGIN marker's indentation; ``f`` is the innermost enclosing ``def``. Raises
    ``MarkerError`` (with the line number) for an END without BEGIN, a BEGIN without END, nested
    regions, an END indented differently from its BEGIN, or a malformed marker.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    open_at = None  # (line number, indentation) of the open BEGIN marker
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        where = f"{filename}:{number}"
        if stripped == BEGIN:
            if open_at is not None:
                raise MarkerError(f"{where}: nested {BEGIN} (the one at line {open_at[0]} is not closed)")
            indent = line[: len(line) - len(line.lstrip())]
            open_at = (number, indent)
            newline = line[len(line.rstrip("\r\n")):] or "\n"
            name = _enclosing_function(lines[: number - 1], indent)
            task = f"implement {name}()" if name else f"complete the block at line {number}"
            out.append(f"{indent}# YOUR CODE HERE{newline}")
            out.append(f'{indent}raise NotImplementedError("Exercise: {task}"){newline}')
        elif stripped == END:
            if open_at is None:
                raise MarkerError(f"{where}: {END} without a matching {BEGIN}")
            indent = line[: len(line) - len(line.lstrip())]
            if indent != open_at[1]:
                raise MarkerError(f"{where}: {END} is indented differently from the {BEGIN} at line {open_at[0]}")
            open_at = None
        elif _MARKER_LIKE.match(line):
            raise MarkerError(f"{where}: malformed marker {stripped!r}; write exactly {BEGIN!r} or {END!r}")
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise MarkerError(f"{filename}:{open_at[0]}: {BEGIN} is never closed by {END}")
    return "".join(out)


def _enclosing_function(previous_lines: list[str], indent: str) -> str | None:
    """Name of the innermost ``def`` above the marker whose body contains it."""
    for line in reversed(previous_lines):
        match = _DEF.match(line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def _sources(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def _render(src: Path, path: Path) -> str:
    source = f"{src.name}/{path.relative_to(src).as_posix()}"
    return HEADER.format(source=source) + strip_solutions(path.read_text(encoding="utf-8"), str(path))


def _default_dirs(src, dst) -> tuple[Path, Path]:
    return (Path(src) if src is not None else solutions_dir(),
            Path(dst) if dst is not None else exercises_dir())


def _expected(src: Path, dst: Path) -> dict[Path, str]:
    if not src.is_dir():
        raise FileNotFoundError(f"no solutions folder at {src}")
    return {dst / p.relative_to(src): _render(src, p) for p in _sources(src)}


def _generated_files(dst: Path) -> list[Path]:
    """Files in ``dst`` that carry our header (so a stale one can be recognised and removed)."""
    if not dst.is_dir():
        return []
    return [p for p in _sources(dst)
            if p.read_text(encoding="utf-8").startswith(HEADER.split("{source}")[0])]


def generate_exercises(src: str | Path | None = None, dst: str | Path | None = None) -> list[Path]:
    """Write ``dst`` (default ``<repo>/exercises``) from ``src`` (default ``<repo>/solutions``).

    Every ``*.py`` file is copied with a GENERATED header and its solution regions stubbed out;
    previously generated files whose source is gone are deleted. Returns the files written. All
    files are rendered before any is written, so a marker error leaves ``dst`` untouched.
    """
    src, dst = _default_dirs(src, dst)
    expected = _expected(src, dst)
    for path in _generated_files(dst):
        if path not in expected:
            path.unlink()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    return sorted(expected)


def check_exercises_in_sync(src: str | Path | None = None, dst: str | Path | None = None) -> list[str]:
    """Problems that make ``dst`` differ from what ``generate_exercises`` would write; [] if in sync."""
    src, dst = _default_dirs(src, dst)
    problems = []
    expected = _expected(src, dst)
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"out of date: {path}")
    problems += [f"stale (its source is gone): {p}" for p in _generated_files(dst) if p not in expected]
    return problems


# --------------------------------------------------------------------------- static scan

def forbidden_references(source: str) -> list[str]:
    """Ways in which an answer's source reaches into ``course_lib`` (whose reference answers are graded against).

    Flags ``import course_lib...``, ``from course_lib... import`` and string constants naming the
    package outside docstrings (``importlib.import_module("course_lib.losses")``, ``sys.modules[...]``).
    """
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and _is_forbidden(node.module or ""):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and _is_forbidden(node.value)):
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def _is_forbidden(name: str) -> bool:
    return name == FORBIDDEN_PACKAGE or name.startswith(FORBIDDEN_PACKAGE + ".")


# --------------------------------------------------------------------------- the child process

@dataclass(frozen=True)
class Limits:
    """Seconds and MiB an answer file may use (see the module docstring)."""
    time_limit: float = 10.0        # importing the answer, and each check
    file_time_limit: float = 60.0   # all checks of one file (restarts included, startups not)
    memory_limit: int = 2048        # MiB of address space beyond what python + torch reserve
    startup_limit: float = 120.0    # python + torch import in the child (not the student's time)


class GradingError(RuntimeError):
    """The grader itself could not run (e.g. the child process does not start): not a student's fault."""


class ChildLost(BaseException):
    """The child stopped answering: killed on a time limit, exited, crashed, or stopped by a guard.

    A ``BaseException``, so that a check's own ``except Exception`` never swallows it.
    """

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag, self.message = flag, message


class StudentError(Exception):
    """An exception the student's function raised in the child, raised again here.

    Its class also derives from the builtin exception the original derives from (a check can
    ``except ValueError``); ``kind`` is the original class name, ``details`` its traceback.
    """
    kind = "Exception"
    message = ""
    details = ""


class _MissingFunction(BaseException):
    pass


@functools.cache
def _student_error_class(builtin_name: str) -> type[StudentError]:
    base = getattr(builtins, builtin_name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        return StudentError
    try:
        return type(f"Student{base.__name__}", (StudentError, base), {})
    except TypeError:  # an incompatible instance layout
        return StudentError


def _student_error(info) -> StudentError:
    info = info if isinstance(info, dict) else {}
    kind, message = str(info.get("type", "Exception")), str(info.get("message", ""))
    try:
        error = _student_error_class(str(info.get("builtin", "Exception")))(f"{kind}: {message}")
    except Exception:  # noqa: BLE001 - a builtin whose constructor wants other arguments
        error = StudentError(f"{kind}: {message}")
    error.kind, error.message, error.details = kind, message, str(info.get("traceback", ""))
    return error


# How a child is isolated, strongest first (``isolation()`` says which is in force here). The
# audit hook of ``grading_runner`` runs at every level; it is the only guard at the last one.
NAMESPACES = "namespaces"   # own mount, process and network namespaces; a filesystem of python, torch,
#                             the answer and a scratch folder only (Linux, unprivileged user namespaces)
NETWORK_ONLY = "network namespace"
HOOK_ONLY = "audit hook"
ISOLATION_TEXT = {
    NAMESPACES: "namespaces: the answer sees only python, torch, its own file and a scratch folder (mount, "
                "process and network namespaces) + audit hook",
    NETWORK_ONLY: "network namespace (unshare -rn) + audit hook; files guarded by the audit hook only",
    HOOK_ONLY: "audit hook only (no namespaces on this system)",
}
_DEMOTED: set[str] = set()  # a level whose child did not start here: never tried again in this process

# Run by ``unshare -rnmpf --kill-child sh -c SCRIPT sh ROOT [MODE PATH]... -- COMMAND...`` as root of a
# new user namespace: a tmpfs at ROOT gets the MODE entries (``ro``/``rw``/``dev``: bind-mount PATH at
# ROOT/PATH, read-only for ro; ``link``: copy the symlink PATH; ``hide``: an empty read-only tmpfs over
# ROOT/PATH where it exists, so a forbidden folder inside a bound one is empty), a fresh /proc of the
# new process namespace (the grader's own processes are not in it), then COMMAND runs chrooted in ROOT.
_SANDBOX_SCRIPT = r"""set -eu
root=$1; shift
mount -t tmpfs -o mode=0755,size=8m kd-grading "$root"
while [ "$1" != "--" ]; do
  mode=$1; src=$2; shift 2
  dst=$root$src
  if [ "$mode" = hide ]; then
    if [ -d "$dst" ]; then mount -t tmpfs -o ro,size=4k,mode=0555 hidden "$dst"; fi
    continue
  fi
  if [ ! -e "$src" ] && [ ! -L "$src" ]; then continue; fi
  if [ "$mode" = link ]; then mkdir -p "$(dirname "$dst")"; ln -s "$(readlink "$src")" "$dst"; continue; fi
  if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; fi
  mount --rbind "$src" "$dst"
  if [ "$mode" = ro ]; then
    mount -o remount,bind,ro "$dst" 2>/dev/null || mount -o remount,bind,ro,nosuid,nodev "$dst"
  fi
done
shift
mkdir -p "$root/proc"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
exec chroot "$root" "$@"
"""


def _system_entries() -> list[tuple[str, str]]:
    """What every sandboxed child needs besides its answer: the system's libraries, python, torch."""
    entries = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr"):
        if os.path.islink(top):
            entries.append(("link", top))
        elif os.path.isdir(top):
            entries.append(("ro", top))
    python = Path(os.path.realpath(sys.executable))
    torch_site = Path(torch.__file__).resolve().parents[1]
    for path in (Path(sys.base_prefix).resolve(), python.parent, torch_site, Path("/etc/ld.so.cache")):
        entries.append(("ro", str(path)))
    entries += [("dev", d) for d in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")]
    return entries


@functools.cache
def _namespace_support() -> tuple[str, ...]:
    """The isolation levels this machine supports (probed once; each probe takes well under a second)."""
    exe = shutil.which("unshare") if sys.platform.startswith("linux") else None
    if not exe or not shutil.which("chroot") or not shutil.which("mount"):
        levels: tuple[str, ...] = ()
    else:
        levels = ()
        root = tempfile.mkdtemp(prefix="kd-grading-probe-")
        try:
            command = [exe, "-rnmpf", "--kill-child", "sh", "-c", _SANDBOX_SCRIPT, "sh", root,
                       *[x for e in _system_entries() for x in e], "--",
                       os.path.realpath(sys.executable), "-I", "-c", "import os; os.stat('/proc/self')"]
            if _quiet_ok(command):
                levels += (NAMESPACES,)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if _quiet_ok([exe, "-rn", "true"]):
            levels += (NETWORK_ONLY,)
    return levels + (HOOK_ONLY,)


def _quiet_ok(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_ORDER = (NAMESPACES, NETWORK_ONLY, HOOK_ONLY)
_CAP: list[str] = []  # set_isolation(): the strongest level to use (for tests, or a system whose namespaces misbehave)


def set_isolation(level: str | None) -> None:
    """Use at most ``level`` (a key of ``ISOLATION_TEXT``; ``None``: the strongest available)."""
    if level is not None and level not in _ORDER:
        raise ValueError(f"isolation must be one of {_ORDER}, got {level!r}")
    _CAP[:] = [] if level is None else [level]


def isolation() -> str:
    """The isolation a grading child gets on this machine now (a key of ``ISOLATION_TEXT``): the
    strongest level that is supported, allowed by ``set_isolation`` and has not failed to start."""
    weakest_allowed = _ORDER.index(_CAP[0]) if _CAP else 0
    return next(level for level in _namespace_support()
                if level not in _DEMOTED and _ORDER.index(level) >= weakest_allowed)


def network_isolation() -> str:
    """How the child is kept off the network (and, with namespaces, off the file system) here."""
    return ISOLATION_TEXT[isolation()]


def _child_env(workdir: str) -> dict[str, str]:
    keep = ("PATH", "LD_LIBRARY_PATH", "SYSTEMROOT", "WINDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", CUDA_VISIBLE_DEVICES="",
               HOME=workdir, TMPDIR=workdir, TEMP=workdir, TMP=workdir, XDG_CACHE_HOME=workdir,
               MPLCONFIGDIR=workdir)
    return env


def _read_exact(stream, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _frame(message) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    return struct.pack(">Q", len(data)) + data


class _Child:
    """One child process running ``grading_runner.py`` on one answer file.

    Replies are read by a thread into a queue, so every wait has a deadline (on every platform);
    requests are written by another thread, so a child that stops reading cannot block us.
    """

    def __init__(self, answer: Path, limits: Limits, forbidden: list[Path]):
        while True:
            level = isolation()
            try:
                self._start(answer, limits, forbidden, level)
                return
            except GradingError as e:
                if level == HOOK_ONLY:
                    raise
                _DEMOTED.add(level)  # e.g. a namespace where torch cannot load: go on one level down
                print(f"grading: the child did not start under {level!r}; using a weaker isolation from now "
                      f"on ({str(e)[:2000]})", file=sys.stderr, flush=True)

    def _start(self, answer: Path, limits: Limits, forbidden: list[Path], level: str):
        self.limits, self.isolation = limits, level
        self.base = Path(tempfile.mkdtemp(prefix="kd-grading-"))
        self.workdir = str(self.base / "work")
        runner = self.base / "runner" / RUNNER.name  # a copy: the package folder itself is off limits
        for folder in (self.workdir, runner.parent):
            os.mkdir(folder)
        shutil.copyfile(RUNNER, runner)
        self._stderr = tempfile.TemporaryFile()
        cpu = int(limits.startup_limit + limits.file_time_limit + 30)
        python = sys.executable
        prefix: list[str] = []
        if level == NAMESPACES:
            python = os.path.realpath(sys.executable)
            # hide first (a forbidden folder inside a bound one, e.g. an installed course_lib), then the
            # answer's own file (its folder, which may sit in a forbidden one, holds only that file)
            entries = [*_system_entries(), *(("hide", str(root)) for root in forbidden),
                       ("ro", str(runner.parent)), ("ro", str(answer)), ("rw", self.workdir)]
            os.mkdir(self.base / "root")
            prefix = [shutil.which("unshare") or "unshare", "-rnmpf", "--kill-child", "sh", "-c", _SANDBOX_SCRIPT,
                      "sh", str(self.base / "root"), *[x for e in entries for x in e], "--"]
        elif level == NETWORK_ONLY:
            prefix = [shutil.which("unshare") or "unshare", "-rn"]
        command = [*prefix, python, "-I", "-B", str(runner), str(answer),
                   "--workdir", self.workdir, "--memory-mb", str(int(limits.memory_limit)),
                   "--cpu-seconds", str(cpu), "--sys-path", str(Path(torch.__file__).resolve().parents[1])]
        for root in forbidden:
            command += ["--forbid", str(root)]
        group = ({"start_new_session": True} if os.name == "posix"
                 else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)})
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         cwd=self.workdir, env=_child_env(self.workdir), **group)
        except OSError as e:
            shutil.rmtree(self.base, ignore_errors=True)
            raise GradingError(f"the grading process could not be started: {e}") from e
        self.reply_limit = REPLY_ALLOWANCE
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()
        try:
            ready = self.receive(time.monotonic() + limits.startup_limit, "starting python and torch")
        except ChildLost as lost:
            tail = self._stderr_tail()
            self.close()
            raise GradingError(f"the grading process did not start ({lost.message}):\n{tail}") from None
        if "ready" not in ready:
            self.close()
            raise GradingError(f"the grading process did not start: unexpected reply {sorted(ready)}")

    # -- threads
    def _read(self):
        stream = self.proc.stdout
        try:
            while True:
                head = _read_exact(stream, 8)
                if head is None:
                    break
                (size,) = struct.unpack(">Q", head)
                if size > min(self.reply_limit, MAX_REPLY_BYTES):
                    self._inbox.put(("too large", f"a reply of {size / 2**20:.1f} MiB where this call expects at "
                                                  f"most {min(self.reply_limit, MAX_REPLY_BYTES) / 2**20:.1f} MiB"))
                    break
                data = _read_exact(stream, size)
                if data is None:
                    break
                try:
                    message = torch.load(io.BytesIO(data), weights_only=True)
                except Exception as e:  # noqa: BLE001 - anything unreadable ends the session
                    self._inbox.put(("garbled", f"an unreadable reply ({type(e).__name__})"))
                    break
                if not isinstance(message, dict):
                    self._inbox.put(("garbled", f"a reply of type {type(message).__name__}"))
                    break
                self._inbox.put(("message", message))
        except (OSError, ValueError):
            pass
        finally:
            self._inbox.put(("eof", None))

    def _write(self):
        while True:
            data = self._outbox.get()
            if data is None:
                return
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return

    # -- requests
    def receive(self, deadline: float, what: str) -> dict:
        """The next reply; ``ChildLost`` when none comes before ``deadline`` or the child is gone."""
        try:
            kind, message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            raise ChildLost(TIMEOUT, f"timed out: {what} (the process was stopped)") from None
        if kind == "message":
            if "exit" in message:
                self.kill()
                raise ChildLost(EXIT, f"the answer ended the process: {str(message['exit'])[:200]}")
            return message
        if kind == "too large":
            self.kill()
            raise ChildLost(MEMORY, f"the answer returned {message} (the process was stopped)")
        if kind == "garbled":
            self.kill()
            raise ChildLost(CRASH, f"the answer wrote {message} to the grader's channel")
        raise self._lost()

    def request(self, message: dict, deadline: float, what: str) -> dict:
        self._next_id += 1
        message = dict(message, id=self._next_id)
        frame = _frame(message)
        self.reply_limit = REPLY_ALLOWANCE + 3 * len(frame)
        self._outbox.put(frame)
        reply = self.receive(deadline, what)
        if reply.get("id") != self._next_id:
            self.kill()
            raise ChildLost(CRASH, "the answer wrote an unexpected reply to the grader's channel")
        return reply

    def _lost(self) -> ChildLost:
        """Why the child is gone: its exit status, and the guard's own message if it left one."""
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self.proc.returncode
        reason = next((line[len("grader: "):] for line in reversed(self._stderr_tail().splitlines())
                       if line.startswith("grader: ")), "")
        if status in _EXIT_STATUS_FLAGS:
            flag = _EXIT_STATUS_FLAGS[status]
            default = {FORBIDDEN_IMPORT: "used course_lib", NETWORK: "used the network",
                       SANDBOX: "did something answers may not do"}[flag]
            return ChildLost(flag, f"stopped by the grader: {reason or default}")
        if status is not None and status < 0:
            name = _signal_name(-status)
            if name == "SIGXCPU":
                return ChildLost(TIMEOUT, "used up its CPU time (the process was stopped)")
            if name == "SIGXFSZ":
                return ChildLost(SANDBOX, "wrote a file larger than 64 MiB (the process was stopped)")
            if name == "SIGKILL":
                return ChildLost(CRASH, "the process was killed (out of memory?)")
            return ChildLost(CRASH, f"the process crashed ({name})")
        if status is not None and status > 255:  # Windows: an NTSTATUS such as 0xC0000005
            return ChildLost(CRASH, f"the process crashed (status {status:#x})")
        return ChildLost(EXIT, f"the answer ended the process (exit status {status})")

    def _stderr_tail(self, size: int = 4000) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - size))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def kill(self):
        """Kill the child and anything it started (its process group)."""
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def close(self):
        self.kill()
        self._outbox.put(None)
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- what a check receives

class _Opaque:
    """A value the child could not send back (not a tensor, number, string or container of them)."""


@functools.cache
def _opaque_type(name: str) -> type:
    return type(name, (_Opaque,), {})  # so ``type(value).__name__`` names the original type


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"__opaque__"}:
            return _opaque_type(str(value["__opaque__"]))()
        if set(value) == {_runner.MODULE_KEY}:
            return _module_report(value[_runner.MODULE_KEY])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v) for v in value)
    return value


def _sendable(value):
    return value.detach().clone() if torch.is_tensor(value) else value


def _module_report(info) -> ModuleReport | _Opaque:
    try:
        return ModuleReport(str(info["type"]), int(info["id"]), dict(info["training"]), dict(info["requires_grad"]),
                            dict(info["state"]), dict(info["storage"]))
    except (KeyError, TypeError, ValueError):
        return _opaque_type("unreadable module report")()


def _same_tensor(a: torch.Tensor, b) -> bool:
    if not torch.is_tensor(b) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a, b) or ((a == b) | (a.isnan() & b.isnan())).all()) if a.is_floating_point() \
        else torch.equal(a, b)


@dataclass
class Called:
    """What one call in the child returned (``RemoteFunction.inspect``)."""
    value: object
    grad: object
    requires_grad: bool
    args: object                # the arguments as the function left them (models as ModuleReports)
    kwargs: object
    probe_before: object = None  # the returned model's outputs on probe_input (eval mode)
    probe_after: object = None   # ... after the child re-initialised every model argument
    probe_error: StudentError | None = None   # what the returned model's forward raised, if it did


class RemoteFunction:
    """The stand-in for a student's function that a check receives: each call runs in the child.

    ``f(*args, **kwargs)`` returns the result (tensors, numbers, strings and containers of them;
    anything else arrives as an object whose type has the original type's name), raises
    ``StudentError`` (also an instance of the builtin exception the student's derives from) when
    the function raised, and ``AssertionError`` when it modified its inputs in place.
    ``f.value_and_grad(*args, wrt=0, **kwargs)`` returns
    ``(result, gradient)``, the gradient with respect to argument ``wrt`` or None when the result
    is not a differentiable 0-dim tensor (with ``grad_outputs``: of ``(result * grad_outputs).sum()``).
    ``f.inspect(*args, probe_input=None, **kwargs)`` returns a ``Called`` (the result, the arguments
    as the function left them, and the probe of a returned model). A model argument is sent as
    ``grading_checks.module_arg(...)``; a model comes back as a ``grading_checks.ModuleReport``.
    """

    def __init__(self, child: _Child, name: str, flags: set[str], deadline: float, limit: str):
        self.__name__ = name
        self._child, self._flags = child, flags
        self._deadline, self._limit = deadline, limit

    def __call__(self, *args, **kwargs):
        return self._call("plain", args, kwargs, 0).value

    def value_and_grad(self, *args, wrt: int = 0, grad_outputs: torch.Tensor | None = None, **kwargs):
        """``(result, gradient)``: the gradient with respect to argument ``wrt`` of the 0-dim result,
        or with ``grad_outputs`` (a tensor of the result's shape) of ``(result * grad_outputs).sum()``."""
        extra = {} if grad_outputs is None else {"grad_outputs": grad_outputs.detach().clone()}
        reply = self._call("grad", args, kwargs, wrt, extra)
        return reply.value, (reply.grad if reply.requires_grad else None)

    def inspect(self, *args, probe_input: torch.Tensor | None = None, **kwargs) -> Called:
        """Call the function; also return the arguments as it left them (a model as a ``ModuleReport``)
        and, with ``probe_input`` and a model as the result, the result's outputs on ``probe_input``
        in eval mode before and after the child re-initialised every model argument in place."""
        extra = {} if probe_input is None else {"probe": probe_input.detach().clone()}
        return self._call("plain", args, kwargs, 0, extra)

    def _call(self, mode, args, kwargs, wrt, extra=None) -> Called:
        name = self.__name__
        request = {"op": "call", "function": name, "mode": mode, "wrt": wrt,
                   "args": [_sendable(a) for a in args], "kwargs": {k: _sendable(v) for k, v in kwargs.items()},
                   **(extra or {})}
        reply = self._child.request(request, self._deadline, f"{name}() did not return within {self._limit}")
        if "missing" in reply:
            raise _MissingFunction(str(reply["missing"]))
        if "error" in reply:
            error = reply["error"]
            if isinstance(error, dict) and error.get("memory"):
                self._flags.add(MEMORY)
            raise _student_error(error)
        changes = [(f"argument {i + 1}", _changed(a, _item(reply.get("args"), i))) for i, a in enumerate(args)]
        changes += [(f"argument {k}=", _changed(v, _item(reply.get("kwargs"), k))) for k, v in kwargs.items()]
        changed = [f"{where}{': ' + what if what else ''}" for where, what in changes if what is not None]
        if changed:
            self._flags.add(INPUTS_MODIFIED)
            raise AssertionError(f"{name}() modified its input ({'; '.join(changed)}) in place; leave the "
                                 "caller's tensors unchanged (use out-of-place operations, or work on a copy)")
        probe = reply.get("probe")
        probe = probe if isinstance(probe, dict) else {}
        return Called(_decode(reply.get("value")), _decode(reply.get("grad")), bool(reply.get("requires_grad")),
                      _decode(reply.get("args")), _decode(reply.get("kwargs")), _decode(probe.get("before")),
                      _decode(probe.get("after")), _student_error(probe["error"]) if "error" in probe else None)


def _changed(sent, returned) -> str | None:
    """How an argument the child sent back differs from what was sent (None: unchanged, or not
    comparable): a tensor's values, a list's or tuple's tensors, a model's parameters and buffers."""
    if torch.is_tensor(sent):
        return None if _same_tensor(sent, returned) else ""
    if isinstance(sent, (list, tuple)):
        items = [f"item {i}" for i, a in enumerate(sent)
                 if torch.is_tensor(a) and not _same_tensor(a, _item(returned, i))]
        return ", ".join(items) or None
    if _runner.is_module_spec(sent):
        state = sent[_runner.MODULE_KEY]["state"]
        got = _decode(returned)
        if not isinstance(got, ModuleReport):
            return None
        names = [k for k, t in state.items() if not _same_tensor(t, got.state.get(k))]
        return f"the values of {', '.join(names)}" if names else None
    return None


def _item(container, key):
    try:
        return container[key]
    except (TypeError, KeyError, IndexError):
        return None


# --------------------------------------------------------------------------- reports

@dataclass
class Row:
    module: str
    check: str
    function: str
    points: int
    earned: int
    message: str
    details: str = ""  # traceback of a failed check (shown with --verbose)
    flags: tuple[str, ...] = ()


@dataclass
class GradeReport:
    folder: Path
    rows: list[Row] = field(default_factory=list)
    isolation: str = ""  # the weakest isolation any child of this report ran under (ISOLATION_TEXT key)

    @property
    def earned(self) -> int:
        return sum(r.earned for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.points for r in self.rows)

    @property
    def fraction(self) -> float:
        return self.earned / self.total if self.total else 0.0

    def by_module(self) -> dict[str, tuple[int, int]]:
        """``{module: (earned, total)}``."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.rows:
            e, t = out.get(r.module, (0, 0))
            out[r.module] = (e + r.earned, t + r.points)
        return out

    def flags(self) -> dict[str, list[str]]:
        """``{module: sorted flags raised anywhere in that file}``."""
        out: dict[str, set[str]] = {}
        for r in self.rows:
            out.setdefault(r.module, set()).update(r.flags)
        return {m: sorted(f) for m, f in out.items()}

    def table(self, verbose: bool = False, width: int = 72) -> str:
        name_w = max([len(r.check) + 2 for r in self.rows] + [len("check")])
        lines = [f"Grading {self.folder}", f"{'check':<{name_w}}  points  earned  message"]
        module = None
        for r in self.rows:
            if r.module != module:
                module = r.module
                e, t = self.by_module()[module]
                lines.append(f"{module}  ({e}/{t})")
            message = _with_flags(r)
            message = message if verbose or len(message) <= width else message[: width - 3] + "..."
            lines.append(f"  {r.check:<{name_w - 2}}  {r.points:>6}  {r.earned:>6}  {message}")
            if verbose and r.details:
                lines += ["      " + d for d in r.details.rstrip().splitlines()]
        lines.append(f"{'TOTAL':<{name_w}}  {self.total:>6}  {self.earned:>6}  {100 * self.fraction:.1f}%")
        if self.isolation:
            lines.append(f"isolation: {ISOLATION_TEXT[self.isolation]}")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:  # rendered by Jupyter when a cell ends with grade(...)
        head = ["| check | points | earned | message |", "|---|---:|---:|---|"]
        body = [f"| {r.module}.{r.check} | {r.points} | {r.earned} | {_with_flags(r).replace('|', '/')} |"
                for r in self.rows]
        total = f"| **total** | **{self.total}** | **{self.earned}** | **{100 * self.fraction:.1f}%** |"
        return "\n".join(head + body + [total])


def _with_flags(row: Row) -> str:
    return f"[{', '.join(row.flags)}] {row.message}" if row.flags else row.message


# --------------------------------------------------------------------------- grading

def _run_check(c: Check, child: _Child, deadline: float, limit: str) -> tuple[Row, ChildLost | None]:
    flags: set[str] = set()

    def row(earned, message, details=""):
        return Row(c.module, c.name, c.function, c.points, earned, message, details, tuple(sorted(flags)))

    try:
        c.run(RemoteFunction(child, c.function, flags, deadline, limit))
    except ChildLost as lost:
        flags.add(lost.flag)
        return row(0, lost.message), lost
    except _MissingFunction as e:
        return row(0, f"no function {c.function}() in {c.module}.py ({e})"), None
    except StudentError as e:
        if isinstance(e, NotImplementedError):
            return row(0, f"not implemented: {c.function}()"), None
        return row(0, f"error in {c.function}(): {e.kind}: {e.message}", e.details), None
    except AssertionError as e:
        return row(0, f"wrong: {e}" if str(e) else "wrong (an assertion failed)", traceback.format_exc()), None
    except Exception as e:  # noqa: BLE001 - e.g. a result of an unexpected type
        return row(0, f"error while checking {c.function}(): {type(e).__name__}: {e}", traceback.format_exc()), None
    return row(c.points, "ok"), None


def _grade_file(folder: Path, module: str, checks: list[Check], limits: Limits, forbidden: list[Path]) -> list[Row]:
    """The rows of one answer file: its load row, then one per check (in ``checks`` order)."""
    path = (folder / f"{module}.py").resolve()

    def not_graded(c: Check, message: str, flags=()) -> Row:
        return Row(c.module, c.name, c.function, c.points, 0, f"not graded: {message}", flags=tuple(flags))

    def all_zero(message: str, flags=(), details="") -> list[Row]:
        load = Row(module, LOAD_ROW, "", 0, 0, message, details, tuple(sorted(flags)))
        return [load] + [not_graded(c, message) for c in checks]

    if not path.is_file():
        return all_zero(f"missing file {path.name}", {MISSING})
    try:
        source = path.read_text(encoding="utf-8")
        forbidden_refs = forbidden_references(source)
    except (SyntaxError, ValueError) as e:  # ValueError: undecodable text, NUL bytes
        where = f" at line {e.lineno}" if isinstance(e, SyntaxError) else ""
        return all_zero(f"{type(e).__name__}{where}: {getattr(e, 'msg', e)}", {SYNTAX})
    except OSError as e:
        return all_zero(f"unreadable file {path.name}: {e}", {MISSING})
    if forbidden_refs:
        return all_zero(f"uses {FORBIDDEN_PACKAGE} (not allowed in an answer): {'; '.join(forbidden_refs)}",
                        {FORBIDDEN_IMPORT})

    load = Row(module, LOAD_ROW, "", 0, 0, "ok")
    rows: dict[str, Row] = {}
    pending = list(checks)
    spent = 0.0  # seconds of the file's time used by earlier children
    while pending:
        child = _Child(path, limits, forbidden)
        start = time.monotonic()
        try:
            file_deadline = start + limits.file_time_limit - spent
            try:
                loaded = child.receive(min(start + limits.time_limit, file_deadline),
                                       f"importing {path.name} took more than {limits.time_limit:g} s")
            except ChildLost as lost:
                load = Row(module, LOAD_ROW, "", 0, 0, lost.message, flags=(lost.flag,))
                rows.update({c.name: not_graded(c, lost.message) for c in pending})
                break
            if "error" in loaded:
                error = _student_error(loaded["error"])
                flags = (MEMORY,) if isinstance(loaded["error"], dict) and loaded["error"].get("memory") else ()
                message = f"import failed: {error.kind}: {error.message}"
                load = Row(module, LOAD_ROW, "", 0, 0, message, error.details, flags)
                rows.update({c.name: not_graded(c, message) for c in pending})
                break
            while pending:
                c = pending.pop(0)
                now = time.monotonic()
                per_check = now + limits.time_limit
                limit = (f"{limits.time_limit:g} s" if per_check <= file_deadline
                         else f"the file's {limits.file_time_limit:g} s")
                row, lost = _run_check(c, child, min(per_check, file_deadline), limit)
                rows[c.name] = row
                if lost is None:
                    continue
                if lost.flag == FORBIDDEN_IMPORT:  # the whole file scores zero
                    rows.update({k.name: not_graded(k, lost.message) for k in checks if k.name != c.name})
                    pending = []
                elif time.monotonic() >= file_deadline:
                    message = f"the file used up its {limits.file_time_limit:g} s"
                    rows.update({k.name: not_graded(k, message) for k in pending})
                    pending = []
                else:  # the same function would most likely fail the same way: skip it, go on in a new child
                    skipped = [k for k in pending if k.function == c.function]
                    rows.update({k.name: not_graded(k, f"{c.function}() was stopped in an earlier check ({lost.flag})")
                                 for k in skipped})
                    pending = [k for k in pending if k.function != c.function]
                break
        finally:
            spent += time.monotonic() - start
            child.close()
    return [load] + _paid_with_a_value([(c, rows[c.name]) for c in checks])


def _paid_with_a_value(graded: list[tuple[Check, Row]]) -> list[Row]:
    """The rows, where a passed ``property`` or ``rejects`` check of a function that passed none of
    its ``value`` checks earns nothing (``grading_checks.check``): an answer that raises on every
    input, or returns a constant of the right shape, must not collect the points of the checks
    that such an answer can pass."""
    valued = {c.function for c, r in graded if c.kind == "value" and r.earned > 0}
    out = []
    for c, r in graded:
        if c.kind != "value" and r.earned > 0 and c.function not in valued:
            r = dataclasses.replace(r, earned=0, message=(
                f"{UNPAID}: {c.function}() passed none of its value checks (a {c.kind} check "
                f"pays only together with a correct value)"))
        out.append(r)
    return out


def _selected(modules, only) -> list[str]:
    if only is None:
        return list(modules)
    prefixes = (only,) if isinstance(only, str) else tuple(only)
    return [m for m in modules if m.startswith(prefixes)]


def _forbidden_roots(extra=()) -> list[Path]:
    roots = [PACKAGE_DIR, solutions_dir(), *(Path(p) for p in extra)]
    return list(dict.fromkeys(p.resolve() for p in roots))


def grade(folder: str | Path | None = None, only: str | list[str] | None = None,
          time_limit: float = 10.0, *, file_time_limit: float = 60.0, memory_limit: int = 2048,
          forbid: tuple[str | Path, ...] | list[str | Path] = ()) -> GradeReport:
    """Grade the answers in ``folder`` (default ``<project root>/exercises``; ``solutions/`` or a
    student's copy), each file in its own child process (see the module docstring).

    ``only``: a module-name prefix (or a list of them), e.g. ``"ex01"``. ``time_limit``: seconds
    for importing a file and for each check; ``file_time_limit``: seconds for all checks of a
    file; ``memory_limit``: MiB. ``forbid``: more folders the answers may not read. Nothing is
    raised for wrong or misbehaving answers: each check's outcome is a row of the report.
    """
    folder = Path(folder) if folder is not None else exercises_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder.resolve()} to grade")
    modules = _selected(dict.fromkeys(c.module for c in CHECKS), only)
    if not modules:
        raise ValueError(f"no graded exercises match only={only!r}")
    limits = Limits(float(time_limit if time_limit is not None else Limits.time_limit),
                    float(file_time_limit), int(memory_limit))
    report = GradeReport(folder.resolve())
    forbidden = _forbidden_roots(forbid)
    for module in modules:
        report.rows += _grade_file(folder, module, [c for c in CHECKS if c.module == module], limits, forbidden)
    report.isolation = isolation()  # levels only ever go down, so this is the weakest one used
    return report


# --------------------------------------------------------------------------- class mode

@dataclass
class Gradebook:
    """One ``GradeReport`` per student of a submissions folder."""
    submissions: Path
    reports: dict[str, GradeReport] = field(default_factory=dict)

    def columns(self) -> list[str]:
        checks = [(c.module, c.name) for c in CHECKS if any(c.module in r.by_module() for r in self.reports.values())]
        names = [name for _, name in checks]
        return [name if names.count(name) == 1 else f"{module}:{name}" for module, name in checks]

    def records(self) -> list[dict[str, object]]:
        """One dict per student and exercise: student, exercise, a column per check, total, max, percent, flags."""
        checks = [(c.module, c.name) for c in CHECKS]
        column = dict(zip([k for k in checks if any(k[0] in r.by_module() for r in self.reports.values())],
                          self.columns()))
        out = []
        for student, report in self.reports.items():
            flags = report.flags()
            for module, (earned, total) in report.by_module().items():
                record: dict[str, object] = {"student": student, "exercise": module}
                record.update({column[(r.module, r.check)]: r.earned for r in report.rows
                               if r.module == module and (r.module, r.check) in column})
                record.update(total=earned, max=total, percent=round(100 * earned / total, 1) if total else 0.0,
                              flags="; ".join(flags.get(module, [])), isolation=report.isolation)
                out.append(record)
        return out

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = ["student", "exercise", *self.columns(), "total", "max", "percent", "flags", "isolation"]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(self.records())
        return path

    def table(self) -> str:
        modules = list(dict.fromkeys(m for r in self.reports.values() for m in r.by_module()))
        name_w = max([len(s) for s in self.reports] + [len("student")])
        col_w = {m: max(len(m), 7) for m in modules}
        lines = [f"Gradebook {self.submissions}",
                 "  ".join([f"{'student':<{name_w}}", *(f"{m:>{col_w[m]}}" for m in modules), " total", "flags"])]
        for student, report in self.reports.items():
            scores = {m: "{}/{}".format(*report.by_module()[m]) for m in report.by_module()}
            cells = [f"{scores.get(m, '-'):>{col_w[m]}}" for m in modules]
            flags = "; ".join(f"{m.split('_')[0]}: {', '.join(f)}" for m, f in report.flags().items() if f)
            lines.append("  ".join([f"{student:<{name_w}}", *cells, f"{100 * report.fraction:5.1f}%", flags]))
        used = sorted({r.isolation for r in self.reports.values() if r.isolation}, key=_ORDER.index)
        lines += [f"isolation: {ISOLATION_TEXT[level]}" for level in used]
        return "\n".join(lines)

    __str__ = table


def self_check(only: str | list[str]) -> GradeReport | None:
    """A notebook's grade cell: grade ``exercises/`` (the checkout's, or on Colab the clone's, see
    ``paths.exercises_dir``) for ``only``; without that folder, say how to get it and return None."""
    from .paths import exercises_dir

    folder = exercises_dir()
    if not folder.is_dir():
        print(f"{folder} not found: clone the course repository (on Colab, run the setup cell at the top)")
        return None
    return grade(folder, only=only)


def grade_class(submissions: str | Path, only: str | list[str] | None = None, time_limit: float = 10.0, *,
                file_time_limit: float = 60.0, memory_limit: int = 2048, solutions: str | Path | None = None,
                progress: Callable[[str, GradeReport], None] | None = None) -> Gradebook:
    """Grade every student folder of ``submissions`` (one after another), each file in its own child.

    Answers may not read other submissions, ``<project root>/solutions`` or ``solutions``.
    """
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no folder {submissions.resolve()} of submissions")
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not students:
        raise ValueError(f"{submissions} holds no student folders (one folder per student)")
    forbid = [submissions] + ([Path(solutions)] if solutions is not None else [])
    book = Gradebook(submissions.resolve())
    for student in students:
        report = grade(student, only, time_limit, file_time_limit=file_time_limit, memory_limit=memory_limit,
                       forbid=forbid)
        book.reports[student.name] = report
        if progress is not None:
            progress(student.name, report)
    return book


# --------------------------------------------------------------------------- command line

def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=None, help="module prefix to grade, e.g. ex01 (repeatable)")
    parser.add_argument("--time-limit", type=float, default=Limits.time_limit, metavar="SECONDS",
                        help="seconds to import a file and for each check (default %(default)g)")
    parser.add_argument("--file-time-limit", type=float, default=Limits.file_time_limit, metavar="SECONDS",
                        help="seconds for all checks of one file (default %(default)g)")
    parser.add_argument("--memory-limit", type=int, default=Limits.memory_limit, metavar="MIB",
                        help="MiB an answer may allocate, POSIX only (default %(default)d)")
    parser.add_argument("--isolation", choices=_ORDER, default=None,
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
    command = argv.pop(0) if argv and argv[0] in ("grade", "class", "generate", "check-sync") else "grade"
    prog = f"python -m course_lib.grading {command}"
    if command == "class":
        return _main_class(argv)
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
        "status 0 unless --min-score is given and not reached. Other commands: class, generate, check-sync."))
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


if __name__ == "__main__":
    sys.exit(main())
