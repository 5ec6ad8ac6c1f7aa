"""Checks for exercises/ex06_llm_distillation.py (20 points; ``TASKS`` gives the ladder).

References: ``course_lib.llm.losses.token_kd_loss`` (``attention_mask=mask``, no labels, ``alpha = 1``)
and its gradient for the masked KL; ``course_lib.llm.losses.token_divergence(..., "jsd", beta=...)`` for
the generalised JSD (TRL's GKD convention: mixture ``beta * p_t + (1 - beta) * p_s``, ``beta = 0`` the
forward and ``beta = 1`` the reverse KL) with ``course_lib.losses.soft_target_kl`` for its endpoints;
``course_lib.llm.losses.shift_for_causal_lm`` for the causal shift. Besides the values: padding that
changes nothing, the real tokens packed into one sequence, no gradient into the teacher; the JSD's
symmetry and ``log 2`` bound at ``beta = 0.5`` (on confident, non-overlapping distributions too) and
its zero for identical models; left and right padding for the shift.
When a value is wrong, the message names the common mistake it matches: the KL averaged over all
``B * S`` positions (the source article's ``batchmean``, padding counted) or divided by ``B``, the sum
instead of the mean, the reverse KL, a missing ``T^2`` or ``T`` instead, ``F.kl_div`` given
probabilities instead of log-probabilities or with its default ``reduction="mean"``, the teacher not
detached; the mixture's or the outer weights swapped, ``beta`` on the student throughout, the mixture
as a weighted mean of log-probabilities (geometric), the mixture in probability space (NaN for
confident models), the endpoints swapped or left to the mixture formula (0), a ``T^2`` factor, no
temperature, a sum or mean over the positions; no shift, the wrong side shifted, the labels not
shifted, only the token read or only the token predicted checked, no mask, 0 instead of -100. A masked KL that
calls ``generalized_jsd`` at ``beta = 0`` is told when that one is wrong too (``fix_first``). The choice
(``truncated_teacher_divergence``) tells why each wrong key stays finite against a top-k teacher.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.grading.checks.helpers import (as_tensor, choice, close, close_naming, expect_value_error, fix_first,
                                               randint, randn, student_error, tensors_close, value_naming)
from course_lib.grading.checks.registry import Task, check
from course_lib.llm.losses import shift_for_causal_lm, token_divergence, token_kd_loss
from course_lib.losses import soft_target_kl

M = "ex06_llm_distillation"

TASKS = {"causal_shift": Task("warm-up", 10, "implement"), "masked_token_kl": Task("core", 20, "implement"),
         "truncated_teacher_divergence": Task("core", 5, "choose"),
         "generalized_jsd": Task("core", 25, "implement")}

# What the stubs leave to the student (tests/grading/test_generate.py scans the generated file, spaces ignored):
# the formulas, the code, and the warnings the grader gives as hints after a wrong answer.
CLOSED_FORMS = {
    "masked_token_kl": ["T^2 * (1 / N)", "kl[real].mean()", "teacher_logits.detach()", "F.kl_div", "batchmean",
                        "log_softmax", "divide by N"],
    "generalized_jsd": ["beta * p_t + (1 - beta) * p_s", "beta * KL(p_t || M) + (1 - beta) * KL(p_s || M)",
                        "logaddexp", "logsumexp", "log M =", "geometric mean"],
    "causal_shift": ["logits[:, :-1]", "labels[:, 1:]", "attention_mask[:, :-1]", "attention_mask[:, 1:]",
                     "masked_fill", "torch.where"],
    "truncated_teacher_divergence": ["p_s(v) log(p_s(v) / p_t(v))", "log(p_s / 0)", "mode-seeking"],
}


def _logits(seed: int, b: int, s: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits (scale 2) and sharper teacher logits (scale 4), ``[B, S, V]``."""
    return randn(b, s, v, seed=seed, scale=2.0), randn(b, s, v, seed=seed + 1, scale=4.0)


def _padding_mask(lengths: list[int], s: int, side: str = "right", dtype=torch.long) -> torch.Tensor:
    """``[B, S]``: 1 at each sequence's ``lengths[b]`` real tokens, padded on ``side``."""
    mask = (torch.arange(s) < torch.tensor(lengths).unsqueeze(1)).to(dtype)
    return mask.flip(1) if side == "left" else mask


def _sizes(zs: torch.Tensor, t: float, mask: torch.Tensor) -> str:
    b, s, v = zs.shape
    real = int(mask.bool().sum())
    return f"B={b}, S={s}, V={v}, temperature={t:g}, {real} real tokens of {b * s} ({mask.dtype} mask)"


# --------------------------------------------------------------------------- masked_token_kl

def _kl_reference(zs: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor, t: float) -> torch.Tensor:
    return token_kd_loss(zs, zt, None, temperature=t, attention_mask=mask)


def _kl_mistakes(zs: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    """0-dim values of known mistakes (differentiable in ``zs``)."""
    b, s, v = zs.shape
    real = mask.bool()
    n = real.sum()
    fwd, rev = soft_target_kl(zs, zt, t), soft_target_kl(zs, zt, t, direction="reverse")      # [B, S]
    masked_sum = fwd[real].sum()
    log_pt = F.log_softmax(zt / t, dim=-1)
    probs_as_input = (log_pt.exp() * (log_pt - F.softmax(zs / t, dim=-1))).sum(-1)      # F.kl_div(p_s, p_t)
    return {
        "the KL averaged over all B * S positions, padding included (the article's KLDivLoss(reduction="
        "'batchmean') on the flattened [B * S, V] logits; average over the real tokens only)":
            t * t * fwd.mean(),
        "the sum over the real tokens divided by B * S (every position) instead of by the number of real tokens":
            t * t * masked_sum / (b * s),
        "the KL summed over all positions, padding included, and divided by B (F.kl_div's reduction='batchmean' "
        "on [B, S, V] divides by B only)": t * t * fwd.sum() / b,
        "the sum over the real tokens divided by B instead of by the number of real tokens":
            t * t * masked_sum / b,
        "the sum over the real tokens instead of their mean": t * t * masked_sum,
        "F.kl_div's default reduction='mean' (it divides by the number of elements, tokens * V)":
            t * t * masked_sum / (n * v),
        "the reverse KL, KL(p_s || p_t) (the teacher's distribution goes first: KL(p_t || p_s))":
            t * t * rev[real].mean(),
        "a missing T^2 factor": fwd[real].mean(),
        "T instead of T^2": t * fwd[real].mean(),
        "F.kl_div given probabilities instead of log-probabilities (F.kl_div(input, target) computes "
        "target * (log target - input): input must be F.log_softmax(z_s / T))": t * t * probs_as_input[real].mean(),
    }


def _kl_close(got, zs, zt, mask, t, what: str) -> None:
    value_naming(got, _kl_reference(zs, zt, mask, t).item(),
                 {k: v.item() for k, v in _kl_mistakes(zs, zt, mask, t).items()}, what)


def _kl_cases():
    """(student, teacher, mask, temperature, description); temperature None: the default (1)."""
    cases = []
    for seed, (b, s, v), t, lengths, side, dtype in [
            (3000, (2, 6, 11), None, [4, 6], "right", torch.long),
            (3002, (3, 7, 13), 2.0, [7, 3, 5], "right", torch.long),
            (3004, (3, 8, 17), 4.0, [2, 8, 5], "left", torch.long),
            (3006, (4, 5, 50), 0.5, [1, 5, 3, 2], "right", torch.bool),
            (3008, (2, 9, 7), 3.0, [9, 4], "left", torch.float32)]:
        zs, zt = _logits(seed, b, s, v)
        mask = _padding_mask(lengths, s, side, dtype)
        what = f"{_sizes(zs, 1.0 if t is None else t, mask)}, {side} padding"
        cases.append((zs, zt, mask, t, what + (" (the default temperature)" if t is None else "")))
    return cases


@check(M, "masked_token_kl", points=3)
def masked_kl_matches_reference(masked_token_kl):
    """T^2 * mean over the real tokens of KL(p_t || p_s): right and left padding, long/bool/float masks, several T."""
    for zs, zt, mask, t, what in _kl_cases():
        got = masked_token_kl(zs, zt, mask) if t is None else masked_token_kl(zs, zt, mask, t)
        try:
            _kl_close(got, zs, zt, mask, 1.0 if t is None else t, what)
        except AssertionError as e:
            raise AssertionError(f"{e}{_jsd_first(masked_token_kl)}") from None


# One position, 3 tokens: generalized_jsd at beta = 0 is the forward KL, what masked_token_kl averages (an answer
# may call it): a wrong one is named when the masked KL is wrong.
SMALL_STUDENT, SMALL_TEACHER = torch.tensor([[[1.0, 0.0, -1.0]]]), torch.tensor([[[0.0, 0.0, 2.0]]])


def _jsd_first(masked_token_kl) -> str:
    expected = soft_target_kl(SMALL_STUDENT, SMALL_TEACHER, 1.0).item()
    return fix_first(masked_token_kl, "generalized_jsd", (SMALL_STUDENT, SMALL_TEACHER, 0.0, 1.0), expected, tol=1e-5)


@check(M, "masked_token_kl", points=2)
def masked_kl_ignores_padding(masked_token_kl):
    """Padding's logits change nothing; the real tokens packed into one sequence give the same loss; no padding:
    the plain mean over every position."""
    zs, zt = _logits(3100, 3, 6, 9)
    mask = _padding_mask([6, 2, 4], 6)
    pad = ~mask.bool()
    noisy_s = torch.where(pad.unsqueeze(-1), randn(3, 6, 9, seed=3102, scale=10.0), zs)
    noisy_t = torch.where(pad.unsqueeze(-1), randn(3, 6, 9, seed=3103, scale=10.0), zt)
    cases = [(noisy_s, noisy_t, mask, 2.0, "other logits at the padding positions (the loss must not change)"),
             (zs[mask.bool()].unsqueeze(0), zt[mask.bool()].unsqueeze(0), torch.ones(1, 12, dtype=torch.long), 2.0,
              "the 12 real tokens packed into one sequence without padding (the same mean)")]
    zs, zt = _logits(3104, 2, 5, 8)
    cases.append((zs, zt, torch.ones(2, 5, dtype=torch.long), 3.0,
                  "no padding (all ones: the mean over all B * S positions)"))
    for zs, zt, mask, t, what in cases:
        _kl_close(masked_token_kl(zs, zt, mask, t), zs, zt, mask, t, f"{_sizes(zs, t, mask)}, {what}")


def _kl_gradients(zs, zt, mask, t) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference's gradient with respect to the student's logits, and the mistakes'."""
    leaf = zs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_kl_reference(leaf, zt, mask, t), leaf)
    wrong = {k: torch.autograd.grad(v, leaf, retain_graph=True)[0]
             for k, v in _kl_mistakes(leaf, zt, mask, t).items()}
    return grad, wrong


@check(M, "masked_token_kl", points=2)
def masked_kl_gradient_reaches_only_the_student(masked_token_kl):
    """No gradient reaches the teacher's logits (detached); the student's gradient is the reference's, 0 at padding."""
    for seed, (b, s, v), t, lengths, side in [(3200, (2, 6, 10), 2.0, [6, 3], "right"),
                                              (3202, (3, 5, 7), 1.0, [2, 5, 4], "left")]:
        zs, zt = _logits(seed, b, s, v)
        mask = _padding_mask(lengths, s, side)
        what = f"{_sizes(zs, t, mask)}, {side} padding"
        _, grad = masked_token_kl.value_and_grad(zs, zt, mask, t, wrt=1)
        if grad is not None and grad.abs().max().item() > 0:
            raise AssertionError(
                f"{what}: a gradient reaches the teacher's logits (max |gradient| {grad.abs().max().item():.3g}) - "
                "the teacher not detached: it is a fixed target, so use teacher_logits.detach() (the optimiser "
                "would otherwise move the teacher towards the student, in a loop that trains both)")
        _, grad = masked_token_kl.value_and_grad(zs, zt, mask, t, wrt=0)
        assert grad is not None, (f"{what}: the loss is not differentiable with respect to the student's logits "
                                  "(return a tensor computed from student_logits, not a number)")
        pad = ~mask.bool()
        leak = grad[pad].abs().max().item()
        if leak > 0:
            raise AssertionError(f"{what}, the gradient with respect to the student's logits: it reaches the padding "
                                 f"positions (max |gradient| {leak:.3g}) - the mask not applied to the KL")
        expected, wrong = _kl_gradients(zs, zt, mask, t)
        close_naming(grad, expected, wrong, f"{what}, the gradient with respect to the student's logits")


@check(M, "masked_token_kl", points=1, kind="rejects")
def masked_kl_rejects_bad_inputs(masked_token_kl):
    """ValueError for logits of different shapes, a mask that is not [B, S], temperature <= 0, no real token."""
    zs, zt = _logits(3300, 2, 5, 10)
    mask = _padding_mask([5, 3], 5)
    cases = [
        ("teacher logits [2, 5, 12] with student logits [2, 5, 10] (different vocabularies)",
         (zs, randn(2, 5, 12, seed=3302), mask), {}),
        ("teacher logits [2, 4, 10] with student logits [2, 5, 10]", (zs, zt[:, :4], mask), {}),
        ("a mask of shape [2, 4] with logits [2, 5, 10]", (zs, zt, mask[:, :4]), {}),
        ("a mask of shape [10] with logits [2, 5, 10] (flattened)", (zs, zt, mask.flatten()), {}),
        ("temperature=0", (zs, zt, mask), {"temperature": 0.0}),
        ("temperature=-1", (zs, zt, mask), {"temperature": -1.0}),
        ("a mask without a real token (all zeros: the mean over 0 tokens is 0 / 0)",
         (zs, zt, torch.zeros(2, 5, dtype=torch.long)), {}),
    ]
    for what, args, kwargs in cases:
        expect_value_error(masked_token_kl, args, kwargs, what,
                           "check the shapes, the temperature (> 0) and that the mask has a real token first")


# --------------------------------------------------------------------------- generalized_jsd

def _jsd_reference(zs, zt, beta: float, t: float) -> torch.Tensor:
    return token_divergence(zs, zt, "jsd", beta=beta, temperature=t)


def _jsd_mistakes(zs, zt, beta: float, t: float) -> dict[str, torch.Tensor]:
    """Per-position values ``[B, S]`` of known mistakes at this ``beta``."""
    log_ps, log_pt = F.log_softmax(zs / t, dim=-1), F.log_softmax(zt / t, dim=-1)

    def kl(log_p, log_q):
        return (log_p.exp() * (log_p - log_q)).sum(-1)

    def mixture(weight):                                   # log(weight * p_t + (1 - weight) * p_s)
        return torch.logaddexp(log_pt + math.log(weight), log_ps + math.log1p(-weight))

    fwd, rev = kl(log_pt, log_ps), kl(log_ps, log_pt)
    reference = _jsd_reference(zs, zt, beta, t)
    mistakes = {
        "a T^2 factor (generalized_jsd returns the divergence alone; the loss applies T^2)": t * t * reference,
        "the temperature left out (p = softmax(z / T) for both models)": _jsd_reference(zs, zt, beta, 1.0),
    }
    if beta == 0:
        mistakes["the endpoints swapped (beta = 0 is the forward KL(p_t || p_s), beta = 1 the reverse "
                 "KL(p_s || p_t), as in TRL's GKD)"] = rev
    elif beta == 1:
        mistakes["the endpoints swapped (beta = 0 is the forward KL(p_t || p_s), beta = 1 the reverse "
                 "KL(p_s || p_t), as in TRL's GKD)"] = fwd
    else:
        m = mixture(beta)
        mistakes.update({
            "the mixture's weights swapped, M = (1 - beta) * p_t + beta * p_s (beta weighs the teacher: "
            "M = beta * p_t + (1 - beta) * p_s)": beta * kl(log_pt, mixture(1 - beta)) + (1 - beta) * kl(
                log_ps, mixture(1 - beta)),
            "the outer weights swapped, (1 - beta) * KL(p_t || M) + beta * KL(p_s || M) (beta weighs the "
            "teacher's term)": (1 - beta) * kl(log_pt, m) + beta * kl(log_ps, m),
            "beta on the student throughout (that is JSD_{1 - beta}: beta weighs the teacher, in the mixture and "
            "outside it)": _jsd_reference(zs, zt, 1 - beta, t),
            "the mixture as a weighted mean of log-probabilities, beta * log p_t + (1 - beta) * log p_s (a "
            "geometric mean; M is the mean of the probabilities: log M = logaddexp(log p_t + log beta, "
            "log p_s + log(1 - beta)))": beta * kl(log_pt, beta * log_pt + (1 - beta) * log_ps) + (1 - beta) * kl(
                log_ps, beta * log_pt + (1 - beta) * log_ps),
            "KL(M || p_t) and KL(M || p_s) (the mixture goes second: KL(p_t || M) and KL(p_s || M))":
                beta * kl(m, log_pt) + (1 - beta) * kl(m, log_ps),
        })
    return mistakes


ENDPOINT_FORMULA = ("the mixture formula at the endpoints (it gives 0 at beta = 0 and beta = 1 whatever the models: "
                    "handle beta == 0 (the forward KL(p_t || p_s)) and beta == 1 (the reverse KL(p_s || p_t)) before "
                    "the mixture)")


def _jsd_close(got, zs, zt, beta: float, t: float, what: str) -> None:
    """``[B, S]`` values as the reference's; a scalar, a wrong shape or a known mistake is named."""
    got = as_tensor(got, what)
    expected = _jsd_reference(zs, zt, beta, t)
    if got.dim() == 0:
        how = ("the sum" if tensors_close(got, expected.sum()) else "the mean" if tensors_close(got, expected.mean())
               else "a reduction")
        raise AssertionError(f"{what}: got a scalar - {how} over the positions; return one value per position, "
                             f"a tensor {list(expected.shape)} (the loss averages over the real tokens, not this "
                             "function)")
    if got.shape == zs.shape:
        raise AssertionError(f"{what}: got shape {tuple(got.shape)}, the logits' - sum over the vocabulary (dim=-1) "
                             f"to get one value per position, {list(expected.shape)}")
    if not torch.isfinite(got.detach()).all():
        raise AssertionError(f"{what}: NaN or inf in the result - the mixture computed in probability space? "
                             "log(beta * p_t + (1 - beta) * p_s) is -inf where both probabilities underflow: compute "
                             "log M with torch.logaddexp(log p_t + log beta, log p_s + log(1 - beta))")
    mistakes = _jsd_mistakes(zs, zt, beta, t)
    if beta in (0, 1):
        mistakes[ENDPOINT_FORMULA] = torch.zeros_like(expected)
    close_naming(got, expected, mistakes, what)


def _jsd_call(generalized_jsd, zs, zt, beta, t):
    """Call with ``beta`` and ``temperature`` as keywords; None: leave the default."""
    kwargs = {k: v for k, v in (("beta", beta), ("temperature", t)) if v is not None}
    return generalized_jsd(zs, zt, **kwargs)


@check(M, "generalized_jsd", points=2)
def jsd_matches_reference(generalized_jsd):
    """beta KL(p_t || M) + (1 - beta) KL(p_s || M), M = beta p_t + (1 - beta) p_s, per position, beta in (0, 1)."""
    for seed, (b, s, v), beta, t in [(3400, (2, 5, 11), None, None), (3402, (3, 4, 13), 0.1, 1.0),
                                     (3404, (2, 6, 17), 0.3, 2.0), (3406, (1, 7, 50), 0.7, None),
                                     (3408, (4, 3, 9), 0.9, 0.5), (3410, (2, 5, 20), 0.5, 3.0)]:
        zs, zt = _logits(seed, b, s, v)
        what = (f"B={b}, S={s}, V={v}, beta={'0.5 (the default)' if beta is None else beta}, "
                f"temperature={'1 (the default)' if t is None else f'{t:g}'}")
        _jsd_close(_jsd_call(generalized_jsd, zs, zt, beta, t), zs, zt, 0.5 if beta is None else beta,
                   1.0 if t is None else t, what)


@check(M, "generalized_jsd", points=2)
def jsd_endpoints_are_the_kls(generalized_jsd):
    """beta = 0 is the forward KL(p_t || p_s), beta = 1 the reverse KL(p_s || p_t) (TRL's GKD), not 0."""
    for seed, (b, s, v), t in [(3500, (2, 5, 11), 1.0), (3502, (3, 4, 9), 2.0)]:
        zs, zt = _logits(seed, b, s, v)
        for beta, name in ((0.0, "the forward KL(p_t || p_s)"), (1.0, "the reverse KL(p_s || p_t)")):
            what = f"B={b}, S={s}, V={v}, beta={beta:g} (defined as {name}), temperature={t:g}"
            try:
                got = generalized_jsd(zs, zt, beta=beta, temperature=t)
            except student_error() as e:
                if isinstance(e, NotImplementedError):
                    raise
                raise AssertionError(f"{what}: raised {e.kind} ({e.message}) - beta = 0 and beta = 1 belong to "
                                     "[0, 1]; handle them before the mixture (whose log beta or log(1 - beta) is "
                                     "log 0 there)") from None
            _jsd_close(got, zs, zt, beta, t, what)


def _confident(seed: int, b: int, s: int, v: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``scale`` at one token per position, 0 elsewhere, on different tokens for student and teacher:
    at ``scale = 200`` nearly one-hot distributions that do not overlap, whose other probabilities underflow."""
    teacher = randint(v, b, s, seed=seed)
    student = (teacher + 1 + randint(v - 1, b, s, seed=seed + 1)) % v
    return scale * F.one_hot(student, v).float(), scale * F.one_hot(teacher, v).float()


@check(M, "generalized_jsd", points=1)
def jsd_identities(generalized_jsd):
    """0 for identical models (any beta); swapping the models turns beta into 1 - beta; at beta = 0.5 symmetric and
    at most log 2, reached by confident, non-overlapping models (finite: the mixture in log space)."""
    zs, zt = _logits(3600, 2, 6, 12)
    for beta in (0.0, 0.3, 0.5, 1.0):
        what = f"student == teacher, B=2, S=6, V=12, beta={beta:g}, temperature=2 (every value should be 0)"
        got = generalized_jsd(zt, zt.clone(), beta=beta, temperature=2.0)
        _jsd_close(got, zt, zt, beta, 2.0, what)
    what = "B=2, S=6, V=12, beta=0.5, temperature=1.5, the arguments swapped (JSD_0.5 is symmetric)"
    forward = as_tensor(generalized_jsd(zs, zt, beta=0.5, temperature=1.5), what)
    swapped = generalized_jsd(zt, zs, beta=0.5, temperature=1.5)
    _jsd_close(swapped, zt, zs, 0.5, 1.5, what)
    close(swapped, forward.detach(), f"{what}, compared with the unswapped call")
    what = "B=2, S=6, V=12, beta=0.3, temperature=1.5, the arguments swapped (JSD_0.3 of the swapped models is JSD_0.7)"
    _jsd_close(generalized_jsd(zt, zs, beta=0.3, temperature=1.5), zt, zs, 0.3, 1.5, what)
    close(generalized_jsd(zt, zs, beta=0.3, temperature=1.5), _jsd_reference(zs, zt, 0.7, 1.5), what)
    for scale, t in ((200.0, 1.0), (8.0, 2.0)):
        zs, zt = _confident(3602 + int(scale), 3, 4, 10, scale)
        what = (f"logits {scale:g} at one token, 0 elsewhere, student and teacher on different tokens, B=3, S=4, V=10, "
                f"beta=0.5, temperature={t:g} (at most log 2 = {math.log(2):.6g})")
        got = as_tensor(generalized_jsd(zs, zt, beta=0.5, temperature=t), what)
        _jsd_close(got, zs, zt, 0.5, t, what)
        assert got.max().item() <= math.log(2) + 1e-5, f"{what}: values up to {got.max().item():.6g}"


@check(M, "generalized_jsd", points=1, kind="rejects")
def jsd_rejects_bad_inputs(generalized_jsd):
    """ValueError for beta < 0, beta > 1, temperature = 0 and temperature < 0."""
    zs, zt = _logits(3700, 2, 3, 5)
    for what, kwargs in [("beta=-0.1", {"beta": -0.1}), ("beta=1.5", {"beta": 1.5}),
                         ("temperature=0", {"temperature": 0.0}), ("temperature=-2", {"temperature": -2.0})]:
        expect_value_error(generalized_jsd, (zs, zt), kwargs, what,
                           "check that 0 <= beta <= 1 and temperature > 0 first")


# --------------------------------------------------------------------------- causal_shift

def _token_ids(seed: int, b: int, s: int, v: int) -> torch.Tensor:
    return randint(v, b, s, seed=seed)


def _shift_mistakes(labels: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    real = mask.bool()
    both = real[:, :-1] & real[:, 1:]
    return {
        "only the token read checked (attention_mask[:, :-1]: the last real token's position, whose target is "
        "padding, still counts; a position counts iff the token it reads AND the token it predicts are real)":
            labels[:, 1:].masked_fill(~real[:, :-1], -100),
        "only the token predicted checked (attention_mask[:, 1:]: with left padding, the padding position before "
        "the first real token still counts; a position counts iff the token it reads AND the token it predicts "
        "are real)": labels[:, 1:].masked_fill(~real[:, 1:], -100),
        "no mask (set -100 where the token read or the token predicted is padding)": labels[:, 1:],
        "0 instead of -100 at the positions that do not count (0 is a real token id: -100 is the index "
        "F.cross_entropy ignores)": labels[:, 1:].masked_fill(~both, 0),
        "the labels not shifted (labels[:, :-1]: position i must be scored against token i + 1, labels[:, 1:])":
            labels[:, :-1].masked_fill(~both, -100),
        "the labels not shifted and the mask of the token read (labels[:, :-1] with attention_mask[:, :-1])":
            labels[:, :-1].masked_fill(~real[:, :-1], -100),
    }


def _shift_close(got, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{what}: expected a pair (shifted_logits, shifted_labels), got {type(got).__name__}")
    got_logits, got_labels = as_tensor(got[0], f"{what}: the logits"), as_tensor(got[1], f"{what}: the labels")
    b, s, v = logits.shape
    if got_logits.shape == logits.shape:
        raise AssertionError(f"{what}: the logits have all {s} positions - no shift: position i's logits predict "
                             "token i + 1, so drop the last position (logits[:, :-1]) and the first label")
    if got_logits.shape == (b, s - 1, v) and torch.equal(got_logits, logits[:, 1:]):
        raise AssertionError(f"{what}: the logits are logits[:, 1:] - the wrong side shifted (the first prediction "
                             "dropped instead of the last): use logits[:, :-1] with labels[:, 1:]")
    close(got_logits, logits[:, :-1], f"{what}: the logits (expected logits[:, :-1])", atol=0.0, rtol=0.0)
    if got_labels.shape == labels.shape:
        raise AssertionError(f"{what}: the labels have all {s} positions - shift them: labels[:, 1:] (the token each "
                             "position predicts)")
    expected = shift_for_causal_lm(logits, labels, mask)[1]
    assert not got_labels.is_floating_point() and got_labels.dtype != torch.bool, (
        f"{what}: expected integer token ids (the labels' dtype, {labels.dtype}), got {got_labels.dtype}")
    close_naming(got_labels, expected, _shift_mistakes(labels, mask), f"{what}: the labels")


@check(M, "causal_shift", points=2)
def shift_pairs_each_prediction_with_the_next_token(causal_shift):
    """logits[:, :-1] with labels[:, 1:] on sequences without padding (every shifted position counts)."""
    for seed, (b, s, v) in [(3800, (2, 6, 9)), (3802, (3, 7, 11)), (3804, (1, 2, 5))]:
        logits, labels = randn(b, s, v, seed=seed), _token_ids(seed + 1, b, s, v)
        mask = torch.ones(b, s, dtype=torch.long)
        _shift_close(causal_shift(logits, labels, mask), logits, labels, mask, f"B={b}, S={s}, V={v}, no padding")


@check(M, "causal_shift", points=2)
def shift_drops_padding_on_either_side(causal_shift):
    """-100 exactly where the token read or the token predicted is padding: right, left and mixed padding."""
    mixed = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0]])
    for seed, (b, s, v), mask, padding in [
            (3900, (3, 7, 11), _padding_mask([7, 4, 2], 7), "right padding, lengths [7, 4, 2]"),
            (3902, (3, 6, 10), _padding_mask([6, 3, 1], 6, "left"), "left padding, lengths [6, 3, 1]"),
            (3904, (2, 8, 7), _padding_mask([5, 2], 8, "left", torch.bool),
             "left padding, lengths [5, 2], a bool mask"),
            (3906, (3, 6, 12), mixed, f"the mask {mixed.tolist()}")]:
        logits, labels = randn(b, s, v, seed=seed), _token_ids(seed + 1, b, s, v)
        _shift_close(causal_shift(logits, labels, mask), logits, labels, mask, f"B={b}, S={s}, V={v}, {padding}")


# --------------------------------------------------------------------------- truncated_teacher_divergence

CHOICE_HINTS = {
    "forward_kl": "KL(p_t || p_s) weighs each token's term by the teacher's probability: a token outside the top k "
                  "contributes 0 (p_t log(p_t / p_s) -> 0 as p_t -> 0), so it stays finite - it simply never "
                  "penalises the student's mass there",
    "jsd": "the JSD compares each model with the mixture, which is positive wherever either model is: every "
           "log-ratio it takes is finite, and at beta = 0.5 it never exceeds log 2",
    "none": "look at each divergence's term on a token that the truncated teacher gives probability 0 and the "
            "student does not: one of them takes the log of a ratio whose denominator is that 0, with a positive "
            "weight",
}


@check(M, "truncated_teacher_divergence", points=2)
def truncated_teacher_choice(truncated_teacher_divergence):
    """The divergence that is infinite against a top-k teacher used as it is (p_t = 0 outside the top k)."""
    choice(truncated_teacher_divergence(), "a teacher truncated to its top k tokens, a softmax student",
           "reverse_kl", CHOICE_HINTS)
