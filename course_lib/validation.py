"""Input checks shared by the public numerical API: one helper per kind of input.

Every helper raises ``TypeError`` for an argument of the wrong kind (not a tensor, a float where
class indices are wanted, a bool where a number is) and ``ValueError`` for a wrong value (NaN,
empty, wrong shape, out of range). Each message starts with the argument's name, says what was
expected and what was given, and, where there is one, the fix::

    temperature must be a finite number > 0, got 0.0: the logits are divided by it

Checks that read tensor values (NaN, ranges, sums) wait for the GPU: functions used inside training
loops run them behind a ``validate=True`` flag, and the loops pass ``validate=False`` once the
settings are known to be good. Checks of types and shapes read no values and always run.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = [
    "describe", "check_tensor", "check_logits", "check_probabilities", "check_temperature", "check_weight",
    "check_fraction", "check_mask", "check_targets", "check_same_shape", "check_positive_int",
    "check_distinct", "check_choice",
]


def describe(x) -> str:
    """``shape (2, 3)`` for a tensor, ``a list`` for anything else: what an error says it got."""
    if torch.is_tensor(x):
        return f"a {str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float, bool, str)) else f"a {type(x).__name__}"


def _dims_text(dims) -> str:
    return str(dims) if isinstance(dims, int) else " or ".join(str(d) for d in dims)


def check_tensor(name: str, x, *, dims: int | tuple[int, ...] | None = None, min_dims: int | None = None,
                 floating: bool = True, finite: bool = True, allow_empty: bool = False,
                 layout: str = "") -> None:
    """``x`` is a tensor (floating-point unless ``floating=False``) with ``dims`` (one count or a tuple
    of allowed counts) or at least ``min_dims`` dimensions, not empty unless ``allow_empty``, and with
    only finite values if ``finite`` (reads the values). ``layout`` (e.g. ``"[B, C]"``) goes into the
    shape message."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a tensor{' ' + layout if layout else ''}, got {describe(x)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(x)}; convert it with .float()")
    shape_ok = ((dims is None or x.dim() == dims if isinstance(dims, int) or dims is None else x.dim() in dims)
                and (min_dims is None or x.dim() >= min_dims))
    if not shape_ok:
        wanted = (f"{_dims_text(dims)} dimensions" if dims is not None else f"at least {min_dims} dimensions")
        raise ValueError(f"{name} must have {wanted}{' ' + layout if layout else ''}, got shape {tuple(x.shape)}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): there is nothing to compute on; "
                         f"skip empty batches before calling")
    if finite and x.numel() and not x.is_meta and not bool(torch.isfinite(x).all()):   # meta: no values
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains NaN or infinite values ({bad} of {x.numel()}): a diverged model or "
                         f"a bad cache upstream; find where they come from instead of averaging them away")


def check_logits(name: str, z, *, dims: int | tuple[int, ...] | None = None, min_dims: int = 1,
                 allow_empty: bool = False, finite: bool = True, layout: str = "") -> None:
    """Logits ``[..., C]``: a finite floating-point tensor with a class (last) dimension of size > 0
    and, unless ``allow_empty``, at least one position."""
    check_tensor(name, z, dims=dims, min_dims=min_dims, allow_empty=True, finite=False, layout=layout)
    if z.dim() < 1 or z.shape[-1] == 0:
        raise ValueError(f"{name} must have a class (last) dimension of size >= 1, got shape {tuple(z.shape)}: "
                         f"there is no class to put probability on")
    if not allow_empty and z.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(z.shape)}): no position to compute on (a mean over "
                         f"it would be 0/0 = NaN); skip empty batches before calling")
    if finite:
        check_tensor(name, z, allow_empty=True)


def check_probabilities(name: str, p, *, dims: int | tuple[int, ...] | None = None, min_dims: int = 1,
                        atol: float = 1e-4, layout: str = "") -> None:
    """Probability distributions over the last dimension: finite, ``>= 0``, each summing to 1
    (within ``atol``, widened for low precision and long vocabularies)."""
    check_logits(name, p, dims=dims, min_dims=min_dims, layout=layout)
    if bool((p < 0).any()):
        raise ValueError(f"{name} must hold probabilities (>= 0), found {float(p.min()):.4g}: pass "
                         f"softmax(logits), not the logits")
    tol = max(atol, 4 * p.shape[-1] * torch.finfo(p.dtype).eps)
    sums = p.sum(-1, dtype=torch.float64)
    worst = float((sums - 1).abs().max())
    if worst > tol:
        raise ValueError(f"{name} must sum to 1 over its last dimension (probabilities), found a sum of "
                         f"{float(sums.flatten()[(sums - 1).abs().flatten().argmax()]):.6g}: normalise it "
                         f"(softmax, or p / p.sum(-1, keepdim=True))")


def _number_or_tensor(name: str, value, allow_tensor: bool) -> torch.Tensor | float:
    """``value`` as a float, or a tensor (detached) if it is one: Python numbers are checked without
    making a tensor."""
    if isinstance(value, bool) or (torch.is_tensor(value) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    if torch.is_tensor(value):
        if not allow_tensor:
            raise TypeError(f"{name} must be a Python number, got {describe(value)}; use float(...)")
        if value.is_complex() or value.numel() == 0:
            raise ValueError(f"{name} must be a real number or a non-empty real tensor, got {describe(value)}")
        return value.detach()
    if not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    return float(value)


def _outside(v: torch.Tensor | float, low: float, high: float, low_open: bool) -> bool:
    """Whether any value is NaN, infinite, or outside ``[low, high]`` (``(low, high]``)."""
    if not torch.is_tensor(v):
        return not math.isfinite(v) or (v <= low if low_open else v < low) or v > high
    below = (v <= low) if low_open else (v < low)
    return not bool(torch.isfinite(v).all()) or bool(below.any()) or bool((v > high).any())


def _shown(value) -> str:
    return repr(value) if not torch.is_tensor(value) else (
        repr(value.item()) if value.numel() == 1 else f"a tensor with values in [{float(value.min()):.4g}, "
                                                      f"{float(value.max()):.4g}]")


def check_temperature(temperature, name: str = "temperature", *, allow_tensor: bool = True) -> None:
    """A finite number ``> 0`` (or a tensor of them, one per row or model: ``allow_tensor``)."""
    if _outside(_number_or_tensor(name, temperature, allow_tensor), 0.0, math.inf, low_open=True):
        raise ValueError(f"{name} must be a finite number > 0, got {_shown(temperature)}: the logits are divided "
                         f"by it (T -> 0 is the argmax, not a distribution; T < 0 reverses the ranking)")


def check_weight(name: str, weight, *, low: float = 0.0, high: float = math.inf, low_open: bool = False,
                 allow_tensor: bool = True, meaning: str = "") -> None:
    """A finite number (or tensor of them) in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if _outside(_number_or_tensor(name, weight, allow_tensor), low, high, low_open):
        if math.isfinite(high):
            what = f" in {'(' if low_open else '['}{low:g}, {high:g}]"
        else:
            what = f" {'>' if low_open else '>='} {low:g}" if math.isfinite(low) else ""
        raise ValueError(f"{name} must be a finite number{what}, got {_shown(weight)}"
                         f"{': ' + meaning if meaning else ''}")


def check_fraction(name: str, value, *, allow_tensor: bool = True, meaning: str = "") -> None:
    """A mixing weight in ``[0, 1]`` (e.g. ``alpha``, ``label_smoothing``)."""
    check_weight(name, value, low=0.0, high=1.0, allow_tensor=allow_tensor, meaning=meaning)


def check_mask(name: str, mask, shape: tuple | torch.Size, *, what: str = "") -> None:
    """A mask of exactly ``shape`` holding booleans or only 0 and 1."""
    if not torch.is_tensor(mask) or mask.shape != tuple(shape):
        got = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(f"{name} must be a tensor of shape {tuple(shape)}{' (' + what + ')' if what else ''}, "
                         f"got {got}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must be boolean or hold only 0 and 1")


def check_targets(name: str, targets, *, classes: int, shape: tuple | torch.Size | None = None,
                  ignore_index: int | None = None, counted: torch.Tensor | None = None) -> None:
    """Integer class indices in ``[0, classes)`` (``ignore_index`` allowed), of ``shape`` if given;
    only positions where ``counted`` is true are range-checked."""
    if not torch.is_tensor(targets) or targets.dtype.is_floating_point or targets.dtype.is_complex \
            or targets.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices (e.g. torch.long), got "
                        f"{targets.dtype if torch.is_tensor(targets) else type(targets).__name__}; "
                        f"soft targets (probabilities or logits) go in teacher_logits")
    if shape is not None and targets.shape != tuple(shape):
        raise ValueError(f"{name} shape {tuple(targets.shape)} does not match the logits without the class "
                         f"dimension, {tuple(shape)}")
    keep = torch.ones_like(targets, dtype=torch.bool) if counted is None else counted
    if ignore_index is not None:
        keep = keep & (targets != ignore_index)
    bad = targets[keep & ((targets < 0) | (targets >= classes))]
    if bad.numel():
        ignored = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(f"{name} must be class indices in [0, {classes}){ignored} for {classes} classes; "
                         f"found {bad[0].item()} ({bad.numel()} out-of-range value(s))")


def check_same_shape(*named: tuple[str, torch.Tensor], what: str = "") -> None:
    """All tensors have one shape (``what`` says why they must)."""
    shapes = [tuple(x.shape) for _, x in named]
    if len(set(shapes)) > 1:
        listed = ", ".join(f"{n} {s}" for (n, _), s in zip(named, shapes))
        raise ValueError(f"{' and '.join(n for n, _ in named)} must have the same shape, got {listed}"
                         f"{': ' + what if what else ''}")


def check_positive_int(name: str, k, *, minimum: int = 1, maximum: int | None = None, meaning: str = "") -> None:
    """An ``int`` (not a bool) in ``[minimum, maximum]``."""
    if isinstance(k, bool) or not isinstance(k, Integral) or k < minimum or (maximum is not None and k > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {bound}{' (' + meaning + ')' if meaning else ''}, got {k!r}")


def check_distinct(name: str, indices: torch.Tensor, *, dim: int = -1) -> None:
    """No index repeats along ``dim`` (e.g. a top-k cache: each token once per position)."""
    if indices.numel() and indices.shape[dim] > 1:
        ordered = indices.sort(dim=dim).values
        if bool((ordered.diff(dim=dim) == 0).any()):
            raise ValueError(f"{name} repeats an index along dimension {dim}: each entry must appear once "
                             f"(a repeated token would be counted twice); build it with topk, not by hand")


def check_choice(name: str, value, choices: tuple) -> None:
    """``value`` is one of ``choices``."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
