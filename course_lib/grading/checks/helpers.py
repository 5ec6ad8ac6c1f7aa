"""Helpers shared by the check modules: seeded inputs, comparisons that name a known mistake, and
the models that travel to the child.

Seeded inputs (``randn``, ``randint``; from private generators, so grading never touches a
notebook's global random state), ``module_arg`` (a model argument: a description the child builds)
and ``build`` (the same model built here); comparisons that name a known mistake when a value is
wrong (``close_naming`` for a tensor, ``value_naming`` for a scalar, both given ``{description of
the mistake: what it gives}``; ``close``, ``tensors_close``, ``scalar``, ``matches``);
``expect_value_error`` for the inputs a function must reject, and ``student_error()``, the class of
what an answer raised.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from course_lib.grading import runner as _runner
from course_lib.grading.base import MissingFunction, StudentError


def randn(*shape: int, seed: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Standard-normal tensor from a private generator (the global RNG is left alone)."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=dtype)


def randint(high: int, *shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(high, shape, generator=g)


def as_tensor(value, what: str) -> torch.Tensor:
    assert torch.is_tensor(value), f"{what}: expected a torch.Tensor, got {type(value).__name__}"
    return value


def close(actual, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Assert ``actual`` is a tensor of ``expected``'s shape with (nearly) its values."""
    actual = as_tensor(actual, what)
    assert actual.shape == expected.shape, \
        f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}"
    a, e = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    assert torch.isfinite(a).all() or not torch.isfinite(e).all(), f"{what}: result contains NaN or inf"
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        diff = (a - e).abs().max().item()
        if a.numel() == 1:
            raise AssertionError(f"{what}: expected {e.item():.6g}, got {a.item():.6g}")
        raise AssertionError(f"{what}: max abs difference {diff:.3g} from the expected values")


def scalar(value, what: str) -> float:
    value = as_tensor(value, what)
    assert value.dim() == 0, f"{what}: expected a scalar (0-dim) tensor, got shape {tuple(value.shape)}"
    return value.item()


def matches(value: float, candidates: dict[str, float], tol: float = 1e-4) -> str | None:
    """Name of the first candidate (a known mistake) that ``value`` matches, if any."""
    for name, v in candidates.items():
        if abs(value - v) <= tol * max(1.0, abs(v)):
            return name
    return None


def tensors_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and nearly the same values (in float64, ``atol=1e-5``, ``rtol=1e-4``, as ``close``)."""
    return a.shape == b.shape and torch.allclose(a.detach().double(), b.detach().double(), atol=1e-5, rtol=1e-4)


def close_naming(got, expected: torch.Tensor, mistakes: dict[str, torch.Tensor], what: str) -> None:
    """``close(got, expected)``, but first name the known mistake (a tensor of ``mistakes``) ``got`` equals."""
    got = as_tensor(got, what)
    if got.shape == expected.shape and not tensors_close(got, expected):
        for mistake, wrong in mistakes.items():
            if not tensors_close(wrong, expected) and tensors_close(got, wrong):
                raise AssertionError(f"{what}: wrong values - that is what {mistake} gives")
    close(got, expected, what)


def value_naming(got, expected: float, mistakes: dict[str, float], what: str) -> None:
    """A scalar equal to ``expected``; otherwise the message names the mistake it matches, if any."""
    value = scalar(got, what)
    tol = 1e-5 + 1e-4 * abs(expected)
    if abs(value - expected) <= tol:
        return
    real = {k: v for k, v in mistakes.items() if abs(v - expected) > tol}
    mistake = matches(value, real, tol=1e-5)
    hint = f" - that is what {mistake} gives" if mistake else ""
    raise AssertionError(f"{what}: expected {expected:.6g}, got {value:.6g}{hint}")


def choice(answer, what: str, correct: str, wrong: dict[str, str]) -> None:
    """A multiple-choice answer: ``answer`` must be the key ``correct``. ``wrong`` maps every other
    key to the hint a student sees after choosing it (why that choice fails; never the right key).
    An answer that is none of the keys fails with the list of keys."""
    keys = sorted([correct, *wrong])
    if not isinstance(answer, str) or answer not in keys:
        raise AssertionError(f"{what}: return one of {keys} (a str), got {answer!r}")
    if answer != correct:
        raise AssertionError(f"{what}: {answer!r} is not it - {wrong[answer]}")


def fix_first(f, name: str, args: tuple, expected: float | None = None, tol: float = 1e-6, *,
              right: Callable[[Any], bool] | None = None, wrong: Callable[[Any], str] | None = None) -> str:
    """A hint for an error carried over from another function of the same file: `` - your name(...) is
    wrong too (...), if you call it here, fix it first`` when the answer's ``name(*args)`` (called in
    the same child) is wrong; "" when it is right, missing, unimplemented or raises.

    Wrong means: not within ``tol`` of the number ``expected``; or, for any other result, ``right(got)``
    false (an exception inside ``right`` counts as "cannot tell": no hint). ``wrong(got)`` words the
    hint for such a result (default: the function's name and arguments)."""
    try:
        got = f.sibling(name)(*args)
        if right is not None:
            if right(got):
                return ""
        else:
            value = float(got)
            if abs(value - expected) <= tol * max(1.0, abs(expected)):
                return ""
    except (StudentError, MissingFunction, TypeError, ValueError, AssertionError, IndexError, KeyError):
        return ""
    if wrong is not None:
        return wrong(got)
    shown = ", ".join(f"{a!r}" for a in args)
    if right is not None:
        return f" - your {name}({shown}) is wrong too: if you call it here, fix it first"
    return (f" - your {name}({shown}) is wrong too ({value:.6g}, expected {expected:.6g}): "
            f"if you call it here, fix it first")


def student_error() -> type:
    """``StudentError`` (``course_lib.grading.base``), what a student's function raises in a check
    (``except student_error() as e``: ``e.kind`` names the student's exception, ``e.message`` its
    message). The class itself is importable too; this spelling is the checks' own."""
    return StudentError


def expect_value_error(f, args, kwargs, what: str, hint: str) -> None:
    """``f(*args, **kwargs)`` must raise ``ValueError``; another exception or none fails with ``hint``.
    The stub's ``NotImplementedError`` goes through (the check is then "not implemented")."""
    try:
        f(*args, **kwargs)
    except ValueError:
        return
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(f"{what}: raised {e.kind}, expected ValueError - {hint}") from None
    raise AssertionError(f"{what}: expected ValueError, nothing was raised - {hint}")


def module_arg(layers: list, seed: int, *, training: bool = True, frozen: tuple[str, ...] = (),
               scale: float = 1.0) -> dict:
    """A model argument for a remote call: ``nn.Sequential`` of ``layers`` (``[[name, [args]], ...]``,
    ``torch.nn`` names from ``runner.LAYERS``; ``["Sequential", [...]]`` nests), initialised
    from ``seed`` (the global generator is left alone), BatchNorm weights, biases and running
    statistics random too (so eval and train mode differ), in training mode if ``training``, the
    parameters named in ``frozen`` without gradients. The child builds it (``runner.build_module``);
    ``build(arg)`` builds the same model here."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _runner.build_layers(torch, layers)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(7)
            for p in model.parameters():
                p.mul_(scale)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {_runner.MODULE_KEY: {"layers": layers, "state": state, "training": bool(training), "frozen": list(frozen)}}


def build(arg: dict) -> torch.nn.Module:
    """The model a ``module_arg`` describes, built in this process (for reference outputs)."""
    return _runner.build_module(torch, arg)
