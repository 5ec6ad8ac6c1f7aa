"""Exercises and autograder (a package: its layout is below).

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
Each answer file is graded in its own child process, ``python -I -B runner.py ANSWER``
(``course_lib/grading/runner.py``, executed by path: it imports torch and the answer, never
``course_lib``, so nothing of the reference is in the child's memory). A check
(``course_lib.grading.checks``) is plain Python in this, the parent, process, in three parts:

(a) inputs: built here from seeded generators;
(b) calls: the check receives a stand-in for the student's function (``RemoteFunction``); calling
    it sends the function's name and the arguments to the child, which runs the student's
    function and sends back its result and the arguments as the function left them.
    ``f.value_and_grad(*args, wrt=0)`` also returns the gradient of the 0-dim result with respect
    to argument ``wrt`` (``grad_outputs=w``: of ``(result * w).sum()``), computed in the child. A
    model travels as a description (``checks.module_arg``) that the child builds, and a
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

Layout
------
The package, in the order of the imports (none goes back up; the checks never import the grader):

- ``base``      flags, ``Limits``, ``StudentError`` and the other exceptions, ``ModuleReport``:
                what both the checks and the grader need;
- ``runner``    the child's script (standard library and torch only; executed by path, and
                imported here for its constants and model helpers);
- ``checks/``   the check registry (``CHECKS``, ``check``), the checks' helpers and one module
                of checks per exercise file;
- ``generate``  solutions -> exercises, the sync check, the static scan of an answer's source;
- ``sandbox``   isolation levels, the namespace script, ``Child`` and its framed channel;
- ``remote``    ``RemoteFunction``, what a check calls, and the decoding of the child's replies;
- ``report``    ``Row``, ``GradeReport``, ``Gradebook``;
- ``grader``    ``grade``, ``grade_class``, ``self_check``: orchestration;
- ``cli``       the command line (``__main__`` runs it).

Every public name is importable from ``course_lib.grading``.

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

from course_lib.grading.base import (CRASH, EXIT, FORBIDDEN_IMPORT, INPUTS_MODIFIED, MEMORY, MISSING, NETWORK,
                                     SANDBOX, SYNTAX, TIMEOUT, ChildLost, GradingError, Limits, MissingFunction,
                                     ModuleReport, StudentError)
from course_lib.grading.checks import CHECK_MODULES, CHECKS, KINDS, Check, check
from course_lib.grading.cli import main
from course_lib.grading.generate import (BEGIN, END, FORBIDDEN_PACKAGE, HEADER, MarkerError, check_exercises_in_sync,
                                         forbidden_references, generate_exercises, strip_solutions)
from course_lib.grading.grader import LOAD_ROW, PACKAGE_DIR, UNPAID, grade, grade_class, self_check
from course_lib.grading.remote import Called, RemoteFunction
from course_lib.grading.report import Gradebook, GradeReport, Row
from course_lib.grading.sandbox import (HOOK_ONLY, ISOLATION_TEXT, LEVELS, MAX_REPLY_BYTES, NAMESPACES, NETWORK_ONLY,
                                        REPLY_ALLOWANCE, RUNNER, Child, isolation, network_isolation, set_isolation,
                                        supported_levels)

__all__ = [
    # flags
    "CRASH", "EXIT", "FORBIDDEN_IMPORT", "INPUTS_MODIFIED", "MEMORY", "MISSING", "NETWORK", "SANDBOX", "SYNTAX",
    "TIMEOUT",
    # base
    "ChildLost", "GradingError", "Limits", "MissingFunction", "ModuleReport", "StudentError",
    # checks
    "CHECK_MODULES", "CHECKS", "KINDS", "Check", "check",
    # generate
    "BEGIN", "END", "FORBIDDEN_PACKAGE", "HEADER", "MarkerError", "check_exercises_in_sync", "forbidden_references",
    "generate_exercises", "strip_solutions",
    # sandbox
    "HOOK_ONLY", "ISOLATION_TEXT", "LEVELS", "MAX_REPLY_BYTES", "NAMESPACES", "NETWORK_ONLY", "REPLY_ALLOWANCE",
    "RUNNER", "Child", "isolation", "network_isolation", "set_isolation", "supported_levels",
    # remote, report, grader, cli
    "Called", "RemoteFunction", "Gradebook", "GradeReport", "Row", "LOAD_ROW", "PACKAGE_DIR", "UNPAID", "grade",
    "grade_class", "self_check", "main",
]
