"""What a check receives: ``RemoteFunction``, the stand-in for a student's function.

Calling it sends the function's name and the arguments to the child (``sandbox.Child``), which
runs the student's function and sends back its result and the arguments as the function left
them; here the reply is decoded (``_decode``: tensors, numbers, strings and containers of them; a
model as a ``ModuleReport``; anything else as an object whose type has the original type's name),
an exception of the student's is raised again as a ``StudentError``, and an argument modified in
place fails the call (flag ``inputs modified``). ``Called`` is what ``RemoteFunction.inspect``
returns.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from course_lib.grading import runner as _runner
from course_lib.grading.base import (INPUTS_MODIFIED, MEMORY, MissingFunction, ModuleReport, StudentError,
                                     student_error_from)
from course_lib.grading.sandbox import Child


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
    ``checks.module_arg(...)``; a model comes back as a ``ModuleReport``.
    """

    def __init__(self, child: Child, name: str, flags: set[str], deadline: float, limit: str):
        self.__name__ = name
        self._child, self._flags = child, flags
        self._deadline, self._limit = deadline, limit

    def __call__(self, *args, **kwargs):
        return self._call("plain", args, kwargs, 0).value

    def sibling(self, name: str) -> RemoteFunction:
        """The same file's function ``name``, called in the same child under the same deadline (a
        check's hint may test a function the one under test depends on: ``helpers.fix_first``)."""
        return RemoteFunction(self._child, name, self._flags, self._deadline, self._limit)

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
            raise MissingFunction(str(reply["missing"]))
        if "error" in reply:
            error = reply["error"]
            if isinstance(error, dict) and error.get("memory"):
                self._flags.add(MEMORY)
            raise student_error_from(error)
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
                      _decode(probe.get("after")), student_error_from(probe["error"]) if "error" in probe else None)


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
