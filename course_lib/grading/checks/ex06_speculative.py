"""Checks for exercises/ex06_speculative.py (20 points).

References: ``course_lib.llm.acceptance``: the acceptance test of ``speculative_accept`` (draft ``i`` passes
iff ``u_i * q_i(x) < p_i(x)``) with the uniforms given instead of drawn, ``residual_distribution`` at the
first rejection and the last row of ``p`` when every draft passes, for the verification step;
``expected_tokens_per_call`` and ``expected_speedup`` for the theory. Besides the values: every draft
passing (``p == q``, drafts the target likes more than the draft did, no draft at all: the bonus row);
tokens the target gives probability 0 (rejected whatever ``u``), a draft token with ``q(x) = 0``, a
residual that sums to 0 (``p`` instead); and speculative sampling's exactness, checked statistically:
one-draft rounds simulated with the student's function (every draft token ``x`` weighted by ``q(x)``,
``M`` stratified random uniforms each), whose output token must follow ``p`` within total variation
``1 / M`` (a bound that holds for every correct answer, not only on average); the limits ``alpha = 0``
and ``alpha = 1`` of the theory.
When a value is wrong, the message names the common mistake it matches: the replacement drawn from
``p_i`` instead of the residual, the residual not normalised or the wrong way round (``q - p``), the
ratio inverted (``q / p``), the test reversed (``u > p / q``), ``u`` ignored (``p >= q``), the count off
by one, draft ``i`` judged with ``p_{i+1}``, every passing draft counted instead of the leading run, the
bonus from ``p_{K-1}`` or from the last residual, a division by ``q = 0``, no fallback when the residual
is 0 (NaN); the target's own token forgotten (``(1 - alpha^k) / (1 - alpha)``), the numerator's sign, the
accepted drafts only, ``1 + k alpha``, ``1 / (1 - alpha)``, ``k`` or a division by zero at
``alpha = 1``; the verify or the draft cost left out, ``verify_cost`` ignored, the draft cost counted
once or ``k + 1`` times, the cost per token, ``alpha`` ignored.

Over 500 lines because one exercise file's checks are one idea: they grade one file and share its
inputs and the helpers that name its mistakes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from course_lib.llm import acceptance
from course_lib.grading.checks.helpers import (as_tensor, choice, close, expect_value_error, fix_first, randn,
                                               student_error, tensors_close, value_naming)
from course_lib.grading.checks.registry import Task, check
from course_lib.llm.acceptance import residual_distribution

M = "ex06_speculative"

TASKS = {"expected_tokens_per_call": Task("warm-up", 10, "derive"),
         "expected_speedup": Task("core", 10, "implement"),
         "break_even_alpha": Task("core", 20, "apply"),
         "replacement_drawn_from_the_target": Task("core", 10, "choose"),
         "accept_drafts": Task("stretch", 35, "implement")}

# Stated in notebook 06 or asked for here: the stubs must not transcribe them.
CLOSED_FORMS = {
    "accept_drafts": ["u_i * q[i, x] < p[i, x]", "u * q < p", "max(0, p[i] - q[i])", "max(0, p - q)",
                      "min(p, q) + max(0, p - q) = p", "min(p_i(x), q_i(x))"],
    "expected_tokens_per_call": ["(1 - alpha^(k+1)) / (1 - alpha)", "1 + alpha + alpha^2", "(1 - alpha ** (k + 1))"],
    "expected_speedup": ["/ (k * c + v)", "/ (k c + v)", "E[tokens] / (", "(1 - alpha^(k+1))"],
    "replacement_drawn_from_the_target": ["min(p, q) + (1 - alpha)", "too much weight to the tokens the draft"],
}


# --------------------------------------------------------------------------- accept_drafts: references

def _passes(p, q, i: int, x: int, u: float) -> bool:
    """``speculative_accept``'s test: ``u < p/q`` without dividing by ``q = 0``."""
    return bool(u * q[i, x] < p[i, x])


def _play(p, q, drafts, uniforms, passes: Callable = _passes, replacement: Callable | None = None,
          bonus: Callable | None = None, count: Callable = lambda i: i, stop: bool = True) -> tuple[int, torch.Tensor]:
    """One round under the given rules (the reference with the defaults; a known mistake otherwise)."""
    replacement = replacement or (lambda p, q, i: residual_distribution(p[i], q[i]))
    bonus = bonus or (lambda p, q, k: p[k])
    k = len(drafts)
    passed = [passes(p, q, i, x, float(uniforms[i])) for i, x in enumerate(drafts.tolist())]
    if all(passed):
        return k, bonus(p, q, k)
    first = passed.index(False)
    n = sum(passed) if not stop else count(first)
    return n, replacement(p, q, first)


def _reference(p, q, drafts, uniforms) -> tuple[int, torch.Tensor]:
    return _play(p, q, drafts, uniforms)


def _unnormalised(p, q, i):
    return (p[i] - q[i]).clamp_min(0.0)


RESAMPLE_P = ("the replacement drawn from p[i] instead of the residual max(0, p[i] - q[i]) normalised (biased: the "
              "accepted drafts already gave each token min(p, q); the residual adds what is missing, p - min(p, q))")
UNNORMALISED = "the residual max(0, p[i] - q[i]) not normalised (divide it by its sum: a distribution sums to 1)"
RESIDUAL_REVERSED = ("the residual the wrong way round, max(0, q[i] - p[i]) (the replacement supplies the tokens the "
                     "target wants more than the draft gave them: max(0, p[i] - q[i]))")
INVERTED = ("the ratio inverted, u < q/p (a draft passes with probability min(1, p(x) / q(x)): the target's "
            "probability over the draft's)")
REVERSED = "the test reversed, u > p/q (a draft passes iff u < p/q, i.e. u * q[i, x] < p[i, x])"
U_IGNORED = ("u ignored, accepting iff p[i, x] >= q[i, x] (a draft the draft model over-rates still passes, with "
             "probability p/q)")
COUNT_PLUS_ONE = ("the count off by one, i + 1 at a rejection of draft i (the rejected draft is not accepted: n = i, "
                  "the drafts before it)")
NEXT_ROW = ("draft i judged with p[i + 1] (row i of p is the target's distribution at draft i's position; row i + 1 "
            "is the next position's)")
NOT_STOPPING = ("every passing draft counted, not the leading run (the round stops at the first rejection: the "
                "drafts after it are thrown away)")
BONUS_PREVIOUS_ROW = ("the bonus from p[K - 1] (that row judged the last draft; when every draft passes the next token "
                      "is drawn from the last row, p[K])")
BONUS_RESIDUAL = ("the last draft's residual as the bonus distribution (when every draft passes nothing was "
                  "rejected: the next token is drawn from the last row, p[K])")


def _accept_rules() -> dict[str, dict]:
    """Known mistakes, as rule overrides of ``_play``."""
    return {
        RESAMPLE_P: {"replacement": lambda p, q, i: p[i]},
        UNNORMALISED: {"replacement": _unnormalised},
        RESIDUAL_REVERSED: {"replacement": lambda p, q, i: residual_distribution(q[i], p[i])},
        INVERTED: {"passes": lambda p, q, i, x, u: bool(u * p[i, x] < q[i, x])},
        REVERSED: {"passes": lambda p, q, i, x, u: bool(u * q[i, x] > p[i, x])},
        U_IGNORED: {"passes": lambda p, q, i, x, u: bool(p[i, x] >= q[i, x])},
        COUNT_PLUS_ONE: {"count": lambda i: i + 1},
        NEXT_ROW: {"passes": lambda p, q, i, x, u: bool(u * q[i, x] < p[i + 1, x]),
                   "replacement": lambda p, q, i: residual_distribution(p[i + 1], q[i])},
        NOT_STOPPING: {"stop": False},
        BONUS_PREVIOUS_ROW: {"bonus": lambda p, q, k: p[k - 1]},
        BONUS_RESIDUAL: {"bonus": lambda p, q, k: residual_distribution(p[k - 1], q[k - 1])},
    }


def _accept_mistakes(p, q, drafts, uniforms) -> dict[str, tuple[int, torch.Tensor]]:
    """``(n, distribution)`` of each known mistake that is defined on these inputs."""
    out = {}
    for name, rules in _accept_rules().items():
        try:
            out[name] = _play(p, q, drafts, uniforms, **rules)
        except IndexError:            # K = 0 has no row K - 1
            continue
    return out


# --------------------------------------------------------------------------- accept_drafts: comparisons

def _count(value, what: str) -> int:
    if type(value) is int:
        return value
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
        return int(value.item())
    kind = "a tensor" if torch.is_tensor(value) else f"a {type(value).__name__}"
    raise AssertionError(f"{what}: the number of accepted drafts is {kind} {value!r} - return a Python int (i, the "
                         "index of the first rejected draft, or K)")


def _parse(got, what: str) -> tuple[int, torch.Tensor]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{what}: expected a pair (n_accepted, distribution), got {type(got).__name__}")
    return _count(got[0], what), as_tensor(got[1], f"{what}: the distribution")


def _same(a: tuple[int, torch.Tensor], b: tuple[int, torch.Tensor]) -> bool:
    return a[0] == b[0] and tensors_close(a[1], b[1])


def _accept_close(got, p, q, drafts, uniforms, what: str) -> None:
    """``got == (n, distribution)`` as the reference's; otherwise name the mistake it matches, if any."""
    n, dist = _parse(got, what)
    expected = _reference(p, q, drafts, uniforms)
    if _same((n, dist), expected):
        return
    if dist.shape == expected[1].shape and not torch.isfinite(dist).all():
        raise AssertionError(f"{what}: NaN or inf in the distribution - a division by 0? (never divide by q[i, x]: "
                             "test u * q[i, x] < p[i, x]; return p[i] when the residual sums to 0)")
    named = [mistake for mistake, wrong in _accept_mistakes(p, q, drafts, uniforms).items()
             if not _same(wrong, expected) and _same((n, dist), wrong)]        # several may give the same answer
    if named:
        how = f"({n}, ...), expected ({expected[0]}, ...)" if n != expected[0] else "the wrong distribution"
        raise AssertionError(f"{what}: got {how} - that is what {' or '.join(named)} gives")
    if n != expected[0]:
        raise AssertionError(f"{what}: {n} drafts accepted, expected {expected[0]} (draft i passes iff u_i * q[i, x] < "
                             "p[i, x]; the round stops at the first rejection)")
    how = ("the residual max(0, p[i] - q[i]) normalised" if n < len(drafts) else
           "the bonus distribution, the last row p[K]")
    close(dist, expected[1], f"{what}: {n} drafts accepted (right), the distribution (expected {how})")


def _call(accept_drafts, p, q, drafts, uniforms, what: str):
    """The student's result; an exception (other than the stub's) fails with a hint."""
    try:
        return accept_drafts(p, q, drafts, uniforms)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        hint = (" - q[i, x] is 0 here: test u * q[i, x] < p[i, x] instead of dividing by q" if e.kind ==
                "ZeroDivisionError" else "")
        raise AssertionError(f"{what}: raised {e.kind} ({e.message}){hint}") from None


def _draw(q: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drafts ``[K]`` drawn from the rows of ``q`` and uniforms ``[K]``, from a private generator."""
    g = torch.Generator().manual_seed(seed)
    drafts = torch.multinomial(q, 1, generator=g).reshape(-1)
    return drafts, torch.rand(q.shape[0], generator=g)


def _models(seed: int, k: int, v: int, noise: float, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Target ``p`` ``[K+1, V]`` and draft ``q`` ``[K, V]``: the draft's logits are the target's plus noise."""
    target = randn(k + 1, v, seed=seed, scale=scale)
    return target.softmax(-1), (target[:k] + randn(k, v, seed=seed + 1, scale=noise)).softmax(-1)


# Seeds and sizes chosen (tests/grading/test_ex06_speculative.py pins it) so that the rounds stop at the first,
# a middle and the last draft, and pass entirely; every mistake above gives a different answer on one of them.
VALUE_CASES = [(4000, 4, 8, 1.5), (4004, 3, 5, 2.0), (4008, 6, 20, 1.0), (4012, 1, 6, 2.0), (4016, 5, 50, 0.7),
               (4020, 2, 12, 1.5), (4024, 4, 7, 3.0), (4028, 3, 30, 0.5)]


def _value_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]]:
    cases = []
    for seed, k, v, noise in VALUE_CASES:
        p, q = _models(seed, k, v, noise)
        drafts, uniforms = _draw(q, seed + 2)
        cases.append((p, q, drafts, uniforms, f"K={k}, V={v}, drafts {drafts.tolist()}, uniforms "
                                              f"{[round(u, 3) for u in uniforms.tolist()]}"))
    return cases


@check(M, "accept_drafts", points=3)
def accept_matches_reference(accept_drafts):
    """(drafts accepted, next distribution): u_i * q_i(x) < p_i(x) left to right; the normalised residual at the first
    rejection, the last row of p when all pass; K from 1 to 6, V from 5 to 50."""
    for p, q, drafts, uniforms, what in _value_cases():
        _accept_close(_call(accept_drafts, p, q, drafts, uniforms, what), p, q, drafts, uniforms, what)


def _favoured(seed: int, k: int, v: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``p``, ``q`` and drafts that the target likes more than the draft did (``p_i(x) > q_i(x)``)."""
    p, q = _models(seed, k, v, 2.0)
    return p, q, (p[:k] - q).argmax(-1)


@check(M, "accept_drafts", points=2)
def accept_bonus_when_every_draft_passes(accept_drafts):
    """All K drafts accepted when p_i(x) >= q_i(x) (whatever u) and when p == q: (K, p[K]), the last row;
    K = 0: (0, p[0])."""
    p, q, drafts = _favoured(4100, 4, 9)
    uniforms = torch.tensor([0.97, 0.42, 0.999, 0.63])
    cases = [(p, q, drafts, uniforms, "K=4, V=9, p_i(x) > q_i(x) at every draft (each passes whatever u_i)")]
    q = randn(3, 7, seed=4102, scale=2.0).softmax(-1)
    p = torch.cat([q, randn(1, 7, seed=4103, scale=2.0).softmax(-1)])
    drafts, _ = _draw(q, 4104)
    cases.append((p, q, drafts, torch.tensor([0.999, 0.5, 0.99]),
                  "K=3, V=7, p[:3] == q (identical models: u * q < q for every u < 1, so every draft passes)"))
    p = randn(1, 6, seed=4105, scale=2.0).softmax(-1)
    cases.append((p, torch.zeros(0, 6), torch.zeros(0, dtype=torch.long), torch.zeros(0),
                  "K=0 (nothing drafted: p [1, 6], q [0, 6]; the round's only token comes from p[0])"))
    for p, q, drafts, uniforms, what in cases:
        _accept_close(_call(accept_drafts, p, q, drafts, uniforms, what), p, q, drafts, uniforms, what)


def _with_zero(row: torch.Tensor, index: int) -> torch.Tensor:
    """``row`` with probability 0 at ``index``, renormalised."""
    row = row.clone()
    row[index] = 0.0
    return row / row.sum()


def _limit_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]]:
    cases = []
    p, q = _models(4200, 2, 6, 1.0)
    drafts = torch.tensor([2, 4])
    p[0] = _with_zero(p[0], 2)
    cases.append((p, q, drafts, torch.tensor([1e-6, 0.5]),
                  "K=2, V=6, p[0, x_0] = 0 < q[0, x_0], u_0 = 1e-6 (a token the target never produces is rejected, "
                  "whatever u)"))
    p, q, drafts = _favoured(4202, 3, 8)
    p[1] = _with_zero(p[1], int(drafts[1]))
    cases.append((p, q, drafts, torch.tensor([0.3, 1e-6, 0.2]),
                  "K=3, V=8, draft 0 passes (p > q there), p[1, x_1] = 0 < q[1, x_1], u_1 = 1e-6"))
    p, q = _models(4204, 2, 7, 1.0)
    q[0] = _with_zero(q[0], 3)
    p[1] = _with_zero(p[1], 5)
    cases.append((p, q, torch.tensor([3, 5]), torch.tensor([0.9, 0.4]),
                  "K=2, V=7, q[0, x_0] = 0 < p[0, x_0] (p/q is infinite: the draft passes), then p[1, x_1] = 0"))
    q = randn(1, 5, seed=4206, scale=2.0).softmax(-1)
    p = torch.cat([q * (1 - 2.0 ** -20), randn(1, 5, seed=4207).softmax(-1)])
    cases.append((p, q, torch.tensor([1]), torch.tensor([1 - 2.0 ** -24]),
                  "K=1, V=5, p[0] = q[0] * (1 - 2^-20) (p <= q everywhere: the residual sums to 0; u_0 = 1 - 2^-24 "
                  "> p/q, so the draft is rejected and the next token comes from p[0])"))
    return cases


@check(M, "accept_drafts", points=1)
def accept_limit_cases(accept_drafts):
    """A draft the target gives probability 0 is rejected whatever u; q(x) = 0 < p(x) passes (no division by q);
    a residual that sums to 0 gives p[i] (not NaN)."""
    for p, q, drafts, uniforms, what in _limit_cases():
        got = _call(accept_drafts, p, q, drafts, uniforms, what)
        n, dist = _parse(got, what)
        expected = _reference(p, q, drafts, uniforms)
        if n == expected[0] and dist.shape == expected[1].shape and not torch.isfinite(dist).all():
            raise AssertionError(f"{what}: NaN or inf in the distribution - the residual max(0, p[i] - q[i]) sums to 0 "
                                 "here: return p[i] instead of dividing by 0")
        if n == expected[0] and dist.shape == expected[1].shape and dist.abs().sum() == 0:
            raise AssertionError(f"{what}: the distribution is all zeros - the residual sums to 0 here: return p[i] "
                                 "(a distribution sums to 1)")
        _accept_close(got, p, q, drafts, uniforms, what)


# --------------------------------------------------------------------------- accept_drafts: exactness

STRATA = 16           # uniforms per draft token: one in each sixteenth of [0, 1); the bound is 1 / STRATA


def _exactness_scenarios() -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """``(p [2, V], q [1, V], description)``: one draft; row 1 of ``p`` (the bonus) plays no part."""
    p0 = randn(6, seed=4300, scale=1.5).softmax(-1)
    q0 = randn(6, seed=4301, scale=1.5).softmax(-1)
    scenarios = [(torch.stack([p0, torch.full((6,), 1 / 6)]), q0[None], "V=6, unrelated random p and q")]
    p0 = torch.tensor([0.45, 0.30, 0.15, 0.10, 0.0])
    q0 = torch.tensor([0.05, 0.15, 0.20, 0.20, 0.40])
    scenarios.append((torch.stack([p0, torch.full((5,), 0.2)]), q0[None],
                      f"V=5, p = {p0.tolist()}, q = {q0.tolist()} (the draft's favourite token is one the target "
                      "never produces)"))
    return scenarios


def _grid(q0: torch.Tensor, seed: int) -> list[tuple[int, float]]:
    """``(x, u)`` for every token ``x`` with ``q(x) > 0`` and ``STRATA`` stratified uniforms ``u``."""
    g = torch.Generator().manual_seed(seed)
    rounds = []
    for x in range(q0.shape[0]):
        if q0[x] > 0:
            u = (torch.arange(STRATA) + torch.rand(STRATA, generator=g)) / STRATA
            rounds += [(x, float(value)) for value in u]
    return rounds


def _output(p, q, rounds, results) -> torch.Tensor:
    """The output token's distribution: ``q(x) / STRATA`` times the draft ``x`` if accepted, else the distribution."""
    out = torch.zeros(p.shape[1], dtype=torch.float64)
    for (x, _), (n, dist) in zip(rounds, results):
        weight = q[0, x].item() / STRATA
        if n == 1:
            out[x] += weight
        else:
            out += weight * dist.double()
    return out


def _simulate(p, q, rounds, rules: dict) -> torch.Tensor:
    """``_output`` of a known mistake on the same rounds."""
    return _output(p, q, rounds, [_play(p, q, torch.tensor([x]), torch.tensor([u]), **rules) for x, u in rounds])


@check(M, "accept_drafts", points=3, kind="property")
def accept_output_follows_the_target(accept_drafts):
    """Speculative sampling is exact: over one-draft rounds (every x weighted by q(x), 16 stratified uniforms each),
    the output token (x if accepted, else drawn from the returned distribution) follows p within TV 1/16."""
    for s, (p, q, description) in enumerate(_exactness_scenarios()):
        rounds = _grid(q[0], 4400 + s)
        results = []
        for x, u in rounds:
            drafts, uniforms = torch.tensor([x]), torch.tensor([u])
            what = f"{description}, draft x = {x}, u = {u:.4f}"
            n, dist = _parse(_call(accept_drafts, p, q, drafts, uniforms, what), what)
            if n not in (0, 1) or dist.shape != (p.shape[1],):
                raise AssertionError(f"{what}: got n_accepted = {n} and a distribution of shape {tuple(dist.shape)} - "
                                     f"with one draft, n is 0 or 1 and the distribution is [{p.shape[1]}]")
            results.append((n, dist))
        out = _output(p, q, rounds, results)
        target = p[0].double()
        tv = 0.5 * (out - target).abs().sum().item()
        if tv <= 1 / STRATA + 1e-4:
            continue
        got, want = [round(v, 3) for v in out.tolist()], [round(v, 3) for v in target.tolist()]
        what = (f"{description}: {len(rounds)} one-draft rounds, the output token follows {got} instead of p = "
                f"{want} (total variation {tv:.3f} > 1/{STRATA})")
        named = [mistake for mistake, rules in _accept_rules().items()     # several may give the same output
                 if torch.allclose(out, _simulate(p, q, rounds, rules), atol=1e-5)]
        if named:
            raise AssertionError(f"{what} - that is what {' or '.join(named)} gives")
        raise AssertionError(f"{what} - the output is biased: accept x with probability min(1, p(x)/q(x)) and, on a "
                             "rejection, draw from the normalised residual max(0, p - q)")


@check(M, "accept_drafts", points=1, kind="rejects")
def accept_rejects_bad_inputs(accept_drafts):
    """ValueError when p is not [K+1, V] for q [K, V] (no bonus row, another vocabulary, 1-D) or drafts or uniforms
    are not [K]."""
    p, q = _models(4500, 3, 6, 1.0)
    drafts, uniforms = _draw(q, 4502)
    cases = [
        ("p [3, 6] with q [3, 6] (no bonus row: p has K + 1 rows)", (p[:3], q, drafts, uniforms)),
        ("q [3, 8] with p [4, 6] (different vocabularies)", (p, randn(3, 8, seed=4503).softmax(-1), drafts, uniforms)),
        ("drafts [2] with q [3, 6]", (p, q, drafts[:2], uniforms)),
        ("uniforms [4] with q [3, 6]", (p, q, drafts, torch.rand(4, generator=torch.Generator().manual_seed(4504)))),
        ("p [6] and q [6] (single distributions, without the row dimension)", (p[0], q[0], drafts[:1], uniforms[:1])),
    ]
    for what, args in cases:
        expect_value_error(accept_drafts, args, {}, what,
                           "check that p is [K+1, V], q [K, V], drafts and uniforms [K] first")


# --------------------------------------------------------------------------- the theory

def _number(value, what: str) -> torch.Tensor:
    """A Python int or float (or a 1-element tensor) as a float64 0-dim tensor, for ``value_naming``."""
    if type(value) in (int, float):
        return torch.tensor(float(value), dtype=torch.float64)
    if torch.is_tensor(value) and value.numel() == 1:
        return value.detach().reshape(()).double()
    kind = "a tensor" if torch.is_tensor(value) else f"a {type(value).__name__}"
    raise AssertionError(f"{what}: got {kind} - return a Python float")


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}


def _geometric(alpha: float, n: int) -> float:
    """``1 + alpha + ... + alpha^(n-1)`` (``n`` at ``alpha = 1``)."""
    return float(n) if alpha == 1 else (1 - alpha ** n) / (1 - alpha)


def _tokens_mistakes(alpha: float, k: int) -> dict[str, float]:
    ratio = (lambda a, b: a / b if b else math.inf)
    return _finite({
        "(1 - alpha^k) / (1 - alpha), the target's own token forgotten (a round yields the accepted drafts PLUS one "
        "token of the target's: 1 + alpha + ... + alpha^k)": _geometric(alpha, k),
        "alpha^(k+1) - 1 over 1 - alpha (the numerator's sign: 1 - alpha^(k+1))": -_geometric(alpha, k + 1),
        "the accepted drafts only, alpha (1 - alpha^k) / (1 - alpha) (the round also yields the target's token: "
        "add 1)": _geometric(alpha, k + 1) - 1,
        "1 + k * alpha (a rejection ends the round: the drafts after it do not count, so draft j adds alpha^j, "
        "not alpha)": 1 + k * alpha,
        "1 / (1 - alpha), the limit of infinitely many drafts (the sum stops at alpha^k)": ratio(1, 1 - alpha),
        "(1 - alpha^(k+2)) / (1 - alpha), one power too many (1 + alpha + ... + alpha^k has k + 1 terms)":
            _geometric(alpha, k + 2),
    })


def _theory_call(f, args, what: str):
    """The student's number; an exception (other than the stub's) fails, a division by zero with a hint."""
    try:
        return f(*args)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        hint = ""
        if e.kind == "ZeroDivisionError" and args[0] == 1:
            hint = (" - the closed form is 0 / 0 at alpha = 1: every draft passes there and the round yields k + 1 "
                    "tokens (handle alpha == 1 before dividing)")
        elif e.kind == "ZeroDivisionError" and len(args) > 2 and args[2] == 0:
            hint = (" - with cost_ratio = 0 the drafts cost nothing, but the verify pass still costs v > 0: divide by "
                    "k * c + v")
        raise AssertionError(f"{what}: raised {e.kind} ({e.message}){hint}") from None


def _tokens_close(expected_tokens_per_call, alpha: float, k: int, what: str) -> None:
    got = _number(_theory_call(expected_tokens_per_call, (alpha, k), what), what)
    value_naming(got, acceptance.expected_tokens_per_call(alpha, k), _tokens_mistakes(alpha, k), what)


@check(M, "expected_tokens_per_call", points=2)
def tokens_match_formula(expected_tokens_per_call):
    """(1 - alpha^(k+1)) / (1 - alpha) for alpha in (0, 1) and k from 1 to 10."""
    for alpha, k in [(0.8, 4), (0.5, 1), (0.3, 7), (0.95, 10), (0.6, 3), (0.1, 2)]:
        _tokens_close(expected_tokens_per_call, alpha, k, f"alpha={alpha:g}, k={k}")


@check(M, "expected_tokens_per_call", points=1)
def tokens_limits(expected_tokens_per_call):
    """k + 1 at alpha = 1 (every draft passes, plus the bonus token), 1 at alpha = 0 (only the target's token)."""
    for alpha, k, note in [(1.0, 4, "every draft passes: k + 1 = 5"), (1, 1, "an int alpha, every draft passes: 2"),
                           (0.0, 5, "nothing passes: only the target's token, 1")]:
        what = f"alpha={alpha!r}, k={k} ({note})"
        got = _number(_theory_call(expected_tokens_per_call, (alpha, k), what), what)
        mistakes = {"k at alpha = 1 (every draft passes AND the target adds the bonus token: k + 1)": float(k)} \
            if alpha == 1 else {}
        mistakes.update(_tokens_mistakes(alpha, k))
        value_naming(got, acceptance.expected_tokens_per_call(alpha, k), mistakes, what)


def _speedup_mistakes(alpha: float, k: int, c: float, v: float) -> dict[str, float]:
    tokens = acceptance.expected_tokens_per_call(alpha, k)
    ratio = (lambda a, b: a / b if b else math.inf)
    return _finite({
        "the verify pass left out, E[tokens] / (k c) (the target's pass over the k + 1 positions costs v)":
            ratio(tokens, k * c),
        "the draft steps left out, E[tokens] / v (the k draft steps cost k c)": tokens / v,
        "verify_cost ignored, E[tokens] / (k c + 1) (the verify pass costs v = verify_cost)": tokens / (k * c + 1),
        "the draft cost counted once, E[tokens] / (c + v) (the k drafts are proposed one after another: k c)":
            tokens / (c + v),
        "k + 1 draft steps, E[tokens] / ((k + 1) c + v) (the draft proposes k tokens; the last one comes from the "
        "verify pass)": tokens / ((k + 1) * c + v),
        "the cost per token, (k c + v) / E[tokens] (the speedup is E[tokens] / (k c + v))": (k * c + v) / tokens,
        "E[tokens] without the target's token, (1 - alpha^k) / (1 - alpha) (the round yields 1 + alpha + ... + "
        "alpha^k tokens)": _geometric(alpha, k) / (k * c + v),
        "alpha ignored, (k + 1) / (k c + v) (as if every draft passed)": (k + 1) / (k * c + v),
        "1 + k alpha tokens per round (a rejection ends the round: 1 + alpha + ... + alpha^k)":
            (1 + k * alpha) / (k * c + v),
    })


def _speedup_close(expected_speedup, alpha, k, c, v, what: str) -> None:
    """``v`` None: called without it (the default, 1)."""
    args = (alpha, k, c) if v is None else (alpha, k, c, v)
    got = _number(_theory_call(expected_speedup, args, what), what)
    v = 1.0 if v is None else v
    try:
        value_naming(got, acceptance.expected_speedup(alpha, k, c, v), _speedup_mistakes(alpha, k, c, v), what)
    except AssertionError as e:
        hint = fix_first(expected_speedup, "expected_tokens_per_call", (alpha, k),
                         acceptance.expected_tokens_per_call(alpha, k))
        raise AssertionError(f"{e}{hint}") from None


@check(M, "expected_speedup", points=2)
def speedup_matches_formula(expected_speedup):
    """E[tokens] / (k c + v), the default v = 1 and others, c from 0.02 to 0.5."""
    for alpha, k, c, v in [(0.8, 4, 0.05, None), (0.6, 3, 0.2, 1.5), (0.9, 8, 0.02, 1.2), (0.4, 2, 0.5, 2.0),
                           (0.7, 5, 0.1, 1.0), (0.95, 6, 0.3, 3.0)]:
        what = f"alpha={alpha:g}, k={k}, cost_ratio={c:g}, verify_cost={'1 (the default)' if v is None else f'{v:g}'}"
        _speedup_close(expected_speedup, alpha, k, c, v, what)


@check(M, "expected_speedup", points=1)
def speedup_limits(expected_speedup):
    """alpha = 0: 1 / (k c + v), slower than the target alone; alpha = 1: (k + 1) / (k c + v); free drafts (c = 0)."""
    for alpha, k, c, v, note in [(0.0, 4, 0.1, 1.0, "nothing passes: 1 / (k c + v) = 1 / 1.4, below 1"),
                                 (1.0, 4, 0.1, 1.2, "every draft passes: 5 / 1.6"),
                                 (1, 3, 0.0, 1.0, "an int alpha, free drafts and verify pass: k + 1 = 4"),
                                 (0.5, 3, 0.0, 2.0, "free drafts (prompt lookup): E[tokens] / v")]:
        what = f"alpha={alpha!r}, k={k}, cost_ratio={c:g}, verify_cost={v:g} ({note})"
        _speedup_close(expected_speedup, alpha, k, c, v, what)


@check(M, "expected_speedup", points=1, kind="rejects")
def speedup_rejects_bad_inputs(expected_speedup):
    """ValueError for alpha outside [0, 1], k < 1, cost_ratio < 0 and verify_cost <= 0."""
    for what, args in [("alpha=-0.2", (-0.2, 4, 0.1)), ("alpha=1.1", (1.1, 4, 0.1)), ("k=0", (0.5, 0, 0.1)),
                       ("cost_ratio=-0.1", (0.5, 4, -0.1)), ("verify_cost=0", (0.5, 4, 0.1, 0.0)),
                       ("verify_cost=-1", (0.5, 4, 0.1, -1.0))]:
        expect_value_error(expected_speedup, args, {}, what,
                           "check that 0 <= alpha <= 1, k >= 1, cost_ratio >= 0 and verify_cost > 0 first")


# --------------------------------------------------------------------------- break_even_alpha

def _break_even(k: int, c: float, v: float) -> float | None:
    if acceptance.expected_speedup(0.0, k, c, v) >= 1:
        return 0.0
    if acceptance.expected_speedup(1.0, k, c, v) < 1:
        return None
    low, high = 0.0, 1.0
    while high - low > 1e-12:
        middle = (low + high) / 2
        low, high = (middle, high) if acceptance.expected_speedup(middle, k, c, v) < 1 else (low, middle)
    return (low + high) / 2


@check(M, "break_even_alpha", points=2)
def break_even_matches_reference(break_even_alpha):
    """The alpha where the expected speedup is 1 (bisection); 0.0 when alpha = 0 pays; None when alpha = 1 does not."""
    cases = [(4, 0.1, 1.0), (2, 0.3, 1.5), (3, 0.05, 2.0), (6, 0.12, 1.2), (1, 0.2, 1.0),
             (2, 0.34, 2.45),            # notebook 06's CPU figures for K = 2: no alpha pays
             (3, 0.0, 0.9)]              # a verify pass cheaper than a step and free drafts: alpha = 0 pays
    for k, c, v in cases:
        what = f"k={k}, cost_ratio={c:g}, verify_cost={v:g}"
        got = _theory_call(break_even_alpha, (k, c, v), what)
        expected = _break_even(k, c, v)
        if expected is None:
            if got is not None:
                best = acceptance.expected_speedup(1.0, k, c, v)
                raise AssertionError(f"{what}: got {got!r}, expected None - even at alpha = 1 the speedup is "
                                     f"{best:.3f} < 1: no acceptance rate makes this draft pay")
            continue
        if got is None:
            raise AssertionError(f"{what}: got None, but alpha = 1 gives a speedup of "
                                 f"{acceptance.expected_speedup(1.0, k, c, v):.3f} >= 1: some alpha pays")
        value = float(_number(got, what))
        if abs(value - expected) <= 1e-5:
            continue
        hint = ""
        if 0 <= value <= 1:
            at = acceptance.expected_speedup(value, k, c, v)
            hint = f" - the speedup at your alpha is {at:.4f}, not 1"
        if expected == 0.0:
            hint = f" - the speedup at alpha = 0 is already {acceptance.expected_speedup(0.0, k, c, v):.3f} >= 1"
        hint += fix_first(break_even_alpha, "expected_speedup", (0.5, k, c, v),
                          acceptance.expected_speedup(0.5, k, c, v))
        raise AssertionError(f"{what}: expected {expected:.6f}, got {value:.6f}{hint}")


# --------------------------------------------------------------------------- the choice

@check(M, "replacement_drawn_from_the_target", points=1)
def replacement_choice(replacement_drawn_from_the_target):
    """'over': drawing the replacement from p_i over-produces the tokens the draft over-proposes."""
    answer = replacement_drawn_from_the_target()
    choice(answer, "replacing a rejected draft with a draw from p_i", "over", {
        "exact": "add P(drafted and accepted) = min(p, q)(x) to P(rejected) * p(x): for a token with q(x) > p(x) "
                 "the sum exceeds p(x) (only the residual makes it exact)",
        "under": "for a token with q(x) < p(x), drafted-and-accepted gives q(x) and a rejection adds (1 - alpha) "
                 "p(x): compare that sum with p(x), then do the same for q(x) > p(x)",
        "draft": "a rejection draws from p, not q, and a draft is accepted only with probability min(1, p/q): the "
                 "output mixes min(p, q) with p, never q alone",
    })
