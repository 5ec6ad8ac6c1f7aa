"""The ex06_speculative checks (speculative sampling's verification step, the expected tokens per target
call, the expected speedup) fail wrong answers, and name their mistakes; their references are
course_lib.llm.acceptance's speculative_accept (its acceptance test, with the uniforms given),
residual_distribution, expected_tokens_per_call and expected_speedup.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex06_speculative.py with text replaced. A group breaks
each of the three functions at most once, so one child process grades up to three mistakes, and a
mistake in one function costs nothing in the others.
"""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.llm import acceptance
from course_lib.grading.checks import ex06_speculative as checks
from course_lib.paths import solutions_dir
from _mutations import MutationTests

MODULE = "ex06_speculative"
SOLUTION = solutions_dir() / f"{MODULE}.py"

ACCEPT = "if uniforms[i] * q[i, x] < p[i, x]:"
RESIDUAL = "residual = (p[i] - q[i]).clamp_min(0.0)"
REPLACEMENT = "return i, residual / total"
BONUS = "return k, p[k].clone()"
TOKENS = "return (1 - alpha ** (k + 1)) / (1 - alpha)"
ALPHA_ONE = "    if alpha == 1:\n        return float(k + 1)\n"
SPEEDUP_TOKENS = "tokens = float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)"
SPEEDUP = "return tokens / (k * cost_ratio + verify_cost)"

ACCEPT_VALUES = {"accept_matches_reference", "accept_limit_cases", "accept_output_follows_the_target"}
BONUS_VALUES = {"accept_matches_reference", "accept_bonus_when_every_draft_passes"}
TOKENS_VALUES = {"tokens_match_formula", "tokens_limits"}
SPEEDUP_VALUES = {"speedup_matches_formula", "speedup_limits"}

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "accept_replacement_from_p": (  # biased: the statistical check sees it too
        "accept_drafts", [(REPLACEMENT, "return i, p[i].clone()")], ACCEPT_VALUES,
        "the replacement drawn from p[i] instead of the residual"),
    "accept_residual_not_normalised": (
        "accept_drafts", [(REPLACEMENT, "return i, residual")], ACCEPT_VALUES, "not normalised"),
    "accept_residual_reversed": (
        "accept_drafts", [(RESIDUAL, "residual = (q[i] - p[i]).clamp_min(0.0)")], ACCEPT_VALUES,
        "the residual the wrong way round"),
    "accept_ratio_inverted": (
        "accept_drafts", [(ACCEPT, "if uniforms[i] * p[i, x] < q[i, x]:")], ACCEPT_VALUES | BONUS_VALUES,
        "the ratio inverted, u < q/p"),
    "accept_test_reversed": (
        "accept_drafts", [(ACCEPT, "if uniforms[i] * q[i, x] > p[i, x]:")], ACCEPT_VALUES | BONUS_VALUES,
        "the test reversed, u > p/q"),
    "accept_u_ignored": (
        "accept_drafts", [(ACCEPT, "if p[i, x] >= q[i, x]:")], ACCEPT_VALUES - {"accept_limit_cases"},
        "u ignored"),
    "accept_count_plus_one": (
        "accept_drafts", [(REPLACEMENT, "return i + 1, residual / total")], ACCEPT_VALUES, "the count off by one"),
    "accept_judged_with_the_next_row": (
        "accept_drafts", [(ACCEPT, "if uniforms[i] * q[i, x] < p[i + 1, x]:"),
                          (RESIDUAL, "residual = (p[i + 1] - q[i]).clamp_min(0.0)")],
        ACCEPT_VALUES | BONUS_VALUES, "draft i judged with p[i + 1]"),
    "accept_every_passing_draft_counted": (  # the rounds that stop early: a later draft would have passed
        "accept_drafts", [(REPLACEMENT, "return sum(bool(uniforms[j] * q[j, int(drafts[j])] < p[j, int(drafts[j])]) "
                                        "for j in range(k)), residual / total")],
        {"accept_matches_reference", "accept_limit_cases"}, "every passing draft counted, not the leading run"),
    "accept_bonus_from_the_previous_row": (
        "accept_drafts", [(BONUS, "return k, p[k - 1].clone()")], BONUS_VALUES, "the bonus from p[K - 1]"),
    "accept_bonus_from_the_last_residual": (
        "accept_drafts", [(BONUS, "last = (p[k - 1] - q[k - 1]).clamp_min(0.0)\n    return k, last / last.sum()")],
        BONUS_VALUES, "the last draft's residual as the bonus"),
    "accept_divides_by_q": (  # Python floats: ZeroDivisionError where q[i, x] = 0
        "accept_drafts", [(ACCEPT, "if uniforms[i] < float(p[i, x]) / float(q[i, x]):")], {"accept_limit_cases"},
        "raised ZeroDivisionError"),
    "accept_no_fallback": (  # 0 / 0: NaN where the residual sums to 0
        "accept_drafts", [("if total <= 0:", "if total < 0:")], {"accept_limit_cases"},
        "the residual max(0, p[i] - q[i]) sums to 0 here: return p[i]"),
    "accept_bonus_row_not_checked": (
        "accept_drafts", [("if p.shape != (k + 1, v):", "if p.shape[1] != v:")], {"accept_rejects_bad_inputs"},
        "(no bonus row: p has K + 1 rows)"),
    "tokens_without_the_targets_token": (
        "expected_tokens_per_call", [(TOKENS, "return (1 - alpha ** k) / (1 - alpha)")], {"tokens_match_formula"},
        "the target's own token forgotten"),
    "tokens_numerator_sign": (
        "expected_tokens_per_call", [(TOKENS, "return (alpha ** (k + 1) - 1) / (1 - alpha)")], TOKENS_VALUES,
        "the numerator's sign"),
    "tokens_accepted_drafts_only": (
        "expected_tokens_per_call", [(TOKENS, "return alpha * (1 - alpha ** k) / (1 - alpha)")], TOKENS_VALUES,
        "the accepted drafts only"),
    "tokens_linear": (
        "expected_tokens_per_call", [(TOKENS, "return 1 + k * alpha")], {"tokens_match_formula"}, "1 + k * alpha"),
    "tokens_infinitely_many_drafts": (
        "expected_tokens_per_call", [(TOKENS, "return 1 / (1 - alpha)")], {"tokens_match_formula"},
        "the limit of infinitely many drafts"),
    "tokens_alpha_one_divides_by_zero": (
        "expected_tokens_per_call", [(ALPHA_ONE, "")], {"tokens_limits"},
        "the closed form is 0 / 0 at alpha = 1"),
    "tokens_alpha_one_gives_k": (
        "expected_tokens_per_call", [("return float(k + 1)", "return float(k)")], {"tokens_limits"},
        "k at alpha = 1"),
    "speedup_without_the_verify_pass": (
        "expected_speedup", [(SPEEDUP, "return tokens / (k * cost_ratio)")], SPEEDUP_VALUES,
        "the verify pass left out"),
    "speedup_without_the_drafts": (
        "expected_speedup", [(SPEEDUP, "return tokens / verify_cost")], SPEEDUP_VALUES, "the draft steps left out"),
    "speedup_verify_cost_ignored": (
        "expected_speedup", [(SPEEDUP, "return tokens / (k * cost_ratio + 1)")], SPEEDUP_VALUES,
        "verify_cost ignored"),
    "speedup_draft_cost_once": (
        "expected_speedup", [(SPEEDUP, "return tokens / (cost_ratio + verify_cost)")], SPEEDUP_VALUES,
        "the draft cost counted once"),
    "speedup_k_plus_one_draft_steps": (
        "expected_speedup", [(SPEEDUP, "return tokens / ((k + 1) * cost_ratio + verify_cost)")], SPEEDUP_VALUES,
        "k + 1 draft steps"),
    "speedup_cost_per_token": (
        "expected_speedup", [(SPEEDUP, "return (k * cost_ratio + verify_cost) / tokens")], SPEEDUP_VALUES,
        "the cost per token"),
    "speedup_tokens_without_the_targets_token": (
        "expected_speedup", [(SPEEDUP_TOKENS, SPEEDUP_TOKENS.replace("alpha ** (k + 1)", "alpha ** k"))],
        SPEEDUP_VALUES, "E[tokens] without the target's token"),
    "speedup_alpha_ignored": (
        "expected_speedup", [(SPEEDUP_TOKENS, "tokens = float(k + 1)")], SPEEDUP_VALUES, "alpha ignored"),
    "speedup_alpha_one_divides_by_zero": (
        "expected_speedup", [(SPEEDUP_TOKENS, "tokens = (1 - alpha ** (k + 1)) / (1 - alpha)")], {"speedup_limits"},
        "the closed form is 0 / 0 at alpha = 1"),
    "speedup_negative_cost_accepted": (
        "expected_speedup", [("if cost_ratio < 0:", "if cost_ratio is None:")], {"speedup_rejects_bad_inputs"},
        "cost_ratio=-0.1: expected ValueError"),
    "speedup_free_verify_accepted": (
        "expected_speedup", [("if verify_cost <= 0:", "if verify_cost < 0:")], {"speedup_rejects_bad_inputs"},
        "verify_cost=0: expected ValueError"),
    "break_even_never_none": (
        "break_even_alpha", [("    if speedup(1.0) < 1:\n        return None\n", "")],
        {"break_even_matches_reference"}, "no acceptance rate makes this draft pay"),
    "break_even_zero_is_none": (
        "break_even_alpha", [("    if speedup(0.0) >= 1:\n        return 0.0\n", "    if speedup(0.0) >= 1:\n        return None\n")],
        {"break_even_matches_reference"}, "some alpha pays"),
    "break_even_bisection_backwards": (
        "break_even_alpha", [("if speedup(middle) < 1:", "if speedup(middle) > 1:")],
        {"break_even_matches_reference"}, "the speedup at your alpha is"),
    "choice_exact": (
        "replacement_drawn_from_the_target", [('return "over"', 'return "exact"')], {"replacement_choice"},
        "only the residual makes it exact"),
    "choice_not_a_key": (
        "replacement_drawn_from_the_target", [('return "over"', 'return "B"')], {"replacement_choice"},
        "return one of ['draft', 'exact', 'over', 'under']"),
}

GROUPS = [
    ["accept_replacement_from_p", "tokens_without_the_targets_token", "speedup_without_the_verify_pass"],
    ["accept_residual_not_normalised", "tokens_numerator_sign", "speedup_without_the_drafts"],
    ["accept_residual_reversed", "tokens_accepted_drafts_only", "speedup_verify_cost_ignored"],
    ["accept_ratio_inverted", "tokens_linear", "speedup_draft_cost_once"],
    ["accept_test_reversed", "tokens_infinitely_many_drafts", "speedup_k_plus_one_draft_steps"],
    ["accept_u_ignored", "tokens_alpha_one_divides_by_zero", "speedup_cost_per_token"],
    ["accept_count_plus_one", "tokens_alpha_one_gives_k", "speedup_tokens_without_the_targets_token"],
    ["accept_judged_with_the_next_row", "speedup_alpha_ignored", "break_even_never_none", "choice_exact"],
    ["accept_every_passing_draft_counted", "speedup_alpha_one_divides_by_zero", "break_even_zero_is_none",
     "choice_not_a_key"],
    ["accept_bonus_from_the_previous_row", "speedup_negative_cost_accepted", "break_even_bisection_backwards"],
    ["accept_bonus_from_the_last_residual", "speedup_free_verify_accepted"],
    ["accept_divides_by_q"],
    ["accept_no_fallback"],
    ["accept_bonus_row_not_checked"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"accept_drafts": 10, "expected_tokens_per_call": 3, "expected_speedup": 4, "break_even_alpha": 2,
              "replacement_drawn_from_the_target": 1}


def test_a_speedup_that_calls_a_wrong_tokens_function_is_told_to_fix_that_first(tmp_path):
    """An error carried over from expected_tokens_per_call: expected_speedup's message says so."""
    from _mutations import grade_text
    text = SOLUTION.read_text().replace(TOKENS, "return (1 - alpha ** k) / (1 - alpha)")
    text = text.replace(SPEEDUP_TOKENS, "tokens = expected_tokens_per_call(alpha, k)")
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    messages = " ".join(r.message for r in report.rows if r.check == "speedup_matches_formula")
    assert "your expected_tokens_per_call(0.8, 4) is wrong too" in messages and "fix it first" in messages, messages
    (tmp_path / "right").mkdir()
    right = grade_text(tmp_path / "right", MODULE, SOLUTION.name,
                       SOLUTION.read_text().replace(SPEEDUP, "return tokens / (k * cost_ratio)"))
    messages = " ".join(r.message for r in right.rows if r.check == "speedup_matches_formula")
    assert "fix it first" not in messages and "the verify pass left out" in messages, messages


# --------------------------------------------------------------------------- the references and the inputs

def test_the_reference_is_speculative_accepts_rule_with_its_own_uniforms():
    """With the uniforms speculative_accept draws from a generator, the reference accepts as many drafts, and its
    distribution gives the token speculative_accept draws next from the same generator."""
    for seed in range(40):
        k, v = 1 + seed % 5, 5 + seed % 7
        p, q = checks._models(5000 + seed, k, v, 1.5)
        drafts, _ = checks._draw(q, 6000 + seed)
        accepted, token = acceptance.speculative_accept(p, q, drafts, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)    # the same draws: one uniform per draft up to the rejection
        drawn = [torch.rand((), generator=g).item() for _ in range(min(accepted + 1, k))]
        uniforms = torch.tensor(drawn + [0.0] * (k - len(drawn)))     # after a rejection they play no part
        n, dist = checks._reference(p, q, drafts, uniforms)
        assert n == accepted, seed
        assert int(torch.multinomial(dist, 1, generator=g)) == token, seed


def _first_rejection(p, q, drafts, uniforms) -> int:
    return checks._reference(p, q, drafts, uniforms)[0]


def test_the_value_cases_stop_everywhere_and_keep_clear_of_the_acceptance_threshold():
    """The rounds stop at the first, a middle and the last draft, and pass entirely; no uniform lies within 1e-2 of
    min(1, p/q), so float32 and float64 (or a division) decide alike."""
    stops = set()
    for p, q, drafts, uniforms, _ in checks._value_cases():
        n, k = _first_rejection(p, q, drafts, uniforms), len(drafts)
        stops.add("all" if n == k else "first" if n == 0 else "last" if n == k - 1 else "middle")
        for i, x in enumerate(drafts.tolist()):
            ratio = (p[i, x] / q[i, x]).item()
            assert abs(uniforms[i].item() - min(1.0, ratio)) > 1e-2
    assert stops == {"first", "middle", "last", "all"}


def test_the_accept_mistakes_are_told_apart_on_the_value_cases():
    """Every known mistake gives another answer than the reference on some value case."""
    told_apart = set()
    for p, q, drafts, uniforms, _ in checks._value_cases():
        expected = checks._reference(p, q, drafts, uniforms)
        told_apart |= {k for k, w in checks._accept_mistakes(p, q, drafts, uniforms).items()
                       if not checks._same(w, expected)}
    assert told_apart == set(checks._accept_rules())


def test_the_bonus_and_limit_cases_are_as_their_descriptions_say():
    p, q, drafts = checks._favoured(4100, 4, 9)
    assert all(p[i, x] > q[i, x] for i, x in enumerate(drafts.tolist()))
    expected_stops = [0, 1, 1, 0]
    for (p, q, drafts, uniforms, what), stop in zip(checks._limit_cases(), expected_stops):
        assert torch.allclose(p.sum(-1), torch.ones(len(p)), atol=1e-5) and torch.allclose(q.sum(-1), torch.ones(len(q)))
        n, dist = checks._reference(p, q, drafts, uniforms)
        assert n == stop, what
        x = int(drafts[n])
        if "residual sums to 0" in what:
            assert (p[0] < q[0]).all() and torch.equal(dist, p[0])
        else:
            assert p[n, x] == 0 and q[n, x] > 0 and dist[x] == 0, what    # rejected whatever u
    p, q, drafts, uniforms, _ = checks._limit_cases()[2]
    assert q[0, int(drafts[0])] == 0 < p[0, int(drafts[0])]


def test_the_exactness_check_bound_holds_for_any_correct_answer_and_catches_the_biased_mistakes():
    """The stratified estimate is within TV 1/STRATA of p for the reference, on the check's scenarios and on 30
    random ones; every mistake that changes a one-draft round is farther than that on the first scenario."""
    bound = 1 / checks.STRATA
    for s, (p, q, _) in enumerate(checks._exactness_scenarios()):
        rounds = checks._grid(q[0], 4400 + s)
        tv = 0.5 * (checks._simulate(p, q, rounds, {}) - p[0].double()).abs().sum().item()
        assert tv <= bound
    for seed in range(30):
        v = 3 + seed % 6
        p0, q0 = torch.randn(v).mul(2).softmax(-1), torch.randn(v).mul(2).softmax(-1)
        p = torch.stack([p0, p0])
        rounds = checks._grid(q0, seed)
        tv = 0.5 * (checks._simulate(p, q0[None], rounds, {}) - p0.double()).abs().sum().item()
        assert tv <= bound + 1e-6, seed
    p, q, _ = checks._exactness_scenarios()[0]
    rounds = checks._grid(q[0], 4400)
    one_draft_mistakes = set(checks._accept_rules()) - {checks.NOT_STOPPING, checks.BONUS_PREVIOUS_ROW,
                                                        checks.BONUS_RESIDUAL}
    for name in one_draft_mistakes:
        out = checks._simulate(p, q, rounds, checks._accept_rules()[name])
        assert 0.5 * (out - p[0].double()).abs().sum().item() > 2 * bound, name
    calls = sum(len(checks._grid(q[0], 4400 + s)) for s, (p, q, _) in enumerate(checks._exactness_scenarios()))
    assert calls == 11 * checks.STRATA                                  # a second or so of remote calls


def test_the_theory_references_are_the_docstrings_formulas_and_their_mistakes_are_told_apart():
    told_apart = set()
    for alpha, k in [(0.8, 4), (0.5, 1), (0.3, 7), (0.95, 10), (0.6, 3), (0.1, 2), (1.0, 4), (0.0, 5)]:
        expected = acceptance.expected_tokens_per_call(alpha, k)
        assert expected == pytest.approx(sum(alpha ** j for j in range(k + 1)))
        told_apart |= {name for name, value in checks._tokens_mistakes(alpha, k).items()
                       if abs(value - expected) > 1e-3 * expected}
    assert told_apart == set(checks._tokens_mistakes(0.5, 3))
    told_apart = set()
    for alpha, k, c, v in [(0.8, 4, 0.05, 1.0), (0.6, 3, 0.2, 1.5), (0.9, 8, 0.02, 1.2), (0.4, 2, 0.5, 2.0),
                           (0.7, 5, 0.1, 1.0), (0.95, 6, 0.3, 3.0)]:
        expected = acceptance.expected_speedup(alpha, k, c, v)
        assert expected == pytest.approx(sum(alpha ** j for j in range(k + 1)) / (k * c + v))
        told_apart |= {name for name, value in checks._speedup_mistakes(alpha, k, c, v).items()
                       if abs(value - expected) > 1e-3 * expected}
    assert told_apart == set(checks._speedup_mistakes(0.5, 3, 0.1, 1.5))
    assert acceptance.expected_speedup(0.0, 4, 0.1, 1.0) == pytest.approx(1 / 1.4)
    assert math.isclose(acceptance.expected_speedup(1.0, 4, 0.1, 1.2), 5 / 1.6)
