"""Checks for exercises/ex07_quantization.py (20 points; ``TASKS`` gives the ladder).

References: torch's own ``MinMaxObserver`` (per-tensor affine, ``quant_min``/``quant_max`` given) for
the quantization parameters and ``torch.fake_quantize_per_tensor_affine`` for quantize-dequantize;
``torch.save`` of the ``state_dict`` of the same model, built here from its description
(``module_arg``), into memory, for the bytes on disk (deterministic, so the counts are equal to the
byte; ``course_lib.compress.size_on_disk`` saves to a file, ``model.pt``, whose zip archive torch
names ``model/`` instead of ``archive/``: a few bytes fewer);
``course_lib.compress.onnx_parity`` itself, run on two fixed tables of logits, for the parity figures.
When a value is wrong, the message names the common mistake it matches: a range that does not
include 0, the steps counted as ``qmax`` instead of ``qmax - qmin``, the zero point truncated or
floored instead of rounded, no ``eps`` floor on the scale, symmetric quantization; no clamp, floor
or truncation instead of round, the zero point left out when quantizing or dequantizing, ``x``
clamped instead of the integers, the integers returned; ``count_parameters * 4``, the parameters
without the buffers, the raw tensor bytes, ``sys.getsizeof``; the absolute error, the maximum of
element-wise relative errors, the wrong normaliser, a fraction instead of percent, the argmax over
the batch; per-tensor parameters or the wrong axis for the per-channel quantization (against
``PerChannelMinMaxObserver`` and ``torch.fake_quantize_per_channel_affine``), whose message also says when
the answer's own ``quantization_params`` or ``fake_quantize``, which it may call, is wrong.

Over 500 lines because one exercise file's checks are one idea: they grade one file and share its
inputs and the helpers that name its mistakes.
"""
from __future__ import annotations

import io
import math
import sys

import torch
from torch import nn
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from course_lib.compress import onnx_parity
from course_lib.grading.checks.helpers import (as_tensor, build, close_naming, expect_value_error, fix_first,
                                               module_arg, randn)
from course_lib.grading.checks.registry import Task, check

M = "ex07_quantization"

TASKS = {"fake_quantize": Task("warm-up", 10, "implement"), "serialized_bytes": Task("warm-up", 10, "implement"),
         "quantization_params": Task("core", 20, "implement"), "parity": Task("core", 15, "implement"),
         "per_channel_fake_quantize": Task("stretch", 15, "apply")}

# What the stubs leave to the student (tests/grading/test_generate.py scans the generated file, spaces ignored):
# the formulas, the code, and the warnings the grader gives as hints after a wrong answer.
CLOSED_FORMS = {
    "quantization_params": ["min(x.min(), 0)", "max(x.max(), 0)", "(max_pos - min_neg) / (qmax - qmin)",
                            "qmin - round(min_neg / scale)", "not qmax", "int()"],
    "fake_quantize": ["clamp(round(x / s) + zp", "clamp(round(x / scale) + zero_point", "round(x / s)",
                      "not floor", "clamp the integers"],
    "serialized_bytes": ["io.BytesIO()", "getvalue", "count_parameters(model) * 4", "sys.getsizeof"],
    "parity": ["/ max_{b,c} |reference[b, c]|", "argmax_c", "dim=-1", "element-wise ratios"],
    "per_channel_fake_quantize": ["for channel in weight", "torch.stack", "quantization_params(channel",
                                  "quantization_params(w[c]"],
}
EPS = torch.finfo(torch.float32).eps


def _random(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """``scale * (N(0, 1) + shift)`` from a private generator (float32)."""
    return scale * (randn(*shape, seed=seed) + shift)


# --------------------------------------------------------------------------- quantization_params

def _observer(x: torch.Tensor, qmin: int, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's ``MinMaxObserver`` (per-tensor affine) after observing ``x``: 0-dim float32 scale and int64
    zero point (the observer returns 1-element tensors, the zero point as int32)."""
    observer = MinMaxObserver(dtype=torch.quint8 if qmin >= 0 else torch.qint8, quant_min=qmin, quant_max=qmax)
    observer(x.detach().float())
    scale, zero_point = observer.calculate_qparams()
    return scale.reshape(()).float(), zero_point.reshape(()).long()


def _qparams_formula(x: torch.Tensor, qmin: int, qmax: int, *, with_zero: bool = True, steps: int | None = None,
                     floor_eps: bool = True, rounding: str = "round", symmetric: bool = False) -> tuple[float, float]:
    """The observer's formula, or (keywords) a known mistake: ``(scale, zero point)`` as floats (NaN: undefined)."""
    x = x.detach().float()
    lo, hi = x.min(), x.max()
    if with_zero:
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    steps = float(qmax - qmin) if steps is None else float(steps)
    scale = (torch.maximum(-lo, hi) / (steps / 2)) if symmetric else (hi - lo) / steps
    if floor_eps:
        scale = scale.clamp(min=EPS)
    if symmetric:
        return scale.item(), float("nan")
    ratio = lo / scale
    if rounding == "round":
        zero_point = qmin - torch.round(ratio)
    elif rounding == "trunc_ratio":             # qmin - int(min_neg / scale)
        zero_point = qmin - torch.trunc(ratio)
    elif rounding == "trunc_all":               # int(qmin - min_neg / scale)
        zero_point = torch.trunc(qmin - ratio)
    else:                                       # qmin - floor(min_neg / scale)
        zero_point = qmin - torch.floor(ratio)
    if not torch.isfinite(zero_point):
        return scale.item(), float("nan")
    return scale.item(), zero_point.clamp(qmin, qmax).item()


def _qparams_mistakes(x: torch.Tensor, qmin: int, qmax: int) -> dict[str, tuple[float, float]]:
    return {
        "a range that does not include 0 (min_neg = min(x.min(), 0) and max_pos = max(x.max(), 0): the float 0 - "
        "padding, a ReLU's zeros - must be exactly representable)": _qparams_formula(x, qmin, qmax, with_zero=False),
        "dividing the range by qmax instead of qmax - qmin (the number of steps between the smallest and the largest "
        "integer; the two differ for a signed range)": _qparams_formula(x, qmin, qmax, steps=qmax),
        "the zero point truncated instead of rounded (qmin - int(min_neg / scale): use torch.round)":
            _qparams_formula(x, qmin, qmax, rounding="trunc_ratio"),
        "the zero point truncated instead of rounded (int(qmin - min_neg / scale), or .to(torch.int64) without "
        "torch.round)": _qparams_formula(x, qmin, qmax, rounding="trunc_all"),
        "torch.floor instead of torch.round for the zero point": _qparams_formula(x, qmin, qmax, rounding="floor"),
        "a scale without the eps floor (clamp it below at torch.finfo(torch.float32).eps: for a constant tensor the "
        "range is 0, the scale 0 and min_neg / scale is 0 / 0)": _qparams_formula(x, qmin, qmax, floor_eps=False),
        "symmetric quantization (max |x| / ((qmax - qmin) / 2); this is the affine, asymmetric scheme)":
            _qparams_formula(x, qmin, qmax, symmetric=True),
    }


def _same_scale(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-5 * abs(b)


def _zero_d(value, what: str, name: str) -> torch.Tensor:
    value = as_tensor(value, f"{what}: the {name}")
    if value.dim() != 0:
        raise AssertionError(f"{what}: the {name} has shape {tuple(value.shape)}, expected a 0-dim tensor (torch's "
                             "observer returns 1-element tensors: .reshape(()) makes them 0-dim)")
    return value


def _qparams_close(got, x: torch.Tensor, qmin: int, qmax: int, what: str) -> None:
    """``got == (scale, zero_point)`` as the observer's; otherwise name the mistake it matches, if any."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{what}: expected a pair (scale, zero_point), got {type(got).__name__}")
    scale, zero_point = _zero_d(got[0], what, "scale"), _zero_d(got[1], what, "zero point")
    assert scale.dtype == torch.float32, f"{what}: expected a float32 scale, got {scale.dtype}"
    s, z = scale.item(), zero_point.item()
    if zero_point.is_floating_point() and math.isfinite(z) and z != round(z):
        raise AssertionError(f"{what}: the zero point {z:.6g} is not an integer - round it (torch.round) and "
                             "return it as a torch.int64 tensor")
    assert not zero_point.is_floating_point() and not zero_point.is_complex() and zero_point.dtype != torch.bool, (
        f"{what}: expected an integer zero point (torch.int64), got {zero_point.dtype}")
    expected_s, expected_z = _observer(x, qmin, qmax)
    es, ez = expected_s.item(), expected_z.item()
    if _same_scale(s, es) and z == ez:
        return
    for mistake, (ms, mz) in _qparams_mistakes(x, qmin, qmax).items():
        if (_same_scale(ms, es) and (math.isnan(mz) or mz == ez)) or not _same_scale(s, ms):
            continue
        if math.isnan(mz) or z == mz:
            raise AssertionError(f"{what}: expected scale {es:.6g} and zero point {ez}, got {s:.6g} and {z} - that "
                                 f"is what {mistake} gives")
    raise AssertionError(f"{what}: expected scale {es:.6g} and zero point {ez}, got {s:.6g} and {z}")


def _range(x: torch.Tensor) -> str:
    return f"values in [{x.min():.3g}, {x.max():.3g}]"


def _mixed_cases() -> list[tuple[torch.Tensor, int | None, int | None, str]]:
    """(x, qmin, qmax, description) on mixed-sign tensors; qmin = qmax = None: the defaults (0..255)."""
    cases = []
    for shape, seed, scale, shift, bounds in [((64,), 2000, 2.0, 0.3, None), ((8, 16), 2001, 0.5, 0.6, (0, 127)),
                                              ((2, 3, 4, 5), 2002, 3.0, 0.2, (-128, 127)),
                                              ((100,), 2003, 1.0, -0.4, (0, 15)),
                                              ((300,), 2004, 0.05, 1.1, (-128, 127)),
                                              ((10, 10), 2005, 7.0, -1.0, (0, 255))]:
        x = _random(*shape, seed=seed, scale=scale, shift=shift)
        qmin, qmax = bounds or (None, None)
        where = f"qmin={qmin}, qmax={qmax}" if bounds else "the default range (0..255)"
        cases.append((x, qmin, qmax, f"x of shape {list(shape)}, {_range(x)}, {where}"))
    return cases


def _one_sided_cases() -> list[tuple[torch.Tensor, int, int, str]]:
    """All-positive tensors (a ReLU's outputs) and all-negative ones, in three ranges."""
    positive = _random(50, seed=2100).abs() + 0.5
    negative = -(_random(40, seed=2101, scale=0.3).abs() + 1.0)
    return [(x, qmin, qmax, f"an {kind} x, {_range(x)}, qmin={qmin}, qmax={qmax}")
            for x, kind in ((positive, "all-positive"), (negative, "all-negative"))
            for qmin, qmax in ((0, 255), (-128, 127), (0, 127))]


def _degenerate_cases() -> list[tuple[torch.Tensor, int, int, str]]:
    """A constant-zero tensor, tiny ranges (below eps * (qmax - qmin)) and a constant positive tensor."""
    cases = [(torch.zeros(10), "x = 0 everywhere"), (_random(20, seed=2200, scale=1e-6).abs(), "a tiny x"),
             (_random(30, seed=2201, scale=1e-6), "a tiny x"), (torch.full((4, 4), 2.0), "x = 2 everywhere")]
    return [(x, qmin, qmax, f"{kind}, {_range(x)}, qmin={qmin}, qmax={qmax}")
            for x, kind in cases for qmin, qmax in ((0, 255), (-128, 127))]


def _qparams_cases(quantization_params, cases) -> None:
    """Call with each case's range (``None``: the defaults, 0..255) and compare with the observer."""
    for x, qmin, qmax, what in cases:
        got = quantization_params(x) if qmin is None else quantization_params(x, qmin, qmax)
        _qparams_close(got, x, 0 if qmin is None else qmin, 255 if qmax is None else qmax, what)


@check(M, "quantization_params", points=2)
def qparams_match_minmax_observer(quantization_params):
    """MinMaxObserver's scale and zero point on mixed-sign tensors: 0..255 (the default), 0..127, -128..127, 0..15."""
    _qparams_cases(quantization_params, _mixed_cases())


@check(M, "quantization_params", points=1)
def qparams_range_contains_zero(quantization_params):
    """All-positive tensors (a ReLU's outputs: zero point qmin) and all-negative ones (zero point qmax): 0 included."""
    _qparams_cases(quantization_params, _one_sided_cases())


@check(M, "quantization_params", points=1)
def qparams_constant_and_tiny_tensors(quantization_params):
    """A constant-zero tensor (scale eps, zero point qmin), tiny ranges (scale eps), a constant positive tensor."""
    _qparams_cases(quantization_params, _degenerate_cases())


@check(M, "quantization_params", points=1, kind="rejects")
def qparams_reject_bad_inputs(quantization_params):
    """ValueError for qmin == qmax, qmin > qmax and an empty tensor."""
    x = _random(10, seed=2300)
    cases = [("qmin=qmax=5 (no step between the integers)", (x, 5, 5)), ("qmin=10, qmax=0", (x, 10, 0)),
             ("an empty x (torch.empty(0): no range)", (torch.empty(0), 0, 255)),
             ("an empty x of shape [3, 0]", (torch.empty(3, 0), -128, 127))]
    for what, args in cases:
        expect_value_error(quantization_params, args, {}, what,
                           "check qmin < qmax and x.numel() > 0 first, and raise ValueError")


# --------------------------------------------------------------------------- fake_quantize

def _torch_fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x.float(), float(scale), int(zero_point), qmin, qmax)


def _fake_quantize_mistakes(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> dict[str, torch.Tensor]:
    s, z = float(scale), int(zero_point)
    r = torch.round(x / s)

    def clamp(q):
        return q.clamp(qmin, qmax)

    return {
        "x clamped to [qmin, qmax] before dividing (qmin and qmax bound the integers q: clamp round(x / scale) + "
        "zero_point, not x)": (torch.round(x.clamp(qmin, qmax) / s) + z - z) * s,
        "no clamp (values beyond the range must saturate at (qmin - zero_point) * scale and (qmax - zero_point) * "
        "scale, as int8 does)": r * s,
        "floor instead of round (round to the nearest level: torch.round)": (clamp(torch.floor(x / s) + z) - z) * s,
        "truncation (int(), .to(torch.int64) or torch.trunc) instead of round (round to the nearest level: "
        "torch.round)": (clamp(torch.trunc(x / s) + z) - z) * s,
        "the zero point not subtracted when dequantizing (q * scale instead of (q - zero_point) * scale)":
            clamp(r + z) * s,
        "the zero point not added when quantizing (q = clamp(round(x / scale) + zero_point, qmin, qmax))":
            (clamp(r) - z) * s,
        "the zero point ignored (clamp(round(x / scale), qmin, qmax) * scale)": clamp(r) * s,
        "the integers q returned (dequantize them: (q - zero_point) * scale)": clamp(r + z),
    }


def _mistake_named(got: torch.Tensor, expected: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str | None:
    for mistake, wrong in mistakes.items():
        if not torch.allclose(wrong, expected, atol=1e-5, rtol=1e-4) and got.shape == wrong.shape and \
                torch.allclose(got.double(), wrong.double(), atol=1e-5, rtol=1e-4):
            return mistake
    return None


def _fake_quantize_close(got, x, scale, zero_point, qmin, qmax, what: str) -> None:
    got = as_tensor(got, what)
    assert got.is_floating_point(), (f"{what}: expected a float tensor (the dequantized values), got {got.dtype} - "
                                     "return (q - zero_point) * scale")
    close_naming(got, _torch_fake_quantize(x, scale, zero_point, qmin, qmax),
                 _fake_quantize_mistakes(x, scale, zero_point, qmin, qmax), what)


def _calibrated(seed: int, shape: tuple[int, ...], qmin: int, qmax: int, *, spread: float = 1.0, shift: float = 0.3,
                positive: bool = False):
    """x, and the observer's parameters from a narrower copy of x (so that values beyond the range saturate)."""
    x = _random(*shape, seed=seed, scale=spread, shift=shift)
    calibration = 0.6 * x.flatten()[: max(1, x.numel() // 2)]
    calibration = calibration.abs() if positive else calibration
    scale, zero_point = _observer(calibration, qmin, qmax)
    return x, scale, zero_point


def _fake_quantize_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int, str]]:
    """(x, scale, zero_point, qmin, qmax, description), the parameters calibrated on a narrower copy of x."""
    cases = []
    for seed, shape, qmin, qmax, kw in [(2400, (64,), 0, 255, {}), (2401, (8, 16), 0, 127, {"spread": 2.0}),
                                        (2402, (2, 3, 4, 5), -128, 127, {"spread": 0.5, "shift": -0.2}),
                                        (2403, (100,), 0, 15, {}), (2404, (200,), 0, 255, {"positive": True}),
                                        (2405, (50,), -128, 127, {"spread": 30.0})]:
        x, scale, zero_point = _calibrated(seed, shape, qmin, qmax, **kw)
        what = (f"x of shape {list(shape)}, scale={scale.item():.4g}, zero_point={zero_point.item()}, "
                f"qmin={qmin}, qmax={qmax}")
        cases.append((x, scale, zero_point, qmin, qmax, what))
    return cases


@check(M, "fake_quantize", points=1)
def fake_quantize_matches_torch(fake_quantize):
    """torch.fake_quantize_per_tensor_affine for 0..255 (the default), 0..127, -128..127, 0..15; tensors or numbers."""
    cases = _fake_quantize_cases()
    for i, (x, scale, zero_point, qmin, qmax, what) in enumerate(cases):
        if i == 0:                                     # qmin=0, qmax=255: the defaults
            got = fake_quantize(x, scale, zero_point)
            what += " (the default range)"
        elif i == len(cases) - 1:
            got = fake_quantize(x, scale.item(), int(zero_point), qmin, qmax)
            what += " (scale a Python float, zero_point an int)"
        else:
            got = fake_quantize(x, scale, zero_point, qmin, qmax)
        _fake_quantize_close(got, x, scale, zero_point, qmin, qmax, what)


# (scale, zero point, qmin, qmax, x, expected): the representable floats are (qmin - zp) * s .. (qmax - zp) * s
SATURATION = [
    (0.1, 10, 0, 255, [-5.0, -1.04, -1.0, 0.0, 0.26, 24.5, 24.54, 30.0, 1000.0],
     [-1.0, -1.0, -1.0, 0.0, 0.3, 24.5, 24.5, 24.5, 24.5]),
    (0.5, -3, -128, 127, [-100.0, -62.6, -1.2, 64.9, 65.2, 1e4], [-62.5, -62.5, -1.0, 65.0, 65.0, 65.0]),
    (0.25, 0, 0, 15, [-3.0, -0.1, 0.3, 3.7, 3.8, 9.0], [0.0, 0.0, 0.25, 3.75, 3.75, 3.75]),
]


@check(M, "fake_quantize", points=1)
def fake_quantize_saturates(fake_quantize):
    """Values beyond the range clamp to (qmin - zero_point) * scale and (qmax - zero_point) * scale (hand examples)."""
    for s, zp, qmin, qmax, x, expected in SATURATION:
        x = torch.tensor(x)
        what = (f"scale={s}, zero_point={zp}, qmin={qmin}, qmax={qmax} (representable: {(qmin - zp) * s:g} to "
                f"{(qmax - zp) * s:g}), x={x.tolist()} (expected {expected})")
        got = fake_quantize(x, torch.tensor(s), torch.tensor(zp), qmin, qmax)
        _fake_quantize_close(got, x, s, zp, qmin, qmax, what)


@check(M, "fake_quantize", points=1, kind="property")
def fake_quantize_error_within_half_a_step(fake_quantize):
    """Inside the representable range, |x - fake_quantize(x)| <= scale / 2 (round to the nearest level)."""
    for seed, (qmin, qmax), (s, zp) in [(2500, (0, 255), (0.02, 77)), (2501, (-128, 127), (0.5, 10)),
                                        (2502, (0, 15), (1.5, 3))]:
        low, high = (qmin - zp + 0.5) * s, (qmax - zp - 0.5) * s      # half a step inside the ends
        g = torch.Generator().manual_seed(seed)
        x = low + (high - low) * torch.rand(500, generator=g)
        what = (f"500 values inside the range [{low:.4g}, {high:.4g}], scale={s}, zero_point={zp}, qmin={qmin}, "
                f"qmax={qmax}")
        got = as_tensor(fake_quantize(x, torch.tensor(s), torch.tensor(zp), qmin, qmax), what)
        assert got.shape == x.shape, f"{what}: expected shape {tuple(x.shape)}, got {tuple(got.shape)}"
        error = (got.double() - x.double()).abs().max().item()
        if error > s / 2 * (1 + 1e-4):
            expected = _torch_fake_quantize(x, s, zp, qmin, qmax)
            mistake = _mistake_named(got, expected, _fake_quantize_mistakes(x, s, zp, qmin, qmax))
            hint = (f" - that is what {mistake} gives" if mistake
                    else " - round x / scale to the nearest integer, add the zero point, clamp, subtract it again")
            raise AssertionError(f"{what}: an error of up to {error:.4g}, more than half a step (scale / 2 = "
                                 f"{s / 2:g}){hint}")


@check(M, "fake_quantize", points=1, kind="property")
def fake_quantize_keeps_zero_and_levels(fake_quantize):
    """0 comes back exactly 0, every level (k - zero_point) * scale unchanged; applying it twice changes nothing."""
    for qmin, qmax, s, zp in [(0, 255, 0.03, 100), (-128, 127, 0.2, -20), (0, 127, 0.7, 5)]:
        where = f"scale={s}, zero_point={zp}, qmin={qmin}, qmax={qmax}"
        mistakes = _fake_quantize_mistakes(torch.zeros(3), s, zp, qmin, qmax)
        got = as_tensor(fake_quantize(torch.zeros(3), torch.tensor(s), torch.tensor(zp), qmin, qmax), where)
        close_naming(got, torch.zeros(3), mistakes, f"{where}, x = 0 (the float 0 must come back exactly 0)")
        levels = (torch.arange(qmin, qmax + 1, dtype=torch.float32) - zp) * s
        got = fake_quantize(levels, torch.tensor(s), torch.tensor(zp), qmin, qmax)
        close_naming(got, levels, _fake_quantize_mistakes(levels, s, zp, qmin, qmax),
                     f"{where}, x = every representable value (k - zero_point) * scale (should come back unchanged)")
        x = _random(100, seed=2600 + qmin, scale=(qmax - qmin) * s / 3)
        once = as_tensor(fake_quantize(x, torch.tensor(s), torch.tensor(zp), qmin, qmax), where)
        close_naming(fake_quantize(once.detach().clone(), torch.tensor(s), torch.tensor(zp), qmin, qmax), once.detach(),
                     {}, f"{where}, fake_quantize applied to its own result (should change nothing)")


# --------------------------------------------------------------------------- serialized_bytes

MLP_BN = [["Linear", [6, 16]], ["BatchNorm1d", [16]], ["ReLU", []], ["Linear", [16, 4]]]
CNN_BN = [["Conv2d", [3, 8, 3]], ["BatchNorm2d", [8]], ["ReLU", []], ["Flatten", []], ["Linear", [8 * 4 * 4, 5]]]
PLAIN = [["Linear", [20, 10]], ["Tanh", []], ["Sequential", [["Dropout", [0.1]], ["Linear", [10, 3]]]]]
BN_HEAVY = [["BatchNorm1d", [256]]]
BN_CNN = [["Conv2d", [2, 32, 1]], ["BatchNorm2d", [32]], ["Sequential", [["BatchNorm2d", [32]], ["ReLU", []]]]]


def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return len(buffer.getvalue())


def _bytes_reference(arg: dict) -> int:
    return _saved_bytes(build(arg).state_dict())


def _bytes_mistakes(arg: dict) -> dict[str, int]:
    model = build(arg)
    params = dict(model.named_parameters())
    return {
        "count_parameters(model) * 4 (the 'fp32 size' estimate: it forgets the buffers and the file's overhead - "
        "save the state dict and count the bytes)": 4 * sum(p.numel() for p in params.values()),
        "the parameters only (torch.save of model.named_parameters()): the buffers, BatchNorm's running statistics "
        "and counter, are in the state dict and on disk too - save model.state_dict()": _saved_bytes(params),
        "the parameters only (torch.save of list(model.parameters())): the buffers, BatchNorm's running statistics "
        "and counter, are on disk too - save model.state_dict()": _saved_bytes(list(params.values())),
        "the raw bytes of the tensors (numel * element_size) without the file's own overhead - count what "
        "torch.save writes": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "sys.getsizeof(model) (the size of the Python object, not of its tensors)": sys.getsizeof(model),
        "sys.getsizeof(model.state_dict()) (the size of the dict object, not of its tensors)":
            sys.getsizeof(model.state_dict()),
    }


def _number(value, what: str) -> float:
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    if type(value) in (int, float):
        return value
    raise AssertionError(f"{what}: expected a number of bytes (an int), got {type(value).__name__}")


def _bytes_close(got, arg: dict, what: str) -> None:
    value, expected = _number(got, what), _bytes_reference(arg)
    if value == expected:
        return
    real = {k: v for k, v in _bytes_mistakes(arg).items() if v != expected}
    mistake = next((k for k, v in real.items() if v == value), None)
    hint = f" - that is what {mistake} gives" if mistake else ""
    raise AssertionError(f"{what}: expected {expected} bytes (torch.save(model.state_dict(), io.BytesIO())), "
                         f"got {value:g}{hint}")


@check(M, "serialized_bytes", points=1)
def bytes_match_torch_save(serialized_bytes):
    """The bytes of torch.save(model.state_dict()): MLP and CNN with BatchNorm, a nested model, eval and frozen."""
    models = [("an MLP with BatchNorm", module_arg(MLP_BN, 2700)),
              ("a CNN with BatchNorm, its first weight frozen", module_arg(CNN_BN, 2701, frozen=("0.weight",))),
              ("a nested MLP without buffers", module_arg(PLAIN, 2702)),
              ("an MLP with BatchNorm in eval mode", module_arg(MLP_BN, 2703, training=False))]
    for what, arg in models:
        _bytes_close(serialized_bytes(arg), arg, what)


@check(M, "serialized_bytes", points=1)
def bytes_include_buffers(serialized_bytes):
    """Models whose BatchNorm buffers (running mean, variance, counter) weigh as much as their parameters."""
    for what, arg in [("BatchNorm1d(256) alone: 512 parameters, 513 buffer values", module_arg(BN_HEAVY, 2800)),
                      ("a 1x1 convolution and two BatchNorm2d(32)", module_arg(BN_CNN, 2801))]:
        _bytes_close(serialized_bytes(arg), arg, what)


@check(M, "serialized_bytes", points=1, kind="property")
def bytes_are_a_python_int(serialized_bytes):
    """The result is a Python int (not a tensor, a float or a numpy integer)."""
    what = "an MLP with BatchNorm"
    value = serialized_bytes(module_arg(MLP_BN, 2900))
    if type(value) is not int:
        kind = "a tensor" if torch.is_tensor(value) else f"a {type(value).__name__}"
        raise AssertionError(f"{what}: got {kind}, expected a Python int - a byte count is a whole number: return "
                             "len(buffer.getvalue()) (or int(...) of it)")


# --------------------------------------------------------------------------- parity

class _Table(nn.Module):
    """A "model" whose output on input row i is row i of a fixed table of logits (for onnx_parity)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits.detach().clone())

    def forward(self, x):
        return self.logits[x.long()]


KEYS = ("max_rel_error", "top1_agreement")


def _parity_reference(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """``course_lib.compress.onnx_parity`` with a "model" and a "session" that output these logits."""
    return onnx_parity(_Table(reference), _Table(candidate), torch.arange(reference.shape[0]))


def _parity_mistakes(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, dict[str, float]]:
    d = (candidate - reference).abs()
    agree = (candidate.argmax(-1) == reference.argmax(-1)).double().mean().item()
    return {"max_rel_error": {
        "max |reference| not clamped below at 1e-12 (all-zero logits give 0 / 0 = NaN)":
            (d.max() / reference.abs().max()).item(),
        "the absolute error max |candidate - reference| (divide it by max |reference|: absolute differences mean "
        "nothing when logits are tiny or huge)": d.max().item(),
        "the largest element-wise relative error |candidate - reference| / |reference| (it blows up where a "
        "reference logit is near 0: divide the largest difference by the largest |reference|)":
            (d / reference.abs()).max().item(),
        "the error relative to max |candidate| (the reference is the model one trusts: divide by max |reference|)":
            (d.max() / candidate.abs().max()).item(),
        "the error relative to max(reference) without the absolute value (divide by max |reference|)":
            (d.max() / reference.max()).item(),
        "the mean absolute difference relative to max |reference| (the largest difference counts)":
            (d.mean() / reference.abs().max()).item(),
    }, "top1_agreement": {
        "a fraction in 0..1 instead of percent (multiply by 100)": agree,
        "the argmax over dim 0, the batch (the predicted class of a row is the argmax over the classes, dim=-1)":
            100.0 * (candidate.argmax(0) == reference.argmax(0)).double().mean().item(),
        "the percentage of rows that disagree": 100.0 * (1.0 - agree),
        "the number of agreeing rows instead of their percentage": agree * reference.shape[0],
    }}


def _same_value(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= 1e-5 + 1e-4 * abs(b)


def _parity_close(got, reference: torch.Tensor, candidate: torch.Tensor, what: str) -> None:
    if not isinstance(got, dict):
        raise AssertionError(f"{what}: expected a dict {{'max_rel_error': ..., 'top1_agreement': ...}}, got "
                             f"{type(got).__name__}")
    assert set(got) == set(KEYS), f"{what}: expected the keys {list(KEYS)}, got {sorted(got)}"
    expected, mistakes = _parity_reference(reference, candidate), _parity_mistakes(reference, candidate)
    for key in KEYS:
        value = got[key]
        if type(value) not in (int, float):
            kind = "a tensor" if torch.is_tensor(value) else f"a {type(value).__name__}"
            raise AssertionError(f"{what}: {key} is {kind} - return a Python float (float(...))")
        if _same_value(value, expected[key]):
            continue
        real = {k: v for k, v in mistakes[key].items() if not _same_value(v, expected[key])}
        mistake = next((k for k, v in real.items() if _same_value(value, v)), None)
        hint = f" - that is what {mistake} gives" if mistake else ""
        raise AssertionError(f"{what}: {key} should be {expected[key]:.6g}, got {value:.6g}{hint}")


def _logits_pair(seed: int, n: int, c: int, scale: float, noise: float, quantized: bool = False):
    """Reference logits and a candidate: the reference plus noise, or (``quantized``) fake-quantized to 4 bits."""
    reference = randn(n, c, seed=seed, scale=scale)
    if quantized:
        s, zp = _observer(reference, 0, 15)
        return reference, _torch_fake_quantize(reference, s, zp, 0, 15)
    return reference, reference + randn(n, c, seed=seed + 1, scale=scale * noise)


def _parity_cases() -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """(reference, candidate, description): logits of many scales, a candidate with noise or fake-quantized."""
    cases = []
    for seed, (n, c), scale, noise, quantized in [(3000, (200, 10), 3.0, 0.2, False), (3002, (50, 4), 1e-3, 0.3, False),
                                                  (3004, (100, 100), 50.0, 0.01, False),
                                                  (3006, (7, 2), 0.7, 0.5, False), (3008, (300, 10), 4.0, 0.0, True)]:
        reference, candidate = _logits_pair(seed, n, c, scale, noise, quantized)
        off = "the candidate fake-quantized to 4 bits" if quantized else f"the candidate off by ~{scale * noise:.2g}"
        cases.append((reference, candidate, f"[{n}, {c}] logits of size ~{scale:g}, {off}"))
    return cases


@check(M, "parity", points=2)
def parity_matches_onnx_parity(parity):
    """course_lib.compress.onnx_parity's max relative error and top-1 agreement (percent), on logits of many scales."""
    for reference, candidate, what in _parity_cases():
        _parity_close(parity(reference, candidate), reference, candidate, what)


# Row 0 agrees (class 0), row 1 does not (class 2 for the reference, 0 for the candidate); the largest
# difference is 1.5, the largest |reference| 4: max_rel_error = 0.375, top1_agreement = 50.
HAND_REFERENCE = torch.tensor([[2.0, 0.0, 1.0], [0.0, -4.0, 1.5]])
HAND_CANDIDATE = torch.tensor([[2.0, 0.5, 1.0], [1.5, -4.0, 1.4]])


@check(M, "parity", points=1)
def parity_hand_example(parity):
    """Two rows, one agreeing: max_rel_error = 1.5 / 4 = 0.375, top1_agreement = 50."""
    what = "hand example (expected max_rel_error 0.375, top1_agreement 50.0)"
    got = parity(HAND_REFERENCE, HAND_CANDIDATE)
    _parity_close(got, HAND_REFERENCE, HAND_CANDIDATE, what)


@check(M, "parity", points=1)
def parity_is_relative(parity):
    """Scaling both logits by 1000 or 1/1000 changes nothing; identical logits (all-zero too) give 0 and 100."""
    reference, candidate = _logits_pair(3100, 40, 6, 1.0, 0.3)
    base = parity(reference, candidate)
    _parity_close(base, reference, candidate, "[40, 6] logits of size ~1")
    for factor in (1000.0, 1e-3):
        what = f"the same logits multiplied by {factor:g} (a relative error and an agreement do not change)"
        _parity_close(parity(reference * factor, candidate * factor), reference * factor, candidate * factor, what)
    for logits, kind in ((reference, "identical logits"), (torch.zeros(5, 3), "identical all-zero logits")):
        what = f"{kind} (expected max_rel_error 0 and top1_agreement 100; max |reference| is clamped below at 1e-12)"
        _parity_close(parity(logits, logits.clone()), logits, logits.clone(), what)


@check(M, "parity", points=1, kind="rejects")
def parity_rejects_bad_inputs(parity):
    """ValueError for different shapes (classes or rows), 1-D and 3-D logits."""
    a = randn(4, 3, seed=3200)
    cases = [("shapes [4, 3] and [4, 5]", (a, randn(4, 5, seed=3201))),
             ("shapes [4, 3] and [3, 3]", (a, a[:3])),
             ("1-D logits of shape [4]", (a[:, 0], a[:, 0].clone())),
             ("3-D logits of shape [2, 4, 3]", (a.expand(2, 4, 3).clone(), a.expand(2, 4, 3).clone()))]
    for what, args in cases:
        expect_value_error(parity, args, {}, what, "check that both are [n, C] with the same shape first")


# --------------------------------------------------------------------------- per_channel_fake_quantize

def _per_channel_reference(w: torch.Tensor, qmin: int, qmax: int, axis: int = 0) -> torch.Tensor:
    """torch's PerChannelMinMaxObserver (per-channel affine, channels along ``axis``) and fake quantization."""
    observer = PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.quint8 if qmin >= 0 else torch.qint8,
                                        qscheme=torch.per_channel_affine, quant_min=qmin, quant_max=qmax)
    observer(w.detach().float())
    scales, zero_points = observer.calculate_qparams()
    return torch.fake_quantize_per_channel_affine(w.float(), scales.float(), zero_points.int(), axis % w.dim(),
                                                  qmin, qmax)


def _per_channel_mistakes(w: torch.Tensor, qmin: int, qmax: int) -> dict[str, torch.Tensor]:
    s, z = _observer(w, qmin, qmax)
    return {
        "one scale and zero point for the whole weight (per-tensor parameters: each output channel, dim 0, gets "
        "its own, from its own range)": _torch_fake_quantize(w, s, z, qmin, qmax),
        "the channels along the last dimension (the output channels are dim 0 of a Linear weight [out, in] and of "
        "a convolution's [out, in, kh, kw])": _per_channel_reference(w, qmin, qmax, axis=-1),
    }


def _depends_first(f, qmin: int, qmax: int) -> str:
    """A hint when the answer's own quantization_params or fake_quantize (which it may call) is wrong too."""
    x = torch.tensor([-0.7, 0.05, 1.9, 0.3])
    expected_s, expected_z = _observer(x, qmin, qmax)
    return fix_first(
        f, "quantization_params", (x, qmin, qmax),
        right=lambda got: _same_scale(float(got[0]), expected_s.item()) and float(got[1]) == expected_z.item(),
        wrong=lambda got: (f" - your quantization_params({x.tolist()}, {qmin}, {qmax}) is wrong too "
                           f"({float(got[0]):.6g}, {float(got[1]):g}; expected {expected_s.item():.6g}, "
                           f"{expected_z.item()}): if you call it here, fix it first")
    ) or fix_first(f, "fake_quantize", (torch.tensor(0.26), 0.1, 10, 0, 255), 0.3, tol=1e-5)


def _per_channel_close(f, w: torch.Tensor, qmin: int | None, qmax: int | None, what: str) -> None:
    lo, hi = (-128, 127) if qmin is None else (qmin, qmax)
    got = f(w) if qmin is None else f(w, qmin, qmax)
    try:
        got = as_tensor(got, what)
        assert got.is_floating_point(), f"{what}: expected a float tensor (the levels), got {got.dtype}"
        close_naming(got, _per_channel_reference(w, lo, hi), _per_channel_mistakes(w, lo, hi), what)
    except AssertionError as e:
        raise AssertionError(f"{e}{_depends_first(f, lo, hi)}") from None


def _weights(seed: int, shape: tuple[int, ...], spreads: list[float]) -> torch.Tensor:
    """A weight whose output channel c has values of size ``spreads[c]`` (and a mean of its own)."""
    w = randn(*shape, seed=seed)
    scale = torch.tensor(spreads).reshape(-1, *[1] * (len(shape) - 1))
    shift = randn(shape[0], seed=seed + 1).reshape(-1, *[1] * (len(shape) - 1))
    return scale * (w + 0.3 * shift)


@check(M, "per_channel_fake_quantize", points=2)
def per_channel_matches_torch(per_channel_fake_quantize):
    """PerChannelMinMaxObserver (ch_axis 0, per-channel affine) and torch.fake_quantize_per_channel_affine: Linear
    and convolution weights whose channels differ in size, -128..127 (the default), 0..255 and 0..15."""
    cases = [(3100, (6, 5), [1.0, 0.1, 3.0, 0.02, 1.0, 0.5], None, None),
             (3102, (4, 3, 3, 3), [0.2, 2.0, 0.05, 1.0], 0, 255),
             (3104, (3, 7), [1.0, 1.0, 10.0], 0, 15),
             (3106, (5, 2, 3), [0.5, 0.001, 1.0, 0.3, 4.0], -128, 127)]
    for seed, shape, spreads, qmin, qmax in cases:
        w = _weights(seed, shape, spreads)
        where = "the default range (-128..127)" if qmin is None else f"qmin={qmin}, qmax={qmax}"
        what = f"a weight of shape {list(shape)}, output channels of sizes {spreads}, {where}"
        _per_channel_close(per_channel_fake_quantize, w, qmin, qmax, what)


@check(M, "per_channel_fake_quantize", points=1)
def per_channel_small_channels_survive(per_channel_fake_quantize):
    """A channel 1000 times smaller than the other keeps its shape (per-tensor rounds it to 0); an all-zero channel
    comes back 0."""
    w = torch.tensor([[100.0, -50.0, 20.0, 7.0], [0.1, -0.05, 0.02, 0.007], [0.0, 0.0, 0.0, 0.0]])
    what = ("the weight [[100, -50, 20, 7], [0.1, -0.05, 0.02, 0.007], [0, 0, 0, 0]], -128..127 (row 1 is row 0 / "
            "1000: it should keep its shape; row 2 should come back 0)")
    _per_channel_close(per_channel_fake_quantize, w, -128, 127, what)
