"""Checks for exercises/ex08_distilbert.py (20 points).

References: ``course_lib.encoder``'s ``layer_copy_map`` (on the names of a
``BertForSequenceClassification``'s state dict: the student's layer ``j`` from the teacher's layer
``kept_layers[j]``, every other tensor as it is), ``hidden_cosine_loss`` (for one layer pair) and the
total of ``triple_loss``, restated here on names and plain tensors (``_sources``, ``_cosine``,
``_triple``, with ``course_lib.losses.soft_target_kl``): importing ``course_lib.encoder`` imports
transformers (about 3 s), which every grading would pay. ``tests/grading/test_ex08_distilbert.py``
pins the restatements to ``course_lib.encoder`` and the names ``bert_keys`` writes to a real tiny
BERT's. Besides the values: 12-layer teachers (two-digit layer numbers), every layer kept, one layer
kept, the names in another order; padding that changes nothing, the real tokens packed into one
sequence, vectors of one direction (0) and opposite ones (2), a mask without a real token (0, not
NaN), no gradient into the teacher or the padding; terms whose weight is 0 not computed (their
inputs ``None``).
When a value is wrong, the message names the common mistake it matches: the teacher's layer numbers
kept, the first layers copied instead of the chosen ones, the student's layers numbered from 1, the
kept indices read as 1-based, the embeddings or the pooler and classifier or both left out, the
teacher's other layers kept, the mapping the wrong way round, the layer prefix matched without its
final dot (``layer.1`` matching ``layer.10``); the padding counted, the cosine over the tokens
(``F.cosine_similarity``'s default ``dim=1``), ``cos`` instead of ``1 - cos``, per-sequence sums or
means, a sum, a division by ``B * S``, the mask inverted, the MSE or the unnormalised dot product,
0 / 0 without a real token, the teacher not detached; ``T^2`` missing, ``T`` instead, on every term,
the reverse KL, the CE at temperature ``T``, the KL summed over the batch or divided by ``B * C``
(``F.kl_div``'s default), the kd and ce weights swapped or the weights normalised, the cosine term
over the padding, as ``cos`` or left out, a term computed although its weight is 0.

Over 500 lines because one exercise file's checks are one idea: they grade one file and share its
inputs and the helpers that name its mistakes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.grading.checks.helpers import (choice, close, close_naming, expect_value_error, randint, randn,
                                               student_error, value_naming)
from course_lib.grading.checks.registry import Task, check
from course_lib.losses import soft_target_kl

M = "ex08_distilbert"

TASKS = {"student_layer_sources": Task("warm-up", 15, "implement"),
         "bert_classifier_parameters": Task("core", 20, "predict"),
         "why_every_other_layer": Task("core", 5, "choose"),
         "hidden_cosine_loss": Task("core", 20, "implement"),
         "triple_loss": Task("stretch", 30, "implement")}

# What the stubs must not transcribe (the grader's hints name these after a wrong answer).
CLOSED_FORMS = {
    "hidden_cosine_loss": ["F.cosine_similarity", "dim=-1", "distance[real]", "real.sum()", "max(N, 1)"],
    "triple_loss": ["w_kd * T^2 * KL", "T^2 * KL", "F.kl_div", "reduction=\"batchmean\"", "F.cross_entropy"],
    "student_layer_sources": ["with the final dot", "NOT with the teacher's numbers"],
    "bert_classifier_parameters": ["4 * (h * h + h)", "4 (H^2 + H)", "12 H^2", "12H^2"],
}


# --------------------------------------------------------------------------- student_layer_sources: names

PREFIX = "bert.encoder.layer."
EMBEDDINGS = tuple(f"bert.embeddings.{name}" for name in (
    "word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight", "LayerNorm.weight",
    "LayerNorm.bias"))
LAYER = tuple(f"{part}.{kind}" for part in (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
    for kind in ("weight", "bias"))
HEAD = ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")


def bert_keys(n_layers: int) -> list[str]:
    """The state-dict names of a ``transformers.BertForSequenceClassification`` with ``n_layers`` encoder
    layers, in its order (transformers 5: no ``position_ids`` buffer)."""
    return [*EMBEDDINGS, *(f"{PREFIX}{i}.{rest}" for i in range(n_layers) for rest in LAYER), *HEAD]


def _layer(key: str) -> int | None:
    return int(key[len(PREFIX):].split(".", 1)[0]) if key.startswith(PREFIX) else None


def _rest(key: str) -> str:
    return key[len(PREFIX):].split(".", 1)[1]


def _sources(keys: Sequence[str], kept: Sequence[int], *, student: Callable = lambda j, i: j,
             teacher: Callable = lambda j, i: i, other: Callable = lambda key: True,
             others_kept: bool = False) -> dict[str, str]:
    """``layer_copy_map`` on names with the defaults; a known mistake with overrides: the student's number
    and the teacher layer of kept layer ``j`` (= ``kept[j]``), which non-layer tensors are kept, whether
    the teacher's other layers are kept under their own names (a kept layer's new name wins over an other layer's
    old one, as in a loop over the names in the teacher's order)."""
    out = {key: key for key in keys if _layer(key) is None and other(key)}
    if others_kept:
        out.update({key: key for key in keys if _layer(key) is not None and _layer(key) not in kept})
    for j, i in enumerate(kept):
        out.update({f"{PREFIX}{student(j, i)}.{_rest(key)}": key for key in keys if _layer(key) == teacher(j, i)})
    return out


def _prefix_without_dot(keys: Sequence[str], kept: Sequence[int]) -> dict[str, str]:
    """``key.startswith(f"bert.encoder.layer.{i}")`` and ``replace`` of that prefix: ``layer.1`` takes 10 and 11."""
    out = {key: key for key in keys if _layer(key) is None}
    for j, i in enumerate(kept):
        old, new = f"{PREFIX}{i}", f"{PREFIX}{j}"
        out.update({key.replace(old, new, 1): key for key in keys if key.startswith(old)})
    return out


NOT_RENUMBERED = ("the teacher's layer numbers kept (the student's layers are numbered 0 .. len(kept_layers) - 1: "
                  "teacher layer kept_layers[j] becomes bert.encoder.layer.{j}.)")
FIRST_LAYERS = ("the first len(kept_layers) teacher layers copied instead of the chosen ones (student layer j comes "
                "from teacher layer kept_layers[j])")
FROM_ONE = "the student's layers numbered from 1 (they are numbered from 0, like the teacher's: layer.0, layer.1, ...)"
ONE_BASED = ("kept_layers read as 1-based, student layer j from teacher layer kept_layers[j] - 1 (the indices count "
             "from 0, like the names)")
NO_EMBEDDINGS = ("the embeddings left out (bert.embeddings.* map to themselves: DistilBERT's student starts with the "
                 "teacher's embeddings)")
NO_HEAD = "the pooler and the classifier left out (every tensor outside the encoder layers maps to itself)"
LAYERS_ONLY = "only the encoder layers mapped (the embeddings, the pooler and the classifier map to themselves)"
OTHERS_KEPT = ("the teacher's other layers kept under their own names (the student has only the kept layers; the "
               "others are left out)")
SWAPPED = "the mapping the wrong way round, {teacher name: student name} (the keys are the student's names)"
NO_DOT = ("the layer prefix matched without its final dot (bert.encoder.layer.1 is also the start of "
          "bert.encoder.layer.10. and .11.: match bert.encoder.layer.{i}. with the dot)")


def _sources_mistakes(keys: Sequence[str], kept: Sequence[int]) -> dict[str, dict[str, str]]:
    """The mapping each known mistake gives."""
    reference = _sources(keys, kept)
    return {
        NOT_RENUMBERED: _sources(keys, kept, student=lambda j, i: i),
        FIRST_LAYERS: _sources(keys, kept, teacher=lambda j, i: j),
        FROM_ONE: _sources(keys, kept, student=lambda j, i: j + 1),
        ONE_BASED: _sources(keys, kept, teacher=lambda j, i: i - 1),
        NO_EMBEDDINGS: _sources(keys, kept, other=lambda key: not key.startswith("bert.embeddings.")),
        NO_HEAD: _sources(keys, kept, other=lambda key: key.startswith("bert.embeddings.")),
        LAYERS_ONLY: _sources(keys, kept, other=lambda key: False),
        OTHERS_KEPT: _sources(keys, kept, others_kept=True),
        SWAPPED: {t: s for s, t in reference.items()},
        NO_DOT: _prefix_without_dot(keys, kept),
    }


def _mapping(got, what: str) -> dict[str, str]:
    if not isinstance(got, dict):
        raise AssertionError(f"{what}: expected a dict {{student tensor name: teacher tensor name}}, got "
                             f"{type(got).__name__}")
    bad = [(k, v) for k, v in got.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise AssertionError(f"{what}: the dict must map names to names (strings), got {bad[0][0]!r}: "
                             f"{type(bad[0][1]).__name__}")
    return got


def _sources_close(got, keys: Sequence[str], kept: Sequence[int], what: str) -> None:
    """``got`` equal to the reference mapping; otherwise name the mistake it matches, or say how it differs."""
    got = _mapping(got, what)
    expected = _sources(keys, kept)
    if got == expected:
        return
    named = [name for name, wrong in _sources_mistakes(keys, kept).items() if wrong != expected and got == wrong]
    if named:
        raise AssertionError(f"{what}: wrong mapping - that is what {' or '.join(named)} gives")
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} student tensors missing (e.g. {missing[0]!r})")
    if extra:
        parts.append(f"{len(extra)} names the student does not have (e.g. {extra[0]!r})")
    if wrong:
        parts.append(f"{len(wrong)} copied from the wrong teacher tensor (e.g. {wrong[0]!r} from {got[wrong[0]]!r}, "
                     f"expected {expected[wrong[0]]!r})")
    raise AssertionError(f"{what}: {'; '.join(parts)} - student layer j is teacher layer kept_layers[j] renamed "
                         "bert.encoder.layer.{j}.; every other tensor maps to itself")


def _call(f, args: tuple, what: str, hint: Callable = lambda error: ""):
    """The student's result; an exception (other than the stub's) fails with its kind, message and ``hint(error)``."""
    try:
        return f(*args)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(f"{what}: raised {e.kind} ({e.message}){hint(e)}") from None


def _describe(n_layers: int, kept, keys: Sequence[str] | None = None) -> str:
    keys = bert_keys(n_layers) if keys is None else keys
    return f"a {n_layers}-layer teacher ({len(keys)} tensors), kept_layers={kept!r}"


def _sources_cases(cases, f) -> None:
    for n_layers, kept in cases:
        keys = bert_keys(n_layers)
        what = _describe(n_layers, kept)
        _sources_close(_call(f, (keys, kept), what), keys, kept, what)


# (teacher layers, kept_layers) of each check; tests/grading/test_ex08_distilbert.py runs layer_copy_map on them.
SOURCE_CASES = [(6, (0, 2, 4)), (6, (1, 3, 5)), (4, (1, 2)), (6, [0, 3]), (6, (2, 3, 5))]
TWELVE_LAYER_CASES = [(12, (0, 2, 4, 7, 9, 11)), (12, (1, 5, 10)), (12, [1, 11])]
LIMIT_SOURCE_CASES = [(6, (0, 1, 2, 3, 4, 5)), (6, (5,)), (1, (0,))]


@check(M, "student_layer_sources", points=2)
def sources_match_reference(student_layer_sources):
    """{student name: teacher name}: layer kept_layers[j] renamed layer j, the embeddings, pooler and classifier as
    they are; 4- and 6-layer teachers, tuples and lists."""
    _sources_cases(SOURCE_CASES, student_layer_sources)


@check(M, "student_layer_sources", points=1)
def sources_twelve_layers(student_layer_sources):
    """12-layer teachers (BERT-base): DistilBERT's (0, 2, 4, 7, 9, 11), and layer 1 kept beside 10 and 11."""
    _sources_cases(TWELVE_LAYER_CASES, student_layer_sources)


@check(M, "student_layer_sources", points=1)
def sources_limit_cases(student_layer_sources):
    """Every layer kept (each name maps to itself), the last layer alone, a 1-layer teacher, the names in reverse."""
    _sources_cases(LIMIT_SOURCE_CASES, student_layer_sources)
    keys = bert_keys(6)[::-1]
    what = f"{_describe(6, (0, 2, 4), keys)}, the names in reverse order"
    _sources_close(_call(student_layer_sources, (keys, (0, 2, 4)), what), keys, (0, 2, 4), what)


# --------------------------------------------------------------------------- hidden_cosine_loss

def _distance(s: torch.Tensor, t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return 1 - F.cosine_similarity(s, t, dim=dim)


def _masked_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return torch.where(real, x, x.new_zeros(())).sum() / real.sum().clamp_min(1)


def _cosine(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``hidden_cosine_loss`` of one pair: the mean of ``1 - cos`` (over the features) over the real tokens."""
    distance = _distance(s, t.detach())
    return distance.mean() if mask is None else _masked_mean(distance, mask.bool())


PADDING = ("the mean over all B * S positions, padding included (average over the real tokens only: "
           "attention_mask == 1)")
TOKENS_DIM = ("the cosine over the tokens, dim=1 (F.cosine_similarity's default; the cosine compares the two "
              "H-dimensional vectors of one token: dim=-1)")
SIMILARITY = "cos instead of 1 - cos (the loss is the distance 1 - cos: 0 when the vectors point the same way)"
SEQUENCE_SUMS = ("the per-sequence sums averaged over the batch, divided by B (divide the sum by the number of real "
                 "tokens N)")
SEQUENCE_MEANS = ("the mean of the per-sequence means (it weighs a short sequence as much as a long one: average over "
                  "all N real tokens of the batch)")
SUM = "the sum over the real tokens instead of their mean"
BY_POSITIONS = "the sum over the real tokens divided by B * S (every position) instead of by the number of real tokens"
MASK_INVERTED = "the mask inverted (1 marks a real token, 0 the padding)"
MSE = "the mean squared error of the hidden states (the cosine loss compares directions, not values)"
DOT = "the dot product not divided by the norms (cos(u, v) = u . v / (|u| |v|))"
NAN_NO_TOKEN = ("NaN - the mask has no real token here: 0 / 0; divide the sum by max(N, 1), so the loss is 0 "
                "(.clamp_min(1) on the count)")
SHAPE_HINT = (" - a shape mismatch: the cosine is over the features, dim=-1 (F.cosine_similarity's default dim=1 is "
              "the tokens), which leaves one value per token, [B, S], the mask's shape")


def _shape_hint(error) -> str:
    """``SHAPE_HINT`` for an error about shapes or sizes (a cosine over dim=1 indexed with the mask), else nothing."""
    about_shapes = error.kind in ("IndexError", "RuntimeError") and any(
        word in error.message.lower() for word in ("shape", "size"))
    return SHAPE_HINT if about_shapes else ""


def _cosine_mistakes(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """0-dim values of known mistakes (differentiable in ``s``)."""
    b, n_tokens, h = s.shape
    real = torch.ones(b, n_tokens, dtype=torch.bool) if mask is None else mask.bool()
    distance = _distance(s, t)
    masked = torch.where(real, distance, distance.new_zeros(()))
    mistakes = {
        PADDING: distance.mean(),
        SIMILARITY: _masked_mean(1 - distance, real),
        SEQUENCE_SUMS: masked.sum() / b,
        SEQUENCE_MEANS: (masked.sum(1) / real.sum(1).clamp_min(1)).mean(),
        SUM: masked.sum(),
        BY_POSITIONS: masked.sum() / (b * n_tokens),
        MASK_INVERTED: _masked_mean(distance, ~real),
        MSE: _masked_mean(((s - t) ** 2).mean(-1), real),
        DOT: _masked_mean(1 - (s * t).sum(-1), real),
    }
    if n_tokens == h:                                   # dim=1 gives [B, H]: comparable with the mask when S == H
        mistakes[TOKENS_DIM] = _masked_mean(_distance(s, t, dim=1), real)
    return mistakes


def _hidden(seed: int, b: int, s: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher hidden states ``[B, S, H]``, correlated (cosines mostly between 0 and 1)."""
    student = randn(b, s, h, seed=seed)
    return student, 0.7 * student + randn(b, s, h, seed=seed + 1)


def _padding_mask(lengths: list[int], s: int, side: str = "right", dtype=torch.long) -> torch.Tensor:
    """``[B, S]``: 1 at each sequence's ``lengths[b]`` real tokens, padded on ``side``."""
    mask = (torch.arange(s) < torch.tensor(lengths).unsqueeze(1)).to(dtype)
    return mask.flip(1) if side == "left" else mask


def _hidden_sizes(s: torch.Tensor, mask: torch.Tensor | None) -> str:
    b, n, h = s.shape
    if mask is None:
        return f"B={b}, S={n}, H={h}, no mask (attention_mask=None: every token is real)"
    return f"B={b}, S={n}, H={h}, {int(mask.bool().sum())} real tokens of {b * n} ({mask.dtype} mask)"


def _cosine_close(f, s, t, mask, what: str) -> None:
    args = (s, t) if mask is None else (s, t, mask)
    got = _call(f, args, what, _shape_hint)
    value_naming(got, _cosine(s, t, mask).item(), {k: v.item() for k, v in _cosine_mistakes(s, t, mask).items()}, what)


def _cosine_cases():
    """(student, teacher, mask or None, description)."""
    cases = []
    for seed, (b, s, h), lengths, side, dtype in [
            (8000, (2, 6, 6), [6, 3], "right", torch.long),
            (8002, (3, 7, 5), [7, 2, 5], "left", torch.bool),
            (8004, (4, 5, 16), [1, 5, 3, 4], "right", torch.float32),
            (8006, (2, 4, 8), None, "", None),
            (8008, (3, 8, 32), [8, 8, 8], "right", torch.long)]:
        hs, ht = _hidden(seed, b, s, h)
        mask = None if lengths is None else _padding_mask(lengths, s, side, dtype)
        what = _hidden_sizes(hs, mask) + (f", {side} padding" if lengths is not None and min(lengths) < s else "")
        cases.append((hs, ht, mask, what))
    return cases


@check(M, "hidden_cosine_loss", points=2)
def cosine_matches_reference(hidden_cosine_loss):
    """The mean of 1 - cos(h_s, h_t) (over the features) over the real tokens: right and left padding, long, bool and
    float masks, no mask."""
    for hs, ht, mask, what in _cosine_cases():
        _cosine_close(hidden_cosine_loss, hs, ht, mask, what)


@check(M, "hidden_cosine_loss", points=1)
def cosine_ignores_padding(hidden_cosine_loss):
    """Other hidden states at the padding change nothing; the real tokens packed into one sequence give the same
    loss."""
    hs, ht = _hidden(8100, 3, 6, 10)
    mask = _padding_mask([6, 2, 4], 6)
    pad = ~mask.bool()
    noisy_s = torch.where(pad.unsqueeze(-1), randn(3, 6, 10, seed=8102, scale=5.0), hs)
    noisy_t = torch.where(pad.unsqueeze(-1), randn(3, 6, 10, seed=8103, scale=5.0), ht)
    cases = [(noisy_s, noisy_t, mask, "other hidden states at the padding positions (the loss must not change)"),
             (hs[mask.bool()].unsqueeze(0), ht[mask.bool()].unsqueeze(0), torch.ones(1, 12, dtype=torch.long),
              "the 12 real tokens packed into one sequence without padding (the same mean)")]
    for s, t, m, what in cases:
        _cosine_close(hidden_cosine_loss, s, t, m, f"{_hidden_sizes(s, m)}, {what}")


@check(M, "hidden_cosine_loss", points=1)
def cosine_limits(hidden_cosine_loss):
    """0 when every teacher vector is the student's times a positive number, 2 when opposite; 0 (not NaN) when the
    mask has no real token."""
    hs, _ = _hidden(8200, 2, 5, 7)
    mask = _padding_mask([5, 3], 5)
    scale = torch.rand(2, 5, 1, generator=torch.Generator().manual_seed(8201)) * 3 + 0.5
    cases = [(hs, hs * scale, mask, "the teacher's vectors are the student's times 0.5 to 3.5 (same directions: 0)"),
             (hs, -2 * hs, mask, "the teacher's vectors are the student's times -2 (opposite directions: 2)"),
             (hs, _hidden(8202, 2, 5, 7)[1], torch.zeros(2, 5, dtype=torch.long), "a mask without a real token (0)")]
    for s, t, m, what in cases:
        what = f"{_hidden_sizes(s, m)}, {what}"
        got = _call(hidden_cosine_loss, (s, t, m), what, _shape_hint)
        if torch.is_tensor(got) and got.numel() == 1 and torch.isnan(got).any():
            raise AssertionError(f"{what}: {NAN_NO_TOKEN}" if not m.any() else f"{what}: NaN")
        value_naming(got, _cosine(s, t, m).item(), {k: v.item() for k, v in _cosine_mistakes(s, t, m).items()}, what)


def _cosine_gradients(s, t, mask) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference's gradient with respect to the student's hidden states, and the mistakes'."""
    leaf = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_cosine(leaf, t, mask), leaf)
    wrong = {k: torch.autograd.grad(v, leaf, retain_graph=True)[0] for k, v in _cosine_mistakes(leaf, t, mask).items()}
    return grad, wrong


TEACHER_NOT_DETACHED = ("the teacher not detached: it is a fixed target, so use {name}.detach() (the optimiser would "
                        "otherwise move the teacher towards the student)")


def _no_teacher_gradient(grad, what: str, name: str) -> None:
    if grad is not None and grad.abs().max().item() > 0:
        raise AssertionError(f"{what}: a gradient reaches the teacher's {name} (max |gradient| "
                             f"{grad.abs().max().item():.3g}) - {TEACHER_NOT_DETACHED.format(name=name)}")


@check(M, "hidden_cosine_loss", points=1)
def cosine_gradient_reaches_only_the_student(hidden_cosine_loss):
    """No gradient reaches the teacher's hidden states (detached) nor the padding; the student's is the reference's."""
    hs, ht = _hidden(8300, 3, 6, 8)
    mask = _padding_mask([6, 2, 4], 6)
    what = f"{_hidden_sizes(hs, mask)}, right padding"
    try:
        _, grad = hidden_cosine_loss.value_and_grad(hs, ht, mask, wrt=1)
        _no_teacher_gradient(grad, what, "teacher_hidden")
        _, grad = hidden_cosine_loss.value_and_grad(hs, ht, mask, wrt=0)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(f"{what}: raised {e.kind} ({e.message}){_shape_hint(e)}") from None
    assert grad is not None, (f"{what}: the loss is not differentiable with respect to the student's hidden states "
                              "(return a tensor computed from student_hidden, not a number)")
    leak = grad[~mask.bool()].abs().max().item()
    if leak > 0:
        raise AssertionError(f"{what}, the gradient with respect to the student's hidden states: it reaches the "
                             f"padding positions (max |gradient| {leak:.3g}) - the mask not applied")
    expected, wrong = _cosine_gradients(hs, ht, mask)
    close_naming(grad, expected, wrong, f"{what}, the gradient with respect to the student's hidden states")


@check(M, "hidden_cosine_loss", points=1, kind="rejects")
def cosine_rejects_bad_inputs(hidden_cosine_loss):
    """ValueError for hidden states of different shapes or not 3-D, a mask that is not [B, S]."""
    hs, ht = _hidden(8400, 2, 5, 8)
    mask = _padding_mask([5, 3], 5)
    cases = [("student [2, 5, 8] with teacher [2, 5, 6] (a narrower student)", (hs, ht[..., :6], mask)),
             ("student [2, 5, 8] with teacher [2, 4, 8]", (hs, ht[:, :4], mask)),
             ("hidden states [5, 8] (2-D: one sequence without its batch dimension)", (hs[0], ht[0], mask[0])),
             ("a mask of shape [2, 4] with hidden states [2, 5, 8]", (hs, ht, mask[:, :4])),
             ("a mask of shape [10] with hidden states [2, 5, 8] (flattened)", (hs, ht, mask.flatten()))]
    for what, args in cases:
        expect_value_error(hidden_cosine_loss, args, {}, what,
                           "check that the hidden states are two [B, S, H] tensors of one shape and the mask [B, S] "
                           "first")


# --------------------------------------------------------------------------- triple_loss

DEFAULT_WEIGHTS = (0.5, 0.5, 1.0)


def _triple(zs, zt, y, hs, ht, mask, t: float, weights) -> torch.Tensor:
    """``triple_loss``'s total: ``w_kd * T^2 * KL + w_ce * CE + w_cos * COS``, a term of weight 0 not computed."""
    w_kd, w_ce, w_cos = weights
    zero = zs.new_zeros(())
    kl = soft_target_kl(zs, zt.detach(), t).mean() if w_kd else zero
    ce = F.cross_entropy(zs, y) if w_ce else zero
    cos = _cosine(hs, ht, mask) if w_cos else zero
    return w_kd * t ** 2 * kl + w_ce * ce + w_cos * cos


NO_T2 = "a missing T^2 factor on the KL"
T_NOT_T2 = "T instead of T^2 on the KL"
T2_EVERYWHERE = "T^2 on every term (it multiplies the KL only: the CE and the cosine term are not tempered)"
REVERSE = "the reverse KL, KL(p_s || p_t) (the teacher's distribution goes first: KL(p_t || p_s))"
CE_TEMPERED = "the CE at temperature T, CE(softmax(z_s / T), y) (the hard-label term uses the plain logits, T = 1)"
KL_SUM = "the KL summed over the batch instead of averaged (F.kl_div's reduction='sum')"
KL_MEAN = ("the KL divided by B * C (F.kl_div's default reduction='mean' averages over every element; "
           "reduction='batchmean' divides by B)")
WEIGHTS_SWAPPED = "the kd and ce weights swapped (weights = (w_kd, w_ce, w_cos))"
NORMALISED = "the weights divided by their sum (they are used as given)"
COS_PADDING = "the cosine term over every token, padding included (average it over the real tokens of attention_mask)"
COS_SIMILARITY = "the cosine term as cos instead of 1 - cos"
NO_COS = "the cosine term left out"


def _triple_mistakes(zs, zt, y, hs, ht, mask, t: float, weights) -> dict[str, torch.Tensor]:
    """Totals of known mistakes (every input given)."""
    w_kd, w_ce, w_cos = weights
    b, c = zs.shape
    kl_each = soft_target_kl(zs, zt, t)                                              # [B]
    kl, ce, cos = kl_each.mean(), F.cross_entropy(zs, y), _cosine(hs, ht, mask)

    def total(kl=kl, ce=ce, cos=cos, t2=t * t, w=weights):
        return w[0] * t2 * kl + w[1] * ce + w[2] * cos

    return {
        NO_T2: total(t2=1.0),
        T_NOT_T2: total(t2=t),
        T2_EVERYWHERE: t * t * total(t2=1.0),
        REVERSE: total(kl=soft_target_kl(zs, zt, t, direction="reverse").mean()),
        CE_TEMPERED: total(ce=F.cross_entropy(zs / t, y)),
        KL_SUM: total(kl=kl_each.sum()),
        KL_MEAN: total(kl=kl_each.sum() / (b * c)),
        WEIGHTS_SWAPPED: total(w=(w_ce, w_kd, w_cos)),
        NORMALISED: total(w=tuple(w / sum(weights) for w in weights)),
        COS_PADDING: total(cos=_distance(hs, ht).mean()),
        COS_SIMILARITY: total(cos=1 - cos),
        NO_COS: total(w=(w_kd, w_ce, 0.0)),
    }


def _triple_inputs(seed: int, b: int, c: int, s: int, h: int, lengths: list[int] | None, side: str = "right"):
    """``(student logits, teacher logits, labels, student hidden, teacher hidden, mask)``."""
    zs, zt = randn(b, c, seed=seed, scale=2.0), randn(b, c, seed=seed + 1, scale=3.0)
    hs, ht = _hidden(seed + 2, b, s, h)
    mask = None if lengths is None else _padding_mask(lengths, s, side)
    return zs, zt, randint(c, b, seed=seed + 4), hs, ht, mask


def _triple_sizes(inputs, t, weights) -> str:
    zs, _, _, hs, _, mask = inputs
    b, c = zs.shape
    real = "no mask" if mask is None else f"{int(mask.bool().sum())} real tokens of {mask.numel()}"
    return f"B={b}, C={c}, hidden [{b}, {hs.shape[1]}, {hs.shape[2]}] ({real}), temperature={t:g}, weights={weights}"


def _triple_close(f, inputs, t, weights, what: str, defaults: bool = False) -> None:
    kwargs = {} if defaults else {"temperature": t, "weights": weights}
    try:
        got = f(*inputs, **kwargs)
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(f"{what}: raised {e.kind} ({e.message})") from None
    value_naming(got, _triple(*inputs, t, weights).item(),
                 {k: v.item() for k, v in _triple_mistakes(*inputs, t, weights).items()}, what)


def _triple_cases():
    """(inputs, temperature, weights, description, whether to call with the defaults)."""
    cases = []
    for seed, (b, c, s, h), lengths, side, t, weights in [
            (9000, (4, 3, 6, 8), [6, 3, 5, 2], "right", 2.0, (5.0, 2.0, 1.0)),
            (9010, (3, 5, 5, 12), [5, 5, 1], "left", 4.0, (0.7, 0.3, 0.5)),
            (9020, (2, 2, 7, 6), [4, 7], "right", 2.0, DEFAULT_WEIGHTS),
            (9030, (5, 4, 4, 16), [4, 2, 3, 1, 4], "right", 0.5, (0.2, 1.0, 2.0)),
            (9040, (3, 6, 5, 10), None, "", 3.0, (1.0, 0.5, 0.25))]:
        inputs = _triple_inputs(seed, b, c, s, h, lengths, side)
        defaults = weights == DEFAULT_WEIGHTS
        what = _triple_sizes(inputs, t, weights) + (" (the defaults)" if defaults else "")
        cases.append((inputs, t, weights, what, defaults))
    return cases


@check(M, "triple_loss", points=2)
def triple_matches_reference(triple_loss):
    """w_kd * T^2 * KL(p_t || p_s) + w_ce * CE + w_cos * (1 - cos) over the real tokens: DistilBERT's (5, 2, 1), the
    defaults (T = 2, (0.5, 0.5, 1)) and others; padding on either side, no mask."""
    for inputs, t, weights, what, defaults in _triple_cases():
        _triple_close(triple_loss, inputs, t, weights, what, defaults)


def _zero_weight_cases():
    """(full inputs, the inputs with None for the terms of weight 0, weights, note); temperature 2."""
    full = _triple_inputs(9100, 4, 3, 5, 8, [5, 2, 4, 3])
    zs, zt, y, hs, ht, mask = full
    return [(full, (zs, zt, None, None, None, None), (1.0, 0.0, 0.0), "labels and hidden states None"),
            (full, (zs, None, y, None, None, None), (0.0, 1.0, 0.0),
             "teacher logits and hidden states None: plain fine-tuning"),
            (full, (zs, None, None, hs, ht, mask), (0.0, 0.0, 1.0), "teacher logits and labels None"),
            (full, (zs, zt, y, None, None, None), (0.5, 0.5, 0.0), "hidden states None")]


@check(M, "triple_loss", points=1)
def triple_skips_terms_of_weight_zero(triple_loss):
    """A term of weight 0 is not computed and its inputs may be None: (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0)."""
    for full, inputs, weights, note in _zero_weight_cases():
        what = f"{_triple_sizes(full, 2.0, weights)}, {note}"
        try:
            got = triple_loss(*inputs, temperature=2.0, weights=weights)
        except student_error() as e:
            if isinstance(e, NotImplementedError):
                raise
            raise AssertionError(f"{what}: raised {e.kind} ({e.message}) - a term whose weight is 0 is not computed: "
                                 "its inputs may be None") from None
        value_naming(got, _triple(*full, 2.0, weights).item(),
                     {k: v.item() for k, v in _triple_mistakes(*full, 2.0, weights).items()}, what)


@check(M, "triple_loss", points=1)
def triple_gradient_reaches_only_the_student(triple_loss):
    """No gradient reaches the teacher's logits or hidden states (detached); the student's are the reference's."""
    inputs = _triple_inputs(9200, 4, 3, 6, 8, [6, 3, 5, 2])
    t, weights = 2.0, (5.0, 2.0, 1.0)
    what = _triple_sizes(inputs, t, weights)
    kwargs = {"temperature": t, "weights": weights}
    try:
        for index, name in [(1, "teacher_logits"), (4, "teacher_hidden")]:
            _, grad = triple_loss.value_and_grad(*inputs, wrt=index, **kwargs)
            _no_teacher_gradient(grad, what, name)
        grads = {index: triple_loss.value_and_grad(*inputs, wrt=index, **kwargs)[1] for index in (0, 3)}
    except student_error() as e:
        if isinstance(e, NotImplementedError):
            raise
        raise AssertionError(f"{what}: raised {e.kind} ({e.message})") from None
    for index, name in [(0, "student_logits"), (3, "student_hidden")]:
        assert grads[index] is not None, (f"{what}: the loss is not differentiable with respect to {name} (return a "
                                          "tensor computed from the student's outputs)")
        leaves = [x.clone().requires_grad_(i == index) if torch.is_tensor(x) else x for i, x in enumerate(inputs)]
        (expected,) = torch.autograd.grad(_triple(*leaves, t, weights), leaves[index])
        close(grads[index], expected, f"{what}, the gradient with respect to {name}")


@check(M, "triple_loss", points=1, kind="rejects")
def triple_rejects_bad_inputs(triple_loss):
    """ValueError for temperature <= 0, a negative weight, all weights 0, not three weights, logits of different shapes
    or not [B, C], hidden states of different shapes."""
    zs, zt, y, hs, ht, mask = _triple_inputs(9300, 3, 4, 5, 8, [5, 2, 4])
    inputs = (zs, zt, y, hs, ht, mask)
    cases = [
        ("temperature=0", inputs, {"temperature": 0.0}),
        ("temperature=-1", inputs, {"temperature": -1.0}),
        ("weights=(-0.5, 1, 1)", inputs, {"weights": (-0.5, 1.0, 1.0)}),
        ("weights=(0, 0, 0) (nothing to train on)", inputs, {"weights": (0.0, 0.0, 0.0)}),
        ("weights=(0.5, 0.5) (two numbers)", inputs, {"weights": (0.5, 0.5)}),
        ("teacher logits [3, 5] with student logits [3, 4]", (zs, randn(3, 5, seed=9302), y, hs, ht, mask), {}),
        ("student logits [3, 5, 4] (per token: the course's classifier has one prediction per sequence)",
         (randn(3, 5, 4, seed=9303), randn(3, 5, 4, seed=9304), y, hs, ht, mask), {}),
        ("student hidden [3, 5, 8] with teacher hidden [3, 5, 6]", (zs, zt, y, hs, ht[..., :6], mask), {}),
    ]
    for what, args, kwargs in cases:
        expect_value_error(triple_loss, args, kwargs, what,
                           "check the temperature, the weights and the shapes first")


# --------------------------------------------------------------------------- bert_classifier_parameters

def bert_parameters(vocab: int, positions: int, types: int, h: int, i: int, layers: int, classes: int,
                    *, biases: bool = True, layer_norms: bool = True, pooler: bool = True,
                    position_and_type: bool = True, attention_output: bool = True) -> int:
    """The parameters of a BertForSequenceClassification (tests/grading/test_ex08_distilbert.py counts real
    ones from transformers); the keyword switches give the known mistakes."""
    b = 1 if biases else 0
    norm = 2 * h if layer_norms else 0
    embeddings = (vocab + (positions + types if position_and_type else 0)) * h + norm
    projections = 4 if attention_output else 3
    layer = projections * (h * h + b * h) + (h * i + b * i) + (i * h + b * h) + 2 * norm
    return (embeddings + layers * layer + ((h * h + b * h) if pooler else 0) + h * classes + b * classes)


PARAMETER_CASES = [(100, 16, 2, 8, 20, 3, 3), (50, 11, 3, 12, 7, 2, 2), (30522, 512, 2, 768, 3072, 12, 2),
                   (30522, 512, 2, 768, 3072, 6, 2)]


def _parameter_mistakes(case) -> dict[str, float]:
    return {name: float(bert_parameters(*case, **{switch: False})) for name, switch in [
        ("leaving out the biases (every linear layer has one)", "biases"),
        ("leaving out the LayerNorms (weight and bias, one after the embeddings and two per layer)", "layer_norms"),
        ("leaving out the pooler (a hidden x hidden dense layer before the classifier)", "pooler"),
        ("leaving out the position and token-type embeddings", "position_and_type"),
        ("three attention projections (Q, K, V) without the output projection", "attention_output")]}


@check(M, "bert_classifier_parameters", points=4)
def parameters_match_transformers(bert_classifier_parameters):
    """The count transformers' BertForSequenceClassification has: two tiny configurations, BERT-base and its
    6-layer copy."""
    for case in PARAMETER_CASES:
        what = ("vocab {}, positions {}, types {}, hidden {}, intermediate {}, layers {}, classes {}".format(*case))
        got = _call(bert_classifier_parameters, case, what)
        if type(got) is not int:
            raise AssertionError(f"{what}: got {type(got).__name__} {got!r} - return a Python int")
        value_naming(torch.tensor(float(got), dtype=torch.float64), float(bert_parameters(*case)),
                     _parameter_mistakes(case), what)


# --------------------------------------------------------------------------- the choice

@check(M, "why_every_other_layer", points=1)
def every_other_layer_choice(why_every_other_layer):
    """'depth': the kept layers span the teacher's depth and include its last layer."""
    choice(why_every_other_layer(), "why DistilBERT keeps every other layer", "depth", {
        "faster": "the 12 layers of BERT-base have the same shape: any 6 of them cost the same time",
        "smaller": "the 12 layers have the same shape: any 6 of them have the same number of parameters (your "
                   "bert_classifier_parameters says so)",
        "generic": "copying the first six would keep layers 0-5 and hand the pooler and classifier layer 5's "
                   "output, which they were never trained to read; the student is later trained on the task anyway",
    })
