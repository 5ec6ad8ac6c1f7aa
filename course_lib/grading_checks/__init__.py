"""The autograder's checks, one module per exercise file (``ex01_dark_knowledge.py`` grades
``exercises/ex01_dark_knowledge.py``).

A check is a function that receives the student's function and raises ``AssertionError`` (with a
message a student can act on) when the answer is wrong; it earns its points when it raises nothing.
Checks test by value: against ``course_lib.losses`` (the tested reference), hand-computed numbers
and limits (``T -> inf``, student == teacher, ``alpha = 0``). They use their own seeded generators,
so grading never touches a notebook's global random state, and pass fresh copies of every input.

To add one::

    @check("ex02_kd_loss", "kd_loss", points=2)
    def kd_loss_is_zero_for_identical_logits(kd_loss):
        \"\"\"One line for the table's readers.\"\"\"
        ...
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch


@dataclass(frozen=True)
class Check:
    name: str
    points: int
    module: str  # exercise file stem, e.g. "ex01_dark_knowledge"
    function: str  # the function under test in that file
    run: Callable[[Callable], None]
    description: str = ""


CHECKS: list[Check] = []


def check(module: str, function: str, points: int):
    """Register the decorated function as a check worth ``points`` on ``module.function``."""
    def register(run):
        CHECKS.append(Check(run.__name__, points, module, function, run, (run.__doc__ or "").strip()))
        return run
    return register


# --------------------------------------------------------------------------- helpers for checks

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


def _register_all() -> list[str]:
    """Import every ``exNN_*`` module of this package: importing a module registers its checks.

    Discovery by module name, so a new exercise's checks need no hand-edited list.
    """
    import importlib
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ex"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


CHECK_MODULES = _register_all()
