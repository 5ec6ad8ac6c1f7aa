"""Token-level distillation losses for language models (notebook 06).

Shapes: logits ``[B, S, V]`` (batch, sequence, vocabulary), ``labels`` and ``attention_mask`` ``[B, S]``.

**Alignment.** Every function here scores ``logits[:, i]`` against ``labels[:, i]``: the caller
passes logits and labels aligned position by position. A causal LM's logits at position ``i``
predict token ``i + 1``, so shift first::

    student, labels = shift_for_causal_lm(student_out.logits, input_ids, attention_mask)
    teacher = teacher_out.logits[:, :-1]          # the teacher's logits shift the same way

**The loss, per token**, with ``p^T = softmax(z / T)`` and ``D`` one of the divergences below::

    loss_i = alpha * T^2 * D(p_t^T, p_s^T) + (1 - alpha) * CE(label_i, softmax(z_s))

(Hinton et al. 2015, arXiv:1503.02531; the CE is at temperature 1, as in ``losses.kd_loss``;
``alpha = 1`` is pure distillation and needs no labels.) The mean is over **real tokens only**:
a position counts iff ``attention_mask == 1`` there AND its label is not ``ignore_index``.
The article this course corrects averages over every position, padding included
(``KLDivLoss(reduction="batchmean")`` over ``B * S`` rows, GUIDE section 4, mistake 6): padding then
dilutes the loss by the share of real tokens in the batch, and the padded positions' logits, which
predict nothing, pull on the student.

**Divergences** (TRL's GKD convention, ``GKDTrainer.generalized_jsd_loss`` in huggingface/trl,
``trl/trainer/gkd_trainer.py``, read at commit a9fa292; generalised JSD: Agarwal et al. 2024, "On-Policy Distillation of
Language Models", arXiv:2306.13649, eq. 1):

- ``"forward_kl"``: KL(p_t || p_s) = sum p_t (log p_t - log p_s), mass-covering (Hinton's KD);
- ``"reverse_kl"``: KL(p_s || p_t) = sum p_s (log p_s - log p_t), mode-seeking
  (MiniLLM, Gu et al. 2023, arXiv:2306.08543);
- ``"jsd"`` with ``beta`` in [0, 1]: mixture ``M = beta * p_t + (1 - beta) * p_s``,
  ``JSD_beta = beta * KL(p_t || M) + (1 - beta) * KL(p_s || M)``.
  The formula is 0 at both ends (``M`` equals one of the two), so, as TRL does,
  ``beta = 0`` is DEFINED as the forward KL(p_t || p_s) and ``beta = 1`` as the reverse
  KL(p_s || p_t). These are the limits of ``JSD_beta / beta`` and ``JSD_beta / (1 - beta)``:
  the direction is continuous but the scale is not (``JSD_0.01`` is about 100 times smaller than
  ``beta = 0``). ``JSD_beta <= h(beta) = -beta log beta - (1 - beta) log(1 - beta)``; ``beta = 0.5``
  is the symmetric JSD, bounded by log 2. Computed in log space (``logaddexp`` for the mixture).
  TRL applies no ``T^2`` factor (its default loss temperature is 1); here every divergence gets it.

**Vocabularies** must match: a mismatch is an error naming both sizes. Models that share a tokenizer
often differ only because one output matrix is padded beyond the tokenizer (to a multiple of 64,
say); pass ``vocab_size=len(tokenizer)`` to trim both to the shared vocabulary, explicitly.

**Top-k teacher caches** (``topk_teacher_logits``, ``topk_kd_loss``, ``topk_mass``): store the
teacher's k most likely tokens per position instead of the whole vocabulary, and distil from the
teacher renormalised over them; ``topk_kd_loss`` says exactly what that computes. The reverse KL
and the JSD from such a cache renormalise the student over the same ``k`` tokens
(``topk_divergence``): the student's mass outside them is never penalised, and that penalty (no mass
where the teacher has none) is what defines the reverse KL.

Notebook 06's toy (one peak fitted to two under each divergence) is ``course_lib.llm.losses.fit_gaussian_student``.

``validate=True`` (default) checks the inputs, which reads tensor values (a GPU would wait); a
training loop that has checked once can pass ``validate=False``, which never synchronises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F

from ..losses import REDUCTIONS, _as_column, _counted, _needed, _reduce, check_kd_inputs, soft_target_kl
from ..validation import (
    check_choice,
    check_distinct,
    check_logits,
    check_mask,
    check_positive_int,
    check_same_shape,
    check_temperature,
    check_tensor,
    check_weight,
)

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


# --------------------------------------------------------------------------- alignment and vocabulary

def shift_for_causal_lm(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        *, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits[:, :-1], labels[:, 1:])``: the logits at position ``i`` scored against token ``i + 1``.

    With ``attention_mask`` ``[B, S]``, a shifted position is kept iff both the token it reads
    (``i``) and the token it predicts (``i + 1``) are real; the others get ``ignore_index``, so the
    mask travels inside the labels. With right padding that is just ``attention_mask[:, 1:]``; with
    left padding it also drops the prediction of the first real token from a padding position.
    Shift the teacher's logits the same way: ``teacher_logits[:, :-1]``.
    """
    check_tensor("logits", logits, dims=3, floating=False, layout="[B, S, V]", allow_empty=True, finite=False)
    check_tensor("labels", labels, floating=False, allow_empty=True, finite=False)
    if labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"expected logits [B, S, V] and labels [B, S], got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer token ids (e.g. input_ids), got {labels.dtype}")
    if labels.shape[1] < 2:
        raise ValueError(f"labels must hold at least 2 positions to shift (position i predicts token i + 1), got "
                         f"shape {tuple(labels.shape)}")
    shifted = labels[:, 1:]
    if attention_mask is not None:
        check_mask("attention_mask", attention_mask, labels.shape, what="[B, S], as labels")
        real = attention_mask.bool()
        shifted = shifted.masked_fill(~(real[:, :-1] & real[:, 1:]), ignore_index)
    return logits[:, :-1], shifted


def _trim(logits: torch.Tensor, vocab_size: int, name: str) -> torch.Tensor:
    """``logits[..., :vocab_size]``, refusing a size the logits do not have."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int (the tokenizer's length), got {vocab_size!r}")
    if vocab_size > logits.shape[-1]:
        raise ValueError(f"vocab_size={vocab_size} is larger than {name}'s vocabulary ({logits.shape[-1]}): "
                         f"trimming can only drop padded entries, not add missing ones")
    return logits[..., :vocab_size]


def align_vocab(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the two vocabulary dimensions agree, or say why they cannot.

    ``vocab_size=None``: the last dimensions must be equal (returned unchanged), otherwise a
    ``ValueError`` gives both sizes. ``vocab_size=n`` (the tokenizer's length): both are trimmed to
    ``[..., :n]``, for models whose output matrix is padded beyond the tokenizer. The softmax is then
    over the ``n`` real tokens only: whatever probability the padded rows had (small, as no label
    ever points there, but not zero) is dropped and the rest renormalised.
    """
    if vocab_size is None:
        if student_logits.shape[-1] != teacher_logits.shape[-1]:
            raise ValueError(
                f"student and teacher vocabularies differ: student_logits has {student_logits.shape[-1]} entries, "
                f"teacher_logits {teacher_logits.shape[-1]}. If both use the same tokenizer and one output matrix "
                f"is padded beyond it, pass vocab_size=len(tokenizer) to trim both; models with different "
                f"tokenizers cannot be distilled token by token")
        return student_logits, teacher_logits
    return _trim(student_logits, vocab_size, "student_logits"), _trim(teacher_logits, vocab_size, "teacher_logits")


# --------------------------------------------------------------------------- divergences, per token

def _check_divergence(divergence: str, beta) -> None:
    check_choice("divergence", divergence, DIVERGENCES)
    if torch.is_tensor(beta) or isinstance(beta, bool) or not isinstance(beta, Real) or not 0 <= beta <= 1:
        raise ValueError(f"beta must be a number in [0, 1] (0: forward KL, 1: reverse KL), got {beta!r}")


def token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, divergence: str = "forward_kl",
                     *, beta: float = 0.5, temperature: float | torch.Tensor = 1.0,
                     validate: bool = True) -> torch.Tensor:
    """Per-position divergence between ``p_t = softmax(z_t / T)`` and ``p_s = softmax(z_s / T)``,
    shape ``logits.shape[:-1]``, without the ``T^2`` factor (see the module docstring for the
    definitions; ``"jsd"`` with ``beta`` 0 or 1 is the forward or reverse KL, as in TRL).
    Gradients flow to both arguments; ``token_kd_loss`` detaches the teacher. ``validate=False``
    skips the checks that read values (NaN, temperature), for loops whose inputs are checked."""
    _check_divergence(divergence, beta)
    if validate:
        check_logits("student_logits", student_logits)
        check_logits("teacher_logits", teacher_logits)
        check_same_shape(("student_logits", student_logits), ("teacher_logits", teacher_logits),
                         what="align them first (shift_for_causal_lm, align_vocab)")
        check_temperature(temperature)
    if divergence == "jsd" and beta in (0, 1):
        divergence = "forward_kl" if beta == 0 else "reverse_kl"
    if divergence != "jsd":
        return soft_target_kl(student_logits, teacher_logits, temperature,
                              "forward" if divergence == "forward_kl" else "reverse", validate=False)
    t = _as_column(temperature, student_logits)
    log_ps, log_pt = F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1)
    log_m = torch.logaddexp(log_pt + math.log(beta), log_ps + math.log1p(-beta))
    return beta * (log_pt.exp() * (log_pt - log_m)).sum(-1) + (1 - beta) * (log_ps.exp() * (log_ps - log_m)).sum(-1)


# --------------------------------------------------------------------------- the loss

def _check_tokens(student_logits: torch.Tensor, labels: torch.Tensor | None, attention_mask: torch.Tensor | None,
                  reduction: str, **others: torch.Tensor) -> None:
    """Shape checks that read no values (so they run even with ``validate=False``)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    for name, z in {"student_logits": student_logits, **others}.items():
        if not torch.is_tensor(z) or z.dim() != 3:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            last = "k" if name.startswith("topk") else "vocab"
            raise ValueError(f"{name} must be [batch, seq, {last}] (3 dimensions), got {shape}")
        if z.shape[:2] != student_logits.shape[:2]:
            raise ValueError(f"{name} has batch and sequence {tuple(z.shape[:2])}, student_logits "
                             f"{tuple(student_logits.shape[:2])}")
    for name, m in (("labels", labels), ("attention_mask", attention_mask)):
        if m is not None and (not torch.is_tensor(m) or m.shape != student_logits.shape[:2]):
            shape = tuple(m.shape) if torch.is_tensor(m) else type(m).__name__
            raise ValueError(f"{name} must be [batch, seq] = {tuple(student_logits.shape[:2])} (the logits "
                             f"without the vocabulary dimension), got {shape}")


def _token_loss(student_logits, divergence, labels, *, temperature, alpha, attention_mask, ignore_index,
                reduction, return_parts, validate, use_kl):
    """``alpha * T^2 * divergence() + (1 - alpha) * CE``, reduced over the real tokens."""
    keep = _counted(labels, attention_mask, ignore_index, may_sync=validate)   # None: every position counts
    if validate and (student_logits.shape[:2].numel() == 0 or (keep is not None and not bool(keep.any()))):
        raise ValueError(f"no real token to average over: attention_mask and labels (ignore_index={ignore_index}) "
                         f"leave 0 of {student_logits.shape[:2].numel()} positions, so the mean would be 0/0. "
                         f"Skip the batch, or pass validate=False to get a loss of 0 with zero gradient")
    if labels is None:
        ce = student_logits.new_zeros(student_logits.shape[:-1])
    else:
        y = labels if keep is None else labels.masked_fill(~keep, 0)   # any valid index where not counted
        ce = -F.log_softmax(student_logits, dim=-1).gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
    div = divergence() if _needed(alpha, use_kl) else torch.zeros_like(ce)
    t, a = ((v.to(div) if torch.is_tensor(v) else v) for v in (temperature, alpha))
    loss, div, ce = (_reduce(v, keep, reduction) for v in (a * t * t * div + (1 - a) * ce, div, ce))
    return (loss, {"divergence": div, "ce": ce}) if return_parts else loss


def token_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
                  *, divergence: str = "forward_kl", beta: float = 0.5, temperature: float | torch.Tensor = 1.0,
                  alpha: float | torch.Tensor = 1.0, attention_mask: torch.Tensor | None = None,
                  ignore_index: int | None = -100, vocab_size: int | None = None, reduction: str = "mean",
                  return_parts: bool = False, validate: bool = True):
    """Token-level KD for language models: per token
    ``alpha * T^2 * D(p_t^T, p_s^T) + (1 - alpha) * CE(label, softmax(z_s))``, averaged over real tokens.

    ``student_logits``, ``teacher_logits`` ``[B, S, V]`` and ``labels`` ``[B, S]`` aligned position by
    position (``shift_for_causal_lm`` for causal LMs); ``labels`` may be ``None`` only with ``alpha == 1``.
    ``divergence``: ``"forward_kl"`` KL(p_t || p_s), ``"reverse_kl"`` KL(p_s || p_t), or ``"jsd"``
    (generalised JSD with mixture ``beta * p_t + (1 - beta) * p_s``; ``beta = 0`` is the forward and
    ``beta = 1`` the reverse KL, as in TRL's GKD trainer). A position counts iff
    ``attention_mask == 1`` there and its label is not ``ignore_index``; ``reduction="mean"`` divides by
    the number of such tokens (never by ``B * S``), ``"sum"`` sums them, ``"none"`` gives ``[B, S]``
    (0 where not counted). ``vocab_size``: trim both vocabularies to it (``align_vocab``).
    ``return_parts=True`` also returns ``{"divergence": ..., "ce": ...}``, reduced alike, without ``T^2``.
    The teacher is detached. Errors: bad temperature, ``beta``, ``alpha``, divergence name, shapes,
    labels out of ``[0, V)``, or no real token. ``validate=False`` skips the checks that read values
    (no GPU sync); a batch without real tokens then gives 0.
    """
    _check_divergence(divergence, beta)
    _check_tokens(student_logits, labels, attention_mask, reduction, teacher_logits=teacher_logits)
    student_logits, teacher_logits = align_vocab(student_logits, teacher_logits, vocab_size)
    use_kl = None
    if validate:
        use_kl, _ = check_kd_inputs(student_logits, teacher_logits, labels, temperature, alpha, reduction=reduction,
                                    mask=attention_mask, ignore_index=ignore_index, targets_name="labels")
    teacher = teacher_logits.detach()
    return _token_loss(student_logits, lambda: token_divergence(student_logits, teacher, divergence, beta=beta,
                                                                temperature=temperature, validate=False),
                       labels, temperature=temperature, alpha=alpha, attention_mask=attention_mask,
                       ignore_index=ignore_index, reduction=reduction, return_parts=return_parts,
                       validate=validate, use_kl=use_kl)


# --------------------------------------------------------------------------- top-k teacher caches

def _check_k(k, vocab: int) -> None:
    check_positive_int("k", k, maximum=vocab, meaning=f"at most the vocabulary size, {vocab}")


def topk_teacher_logits(teacher_logits: torch.Tensor, k: int, *,
                        vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cache for ``topk_kd_loss``: ``(values, indices)``, each ``[..., k]``, most likely first.

    ``values`` are the teacher's log-probabilities ``log_softmax(z_t)`` at T = 1 (at least float32),
    so ``values.exp().sum(-1)`` is the mass the cache keeps (``topk_mass`` at T = 1). Store them in
    float16 and ``indices`` in int32 to halve the cache; ``topk_kd_loss`` accepts both. ``vocab_size``
    trims a padded teacher first, so no index points beyond the tokenizer.
    """
    check_logits("teacher_logits", teacher_logits)
    z = teacher_logits.detach() if vocab_size is None else _trim(teacher_logits.detach(), vocab_size, "teacher_logits")
    _check_k(k, z.shape[-1])
    return F.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1).topk(k, dim=-1)


def topk_mass(teacher_logits: torch.Tensor, k: int, *, temperature: float = 1.0,
              vocab_size: int | None = None) -> torch.Tensor:
    """Per position, the share of ``softmax(z_t / T)`` the teacher's ``k`` most likely tokens hold,
    shape ``logits.shape[:-1]``: 1 at ``k = V``, non-decreasing in ``k``. ``1 - topk_mass`` is the
    teacher's tail that a top-k cache drops (its mean over positions is "top-k keeps x% of the mass")."""
    check_logits("teacher_logits", teacher_logits)
    check_temperature(temperature)
    z = teacher_logits if vocab_size is None else _trim(teacher_logits, vocab_size, "teacher_logits")
    _check_k(k, z.shape[-1])
    z = z / _as_column(temperature, z)
    return (torch.logsumexp(z.topk(k, dim=-1).values, dim=-1) - torch.logsumexp(z, dim=-1)).exp()


def topk_divergence(student_logits: torch.Tensor, topk_values: torch.Tensor, topk_indices: torch.Tensor,
                    *, divergence: str = "forward_kl", beta: float = 0.5,
                    temperature: float | torch.Tensor = 1.0, validate: bool = True) -> torch.Tensor:
    """Per position, the divergence between the cached top-k teacher and the student, shape
    ``logits.shape[:-1]``. ``K`` = the cached indices, ``q_t = softmax(topk_values / T)`` the
    teacher renormalised over ``K``.

    - ``"forward_kl"``: ``sum_{v in K} q_t(v) (log q_t(v) - log p_s(v))`` with ``p_s = softmax(z_s / T)``
      the student over its WHOLE vocabulary, gathered at ``K``: exactly KL(q_t || p_s), ``q_t`` being
      0 outside ``K``. See ``topk_kd_loss``.
    - ``"reverse_kl"`` and ``"jsd"``: ``token_divergence`` between the student renormalised over ``K``
      (``q_s = softmax(z_s[K] / T)``) and ``q_t``. Both need the teacher's probability wherever the
      student puts mass, which the cache only has on ``K``: the divergence is over ``K``, and the
      student's mass outside ``K`` is not seen (mix in cross-entropy, ``alpha < 1``, to keep it honest).
      At ``k = V`` every form equals ``token_divergence`` of the full distributions.
    ``validate=False`` skips the checks (shapes, NaN, index range, repeated indices, temperature)."""
    _check_divergence(divergence, beta)
    if validate:
        _check_topk_cache(student_logits, topk_values, topk_indices)
        check_temperature(temperature)
    if divergence != "forward_kl":
        gathered = student_logits.gather(-1, topk_indices.long())
        return token_divergence(gathered, topk_values.to(student_logits.dtype), divergence, beta=beta,
                                temperature=temperature, validate=False)
    t = _as_column(temperature, student_logits)
    log_q = F.log_softmax(topk_values.to(student_logits.dtype) / t, dim=-1)
    log_ps = F.log_softmax(student_logits / t, dim=-1).gather(-1, topk_indices.long())
    return (log_q.exp() * (log_q - log_ps)).sum(-1)


def _check_topk_cache(student_logits: torch.Tensor, topk_values: torch.Tensor, topk_indices: torch.Tensor) -> None:
    """The value checks of a top-k cache against the student's logits (they read values)."""
    check_logits("student_logits", student_logits)
    check_logits("topk_values", topk_values)
    if not torch.is_tensor(topk_indices) or topk_indices.dtype.is_floating_point or topk_indices.dtype.is_complex \
            or topk_indices.dtype == torch.bool:
        raise TypeError(f"topk_indices must be integer token ids, got "
                        f"{topk_indices.dtype if torch.is_tensor(topk_indices) else type(topk_indices).__name__}")
    if topk_values.shape != topk_indices.shape:
        raise ValueError(f"topk_values {tuple(topk_values.shape)} and topk_indices {tuple(topk_indices.shape)} "
                         f"differ in shape")
    if topk_indices.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(f"topk_indices {tuple(topk_indices.shape)} and student_logits {tuple(student_logits.shape)} "
                         f"differ in their positions (all dimensions but the last)")
    vocab = student_logits.shape[-1]
    if topk_indices.numel() and (int(topk_indices.min()) < 0 or int(topk_indices.max()) >= vocab):
        raise ValueError(f"topk_indices must lie in [0, {vocab}) (the student's vocabulary), found "
                         f"{int(topk_indices.min())}..{int(topk_indices.max())}; was the cache built from a "
                         f"larger (padded) vocabulary? Pass vocab_size to topk_teacher_logits")
    check_distinct("topk_indices", topk_indices)


def topk_kd_loss(student_logits: torch.Tensor, topk_values: torch.Tensor, topk_indices: torch.Tensor,
                 labels: torch.Tensor | None = None, *, divergence: str = "forward_kl", beta: float = 0.5,
                 temperature: float | torch.Tensor = 1.0,
                 alpha: float | torch.Tensor = 1.0, attention_mask: torch.Tensor | None = None,
                 ignore_index: int | None = -100, vocab_size: int | None = None, reduction: str = "mean",
                 return_parts: bool = False, validate: bool = True):
    """Distillation from a cached top-k teacher (``topk_teacher_logits``); per token
    ``alpha * T^2 * topk_divergence + (1 - alpha) * CE``, averaged over real tokens as ``token_kd_loss``.
    ``divergence`` (default the forward KL, below) and ``beta``: see ``topk_divergence``.

    What truncation does. With ``K`` the teacher's top-k tokens, ``m_t = p_t(K)`` the mass they keep
    (``topk_mass``), ``q_t = p_t / m_t`` on ``K`` (0 elsewhere) and ``m_s = p_s(K)`` the student's
    mass on ``K``, the loss computes ``KL(q_t || p_s) = KL(q_t || q_s) - log m_s`` where
    ``q_s = p_s / m_s`` on ``K``:

    - the teacher's tail ``1 - m_t`` is dropped: the student learns nothing about how the teacher
      ranks the tokens outside ``K``, and is pushed to put ALL its mass on ``K`` (the ``-log m_s``
      term; the minimiser is ``p_s = q_t``, not ``p_t``);
    - it is not the full forward KL(p_t || p_s) and not a bound on it; they coincide at ``k = V``.

    ``topk_values`` ``[B, S, k]`` (teacher log-probabilities or raw logits: a shift per position
    changes nothing) and ``topk_indices`` ``[B, S, k]`` index the student's vocabulary;
    ``vocab_size`` trims a padded student. Other arguments as ``token_kd_loss``.
    """
    _check_tokens(student_logits, labels, attention_mask, reduction, topk_values=topk_values,
                  topk_indices=topk_indices)
    if topk_values.shape != topk_indices.shape:
        raise ValueError(f"topk_values {tuple(topk_values.shape)} and topk_indices {tuple(topk_indices.shape)} "
                         f"differ in shape")
    if topk_indices.dtype.is_floating_point or topk_indices.dtype.is_complex or topk_indices.dtype == torch.bool:
        raise TypeError(f"topk_indices must be integer token ids, got {topk_indices.dtype}")
    if vocab_size is not None:
        student_logits = _trim(student_logits, vocab_size, "student_logits")
    use_kl = None
    if validate:
        _check_topk_cache(student_logits, topk_values, topk_indices)
        # the teacher's full logits are not here: the student stands in for check_kd_inputs' teacher
        use_kl, _ = check_kd_inputs(student_logits, student_logits, labels, temperature, alpha, reduction=reduction,
                                    mask=attention_mask, ignore_index=ignore_index, targets_name="labels")
    values, indices = topk_values.detach(), topk_indices
    return _token_loss(student_logits, lambda: topk_divergence(student_logits, values, indices, divergence=divergence,
                                                               beta=beta, temperature=temperature, validate=False),
                       labels, temperature=temperature, alpha=alpha, attention_mask=attention_mask,
                       ignore_index=ignore_index, reduction=reduction, return_parts=return_parts,
                       validate=validate, use_kl=use_kl)


# --------------------------------------------------------------------------- notebook 06's toy: one peak fitted to two

@dataclass(frozen=True)
class GaussianFit:
    """A one-peak student over token positions: ``logits = -(i - mean)^2 / (2 width^2)``."""

    mean: float
    width: float
    value: float                 # the divergence at (mean, width)
    logits: torch.Tensor         # [V]


def gaussian_logits(positions: torch.Tensor, mean, width) -> torch.Tensor:
    """``-(positions - mean)^2 / (2 width^2)``: a Gaussian bump over token positions (softmax it for
    the distribution); ``mean`` and ``width`` (> 0) broadcast against ``positions``."""
    check_tensor("positions", positions, floating=False)
    check_weight("mean", mean, low=-math.inf)
    check_weight("width", width, low_open=True, meaning="the bump's standard deviation, in positions")
    return _gaussian(positions, mean, width)


def _gaussian(positions: torch.Tensor, mean, width) -> torch.Tensor:
    return -(positions - mean) ** 2 / (2 * width ** 2)


def fit_gaussian_student(teacher_logits: torch.Tensor, divergence: str = "forward_kl", *, beta: float = 0.5,
                         start: tuple[float, float] | None = None, means: torch.Tensor | None = None,
                         widths: torch.Tensor | None = None, steps: int = 200, lr: float = 0.1) -> GaussianFit:
    """The one-peak student (:func:`gaussian_logits` over positions ``0 .. V-1``) that minimises
    ``token_divergence(student, teacher, divergence, beta=beta)`` for a teacher's logits ``[V]``.

    ``start=None``: every ``(mean, width)`` of a grid is evaluated (``means`` default every quarter
    position, ``widths`` 160 log-spaced values from 0.5 to ``V``), then ``steps`` Adam steps refine
    the best one; the better of the two is returned. The grid is what makes the answer the global
    minimum (to its resolution): the reverse KL and the JSD have a local minimum per teacher mode
    and a broad one between them. ``start=(mean, width)``: Adam from that single start only, the
    naive fit, to show where it stops."""
    check_tensor("teacher_logits", teacher_logits, finite=False)
    if teacher_logits.dim() != 1:
        raise ValueError(f"teacher_logits must be [V] (one distribution), got {tuple(teacher_logits.shape)}")
    check_logits("teacher_logits", teacher_logits)
    _check_divergence(divergence, beta)
    check_positive_int("steps", steps, minimum=0, meaning="Adam steps after the grid")
    check_weight("lr", lr, low_open=True, allow_tensor=False)
    if means is not None:
        check_tensor("means", means, dims=1, floating=False)
    if widths is not None:
        check_tensor("widths", widths, dims=1, floating=False)
        check_weight("widths", widths, low_open=True)
    teacher = teacher_logits.detach().float()
    positions = torch.arange(teacher.shape[0], dtype=torch.float32)

    def objective(mean, width):
        student = _gaussian(positions, mean[..., None], width[..., None])
        return token_divergence(student, teacher.expand_as(student), divergence, beta=beta, validate=False)

    if start is None:
        means = torch.arange(0.0, teacher.shape[0], 0.25) if means is None else means.float()
        widths = (torch.logspace(math.log10(0.5), math.log10(teacher.shape[0]), 160) if widths is None
                  else widths.float())
        grid_m, grid_w = torch.meshgrid(means, widths, indexing="ij")
        with torch.no_grad():
            values = objective(grid_m.flatten(), grid_w.flatten())
        best = int(values.argmin())
        mean0, width0, value0 = float(grid_m.flatten()[best]), float(grid_w.flatten()[best]), float(values[best])
    else:
        mean0, width0 = (float(v) for v in start)
        if not math.isfinite(mean0) or not math.isfinite(width0) or width0 <= 0:
            raise ValueError(f"start must be (mean, width) with finite values and width > 0, got {start!r}")
        value0 = math.inf
    mean = torch.tensor(mean0, requires_grad=True)
    log_width = torch.tensor(math.log(width0), requires_grad=True)
    optimizer = torch.optim.Adam([mean, log_width], lr=lr)
    for _ in range(steps):
        loss = objective(mean, log_width.exp())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        refined = float(objective(mean, log_width.exp()))
    if refined <= value0:
        mean0, width0, value0 = mean.item(), log_width.exp().item(), refined
    return GaussianFit(mean0, width0, value0, gaussian_logits(positions, mean0, width0))
