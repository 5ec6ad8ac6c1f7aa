"""Checks for exercises/ex03_feature_distillation.py (20 points).

References: ``course_lib.features`` (``attention_map``; ``hint_loss(..., normalize=None)`` after a
1x1 convolution for the hint with its adapter; ``rkd_distance_loss``). When a value is wrong, the
message names the common mistake it matches: ``A**p`` without the absolute value, no (or the wrong)
normalisation, the adapter on the teacher's side (the source article's direction), a sum instead
of a mean, RKD without its division by the mean distance, ...
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib import features as reference
from course_lib.grading.checks.helpers import (as_tensor, choice, close, close_naming, randn, scalar, student_error,
                                               value_naming)
from course_lib.grading.checks.registry import Task, check

M = "ex03_feature_distillation"

TASKS = {"attention_map": Task("warm-up", 15, "implement"), "hint_loss_with_adapter": Task("core", 20, "implement"),
         "choose_embedding_loss": Task("core", 10, "choose"), "rkd_distance_loss": Task("stretch", 25, "implement")}

# What the stubs must not state (tests/grading/test_generate.py scans the generated exercise file, spaces ignored).
CLOSED_FORMS = {"attention_map": ["sum_c |A_c|^p", "vec(Q) / ||vec(Q)||_2", "A**p is not |A|**p", "F.normalize",
                                  ".abs().pow("],
                "hint_loss_with_adapter": ["sum_s W[t, s] * A_s", 'einsum("ts,bshw->bthw"', "F.conv2d(",
                                           "(r[b, t, h, w] - u[b, t, h, w])^2", "student channels -> teacher channels",
                                           "maps the student", "on the *student*"],
                "rkd_distance_loss": ["psi_ij = d_ij / mu", "huber(x) = 0.5 * x^2", "torch.cdist", "vector_norm",
                                      "F.smooth_l1_loss", "sqrt"],
                "choose_embedding_loss": ["regressor", "no positions", "has no spatial"]}


# --------------------------------------------------------------------------- attention_map

def _attention_mistakes(x: torch.Tensor, p: float) -> dict[str, torch.Tensor]:
    q = x.abs().pow(p).sum(1)
    return {
        "A**p without the absolute value (negative activations and an odd p)":
            F.normalize(x.pow(p).sum(1).flatten(1), dim=1),
        "no L2 normalisation (divide each example's map by its L2 norm)": q.flatten(1),
        "the mean over the channels without the L2 normalisation": x.abs().pow(p).mean(1).flatten(1),
        "normalising over the batch (dim=0) instead of per example (dim=1)": F.normalize(q.flatten(1), dim=0),
        "normalising the whole batch by one norm instead of each example": q.flatten(1) / q.norm(),
        f"an L{p:g} normalisation instead of L2": F.normalize(q.flatten(1), p=p, dim=1),
        "flattening W before H (the positions must be row-major, h * W + w)":
            F.normalize(q.transpose(-1, -2).flatten(1), dim=1),
    }


@check(M, "attention_map", points=3)
def attention_map_matches_reference(attention_map):
    """vec(sum_c |A_c|^p) / ||.||_2 per example, for p = 1, 2, 4 and shapes with H != W and C = 1."""
    for i, shape in enumerate([(4, 8, 7, 5), (2, 3, 6, 6), (3, 1, 4, 9)]):
        x = randn(*shape, seed=300 + i, scale=1.5)
        for p in (1, 2, 4):
            close_naming(attention_map(x, p), reference.attention_map(x, p), _attention_mistakes(x, p),
                          f"features of shape {shape}, p={p}")
    x = randn(2, 5, 3, 4, seed=310)
    close_naming(attention_map(x), reference.attention_map(x, 2), _attention_mistakes(x, 2),
                  "the default p (should be 2)")


@check(M, "attention_map", points=2)
def attention_map_uses_absolute_values(attention_map):
    """Hand example where A**p cancels but |A|**p does not; odd p on pre-ReLU features; sign-flip invariance."""
    x = torch.tensor([[[[1.0, -2.0]], [[-1.0, 2.0]]]])  # [1, 2, 1, 2]: the channels cancel without |.|
    expected = {1: torch.tensor([[1.0, 2.0]]) / 5 ** 0.5,     # Q = [1 + 1, 2 + 2]
                3: torch.tensor([[1.0, 8.0]]) / 65 ** 0.5}    # Q = [1 + 1, 8 + 8]
    for p in (1, 3):
        got = as_tensor(attention_map(x, p), f"hand example, p={p}")
        assert torch.isfinite(got).all() and got.abs().sum() > 1e-3, (
            f"hand example, p={p}: channels [1, -2] and [-1, 2] gave {got.tolist()}; they cancel in A**p - "
            "take |A| before the power, Q = sum_c |A_c|^p")
        close(got, expected[p], f"hand example, p={p}")
    x = randn(3, 6, 5, 4, seed=320)  # pre-ReLU: both signs
    for p in (1, 3):
        close_naming(attention_map(x, p), reference.attention_map(x, p), _attention_mistakes(x, p),
                      f"odd p={p} on features of both signs")
        close(attention_map(-x, p), reference.attention_map(x, p),
              f"p={p}, features multiplied by -1 (the map must not change)")


@check(M, "attention_map", points=1, kind="property")
def attention_map_properties(attention_map):
    """Shape [B, H*W]; unit-norm rows; unchanged when the features are scaled by 0.01, 7 or -3."""
    x = randn(5, 4, 3, 7, seed=330)
    for p in (2, 3):
        q = as_tensor(attention_map(x, p), f"p={p}")
        assert q.shape == (5, 21), (f"p={p}: features [5, 4, 3, 7] should give [B, H*W] = [5, 21], got "
                                    f"{tuple(q.shape)} (sum over the channels, dim 1, then flatten H and W)")
        close(q.norm(dim=1), torch.ones(5), f"p={p}: L2 norms of the rows (should be 1)")
        for c in (0.01, 7.0, -3.0):
            hint = "; for odd p a sign flip changes A**p but not |A|**p" if c < 0 and p % 2 else ""
            close(attention_map(c * x, p), q.detach(), f"p={p}, features multiplied by {c:g} (the map must not "
                  f"change{hint})")


# --------------------------------------------------------------------------- hint_loss_with_adapter

def _hint_inputs(seed: int, b: int, c_s: int, c_t: int, h: int, w: int):
    return (randn(b, c_s, h, w, seed=seed), randn(b, c_t, h, w, seed=seed + 1, scale=1.5),
            randn(c_t, c_s, seed=seed + 2, scale=0.5))


def _hint_reference(s: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """course_lib's FitNets hint (plain MSE) after the student-side 1x1 convolution with weight w."""
    return reference.hint_loss(F.conv2d(s, w[:, :, None, None]), t, normalize=None)


ARTICLE_DIRECTION = ("the adapter on the teacher's side, W^T u compared with A_s (the source article's direction; "
                     "FitNets maps the student: W A_s compared with u)")


def _hint_mistakes(s, t, w) -> dict[str, float]:
    r = torch.einsum("ts,bshw->bthw", w, s)
    se = (r - t).pow(2)
    b = s.shape[0]
    out = {
        ARTICLE_DIRECTION: (torch.einsum("ts,bthw->bshw", w, t) - s).pow(2).mean().item(),
        "the sum of squared errors instead of the mean": se.sum().item(),
        "the sum over each example's entries, averaged over the batch (divide by C_t*H*W too)": se.sum().item() / b,
        "FitNets' 1/2 ||u - r||^2 per example without dividing by C_t*H*W": 0.5 * se.sum().item() / b,
        "half the mean squared error (no 1/2 here)": 0.5 * se.mean().item(),
        "the L2-normalised hint (normalize='l2' in course_lib), not the plain mean squared error":
            reference.hint_loss(r, t, normalize="l2").item(),
    }
    if s.shape[1] == t.shape[1]:
        out["the adapter weight transposed (W is [C_t, C_s], teacher channels first: r = W A_s)"] = \
            (torch.einsum("st,bshw->bthw", w, s) - t).pow(2).mean().item()
    return out


@check(M, "hint_loss_with_adapter", points=2)
def hint_matches_reference(hint_loss_with_adapter):
    """mean((W A_s - u)^2) over all B*C_t*H*W entries, for several shapes (C_s != C_t, H != W)."""
    for seed, shape in [(400, (4, 3, 5, 6, 6)), (403, (2, 8, 4, 5, 7)), (406, (3, 6, 6, 4, 4))]:
        s, t, w = _hint_inputs(seed, *shape)
        b, c_s, c_t, h, wd = shape
        value_naming(hint_loss_with_adapter(s, t, w), _hint_reference(s, t, w).item(), _hint_mistakes(s, t, w),
                      f"B={b}, C_s={c_s}, C_t={c_t}, H={h}, W={wd}")


@check(M, "hint_loss_with_adapter", points=1)
def hint_adapter_maps_student_to_teacher(hint_loss_with_adapter):
    """The adapter W [C_t, C_s] maps the student (C_s channels) to the teacher (C_t), not the reverse."""
    for seed, (c_s, c_t) in [(410, (3, 8)), (413, (10, 4))]:
        s, t, w = _hint_inputs(seed, 2, c_s, c_t, 5, 5)
        what = f"student with C_s={c_s} channels, teacher with C_t={c_t}, adapter weight [{c_t}, {c_s}]"
        try:
            got = hint_loss_with_adapter(s, t, w)
        except student_error() as e:
            if isinstance(e, NotImplementedError):
                raise
            raise AssertionError(
                f"{what}: raised {e.kind}: {e.message[:160]} - the adapter weight [C_t, C_s] maps the student's C_s "
                f"channels to the teacher's C_t (r = W A_s, a 1x1 convolution on the student side); the source "
                f"article's adapter went the other way, teacher -> student") from None
        value_naming(got, _hint_reference(s, t, w).item(), _hint_mistakes(s, t, w), what)


@check(M, "hint_loss_with_adapter", points=1)
def hint_limits(hint_loss_with_adapter):
    """Identity adapter (C_s = C_t): plain F.mse_loss; teacher == adapter(student): 0."""
    s, t, _ = _hint_inputs(420, 3, 4, 4, 5, 6)
    close(torch.tensor(scalar(hint_loss_with_adapter(s, t, torch.eye(4)), "identity adapter")),
          F.mse_loss(s, t), "identity adapter (should equal F.mse_loss(student, teacher))")
    s, _, w = _hint_inputs(423, 2, 3, 7, 4, 4)
    same = scalar(hint_loss_with_adapter(s, torch.einsum("ts,bshw->bthw", w, s), w), "teacher == adapter(student)")
    assert abs(same) < 1e-5, (f"teacher == adapter(student), i.e. u = W A_s: expected 0, got {same:.6g} - apply the "
                              "adapter to the student's map and compare with the teacher's")


@check(M, "hint_loss_with_adapter", points=2)
def hint_gradient_reaches_the_adapter(hint_loss_with_adapter):
    """The gradient w.r.t. the adapter weight (and the student's map) matches autograd on the reference."""
    s, t, w = _hint_inputs(430, 3, 5, 7, 4, 6)
    loss, got = hint_loss_with_adapter.value_and_grad(s, t, w, wrt=2)
    scalar(loss, "B=3, C_s=5, C_t=7")
    assert got is not None, ("the loss is not differentiable with respect to adapter_weight, so the adapter would "
                             "never learn - the source article's bug (an adapter that never gets a gradient stays "
                             "random); compute the loss from adapter_weight with differentiable torch operations")
    assert got.abs().sum() > 0, "the loss does not depend on adapter_weight (its gradient is zero)"
    ref_w, ref_s = w.clone().requires_grad_(True), s.clone().requires_grad_(True)
    expected_w, expected_s = torch.autograd.grad(_hint_reference(ref_s, t, ref_w), (ref_w, ref_s))
    close(got, expected_w, "gradient w.r.t. adapter_weight")
    _, got_s = hint_loss_with_adapter.value_and_grad(s, t, w, wrt=0)
    assert got_s is not None, "the loss is not differentiable with respect to student_features"
    close(got_s, expected_s, "gradient w.r.t. student_features")


# --------------------------------------------------------------------------- rkd_distance_loss

def _distances(e: torch.Tensor) -> torch.Tensor:
    return torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")


def _rkd_mistakes(s: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    b = s.shape[0]
    ds, dt = _distances(s), _distances(t)
    pairs = b * (b - 1)

    def psi(d):
        return d / (d.sum() / pairs)

    def huber(a, c, **kw):
        return F.smooth_l1_loss(a, c, **kw).item()
    return {
        "no division by the mean distance mu (raw distances: the loss then depends on each embedding's scale)":
            huber(ds, dt),
        "mu averaged over all B*B entries (zero diagonal included) instead of the B(B-1) pairs i != j":
            huber(ds / ds.mean(), dt / dt.mean()),
        "the average over the B(B-1) pairs i != j instead of all B*B entries":
            huber(psi(ds), psi(dt), reduction="sum") / pairs,
        "the sum over the pairs instead of the mean": huber(psi(ds), psi(dt), reduction="sum"),
        "the squared error instead of the Huber (smooth L1) loss": F.mse_loss(psi(ds), psi(dt)).item(),
        "squared distances instead of distances": huber(psi(ds ** 2), psi(dt ** 2)),
    }


def _rkd_inputs(seed: int, b: int, d_s: int, d_t: int, outlier: bool = False):
    s, t = randn(b, d_s, seed=seed), randn(b, d_t, seed=seed + 1, scale=3.0)
    if outlier:  # one student example far away: |psi_s - psi_t| > 1 for its pairs (Huber's linear part)
        s = s.clone()
        s[0] += 12.0
    return s, t


@check(M, "rkd_distance_loss", points=3)
def rkd_matches_reference(rkd_distance_loss):
    """Huber(d_s / mu_s - d_t / mu_t), mean over B*B pairs; D_s != D_t, B = 2, and an outlier (|x| > 1)."""
    for seed, shape, outlier in [(500, (8, 5, 12), False), (503, (2, 3, 3), False), (506, (16, 4, 32), False),
                                 (509, (10, 6, 6), True)]:
        s, t = _rkd_inputs(seed, *shape, outlier=outlier)
        b, d_s, d_t = shape
        value_naming(rkd_distance_loss(s, t), reference.rkd_distance_loss(s, t).item(), _rkd_mistakes(s, t),
                      f"B={b}, D_s={d_s}, D_t={d_t}" + (", one student example far away" if outlier else ""))


@check(M, "rkd_distance_loss", points=2, kind="property")
def rkd_invariances(rkd_distance_loss):
    """0 for identical embeddings and for a scaled, rotated, shifted copy; unchanged by scaling either side."""
    s, t = _rkd_inputs(520, 8, 6, 10)
    same = scalar(rkd_distance_loss(s, s), "identical embeddings")
    assert abs(same) < 1e-5, f"identical embeddings: expected 0, got {same:.6g}"
    q, _ = torch.linalg.qr(randn(6, 6, seed=522, dtype=torch.float64))
    moved = (5.0 * s.double() @ q + 2.0).float()
    value = scalar(rkd_distance_loss(s, moved), "teacher = 5 * student rotated and shifted")
    assert abs(value) < 1e-4, (f"teacher = 5 * (student rotated) + 2: expected 0 (same relative distances), got "
                               f"{value:.6g} - divide each model's distances by their own mean mu")
    base = scalar(rkd_distance_loss(s, t), "B=8, D_s=6, D_t=10")  # the answer's own value: a property check
    for side, c in [("student", 0.01), ("student", 100.0), ("teacher", 0.01), ("teacher", 100.0)]:
        args = (c * s, t) if side == "student" else (s, c * t)
        got = scalar(rkd_distance_loss(*args), f"{side} embeddings multiplied by {c:g}")
        assert abs(got - base) <= 1e-5 + 1e-3 * abs(base), (
            f"{side} embeddings multiplied by {c:g}: the loss changed from {base:.6g} to {got:.6g}; dividing the "
            "distances by their mean mu makes RKD independent of each embedding's scale")


@check(M, "rkd_distance_loss", points=1)
def rkd_gradient(rkd_distance_loss):
    """A finite gradient w.r.t. the student's embeddings, equal to autograd's on the reference."""
    s, t = _rkd_inputs(530, 7, 5, 9)
    loss, got = rkd_distance_loss.value_and_grad(s, t, wrt=0)
    scalar(loss, "B=7, D_s=5, D_t=9")
    assert got is not None, "the loss is not differentiable with respect to student_embeddings"
    assert torch.isfinite(got).all(), ("the gradient w.r.t. student_embeddings contains NaN or inf: sqrt of the "
                                       "squared distances has an infinite derivative at d_ii = 0; use "
                                       "torch.linalg.vector_norm or torch.cdist")
    ref = s.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference.rkd_distance_loss(ref, t), ref)
    close(got, expected, "gradient w.r.t. student_embeddings")


# --------------------------------------------------------------------------- choose_embedding_loss

EMBEDDING_LOSS_HINTS = {
    "hint_mse": "a hint compares the two vectors entry by entry: 64 entries against 512 need a regressor (a "
                "parameter to train), and the plain squared error would also pull the student's norms (about 2) "
                "towards the teacher's (about 30)",
    "hint_cosine": "normalising removes the scale, but the cosine still compares the vectors entry by entry: 64 "
                   "entries against 512 need a regressor, a parameter to train",
    "attention": "an attention map collapses the channels at each spatial position, and an embedding has no "
                 "positions (no H x W): its map is one number per example, 1 once normalised - nothing to match",
}


@check(M, "choose_embedding_loss", points=2)
def embedding_loss_choice(choose_embedding_loss):
    """Embeddings of different sizes and scales, no extra parameter: the one loss that fits (a hint per wrong key)."""
    choice(choose_embedding_loss(), "512-d teacher embeddings (norm ~30), 64-d student (norm ~2), no new parameter",
           "rkd_distance", EMBEDDING_LOSS_HINTS)
