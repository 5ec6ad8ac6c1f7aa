"""Checks for exercises/ex02_kd_loss.py (20 points).

When ``kd_loss`` or ``kd_gradient`` is wrong, the message names the common mistake its value
matches (reverse KL, missing ``T^2``, ``KLDivLoss``'s default ``reduction="mean"``, ...).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib import losses as reference
from course_lib.grading.checks.helpers import as_tensor, close, close_naming, matches, randint, randn, scalar
from course_lib.grading.checks.registry import Task, check

M = "ex02_kd_loss"

# What a function asks students to derive: its stub must not state it (tests/grading/test_generate.py
# scans the generated exercise file, spaces ignored).
TASKS = {"reverse_kl": Task("warm-up", 10, "implement"), "kd_loss": Task("core", 20, "implement"),
         "kd_gradient": Task("stretch", 25, "derive"), "logit_matching_limit": Task("stretch", 20, "derive")}

CLOSED_FORMS = {"kd_loss": ["alpha * T^2", "T^2 * KL", "T ** 2 * KL", "(1 - alpha) * CE"],
                "logit_matching_limit": ["/ (2C)", "/ (2 * C)", "/(2*C)", "d - mean", "d_k - mean", "(z_s - z_t)^2",
                                         "(z_s - z_t) ** 2"],
                "kd_gradient": ["(p_s^T[k] - p_t^T[k]) / T", "(p_s - p_t) / T", "(p_s^T - p_t^T) / T",
                                "(softmax(z_s / T) - softmax(z_t / T)) / T"]}


def _batch(seed: int, b: int = 8, c: int = 10):
    """Student logits, teacher logits (sharper) and targets."""
    return (randn(b, c, seed=seed, scale=2.0), randn(b, c, seed=seed + 1, scale=4.0),
            randint(c, b, seed=seed + 2))


def _kd_mistakes(zs, zt, y, t, alpha) -> dict[str, float]:
    """Values of kd_loss under common mistakes, to name the one a wrong answer made."""
    fwd = reference.soft_target_kl(zs, zt, t).mean().item()
    rev = reference.soft_target_kl(zs, zt, t, direction="reverse").mean().item()
    ce = F.cross_entropy(zs, y).item()
    ce_tempered = F.cross_entropy(zs / t, y).item()
    c = zs.shape[-1]
    return {
        "the reverse KL, KL(student || teacher)": alpha * t * t * rev + (1 - alpha) * ce,
        "a missing T^2 factor": alpha * fwd + (1 - alpha) * ce,
        "T instead of T^2": alpha * t * fwd + (1 - alpha) * ce,
        "KLDivLoss's default reduction='mean' (divides by B*C, not B)": alpha * t * t * fwd / c + (1 - alpha) * ce,
        "alpha and (1 - alpha) swapped": (1 - alpha) * t * t * fwd + alpha * ce,
        "cross-entropy on the tempered logits z_s / T": alpha * t * t * fwd + (1 - alpha) * ce_tempered,
    }


def _kd_close(got, zs, zt, y, t, alpha, what):
    value = scalar(got, what)
    expected = reference.kd_loss(zs, zt, y, temperature=t, alpha=alpha).item()
    if abs(value - expected) <= 1e-4 * max(1.0, abs(expected)):
        return
    mistake = matches(value, _kd_mistakes(zs, zt, y, t, alpha))
    hint = f" - that is what {mistake} gives" if mistake else ""
    raise AssertionError(f"{what}: expected {expected:.6g}, got {value:.6g}{hint}")


# --------------------------------------------------------------------------- kd_loss

@check(M, "kd_loss", points=3)
def kd_loss_matches_reference(kd_loss):
    """alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE, batch mean, over a grid of T and alpha."""
    for seed, t, alpha in [(40, 1.0, 0.5), (43, 2.0, 0.9), (46, 4.0, 0.3), (49, 8.0, 0.7), (52, 3.0, 1.0)]:
        zs, zt, y = _batch(seed)
        _kd_close(kd_loss(zs, zt, y, t, alpha), zs, zt, y, t, alpha,
                  f"T={t}, alpha={alpha}")


@check(M, "kd_loss", points=1)
def kd_loss_alpha_zero_is_cross_entropy(kd_loss):
    """alpha = 0 is plain cross-entropy on the hard labels, whatever T."""
    zs, zt, y = _batch(55)
    for t in (1.0, 5.0):
        got = scalar(kd_loss(zs, zt, y, t, 0.0), f"alpha=0, T={t}")
        close(torch.tensor(got), F.cross_entropy(zs, y), f"alpha=0, T={t} (should equal F.cross_entropy)")


@check(M, "kd_loss", points=1)
def kd_loss_student_equals_teacher(kd_loss):
    """Student == teacher: the soft term vanishes (alpha = 1 gives 0; alpha = 0.5 gives CE / 2)."""
    zs, _, y = _batch(58)
    got = scalar(kd_loss(zs, zs, y, 4.0, 1.0), "student == teacher, alpha=1")
    assert abs(got) < 1e-5, f"student == teacher, alpha=1: expected 0, got {got:.6g}"
    got = scalar(kd_loss(zs, zs, y, 4.0, 0.5), "student == teacher, alpha=0.5")
    close(torch.tensor(got), 0.5 * F.cross_entropy(zs, y), "student == teacher, alpha=0.5 (should be CE / 2)")


@check(M, "kd_loss", points=2)
def kd_loss_is_forward_kl(kd_loss):
    """Hand example: p_s = [0.9, 0.1], p_t = [0.5, 0.5], T = 1, alpha = 1 gives KL(p_t || p_s) = 0.511."""
    zs = torch.log(torch.tensor([[0.9, 0.1]]))
    zt = torch.zeros(1, 2)
    y = torch.tensor([0])
    got = scalar(kd_loss(zs, zt, y, 1.0, 1.0), "hand example")
    forward = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert abs(got - reverse) > 1e-3, (f"hand example: got {got:.4f} = KL(student || teacher), the reverse "
                                       f"KL; Hinton's loss is KL(teacher || student) = {forward:.4f}")
    assert abs(got - forward) < 1e-4, f"hand example: expected KL(p_t || p_s) = {forward:.4f}, got {got:.4f}" + (
        " - that is what KLDivLoss's default reduction='mean' (divides by B*C, not B) gives"
        if abs(got - forward / 2) < 1e-4 else "")


@check(M, "kd_loss", points=1, kind="property")
def kd_loss_gradient_scale_is_temperature_independent(kd_loss):
    """With the T^2 factor, the soft-term gradient keeps its size as T doubles (10 -> 20)."""
    zs, zt, y = _batch(61)
    norms = {}
    for t in (10.0, 20.0):
        loss, grad = kd_loss.value_and_grad(zs, zt, y, t, 1.0, wrt=0)
        scalar(loss, f"T={t}")
        assert grad is not None, f"T={t}: the loss does not depend differentiably on the student logits"
        norms[t] = grad.norm().item()
    ratio = norms[10.0] / norms[20.0]
    hint = {4: "; a ratio of 4 means the T^2 factor is missing", 2: "; a ratio of 2 means T instead of T^2"}
    assert 0.8 < ratio < 1.25, (f"gradient norm at T=10 over T=20 is {ratio:.2f}, expected about 1"
                                + hint.get(round(ratio), ""))


@check(M, "kd_loss", points=1)
def kd_loss_is_differentiable(kd_loss):
    """A 0-dim tensor whose gradient w.r.t. the student logits matches torch.autograd on the reference."""
    zs, zt, y = _batch(64)
    loss, got = kd_loss.value_and_grad(zs, zt, y, 3.0, 0.6, wrt=0)
    scalar(loss, "T=3, alpha=0.6")
    assert got is not None, "the loss does not depend differentiably on the student logits"
    ref_student = zs.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference.kd_loss(ref_student, zt, y, temperature=3.0, alpha=0.6),
                                      ref_student)
    close(got, expected, "gradient w.r.t. the student logits")


# --------------------------------------------------------------------------- reverse_kl

@check(M, "reverse_kl", points=2)
def reverse_kl_matches_reference(reverse_kl):
    """Batch mean of KL(p_s^T || p_t^T), for several T."""
    for seed, t in [(70, 1.0), (73, 2.0), (76, 5.0)]:
        zs, zt, _ = _batch(seed)
        expected = reference.soft_target_kl(zs, zt, t, direction="reverse").mean()
        got = scalar(reverse_kl(zs, zt, t), f"T={t}")
        forward = reference.soft_target_kl(zs, zt, t).mean().item()
        assert not matches(got, {"forward": forward}), \
            f"T={t}: got {got:.6g}, the forward KL(teacher || student); expected {expected.item():.6g}"
        close(torch.tensor(got), expected, f"T={t}")


@check(M, "reverse_kl", points=1)
def reverse_kl_properties(reverse_kl):
    """Hand example KL([0.9, 0.1] || [0.5, 0.5]) = 0.368; 0 for identical logits; >= 0; -> 0 as T -> inf."""
    zs = torch.log(torch.tensor([[0.9, 0.1]]))
    zt = torch.zeros(1, 2)
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    close(torch.tensor(scalar(reverse_kl(zs, zt, 1.0), "hand example")),
          torch.tensor(expected), "hand example KL([0.9, 0.1] || [0.5, 0.5])")
    a, b, _ = _batch(79)
    same = scalar(reverse_kl(a, a, 2.0), "identical logits")
    assert abs(same) < 1e-5, f"identical logits: expected 0, got {same:.6g}"
    for t in (0.5, 1.0, 3.0):
        value = scalar(reverse_kl(a, b, t), f"T={t}")
        assert value >= -1e-6, f"T={t}: a KL divergence cannot be negative, got {value:.6g}"
    hot = scalar(reverse_kl(a, b, 1e4), "T=1e4")
    assert abs(hot) < 1e-4, f"T=1e4: both distributions are nearly uniform, expected about 0, got {hot:.3g}"


# --------------------------------------------------------------------------- kd_gradient

@check(M, "kd_gradient", points=3)
def kd_gradient_matches_autograd(kd_gradient):
    """(p_s^T - p_t^T) / T equals torch.autograd's gradient of the per-example forward KL."""
    for seed, t in [(80, 1.0), (83, 2.0), (86, 5.0)]:
        zs, zt, _ = _batch(seed, b=6, c=7)
        student = zs.clone().requires_grad_(True)  # the reference's gradient, by autograd, here
        (expected,) = torch.autograd.grad(reference.soft_target_kl(student, zt, t).sum(), student)
        got = as_tensor(kd_gradient(zs, zt, t), f"T={t}")
        if got.shape == expected.shape and not torch.allclose(got.detach(), expected, atol=1e-5, rtol=1e-4):
            ps, pt = torch.softmax(zs / t, -1), torch.softmax(zt / t, -1)
            for wrong, mistake in [((pt - ps) / t, "the sign is flipped"),
                                   (ps - pt, "the 1/T factor is missing"),
                                   (t * (ps - pt), "that is the gradient of T^2 * KL, not of KL"),
                                   ((ps - pt) / t / zs.shape[0], "do not average over the batch")]:
                if (not torch.allclose(wrong, expected, atol=1e-5, rtol=1e-4)
                        and torch.allclose(got.detach(), wrong, atol=1e-5, rtol=1e-4)):
                    raise AssertionError(f"T={t}: {mistake}")
        close(got, expected, f"T={t}")


@check(M, "kd_gradient", points=2)
def kd_gradient_high_temperature_limit(kd_gradient):
    """Rows sum to 0; for zero-mean logits and T = 100, T^2 * gradient ~ (z_s - z_t) / C (Hinton et al. 2015, eq. 4)."""
    zs, zt, _ = _batch(90, b=5, c=6)
    zs, zt = zs - zs.mean(-1, keepdim=True), zt - zt.mean(-1, keepdim=True)
    g = as_tensor(kd_gradient(zs, zt, 2.0), "T=2")
    close(g.sum(-1), torch.zeros(5), "row sums at T=2 (should be 0)", atol=1e-6)
    t = 100.0
    g = as_tensor(kd_gradient(zs, zt, t), f"T={t}")
    close(t * t * g, (zs - zt) / 6, f"T^2 * gradient at T={t}", atol=0.05)


# --------------------------------------------------------------------------- logit_matching_limit

def _limit(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    d = zs.double() - zt.double()
    d = d - d.mean(-1, keepdim=True)
    return (d ** 2).sum(-1) / (2 * d.shape[-1])


@check(M, "logit_matching_limit", points=2)
def logit_matching_limit_matches_reference(logit_matching_limit):
    """(1/2C) * sum_k (d_k - mean d)^2 with d = z_s - z_t, per example, on logits whose rows do not have zero mean."""
    zs, zt, _ = _batch(95, b=6, c=9)
    zs = zs + torch.arange(6.0).unsqueeze(1)                     # rows with different, non-zero means
    expected = _limit(zs, zt).float()
    d = zs - zt
    c = zs.shape[-1]
    close_naming(logit_matching_limit(zs, zt), expected, {
        "Hinton's zero-mean formula applied to logits whose rows do not have zero mean (adding one constant "
        "to a row changes no softmax, so it cannot change the limit)": (d ** 2).sum(-1) / (2 * c),
        "a limit twice too large (check the second-order term of the expansion)": 2 * expected,
        "a limit without the 1/C (each class has probability about 1/C at high T)": expected * c,
        "the batch sum of the limit instead of one value per example": expected.sum().expand(6),
    }, "6 examples, 9 classes")


@check(M, "logit_matching_limit", points=1)
def logit_matching_limit_consequences(logit_matching_limit):
    """0 for rows that differ by a constant; equals T^2 * KL at T = 10,000 (float64); x4 when the logits double."""
    zs, zt, _ = _batch(97, b=4, c=5)
    shifted = as_tensor(logit_matching_limit(zt + 3.0, zt), "z_s = z_t + 3")
    close(shifted, torch.zeros(4), "z_s = z_t + 3 (a constant shift changes no softmax: expected 0)", atol=1e-5)
    t = 1e4
    direct = t * t * reference.soft_target_kl(zs.double(), zt.double(), t)
    close(as_tensor(logit_matching_limit(zs, zt), "T^2 KL at T=10,000"), direct.float(),
          "against T^2 * KL(p_t^T || p_s^T) computed at T = 10,000", atol=1e-3, rtol=1e-3)
    base = as_tensor(logit_matching_limit(zs, zt), "base")
    close(as_tensor(logit_matching_limit(2 * zs, 2 * zt), "doubled logits"), 4 * base,
          "doubling both logits (expected 4 times the limit)")
