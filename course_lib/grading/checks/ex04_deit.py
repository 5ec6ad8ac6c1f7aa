"""Checks for exercises/ex04_deit.py (20 points).

References: ``course_lib.deit`` (``DeiT.embed`` for the token sequence, run on patch tokens through
an identity 1x1 patch embedding; ``deit_loss(..., hard=True / False).mean()`` for the two losses;
the mean of the heads' logits, as ``engine.prediction``, for the prediction). When a value is
wrong, the message names the common mistake it matches: the distillation token never inserted (the
source article's ``P + 1`` tokens), the tokens in the wrong order, the position embedding forgotten
or added to the patches only, both heads trained on the labels, the class head distilled, the
teacher's probabilities instead of its argmax, ``alpha`` swapped, a missing ``tau^2``, the reverse
KL, ``F.kl_div`` fed probabilities, a sum instead of the batch mean, one head's prediction only, the
mean of the predicted indices. ``two_class_fusion`` is a choice: each wrong key gets a hint on why it
fails.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib import deit as reference
from course_lib.grading.checks.helpers import (as_tensor, choice, close, close_naming, expect_value_error, randint,
                                               randn, scalar, student_error, tensors_close, value_naming)
from course_lib.grading.checks.registry import Task, check
from course_lib.losses import soft_target_kl

M = "ex04_deit"

TASKS = {"insert_tokens": Task("warm-up", 10, "implement"),
         "average_heads_prediction": Task("warm-up", 5, "implement"),
         "hard_distillation_loss": Task("core", 15, "implement"),
         "soft_distillation_loss": Task("core", 15, "implement"),
         "two_class_fusion": Task("stretch", 15, "choose")}

# What a stub must not state (tests/grading/test_generate.py scans the generated exercise file, spaces ignored):
# the code or formula each function asks for.
CLOSED_FORMS = {"insert_tokens": ["torch.cat(", "expand(", "+ pos_embed[0]"],
                "hard_distillation_loss": ["(1 - alpha) * CE", "alpha * CE(z_dist", "argmax_k z_t", "argmax(",
                                           "F.cross_entropy("],
                "soft_distillation_loss": ["tau^2 * KL", "alpha * tau^2", "tau ** 2", "F.log_softmax(", "batchmean",
                                           "F.kl_div("],
                "average_heads_prediction": ["(z_cls[b, k] + z_dist[b, k]) / 2", "argmax_k (z_cls", "argmax("],
                "two_class_fusion": ["a + b > 0", "sigmoid(a) + sigmoid(b)", "sigmoid("]}


# --------------------------------------------------------------------------- insert_tokens

ARTICLE_TOKEN = ("the distillation token never inserted, the source article's mistake: its sequence stayed "
                 "[class, patches], a plain ViT's P + 1 tokens, so position 1 was a patch token; DeiT's sequence is "
                 "[class, distillation, patches], P + 2 tokens")


def _token_inputs(seed: int, b: int, p: int, d: int):
    """Patch tokens [B, P, D], class and distillation tokens [1, 1, D], position embedding [1, P + 2, D]."""
    return (randn(b, p, d, seed=seed), randn(1, 1, d, seed=seed + 1), randn(1, 1, d, seed=seed + 2),
            randn(1, p + 2, d, seed=seed + 3, scale=0.5))


def _deit_embed(patches: torch.Tensor, cls: torch.Tensor, dist: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``course_lib.deit.DeiT.embed`` with these tokens, on images its 1x1 patch embedding maps to ``patches``.

    The DeiT has ``patch_size=1`` on a ``sqrt(P) x sqrt(P)`` image with ``D`` channels and an identity
    patch embedding, so its patch tokens are exactly ``patches`` (``P`` must be a square).
    """
    b, p, d = patches.shape
    side = math.isqrt(p)
    assert side * side == p, f"the reference needs a square number of patches, got {p}"
    with torch.random.fork_rng(devices=[]):  # DeiT's initialisation draws from the global generator
        model = reference.DeiT(in_channels=d, num_classes=2, image_size=side, patch_size=1, dim=d, depth=0, heads=1)
    with torch.no_grad():
        model.patch_embed.weight.copy_(torch.eye(d)[:, :, None, None])
        model.patch_embed.bias.zero_()
        model.cls_token.copy_(cls)
        model.dist_token.copy_(dist)
        model.pos_embed.copy_(pos)
        return model.embed(patches.transpose(1, 2).reshape(b, d, side, side))


def _token_mistakes(patches, cls, dist, pos) -> dict[str, torch.Tensor]:
    b, p, _ = patches.shape
    c, s = cls.expand(b, -1, -1), dist.expand(b, -1, -1)
    only_patches = ("the position embedding added to the patch tokens only, before the concatenation (the class and "
                    "distillation tokens have positions too: add pos_embed to the whole [B, P + 2, D] sequence)")
    return {
        "the distillation token before the class token (DeiT's order is [class, distillation, patches])":
            torch.cat([s, c, patches], 1) + pos,
        "no position embedding (add pos_embed to the concatenated sequence)": torch.cat([c, s, patches], 1),
        only_patches: torch.cat([c, s, patches + pos[:, 2:]], 1),
        only_patches + ", with its first P rows": torch.cat([c, s, patches + pos[:, :p]], 1),
        "the class token twice (the second token is the distillation token)": torch.cat([c, c, patches], 1) + pos,
    }


def _tokens_close(got, patches, cls, dist, pos, expected: torch.Tensor, what: str) -> None:
    got = as_tensor(got, what)
    b, p, d = patches.shape
    if got.shape == (b, p + 1, d):
        raise AssertionError(f"{what}: expected shape {(b, p + 2, d)}, got {tuple(got.shape)} - {ARTICLE_TOKEN}")
    close_naming(got, expected, _token_mistakes(patches, cls, dist, pos), what)


def _call_tokens(insert_tokens, args, what: str):
    """``insert_tokens(*args)``; an exception the answer raises on valid inputs gets a hint."""
    try:
        return insert_tokens(*args)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(
            f"{what}: raised {e.kind}: {e.message[:160]} - the tokens are [1, 1, D]: expand them to [B, 1, D] before "
            "torch.cat; the sequence [class, distillation, patches] has P + 2 tokens, one per row of pos_embed "
            "([class, patches], the source article's P + 1 tokens, does not match pos_embed)") from None


@check(M, "insert_tokens", points=3)
def tokens_match_deit_embed(insert_tokens):
    """cat([cls, dist, patches]) + pos_embed as course_lib's DeiT.embed, for B = 1..4, P = 1..16 and several D."""
    for seed, (b, p, d) in [(600, (4, 16, 8)), (604, (1, 9, 6)), (608, (3, 4, 5)), (612, (2, 1, 3))]:
        args = _token_inputs(seed, b, p, d)
        what = f"B={b}, P={p}, D={d}"
        _tokens_close(_call_tokens(insert_tokens, args, what), *args, _deit_embed(*args), what)


@check(M, "insert_tokens", points=1)
def tokens_order_and_positions(insert_tokens):
    """Without position embeddings: [cls, dist, patches] in that order; without tokens: pos_embed at every position."""
    b, p, d = 3, 6, 4  # P not a square: the function does not care about the image's shape
    patches, cls, dist, pos = _token_inputs(620, b, p, d)
    zero_pos = torch.zeros(1, p + 2, d)
    what = f"B={b}, P={p}, D={d}, pos_embed = 0"
    got = as_tensor(_call_tokens(insert_tokens, (patches, cls, dist, zero_pos), what), what)
    if got.shape == (b, p + 1, d):
        raise AssertionError(f"{what}: expected shape {(b, p + 2, d)}, got {tuple(got.shape)} - {ARTICLE_TOKEN}")
    assert got.shape == (b, p + 2, d), f"{what}: expected shape {(b, p + 2, d)}, got {tuple(got.shape)}"
    if tensors_close(got[:, 0], dist.expand(b, -1, -1)[:, 0]):
        raise AssertionError(f"{what}: position 0 holds the distillation token - DeiT's order is [class, "
                             "distillation, patches]")
    close(got[:, 0], cls.expand(b, -1, -1)[:, 0], f"{what}: position 0 (the class token)")
    close(got[:, 1], dist.expand(b, -1, -1)[:, 0], f"{what}: position 1 (the distillation token)")
    close(got[:, 2:], patches, f"{what}: positions 2... (the patch tokens, in order)")

    zeros = (torch.zeros(b, p, d), torch.zeros(1, 1, d), torch.zeros(1, 1, d))
    what = f"B={b}, P={p}, D={d}, all tokens 0 (the result should be pos_embed at every position)"
    got = as_tensor(_call_tokens(insert_tokens, (*zeros, pos), what), what)
    expected = pos.expand(b, -1, -1)
    assert got.shape == expected.shape, f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if tensors_close(got, torch.zeros_like(expected)):
        raise AssertionError(f"{what}: got all zeros - the position embedding is never added")
    if tensors_close(got[:, :2], torch.zeros(b, 2, d)) and not tensors_close(got, expected):
        raise AssertionError(f"{what}: positions 0 and 1 got no position embedding - add pos_embed to the whole "
                             "sequence (rows 0 and 1 are the class and distillation tokens' positions), not to the "
                             "patches only")
    close(got, expected, what)


@check(M, "insert_tokens", points=1, kind="rejects")
def tokens_reject_mismatched_shapes(insert_tokens):
    """ValueError for a ViT's pos_embed [1, P + 1, D], a wrong D in any input, a token [1, 2, D], 2-D patches."""
    b, p, d = 2, 4, 6
    patches, cls, dist, pos = _token_inputs(630, b, p, d)
    cases = [
        ("pos_embed of shape [1, P + 1, D] (a plain ViT's: no position for the distillation token)",
         (patches, cls, dist, pos[:, : p + 1])),
        ("pos_embed of shape [1, P + 2, D + 1]", (patches, cls, dist, randn(1, p + 2, d + 1, seed=631))),
        ("cls_token of shape [1, 1, D + 1]", (patches, randn(1, 1, d + 1, seed=632), dist, pos)),
        ("dist_token of shape [1, 1, D - 1]", (patches, cls, randn(1, 1, d - 1, seed=633), pos)),
        ("dist_token of shape [1, 2, D]", (patches, cls, randn(1, 2, d, seed=634), pos)),
        ("patch_tokens of shape [P, D] (no batch dimension)", (patches[0], cls, dist, pos)),
    ]
    for what, args in cases:
        expect_value_error(insert_tokens, args, {}, what,
                           "check the shapes first and raise ValueError with a message that says which input is wrong")


# --------------------------------------------------------------------------- the two losses

def _heads_batch(seed: int, b: int = 8, c: int = 10):
    """Class-head logits, distillation-head logits, labels, teacher logits (sharper; its argmax mostly != label)."""
    return (randn(b, c, seed=seed, scale=2.0), randn(b, c, seed=seed + 1, scale=2.0), randint(c, b, seed=seed + 2),
            randn(b, c, seed=seed + 3, scale=4.0))


def _ce(z: torch.Tensor, target: torch.Tensor) -> float:
    return F.cross_entropy(z, target).item()


def _hard_reference(zc, zd, y, zt, alpha) -> float:
    return reference.deit_loss(zc, zd, y, zt, alpha=alpha, hard=True).mean().item()


def _hard_mistakes(zc, zd, y, zt, a) -> dict[str, float]:
    yt = zt.argmax(-1)
    pt = F.softmax(zt, -1)
    b = zc.shape[0]
    return {
        "both heads trained on the labels (the distillation head's target is the teacher's argmax)":
            (1 - a) * _ce(zc, y) + a * _ce(zd, y),
        "the heads swapped: the class head distilled, the distillation head on the labels":
            (1 - a) * _ce(zd, y) + a * _ce(zc, yt),
        "the class head distilled instead of the distillation head (which is then unused)":
            (1 - a) * _ce(zc, y) + a * _ce(zc, yt),
        "the teacher's soft probabilities softmax(z_t) as the target instead of its argmax":
            (1 - a) * _ce(zc, y) + a * _ce(zd, pt),
        "the KL to the teacher's soft probabilities instead of the cross-entropy with its argmax":
            (1 - a) * _ce(zc, y) + a * soft_target_kl(zd, zt, 1.0).mean().item(),
        "alpha and (1 - alpha) swapped (alpha weighs the distillation head's term)":
            a * _ce(zc, y) + (1 - a) * _ce(zd, yt),
        "the sum over the batch instead of the mean": b * _hard_reference(zc, zd, y, zt, a),
    }


def _hard_close(got, zc, zd, y, zt, alpha, what):
    value_naming(got, _hard_reference(zc, zd, y, zt, alpha), _hard_mistakes(zc, zd, y, zt, alpha), what)


@check(M, "hard_distillation_loss", points=3)
def hard_matches_reference(hard_distillation_loss):
    """(1 - alpha) CE(z_cls, y) + alpha CE(z_dist, argmax z_t), batch mean, for several alpha (default 0.5), shapes."""
    zc, zd, y, zt = _heads_batch(700)
    _hard_close(hard_distillation_loss(zc, zd, y, zt), zc, zd, y, zt, 0.5, "B=8, C=10, the default alpha (0.5)")
    for seed, alpha, (b, c) in [(704, 0.3, (8, 10)), (708, 0.9, (16, 3)), (712, 0.75, (1, 5)), (716, 0.5, (32, 100))]:
        zc, zd, y, zt = _heads_batch(seed, b, c)
        _hard_close(hard_distillation_loss(zc, zd, y, zt, alpha=alpha), zc, zd, y, zt, alpha,
                    f"B={b}, C={c}, alpha={alpha}")


@check(M, "hard_distillation_loss", points=1)
def hard_heads_and_targets(hard_distillation_loss):
    """alpha = 0: CE of the class head on the labels; alpha = 1: CE of the distillation head on argmax z_t,
    unchanged when the teacher's logits are scaled (only their argmax counts)."""
    zc, zd, y, zt = _heads_batch(720, 12, 6)
    value_naming(hard_distillation_loss(zc, zd, y, zt, alpha=0.0), _ce(zc, y), _hard_mistakes(zc, zd, y, zt, 0.0),
                 "alpha=0 (should be F.cross_entropy(class_logits, labels))")
    expected = _ce(zd, zt.argmax(-1))
    for scale in (1.0, 0.1, 10.0):
        what = ("alpha=1 (should be F.cross_entropy(dist_logits, teacher_logits.argmax(-1)))" if scale == 1.0 else
                f"alpha=1, teacher logits multiplied by {scale:g} (only their argmax counts: the loss must not change)")
        t = scale * zt
        value_naming(hard_distillation_loss(zc, zd, y, t, alpha=1.0), expected, _hard_mistakes(zc, zd, y, t, 1.0),
                     what)


@check(M, "hard_distillation_loss", points=1)
def hard_gradients(hard_distillation_loss):
    """The gradients w.r.t. both heads' logits match autograd on course_lib's deit_loss."""
    zc, zd, y, zt = _heads_batch(730, 6, 7)
    refs = [zc.clone().requires_grad_(True), zd.clone().requires_grad_(True)]
    expected = torch.autograd.grad(reference.deit_loss(*refs, y, zt, alpha=0.4, hard=True).mean(), refs)
    for i, head in enumerate(("class_logits", "dist_logits")):
        loss, got = hard_distillation_loss.value_and_grad(zc, zd, y, zt, alpha=0.4, wrt=i)
        scalar(loss, "B=6, C=7, alpha=0.4")
        assert got is not None, f"the loss is not differentiable with respect to {head}"
        close(got, expected[i], f"gradient w.r.t. {head}")


def _soft_reference(zc, zd, y, zt, alpha, tau) -> float:
    return reference.deit_loss(zc, zd, y, zt, alpha=alpha, temperature=tau, hard=False).mean().item()


def _soft_mistakes(zc, zd, y, zt, a, tau) -> dict[str, float]:
    fwd = soft_target_kl(zd, zt, tau).mean().item()
    rev = soft_target_kl(zd, zt, tau, direction="reverse").mean().item()
    fwd_class = soft_target_kl(zc, zt, tau).mean().item()
    p_dist, p_t = F.softmax(zd / tau, -1), F.softmax(zt / tau, -1)
    probabilities_in = F.kl_div(p_dist, p_t, reduction="batchmean").item()
    ce = _ce(zc, y)
    b, c = zc.shape
    return {
        "a missing tau^2 factor": (1 - a) * ce + a * fwd,
        "tau instead of tau^2": (1 - a) * ce + a * tau * fwd,
        "the reverse KL, KL(dist head || teacher) (DeiT, like Hinton, puts the teacher first)":
            (1 - a) * ce + a * tau ** 2 * rev,
        "F.kl_div fed probabilities, a common mistake (its input must be log-probabilities: "
        "F.log_softmax(dist_logits / tau, dim=-1))": (1 - a) * ce + a * tau ** 2 * probabilities_in,
        "the KL summed over the batch (reduction='sum') instead of averaged (reduction='batchmean')":
            (1 - a) * ce + a * tau ** 2 * b * fwd,
        "F.kl_div's default reduction='mean' (divides by B*C, not B: use reduction='batchmean')":
            (1 - a) * ce + a * tau ** 2 * fwd / c,
        "alpha and (1 - alpha) swapped (alpha weighs the distillation term)": a * ce + (1 - a) * tau ** 2 * fwd,
        "the class head distilled instead of the distillation head": (1 - a) * ce + a * tau ** 2 * fwd_class,
        "the heads swapped: the class head distilled, the distillation head on the labels":
            (1 - a) * _ce(zd, y) + a * tau ** 2 * fwd_class,
        "the cross-entropy on the tempered class logits z_cls / tau": (1 - a) * _ce(zc / tau, y) + a * tau ** 2 * fwd,
    }


def _soft_close(got, zc, zd, y, zt, alpha, tau, what):
    value_naming(got, _soft_reference(zc, zd, y, zt, alpha, tau), _soft_mistakes(zc, zd, y, zt, alpha, tau), what)


@check(M, "soft_distillation_loss", points=3)
def soft_matches_reference(soft_distillation_loss):
    """(1 - alpha) CE + alpha tau^2 KL(softmax(z_t/tau) || softmax(z_dist/tau)), batch mean; defaults 0.5 and 3."""
    zc, zd, y, zt = _heads_batch(800)
    _soft_close(soft_distillation_loss(zc, zd, y, zt), zc, zd, y, zt, 0.5, 3.0,
                "B=8, C=10, the defaults (alpha=0.5, temperature=3)")
    for seed, alpha, tau, (b, c) in [(804, 0.3, 1.0, (8, 10)), (808, 0.9, 4.0, (16, 5)), (812, 0.6, 2.0, (1, 7)),
                                     (816, 0.5, 8.0, (24, 100))]:
        zc, zd, y, zt = _heads_batch(seed, b, c)
        _soft_close(soft_distillation_loss(zc, zd, y, zt, alpha=alpha, temperature=tau), zc, zd, y, zt, alpha, tau,
                    f"B={b}, C={c}, alpha={alpha}, temperature={tau:g}")


@check(M, "soft_distillation_loss", points=1)
def soft_limits_and_gradient(soft_distillation_loss):
    """alpha = 0: CE of the class head; dist head == teacher with alpha = 1: 0; gradients match deit_loss's."""
    zc, zd, y, zt = _heads_batch(820, 6, 7)
    value_naming(soft_distillation_loss(zc, zd, y, zt, alpha=0.0, temperature=2.0), _ce(zc, y),
                 _soft_mistakes(zc, zd, y, zt, 0.0, 2.0),
                 "alpha=0, temperature=2 (should be F.cross_entropy(class_logits, labels))")
    for tau in (1.0, 4.0):
        what = f"dist_logits == teacher_logits, alpha=1, temperature={tau:g}"
        same = scalar(soft_distillation_loss(zc, zt, y, zt, alpha=1.0, temperature=tau), what)
        hint = (" - a KL divergence is never negative: F.kl_div's input must be log-probabilities "
                "(F.log_softmax(dist_logits / tau, dim=-1)), not probabilities" if same < -1e-5 else "")
        assert abs(same) < 1e-5, f"{what}: expected 0 (the KL of a distribution to itself), got {same:.6g}{hint}"
    refs = [zc.clone().requires_grad_(True), zd.clone().requires_grad_(True)]
    expected = torch.autograd.grad(reference.deit_loss(*refs, y, zt, alpha=0.7, temperature=3.0, hard=False).mean(),
                                   refs)
    for i, head in enumerate(("class_logits", "dist_logits")):
        loss, grad = soft_distillation_loss.value_and_grad(zc, zd, y, zt, alpha=0.7, temperature=3.0, wrt=i)
        scalar(loss, "B=6, C=7, alpha=0.7, temperature=3")
        assert grad is not None, f"the loss is not differentiable with respect to {head}"
        close(grad, expected[i], f"gradient w.r.t. {head} (alpha=0.7, temperature=3)")


@check(M, "soft_distillation_loss", points=1, kind="rejects")
def soft_rejects_nonpositive_temperature(soft_distillation_loss):
    """ValueError for temperature = 0 and temperature < 0."""
    zc, zd, y, zt = _heads_batch(830, 4, 5)
    for tau in (0, 0.0, -1.0, -3.0):
        try:
            soft_distillation_loss(zc, zd, y, zt, alpha=0.5, temperature=tau)
        except ValueError:
            continue
        except ZeroDivisionError:
            raise AssertionError(f"temperature={tau}: raised ZeroDivisionError; check the temperature first and "
                                 "raise ValueError") from None
        raise AssertionError(f"temperature={tau}: expected ValueError, nothing was raised")


# --------------------------------------------------------------------------- average_heads_prediction

def _prediction_mistakes(zc: torch.Tensor, zd: torch.Tensor) -> dict[str, torch.Tensor]:
    ic, idist = zc.argmax(-1), zd.argmax(-1)
    return {
        "the class head only (DeiT's prediction averages both heads' logits)": ic,
        "the distillation head only (DeiT's prediction averages both heads' logits)": idist,
        "the mean of the two heads' predicted indices (average the logits, then take the argmax)": (ic + idist) / 2,
        "the mean of the two heads' predicted indices, rounded down (average the logits, then take the argmax)":
            torch.div(ic + idist, 2, rounding_mode="floor"),
        "the mean of the two heads' softmax probabilities (this course, like DeiT's code, averages the logits)":
            (F.softmax(zc, -1) + F.softmax(zd, -1)).argmax(-1),
    }


def _prediction_close(got, zc, zd, what: str) -> None:
    got = as_tensor(got, what)
    expected = ((zc + zd) / 2).argmax(-1)
    if got.shape == zc.shape:
        raise AssertionError(f"{what}: got shape {tuple(got.shape)}, the logits' - return the predicted class "
                             "indices (the argmax over the classes of the mean logits), not the logits")
    close_naming(got, expected, _prediction_mistakes(zc, zd), what)
    assert not got.is_floating_point() and not got.is_complex() and got.dtype != torch.bool, (
        f"{what}: expected integer class indices (torch.long), got {got.dtype}")


@check(M, "average_heads_prediction", points=2)
def prediction_matches_mean_of_logits(average_heads_prediction):
    """argmax of (z_cls + z_dist) / 2 over the classes, on heads that often disagree; B = 1 and C = 2 included."""
    for seed, (b, c) in [(900, (64, 10)), (903, (7, 2)), (906, (1, 5)), (909, (200, 4))]:
        zc, zd = randn(b, c, seed=seed, scale=3.0), randn(b, c, seed=seed + 1, scale=3.0)
        _prediction_close(average_heads_prediction(zc, zd), zc, zd, f"B={b}, C={c}")


@check(M, "average_heads_prediction", points=1)
def prediction_hand_example(average_heads_prediction):
    """Heads preferring classes 0 and 1 agree on class 2; a confident head does not outvote by its probabilities."""
    zc = torch.tensor([[3.0, 0.0, 2.5, -1.0], [1.0, 5.0, 0.0, 0.0]])
    zd = torch.tensor([[0.0, 3.0, 2.5, -1.0], [1.0, -5.0, 0.0, 0.0]])
    # means: [1.5, 1.5, 2.5, -1] -> 2 (the heads predict 0 and 1); [1, 0, 0, 0] -> 0 (the probabilities' mean: 1)
    _prediction_close(average_heads_prediction(zc, zd), zc, zd, "hand example (expected [2, 0])")
    got = as_tensor(average_heads_prediction(zc, zd), "hand example")
    assert torch.equal(got.long(), torch.tensor([2, 0])), f"hand example: expected [2, 0], got {got.tolist()}"


# --------------------------------------------------------------------------- two_class_fusion

FUSION_WRONG = {
    "disagree_when_heads_disagree": (
        "where the heads disagree the rules still choose between the same two classes: with C = 2, write each "
        "head's probability of class 1 as sigmoid(z[1] - z[0]) and solve 'the sum of the two probabilities of class 1 "
        "exceeds 1' for the logits; compare with the logit rule's condition (try z_cls = [0, 3], z_dist = [0, -1])"),
    "disagree_when_one_head_is_confident": (
        "with three classes a confident head can outweigh the other in probabilities, but with two classes each "
        "rule's choice reduces to a condition on the two heads' logit differences z[1] - z[0]: derive both conditions "
        "(sigmoid is increasing, and sigmoid(-x) = 1 - sigmoid(x)) and compare them"),
}


@check(M, "two_class_fusion", points=2)
def fusion_two_classes(two_class_fusion):
    """C = 2: the mean of the logits and the sum of the softmaxes pick one class (sigmoid(a) + sigmoid(b) > 1 iff
    a + b > 0)."""
    choice(two_class_fusion(), "two_class_fusion()", "always_agree", FUSION_WRONG)
