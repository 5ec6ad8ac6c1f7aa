"""The ex06 checks (the masked token-level KL, the generalised JSD, the causal shift) fail wrong answers,
and name their mistakes; their references are course_lib.llm.losses' token_kd_loss, token_divergence
and shift_for_causal_lm.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex06_llm_distillation.py with text replaced. A group
breaks each of the three functions at most once, so one child process grades up to three mistakes,
and a mistake in one function costs nothing in the others.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.grading import UNPAID
from course_lib.grading.checks import ex06_llm_distillation as checks
from course_lib.llm.losses import shift_for_causal_lm, token_divergence, token_kd_loss
from course_lib.paths import solutions_dir
from _mutations import MutationTests, assert_inputs_modified, grade_text

MODULE = "ex06_llm_distillation"
SOLUTION = solutions_dir() / f"{MODULE}.py"

TEACHER = "log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)"
KL = "kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)"
KL_MEAN = "return temperature ** 2 * kl[real].mean()"
KL_TEMPERATURE = 'got {temperature}")\n    real = mask.bool()'
MIXTURE = "log_m = torch.logaddexp(log_pt + torch.log(weight), log_ps + torch.log1p(-weight))"
JSD = "return beta * kl_teacher + (1 - beta) * kl_student"
JSD_TEMPERATURE = 'got {temperature}")\n    log_ps'
ENDPOINTS = """    if beta == 0:
        return (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)              # KL(p_t || p_s)
    if beta == 1:
        return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1)              # KL(p_s || p_t)
"""
COUNTS = "counts = real[:, :-1] & real[:, 1:]"
SHIFT = "return logits[:, :-1], labels[:, 1:].masked_fill(~counts, -100)"
CHOICE = 'return "reverse_kl"'

KL_VALUES = {"masked_kl_matches_reference", "masked_kl_ignores_padding", "masked_kl_gradient_reaches_only_the_student"}
SHIFT_VALUES = {"shift_pairs_each_prediction_with_the_next_token", "shift_drops_padding_on_either_side"}

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "kl_batchmean_over_all_positions": (  # the source article's loss (GUIDE mistake 6)
        "masked_token_kl", [(KL_MEAN, "return temperature ** 2 * kl.mean()")], KL_VALUES,
        "the KL averaged over all B * S positions, padding included"),
    "kl_masked_sum_over_all_positions": (
        "masked_token_kl", [(KL_MEAN, "return temperature ** 2 * kl[real].sum() / kl.numel()")], KL_VALUES,
        "divided by B * S (every position)"),
    "kl_sum_instead_of_mean": (
        "masked_token_kl", [(KL_MEAN, KL_MEAN.replace(".mean()", ".sum()"))], KL_VALUES,
        "the sum over the real tokens instead of their mean"),
    "kl_reversed": (
        "masked_token_kl", [(KL, "kl = (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1)")], KL_VALUES,
        "the reverse KL, KL(p_s || p_t)"),
    "kl_without_t_squared": (
        "masked_token_kl", [(KL_MEAN, "return kl[real].mean()")], KL_VALUES, "a missing T^2 factor"),
    "kl_div_given_probabilities": (
        "masked_token_kl", [(KL, 'kl = F.kl_div(log_ps.exp(), log_pt.exp(), reduction="none").sum(dim=-1)')],
        KL_VALUES, "F.kl_div given probabilities instead of log-probabilities"),
    "kl_teacher_not_detached": (
        "masked_token_kl", [(TEACHER, TEACHER.replace(".detach()", ""))],
        {"masked_kl_gradient_reaches_only_the_student"}, "the teacher not detached"),
    "kl_vocabularies_not_compared": (  # [2, 5, 10] and [2, 5, 12] then fail in the subtraction: RuntimeError
        "masked_token_kl", [("if student_logits.shape != teacher_logits.shape:",
                             "if student_logits.shape[:2] != teacher_logits.shape[:2]:")],
        {"masked_kl_rejects_bad_inputs"}, "(different vocabularies): raised RuntimeError, expected ValueError"),
    "kl_zero_temperature_accepted": (
        "masked_token_kl", [("if temperature <= 0:\n        raise ValueError(f\"temperature must be positive, " + KL_TEMPERATURE,
                             "if temperature < 0:\n        raise ValueError(f\"temperature must be positive, " + KL_TEMPERATURE)],
        {"masked_kl_rejects_bad_inputs"}, "temperature=0: expected ValueError"),
    "kl_empty_mask_accepted": (  # the mean over 0 tokens: NaN, no error
        "masked_token_kl", [("if not real.any():", "if real is None:")], {"masked_kl_rejects_bad_inputs"},
        "a mask without a real token (all zeros: the mean over 0 tokens is 0 / 0): expected ValueError"),
    "jsd_mixture_weights_swapped": (
        "generalized_jsd", [(MIXTURE, "log_m = torch.logaddexp(log_pt + torch.log1p(-weight), log_ps + torch.log(weight))")],
        {"jsd_matches_reference", "jsd_identities"}, "the mixture's weights swapped"),
    "jsd_outer_weights_swapped": (
        "generalized_jsd", [(JSD, "return (1 - beta) * kl_teacher + beta * kl_student")], {"jsd_matches_reference",
        "jsd_identities"}, "the outer weights swapped"),
    "jsd_beta_on_the_student": (
        "generalized_jsd", [(MIXTURE, "log_m = torch.logaddexp(log_pt + torch.log1p(-weight), log_ps + torch.log(weight))"),
                            (JSD, "return (1 - beta) * kl_teacher + beta * kl_student")],
        {"jsd_matches_reference", "jsd_identities"}, "beta on the student throughout"),
    "jsd_endpoints_swapped": (
        "generalized_jsd", [(ENDPOINTS, ENDPOINTS.replace("if beta == 0:", "if beta == 2:").replace(
            "if beta == 1:", "if beta == 0:").replace("if beta == 2:", "if beta == 1:"))],
        {"jsd_endpoints_are_the_kls"}, "the endpoints swapped"),
    "jsd_endpoints_left_to_the_mixture": (  # log 0 = -inf in the mixture: 0 at both ends
        "generalized_jsd", [(ENDPOINTS, "")], {"jsd_endpoints_are_the_kls"}, "the mixture formula at the endpoints"),
    "jsd_geometric_mixture": (
        "generalized_jsd", [(MIXTURE, "log_m = beta * log_pt + (1 - beta) * log_ps")],
        {"jsd_matches_reference", "jsd_identities"}, "the mixture as a weighted mean of log-probabilities"),
    "jsd_mixture_in_probability_space": (  # the same values, but NaN where both probabilities underflow
        "generalized_jsd", [(MIXTURE, "log_m = torch.log(weight * log_pt.exp() + (1 - weight) * log_ps.exp())")],
        {"jsd_identities"}, "the mixture computed in probability space"),
    "jsd_sum_over_positions": (
        "generalized_jsd", [(JSD, f"return ({JSD.removeprefix('return ')}).sum()")],
        {"jsd_matches_reference", "jsd_identities"}, "got a scalar - the sum over the positions"),
    "jsd_t_squared": (
        "generalized_jsd", [(JSD, f"return temperature ** 2 * ({JSD.removeprefix('return ')})")],
        {"jsd_matches_reference", "jsd_identities"}, "a T^2 factor"),
    "jsd_beta_out_of_range_accepted": (  # log(1 - 1.5) is NaN: no error
        "generalized_jsd", [("if not 0 <= beta <= 1:", "if beta is None:")], {"jsd_rejects_bad_inputs"},
        "beta=-0.1: expected ValueError"),
    "jsd_zero_temperature_accepted": (
        "generalized_jsd", [("if temperature <= 0:\n        raise ValueError(f\"temperature must be positive, " + JSD_TEMPERATURE,
                             "if temperature < 0:\n        raise ValueError(f\"temperature must be positive, " + JSD_TEMPERATURE)],
        {"jsd_rejects_bad_inputs"}, "temperature=0: expected ValueError"),
    "shift_none": (
        "causal_shift", [(SHIFT, "return logits, labels.masked_fill(~real, -100)")], SHIFT_VALUES, "no shift"),
    "shift_wrong_side": (
        "causal_shift", [(SHIFT, SHIFT.replace("logits[:, :-1], labels[:, 1:]", "logits[:, 1:], labels[:, :-1]"))],
        SHIFT_VALUES, "the wrong side shifted"),
    "shift_labels_not_shifted": (
        "causal_shift", [(SHIFT, SHIFT.replace("labels[:, 1:]", "labels[:, :-1]"))], SHIFT_VALUES,
        "the labels not shifted"),
    "shift_only_the_token_read": (  # counts the last real token's position, whose target is padding
        "causal_shift", [(COUNTS, "counts = real[:, :-1]")], {"shift_drops_padding_on_either_side"},
        "only the token read checked"),
    "shift_only_the_token_predicted": (  # right padding cannot tell: left padding can
        "causal_shift", [(COUNTS, "counts = real[:, 1:]")], {"shift_drops_padding_on_either_side"},
        "only the token predicted checked"),
    "shift_without_mask": (
        "causal_shift", [(SHIFT, "return logits[:, :-1], labels[:, 1:]")], {"shift_drops_padding_on_either_side"},
        "no mask"),
    "shift_zero_instead_of_ignore_index": (
        "causal_shift", [(SHIFT, SHIFT.replace("-100", "0"))], {"shift_drops_padding_on_either_side"},
        "0 instead of -100"),
    "choice_forward_kl": (
        "truncated_teacher_divergence", [(CHOICE, 'return "forward_kl"')], {"truncated_teacher_choice"},
        "'forward_kl' is not it - KL(p_t || p_s) weighs each token's term by the teacher's probability"),
    "choice_jsd": (
        "truncated_teacher_divergence", [(CHOICE, 'return "jsd"')], {"truncated_teacher_choice"},
        "'jsd' is not it - the JSD compares each model with the mixture"),
    "choice_none": (
        "truncated_teacher_divergence", [(CHOICE, 'return "none"')], {"truncated_teacher_choice"},
        "'none' is not it - look at each divergence's term on a token"),
}

GROUPS = [
    ["kl_batchmean_over_all_positions", "jsd_mixture_weights_swapped", "shift_none", "choice_forward_kl"],
    ["kl_masked_sum_over_all_positions", "jsd_outer_weights_swapped", "shift_wrong_side", "choice_jsd"],
    ["kl_sum_instead_of_mean", "jsd_beta_on_the_student", "shift_labels_not_shifted", "choice_none"],
    ["kl_reversed", "jsd_endpoints_swapped", "shift_only_the_token_read"],
    ["kl_without_t_squared", "jsd_endpoints_left_to_the_mixture", "shift_only_the_token_predicted"],
    ["kl_div_given_probabilities", "jsd_geometric_mixture", "shift_without_mask"],
    ["kl_teacher_not_detached", "jsd_mixture_in_probability_space", "shift_zero_instead_of_ignore_index"],
    ["kl_vocabularies_not_compared", "jsd_sum_over_positions"],
    ["kl_zero_temperature_accepted", "jsd_t_squared"],
    ["kl_empty_mask_accepted", "jsd_beta_out_of_range_accepted"],
    ["jsd_zero_temperature_accepted"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"masked_token_kl": 8, "generalized_jsd": 6, "causal_shift": 4, "truncated_teacher_divergence": 2}


def test_a_masked_kl_built_on_a_wrong_jsd_is_told_to_fix_the_jsd_first(tmp_path):
    """masked_token_kl written as T^2 times the mean of generalized_jsd(beta=0) over the real tokens, with the
    JSD's endpoints swapped: the masked KL's value check names the JSD as the error to fix first; a right JSD
    under the same masked KL earns every point."""
    text = SOLUTION.read_text()
    text = text.replace(KL_MEAN, "return temperature ** 2 * generalized_jsd(student_logits, teacher_logits.detach(), "
                                 "0.0, temperature)[real].mean()")
    for name in ("right", "wrong"):
        (tmp_path / name).mkdir()
    report = grade_text(tmp_path / "right", MODULE, SOLUTION.name, text)
    assert report.earned == report.total == 20, report.table(verbose=True)
    swapped = ENDPOINTS.replace("if beta == 0:", "if beta == 2:").replace("if beta == 1:", "if beta == 0:").replace(
        "if beta == 2:", "if beta == 1:")
    report = grade_text(tmp_path / "wrong", MODULE, SOLUTION.name, text.replace(ENDPOINTS, swapped))
    (row,) = [r for r in report.rows if r.check == "masked_kl_matches_reference"]
    assert row.earned == 0 and "your generalized_jsd(" in row.message and "fix it first" in row.message, row
    assert all(r.earned == r.points for r in report.rows if r.function == "causal_shift")


def test_answers_that_modify_their_inputs_in_place_score_zero_on_those_checks(tmp_path):
    """A JSD that shifts the teacher's logits in place: zero on every check that gets a value from it. A shift
    that writes -100 into a view of the caller's labels (labels[:, 1:] is not a copy): zero on the check with
    padding; without padding it writes nothing, and that check passes. Flagged."""
    text = SOLUTION.read_text()
    text = text.replace("log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)",
                        "log_pt = F.log_softmax(teacher_logits.sub_(teacher_logits.amax(dim=-1, keepdim=True)) "
                        "/ temperature, dim=-1)")
    text = text.replace(SHIFT, "shifted = labels[:, 1:]\n    shifted[~counts] = -100\n    return logits[:, :-1], shifted")
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    unchanged = {"jsd_rejects_bad_inputs", "shift_pairs_each_prediction_with_the_next_token"}
    rows = [r for r in report.rows if r.function in ("generalized_jsd", "causal_shift") and r.check not in unchanged]
    assert len(rows) == 4, report.table(verbose=True)
    assert_inputs_modified(report, MODULE, rows)
    # the JSD rejects bad input, but with no value check passed that is not paid (grader._paid_with_a_value)
    (rejects,) = [r for r in report.rows if r.check == "jsd_rejects_bad_inputs"]
    assert rejects.earned == 0 and rejects.message.startswith(UNPAID), rejects
    unchanged.discard("jsd_rejects_bad_inputs")
    assert all(r.earned == r.points for r in report.rows if r.function == "masked_token_kl" or r.check in unchanged)


# --------------------------------------------------------------------------- the references and the inputs

def _kl_inputs():
    """(student, teacher, mask, temperature) of every masked_token_kl value check."""
    cases = [(zs, zt, mask, 1.0 if t is None else t) for zs, zt, mask, t, _ in checks._kl_cases()]
    zs, zt = checks._logits(3100, 3, 6, 9)
    mask = checks._padding_mask([6, 2, 4], 6)
    cases.append((zs, zt, mask, 2.0))
    for seed, (b, s, v), t, lengths, side in [(3200, (2, 6, 10), 2.0, [6, 3], "right"),
                                              (3202, (3, 5, 7), 1.0, [2, 5, 4], "left")]:
        zs, zt = checks._logits(seed, b, s, v)
        cases.append((zs, zt, checks._padding_mask(lengths, s, side), t))
    return cases


def test_the_masked_kl_reference_is_the_docstrings_formula_and_its_mistakes_are_told_apart():
    told_apart = set()
    for zs, zt, mask, t in _kl_inputs():
        real = mask.bool()
        log_ps, log_pt = F.log_softmax(zs.double() / t, -1), F.log_softmax(zt.double() / t, -1)
        formula = t * t * (log_pt.exp() * (log_pt - log_ps)).sum(-1)[real].mean()
        expected = checks._kl_reference(zs, zt, mask, t)
        assert expected.item() == pytest.approx(formula.item(), rel=1e-5)
        for mistake, wrong in checks._kl_mistakes(zs, zt, mask, t).items():
            if abs(wrong.item() - expected.item()) > 1e-3 * abs(expected.item()):
                told_apart.add(mistake)
    assert told_apart == set(checks._kl_mistakes(zs, zt, mask, t))
    # the article's batchmean is the mean over every position, padding included
    zs, zt, mask, t = _kl_inputs()[1]
    flat = F.kl_div(F.log_softmax(zs.reshape(-1, zs.shape[-1]) / t, -1), F.softmax(zt.reshape(-1, zt.shape[-1]) / t, -1),
                    reduction="batchmean") * t * t
    article = "the KL averaged over all B * S positions"
    assert flat.item() == pytest.approx(next(v for k, v in checks._kl_mistakes(zs, zt, mask, t).items()
                                             if k.startswith(article)).item(), rel=1e-5)


def test_the_padding_check_inputs_are_as_their_descriptions_say():
    """Other logits at the padding positions and the packed real tokens leave the reference unchanged;
    the gradient reaches neither the padding positions nor, through the detached teacher, the teacher."""
    zs, zt = checks._logits(3100, 3, 6, 9)
    mask = checks._padding_mask([6, 2, 4], 6)
    real = mask.bool()
    assert int(real.sum()) == 12
    base = checks._kl_reference(zs, zt, mask, 2.0)
    noisy = torch.where(~real.unsqueeze(-1), torch.randn(3, 6, 9) * 10, zs)
    assert checks._kl_reference(noisy, zt, mask, 2.0).item() == pytest.approx(base.item(), rel=1e-6)
    packed = checks._kl_reference(zs[real].unsqueeze(0), zt[real].unsqueeze(0), torch.ones(1, 12), 2.0)
    assert packed.item() == pytest.approx(base.item(), rel=1e-6)
    grad, _ = checks._kl_gradients(zs, zt, mask, 2.0)
    assert grad[~real].abs().max() == 0 and grad[real].abs().max() > 0
    teacher = zt.clone().requires_grad_(True)
    assert not token_kd_loss(zs, teacher, None, temperature=2.0, attention_mask=mask).requires_grad
    assert checks._padding_mask([2, 3], 4, "left").tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]


def _jsd_inputs():
    """(student, teacher, beta, temperature) of every generalized_jsd value check."""
    cases = []
    for seed, (b, s, v), beta, t in [(3400, (2, 5, 11), 0.5, 1.0), (3402, (3, 4, 13), 0.1, 1.0),
                                     (3404, (2, 6, 17), 0.3, 2.0), (3406, (1, 7, 50), 0.7, 1.0),
                                     (3408, (4, 3, 9), 0.9, 0.5), (3410, (2, 5, 20), 0.5, 3.0)]:
        cases.append((*checks._logits(seed, b, s, v), beta, t))
    for seed, (b, s, v), t in [(3500, (2, 5, 11), 1.0), (3502, (3, 4, 9), 2.0)]:
        cases += [(*checks._logits(seed, b, s, v), beta, t) for beta in (0.0, 1.0)]
    return cases


def test_the_jsd_reference_is_trls_convention_and_its_mistakes_are_told_apart():
    told_apart = set()
    for zs, zt, beta, t in _jsd_inputs():
        expected = checks._jsd_reference(zs, zt, beta, t)
        ps, pt = F.softmax(zs.double() / t, -1), F.softmax(zt.double() / t, -1)
        kl = lambda p, q: (p * (p / q).log()).sum(-1)
        m = beta * pt + (1 - beta) * ps
        formula = kl(pt, ps) if beta == 0 else kl(ps, pt) if beta == 1 else beta * kl(pt, m) + (1 - beta) * kl(ps, m)
        assert torch.allclose(expected.double(), formula, rtol=1e-4, atol=1e-6)
        mistakes = checks._jsd_mistakes(zs, zt, beta, t)
        if beta in (0, 1):
            mistakes[checks.ENDPOINT_FORMULA] = torch.zeros_like(expected)
        told_apart |= {k for k, v in mistakes.items() if not torch.allclose(v, expected, atol=1e-4, rtol=1e-3)}
    every = set(checks._jsd_mistakes(*_jsd_inputs()[1])) | set(checks._jsd_mistakes(*_jsd_inputs()[-1]))
    assert told_apart == every | {checks.ENDPOINT_FORMULA}


def test_the_confident_jsd_inputs_reach_log_2_and_break_the_probability_space_mixture():
    zs, zt = checks._confident(3802, 3, 4, 10, 200.0)
    assert (zs.argmax(-1) != zt.argmax(-1)).all()
    jsd = token_divergence(zs, zt, "jsd", beta=0.5)
    assert torch.isfinite(jsd).all() and torch.allclose(jsd, torch.full_like(jsd, math.log(2)), atol=1e-6)
    ps, pt = F.softmax(zs, -1), F.softmax(zt, -1)
    assert torch.isnan((pt * (pt.log() - (0.5 * pt + 0.5 * ps).log())).sum(-1)).any()   # 0 * inf
    assert torch.allclose(token_divergence(zt, zs, "jsd", beta=0.5), jsd)


def test_the_shift_reference_and_its_mistakes_on_the_check_inputs():
    """shift_for_causal_lm pairs logits i with label i + 1 and keeps a position iff both tokens are real;
    each mistake differs from it on the inputs of the check that names it."""
    right = checks._padding_mask([7, 4, 2], 7)
    left = checks._padding_mask([6, 3, 1], 6, "left")
    for mask, differ, same in [(right, "only the token read", "only the token predicted"),
                               (left, "only the token predicted", "only the token read")]:
        b, s = mask.shape
        labels = checks._token_ids(0, b, s, 9)
        logits = torch.randn(b, s, 9)
        shifted_logits, expected = shift_for_causal_lm(logits, labels, mask)
        assert torch.equal(shifted_logits, logits[:, :-1])
        keep = mask[:, :-1].bool() & mask[:, 1:].bool()
        assert torch.equal(expected, torch.where(keep, labels[:, 1:], -100))
        mistakes = checks._shift_mistakes(labels, mask)
        for name, wrong in mistakes.items():
            assert torch.equal(wrong, expected) == name.startswith(same), name
        assert not torch.equal(next(v for k, v in mistakes.items() if k.startswith(differ)), expected)
