"""What both sides of the autograder share: the flags, the limits, the exceptions and ``ModuleReport``.

The checks (``checks/``) and the orchestration (``grader``, ``sandbox``, ``remote``) import these;
this module imports neither, so a check never imports the orchestration.

- flags: what happened to an answer besides its points (a row's and a gradebook's ``flags``);
- ``Limits``: the seconds and MiB an answer file may use;
- ``StudentError``: what a student's function raised in the child, raised again in the grader
  (``student_error_from`` rebuilds it from the child's message, its class also deriving from the
  builtin exception the original derives from, so a check can ``except ValueError``);
- ``GradingError`` (the grader itself could not run), ``ChildLost`` (the child stopped answering),
  ``MissingFunction`` (the answer has no such function);
- ``ModuleReport``: what the child reports about a model it holds.
"""
from __future__ import annotations

import builtins
import functools
from dataclasses import dataclass

import torch

# Flags: what happened to an answer, besides its points (a gradebook column).
TIMEOUT, EXIT, CRASH, MEMORY = "timeout", "exit", "crash", "memory"
FORBIDDEN_IMPORT, NETWORK, SANDBOX = "forbidden import", "network", "sandbox"
INPUTS_MODIFIED, MISSING, SYNTAX = "inputs modified", "missing", "syntax error"


@dataclass(frozen=True)
class Limits:
    """Seconds and MiB an answer file may use (see ``course_lib.grading``)."""
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


class MissingFunction(BaseException):
    """The answer file has no function of the name a check calls (the child's ``missing`` reply)."""


@functools.cache
def _student_error_class(builtin_name: str) -> type[StudentError]:
    base = getattr(builtins, builtin_name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        return StudentError
    try:
        return type(f"Student{base.__name__}", (StudentError, base), {})
    except TypeError:  # an incompatible instance layout
        return StudentError


def student_error_from(info) -> StudentError:
    """The ``StudentError`` the child's ``error`` message (type, builtin base, message, traceback) describes."""
    info = info if isinstance(info, dict) else {}
    kind, message = str(info.get("type", "Exception")), str(info.get("message", ""))
    try:
        error = _student_error_class(str(info.get("builtin", "Exception")))(f"{kind}: {message}")
    except Exception:  # noqa: BLE001 - a builtin whose constructor wants other arguments
        error = StudentError(f"{kind}: {message}")
    error.kind, error.message, error.details = kind, message, str(info.get("traceback", ""))
    return error


@dataclass(frozen=True)
class ModuleReport:
    """What the child reports about an ``nn.Module`` it holds (a function's result, or a model
    argument as the function left it); see ``runner.module_report``."""
    type_name: str
    identity: int                      # id() in the child: equal for one and the same object
    training: dict[str, bool]          # every submodule's mode, by name ("": the module itself)
    requires_grad: dict[str, bool]     # every parameter's flag, by name
    state: dict[str, torch.Tensor]     # every parameter's and buffer's values, by name
    storage: dict[str, int]            # the address of each parameter's and buffer's storage (0: empty)
