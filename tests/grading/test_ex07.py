"""The ex07 checks (quantization parameters, fake quantization, bytes on disk, parity) fail wrong
answers, and name their mistakes; their references are torch's own (MinMaxObserver,
fake_quantize_per_tensor_affine, torch.save) and course_lib.compress.onnx_parity.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex07_quantization.py with text replaced. A group breaks
each of the four functions at most once, so one child process grades up to four mistakes, and a
mistake in one function costs nothing in the others.
"""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.compress import size_on_disk
from course_lib.grading.checks import build, module_arg
from course_lib.grading.checks import ex07_quantization as checks
from course_lib.paths import solutions_dir
from _mutations import MutationTests, assert_inputs_modified, grade_text

MODULE = "ex07_quantization"
SOLUTION = solutions_dir() / f"{MODULE}.py"

LOW = "min_neg = torch.clamp(x.min(), max=0.0)"
HIGH = "max_pos = torch.clamp(x.max(), min=0.0)"
SCALE = "scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=torch.finfo(torch.float32).eps)"
ZERO_POINT = "zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax).to(torch.int64)"
QUANTIZE = "q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)"
DEQUANTIZE = "return ((q - zero_point) * scale).to(x.dtype)"
SAVE = "torch.save(model.state_dict(), buffer)"
COUNT = "return len(buffer.getvalue())"
ERROR = "error = (candidate - reference).abs().max() / scale"
AGREE = "agree = (candidate.argmax(dim=-1) == reference.argmax(dim=-1)).float().mean()"
RESULT = 'return {"max_rel_error": float(error), "top1_agreement": 100.0 * float(agree)}'
DIMS = "dims = tuple(range(1, w.dim()))"
PER_CHANNEL = {"per_channel_matches_torch", "per_channel_small_channels_survive"}

QPARAMS_VALUES = {"qparams_match_minmax_observer", "qparams_range_contains_zero", "qparams_constant_and_tiny_tensors"}
FAKE_QUANTIZE = {"fake_quantize_matches_torch", "fake_quantize_saturates", "fake_quantize_error_within_half_a_step",
                 "fake_quantize_keeps_zero_and_levels"}
BYTES_VALUES = {"bytes_match_torch_save", "bytes_include_buffers"}
PARITY_VALUES = {"parity_matches_onnx_parity", "parity_hand_example", "parity_is_relative"}

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "qparams_range_without_zero": (
        "quantization_params", [(LOW, "min_neg = x.min()"), (HIGH, "max_pos = x.max()")],
        {"qparams_range_contains_zero", "qparams_constant_and_tiny_tensors"}, "a range that does not include 0"),
    "qparams_divided_by_qmax": (  # the same as qmax - qmin when qmin = 0: only signed ranges show it
        "quantization_params", [(SCALE, SCALE.replace("float(qmax - qmin)", "float(qmax)"))], QPARAMS_VALUES,
        "dividing the range by qmax instead of qmax - qmin"),
    "qparams_zero_point_truncated": (  # .to(torch.int64) truncates what torch.round should have rounded
        "quantization_params", [(ZERO_POINT, ZERO_POINT.replace("torch.round(min_neg / scale)", "min_neg / scale"))],
        {"qparams_match_minmax_observer", "qparams_constant_and_tiny_tensors"}, "truncated instead of rounded"),
    "qparams_without_eps": (  # a constant-zero tensor: scale 0, zero point 0 / 0
        "quantization_params", [(SCALE, "scale = (max_pos - min_neg) / float(qmax - qmin)")],
        {"qparams_constant_and_tiny_tensors"}, "without the eps floor"),
    "qparams_float_zero_point": (
        "quantization_params", [(ZERO_POINT, ZERO_POINT.replace(".to(torch.int64)", ""))], QPARAMS_VALUES,
        "expected an integer zero point (torch.int64), got torch.float32"),
    "qparams_equal_bounds_accepted": (
        "quantization_params", [("if qmin >= qmax:", "if qmin > qmax:")], {"qparams_reject_bad_inputs"},
        "qmin=qmax=5 (no step between the integers): expected ValueError"),
    "qparams_empty_accepted": (  # x.min() of an empty tensor raises RuntimeError
        "quantization_params", [("if x.numel() == 0:", "if x is None:")], {"qparams_reject_bad_inputs"},
        "raised RuntimeError, expected ValueError"),
    "fake_quantize_without_clamp": (
        "fake_quantize", [(QUANTIZE, "q = torch.round(x / scale) + zero_point")],
        {"fake_quantize_matches_torch", "fake_quantize_saturates"}, "no clamp (values beyond the range must saturate"),
    "fake_quantize_floor": (
        "fake_quantize", [(QUANTIZE, QUANTIZE.replace("torch.round", "torch.floor"))], FAKE_QUANTIZE,
        "floor instead of round"),
    "fake_quantize_trunc": (
        "fake_quantize", [(QUANTIZE, QUANTIZE.replace("torch.round", "torch.trunc"))], FAKE_QUANTIZE,
        "truncation (int(), .to(torch.int64) or torch.trunc) instead of round"),
    "fake_quantize_zero_point_kept_when_dequantizing": (
        "fake_quantize", [(DEQUANTIZE, "return (q * scale).to(x.dtype)")], FAKE_QUANTIZE,
        "the zero point not subtracted when dequantizing"),
    "fake_quantize_zero_point_left_out_when_quantizing": (
        "fake_quantize", [(QUANTIZE, "q = torch.clamp(torch.round(x / scale), qmin, qmax)")], FAKE_QUANTIZE,
        "the zero point not added when quantizing"),
    "fake_quantize_clamps_x": (
        "fake_quantize", [(QUANTIZE, "q = torch.round(torch.clamp(x, qmin, qmax) / scale) + zero_point")],
        FAKE_QUANTIZE, "x clamped to [qmin, qmax] before dividing"),
    "fake_quantize_returns_integers": (
        "fake_quantize", [(DEQUANTIZE, "return q")], FAKE_QUANTIZE, "the integers q returned"),
    "bytes_fp32_estimate": (
        "serialized_bytes", [(COUNT, "return sum(p.numel() for p in model.parameters()) * 4")], BYTES_VALUES,
        "count_parameters(model) * 4"),
    "bytes_parameters_only": (
        "serialized_bytes", [(SAVE, "torch.save(dict(model.named_parameters()), buffer)")], BYTES_VALUES,
        "the parameters only (torch.save of model.named_parameters())"),
    "bytes_getsizeof": (
        "serialized_bytes", [(COUNT, "return __import__('sys').getsizeof(model)")], BYTES_VALUES,
        "sys.getsizeof(model)"),
    "bytes_raw_tensor_bytes": (
        "serialized_bytes",
        [(COUNT, "return sum(t.numel() * t.element_size() for t in model.state_dict().values())")], BYTES_VALUES,
        "the raw bytes of the tensors (numel * element_size)"),
    "bytes_tensor_returned": (  # the right value, the wrong type: only the type's check fails
        "serialized_bytes", [(COUNT, "return torch.tensor(len(buffer.getvalue()))")], {"bytes_are_a_python_int"},
        "got a tensor, expected a Python int"),
    "parity_absolute_error": (
        "parity", [(ERROR, "error = (candidate - reference).abs().max()")], PARITY_VALUES, "the absolute error"),
    "parity_elementwise_relative_error": (
        "parity", [(ERROR, "error = ((candidate - reference).abs() / reference.abs()).max()")], PARITY_VALUES,
        "the largest element-wise relative error"),
    "parity_agreement_as_a_fraction": (
        "parity", [(RESULT, RESULT.replace("100.0 * float(agree)", "float(agree)"))], PARITY_VALUES,
        "a fraction in 0..1 instead of percent"),
    "parity_argmax_over_the_batch": (
        "parity", [(AGREE, AGREE.replace("dim=-1", "dim=0"))], PARITY_VALUES, "the argmax over dim 0"),
    "parity_tensors_returned": (
        "parity", [(RESULT, 'return {"max_rel_error": error, "top1_agreement": 100.0 * agree}')], PARITY_VALUES,
        "max_rel_error is a tensor - return a Python float"),
    "parity_shapes_not_compared": (  # [4, 3] and [4, 5] then fail in the subtraction: RuntimeError
        "parity", [("if reference.shape != candidate.shape:", "if reference.shape[0] != candidate.shape[0]:")],
        {"parity_rejects_bad_inputs"}, "shapes [4, 3] and [4, 5]: raised RuntimeError, expected ValueError"),
    "per_channel_per_tensor": (  # one scale for the whole weight: the small channel rounds to 0
        "per_channel_fake_quantize", [(DIMS, "dims = tuple(range(w.dim()))")], PER_CHANNEL,
        "one scale and zero point for the whole weight (per-tensor parameters"),
    "per_channel_last_axis": (
        "per_channel_fake_quantize", [(DIMS, "dims = tuple(range(w.dim() - 1))")], PER_CHANNEL,
        "the channels along the last dimension"),
    "per_channel_integers_returned": (
        "per_channel_fake_quantize", [("return ((q - zero_point) * scale).to(weight.dtype)", "return q.long()")],
        PER_CHANNEL, "expected a float tensor (the levels), got torch.int64"),
}

GROUPS = [
    ["qparams_range_without_zero", "fake_quantize_without_clamp", "bytes_fp32_estimate", "parity_absolute_error",
     "per_channel_per_tensor"],
    ["qparams_divided_by_qmax", "fake_quantize_floor", "bytes_parameters_only", "parity_elementwise_relative_error",
     "per_channel_last_axis"],
    ["qparams_zero_point_truncated", "fake_quantize_trunc", "bytes_getsizeof", "parity_agreement_as_a_fraction",
     "per_channel_integers_returned"],
    ["qparams_without_eps", "fake_quantize_zero_point_kept_when_dequantizing", "bytes_raw_tensor_bytes",
     "parity_argmax_over_the_batch"],
    ["qparams_float_zero_point", "fake_quantize_zero_point_left_out_when_quantizing", "bytes_tensor_returned",
     "parity_tensors_returned"],
    ["qparams_equal_bounds_accepted", "fake_quantize_clamps_x", "parity_shapes_not_compared"],
    ["qparams_empty_accepted", "fake_quantize_returns_integers"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"quantization_params": 5, "fake_quantize": 4, "serialized_bytes": 3, "parity": 5,
              "per_channel_fake_quantize": 3}


STACKED = """    rows = []
    for channel in weight:
        scale, zero_point = quantization_params(channel, qmin, qmax)
        rows.append(fake_quantize(channel, scale, zero_point, qmin, qmax))
    return torch.stack(rows).to(weight.dtype)
"""


def _per_channel_via_the_others(text: str) -> str:
    """The per-channel answer written as quantization_params and fake_quantize on each output channel."""
    start = text.index("    w = weight.detach().to(torch.float32)")
    end = text.index("    ### END SOLUTION", start)
    return text[:start] + STACKED + text[end:]


def test_a_per_channel_answer_built_on_wrong_per_tensor_functions_is_told_to_fix_them_first(tmp_path):
    """The per-channel answer that calls the file's own quantization_params and fake_quantize earns every point;
    with either of those wrong, its message names the one to fix first."""
    text = _per_channel_via_the_others(SOLUTION.read_text())
    for name in ("right", "qparams", "fake"):
        (tmp_path / name).mkdir()
    report = grade_text(tmp_path / "right", MODULE, SOLUTION.name, text)
    assert report.earned == report.total == 20, report.table(verbose=True)
    for name, (old, new), hint in [
            ("qparams", (SCALE, SCALE.replace("float(qmax - qmin)", "float(qmax)")), "your quantization_params("),
            ("fake", (QUANTIZE, QUANTIZE.replace("torch.round", "torch.floor")), "your fake_quantize(")]:
        report = grade_text(tmp_path / name, MODULE, SOLUTION.name, text.replace(old, new))
        rows = [r for r in report.rows if r.function == "per_channel_fake_quantize"]
        assert rows and all(r.earned == 0 for r in rows), report.table(verbose=True)
        assert all(hint in r.message and "fix it first" in r.message for r in rows), [r.message for r in rows]


def test_answers_that_modify_their_inputs_in_place_score_zero_on_those_checks(tmp_path):
    """A fake quantization that divides x in place, and a byte count that resets the model's BatchNorm
    statistics (every model these checks send has BatchNorm first): zero on every check of both, flagged."""
    text = SOLUTION.read_text()
    text = text.replace(QUANTIZE, "q = torch.clamp(torch.round(x.div_(scale)) + zero_point, qmin, qmax)")
    text = text.replace(SAVE, "model.apply(lambda m: getattr(m, 'reset_running_stats', lambda: None)())\n    " + SAVE)
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    for function in ("fake_quantize", "serialized_bytes"):
        rows = [r for r in report.rows if r.function == function]
        assert_inputs_modified(report, MODULE, rows)
    assert all(r.earned == r.points for r in report.rows if r.function in ("quantization_params", "parity"))


# --------------------------------------------------------------------------- the references and the inputs

def _all_qparams_cases():
    return [(x, 0 if qmin is None else qmin, 255 if qmax is None else qmax)
            for x, qmin, qmax, _ in checks._mixed_cases() + checks._one_sided_cases() + checks._degenerate_cases()]


def test_the_observer_is_the_docstrings_formula_to_the_bit():
    """MinMaxObserver == the formula (float32, eps floor, torch.round, clamp) on the check inputs and on many more."""
    g = torch.Generator().manual_seed(0)
    extra = [(torch.randn(37, generator=g) * float(torch.rand(1, generator=g) * 10) + float(torch.randn(1, generator=g)),
              qmin, qmax) for _ in range(200) for qmin, qmax in ((0, 255), (0, 127), (-128, 127), (0, 15))]
    for x, qmin, qmax in _all_qparams_cases() + extra:
        scale, zero_point = checks._observer(x, qmin, qmax)
        assert scale.shape == () and scale.dtype == torch.float32 and zero_point.dtype == torch.int64
        assert (scale.item(), zero_point.item()) == checks._qparams_formula(x, qmin, qmax), (qmin, qmax)
        assert qmin <= zero_point.item() <= qmax
        # the float 0 is a level: fake-quantizing it gives exactly 0
        assert checks._torch_fake_quantize(torch.zeros(1), scale, zero_point, qmin, qmax).item() == 0.0


def test_the_qparams_mistakes_are_told_apart_on_the_check_inputs():
    told_apart = set()
    for x, qmin, qmax in _all_qparams_cases():
        expected = checks._qparams_formula(x, qmin, qmax)
        for mistake, (scale, zero_point) in checks._qparams_mistakes(x, qmin, qmax).items():
            if not checks._same_scale(scale, expected[0]) or (not math.isnan(zero_point) and zero_point != expected[1]):
                told_apart.add(mistake)
    assert told_apart == set(checks._qparams_mistakes(x, qmin, qmax))
    # dividing by qmax differs from qmax - qmin only for a signed range; the eps floor only for a (near-)constant x
    for x, qmin, qmax in _all_qparams_cases():
        same = checks._qparams_formula(x, qmin, qmax, steps=qmax) == checks._qparams_formula(x, qmin, qmax)
        assert same or qmin < 0
        assert not same or qmin == 0 or x.abs().max() < 1e-5      # tiny ranges: the scale is eps either way
    assert any(checks._qparams_formula(x, q0, q1, floor_eps=False)[0] == 0.0
               for x, q0, q1, _ in checks._degenerate_cases())


def test_torch_fake_quantize_is_the_formula_and_the_inputs_avoid_ties():
    """Dividing by the scale (the formula) or multiplying by 1 / scale (torch) gives the same levels on every
    check input: none lies within 1e-3 of a half-way point, so a float64 answer lands on the same levels too."""
    cases = [(x, s, z, q0, q1) for x, s, z, q0, q1, _ in checks._fake_quantize_cases()]
    cases += [(torch.tensor(x), torch.tensor(s), torch.tensor(z), q0, q1) for s, z, q0, q1, x, _ in checks.SATURATION]
    for x, scale, zero_point, qmin, qmax in cases:
        formula = (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
        assert torch.equal(checks._torch_fake_quantize(x, scale, zero_point, qmin, qmax), formula)
        ratio = (x.double() / scale.double()).abs()
        inside = (ratio - ratio.floor() - 0.5).abs()
        levels = x.double() / scale.double() + zero_point.double()
        in_range = (levels > qmin - 0.5) & (levels < qmax + 0.5)
        assert (inside[in_range] > 1e-3).all(), (scale, zero_point)
    for s, z, q0, q1, x, expected in checks.SATURATION:   # the hand examples are as their comments say
        got = checks._torch_fake_quantize(torch.tensor(x), s, z, q0, q1)
        assert torch.allclose(got, torch.tensor(expected), atol=1e-6), (got, expected)


def test_the_fake_quantize_mistakes_are_told_apart_on_the_first_inputs_that_show_them():
    """Every mistake differs from torch's result on some input of fake_quantize_matches_torch, and every
    input saturates on at least one side (values beyond the calibrated range)."""
    told_apart = set()
    for x, scale, zero_point, qmin, qmax, _ in checks._fake_quantize_cases():
        expected = checks._torch_fake_quantize(x, scale, zero_point, qmin, qmax)
        lowest, highest = (qmin - zero_point) * scale, (qmax - zero_point) * scale
        assert ((x < lowest) | (x > highest)).any()
        for mistake, wrong in checks._fake_quantize_mistakes(x, scale, zero_point, qmin, qmax).items():
            if not torch.allclose(wrong, expected, atol=1e-4):
                told_apart.add(mistake)
    assert told_apart == set(checks._fake_quantize_mistakes(x, scale, zero_point, qmin, qmax))


def test_the_byte_count_is_deterministic_and_is_torch_saves(tmp_path):
    """The same model saved twice gives the same bytes; a file named archive.pt holds exactly as many
    (torch names the zip archive after the file: size_on_disk's model.pt is a few bytes smaller)."""
    for layers in (checks.MLP_BN, checks.CNN_BN, checks.PLAIN, checks.BN_HEAVY, checks.BN_CNN):
        arg = module_arg(layers, 5)
        count = checks._bytes_reference(arg)
        assert count == checks._bytes_reference(arg) == checks._saved_bytes(build(arg).state_dict())
        path = tmp_path / "archive.pt"
        torch.save(build(arg).state_dict(), path)
        assert path.stat().st_size == count
        assert 0 < count - size_on_disk(build(arg)) < 200
        # mode and frozen parameters are not in the state dict
        assert checks._bytes_reference(module_arg(layers, 5, training=False)) == count
        mistakes = checks._bytes_mistakes(arg)
        assert all(v != count for v in mistakes.values()), mistakes
        if layers in (checks.BN_HEAVY, checks.BN_CNN):  # the buffers weigh about as much as the parameters
            buffers = sum(b.numel() for b in build(arg).buffers())
            assert buffers >= sum(p.numel() for p in build(arg).parameters()) / 2


def test_the_parity_reference_is_onnx_paritys_formula_and_its_mistakes_are_told_apart():
    told_apart: dict[str, set[str]] = {key: set() for key in checks.KEYS}
    cases = [(r, c) for r, c, _ in checks._parity_cases()] + [(checks.HAND_REFERENCE, checks.HAND_CANDIDATE)]
    for reference, candidate in cases:
        expected = checks._parity_reference(reference, candidate)
        scale = reference.abs().max().clamp_min(1e-12)
        assert expected["max_rel_error"] == pytest.approx(((candidate - reference).abs().max() / scale).item())
        agree = (candidate.argmax(-1) == reference.argmax(-1)).float().mean().item()
        assert expected["top1_agreement"] == pytest.approx(100 * agree)
        for key, mistakes in checks._parity_mistakes(reference, candidate).items():
            told_apart[key] |= {m for m, v in mistakes.items() if not checks._same_value(v, expected[key])}
    unclamped = "max |reference| not clamped below at 1e-12 (all-zero logits give 0 / 0 = NaN)"
    for key in checks.KEYS:
        assert told_apart[key] | ({unclamped} if key == "max_rel_error" else set()) == set(
            checks._parity_mistakes(reference, candidate)[key]), key
    zeros = torch.zeros(5, 3)
    assert checks._parity_reference(zeros, zeros) == {"max_rel_error": 0.0, "top1_agreement": 100.0}
    assert math.isnan(checks._parity_mistakes(zeros, zeros)["max_rel_error"][unclamped])


def test_the_parity_hand_example_is_as_its_comment_says():
    assert checks._parity_reference(checks.HAND_REFERENCE, checks.HAND_CANDIDATE) == {
        "max_rel_error": pytest.approx(0.375), "top1_agreement": pytest.approx(50.0)}
    assert checks.HAND_REFERENCE.argmax(-1).tolist() == [0, 2] and checks.HAND_CANDIDATE.argmax(-1).tolist() == [0, 0]
