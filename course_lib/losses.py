"""Distillation losses.

Notation: ``z_s`` student logits, ``z_t`` teacher logits, ``T`` the temperature,
``p^T = softmax(z / T)``.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531)::

    L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, softmax(z_s))

**Which KL is it?** ``nn.KLDivLoss(reduction="batchmean")(log_softmax(z_s / T), softmax(z_t / T))``
computes ``sum p_t (log p_t - log p_s) = KL(teacher || student)`` averaged over the examples - the
*forward* KL, mass-covering: the student is pushed to put probability wherever the teacher does.
(With the default ``reduction="mean"``, ``nn.KLDivLoss`` divides the sum by ``B * C``, not ``B``.)
Many write-ups (including the article this course corrects) label it KL(student || teacher); that is
the *reverse*, mode-seeking KL, available here as ``direction="reverse"``.

The ``T^2`` factor: the gradient of the soft term w.r.t. the student logits is
``(p_s^T - p_t^T) / T``; when ``T`` is large compared with the (zero-mean) logits it tends to
``(z_s - z_t) / (C T^2)`` (Hinton 2015, eq. 4), so soft gradients scale as ``1/T^2``. Multiplying
by ``T^2`` keeps the soft term's gradient contribution, relative to the hard-label term, roughly
unchanged as ``T`` changes (Hinton 2015, sec. 2).

``kd_loss`` is the readable core; ``check_kd_inputs`` holds its input checks, which read tensor
values and so wait for the GPU. Training loops validate once, then call
``kd_loss(..., validate=False, use_kl=..., use_smoothing=...)``, which never synchronises.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import (check_choice, check_fraction, check_logits, check_mask, check_probabilities, check_same_shape,
                         check_targets, check_temperature, check_weight)

DIRECTIONS = ("forward", "reverse")
REDUCTIONS = ("mean", "sum", "none")


def softmax_with_temperature(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``softmax(logits / T)`` over the last dimension (``T`` broadcast over the leading ones)."""
    check_logits("logits", logits)
    check_temperature(temperature)
    return F.softmax(logits / _as_column(temperature, logits), dim=-1)


def entropy(probs: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Shannon entropy in nats, ``-sum p log p`` over the last dimension (``0 log 0 = 0``).

    ``probs``: probability distributions (``>= 0``, each summing to 1), e.g. ``softmax(logits)``;
    anything else is an error (logits or unnormalised scores would give a meaningless number)."""
    check_probabilities("probs", probs)
    check_weight("eps", eps, high=1.0, allow_tensor=False, meaning="the floor the probabilities are clamped to")
    logp = torch.log(probs.clamp_min(eps)) if eps else torch.log(probs)
    return -(torch.where(probs > 0, probs * logp, torch.zeros_like(probs))).sum(-1)


def _as_column(temperature, logits: torch.Tensor) -> torch.Tensor | float:
    """Let a per-row (or per-model) temperature broadcast against ``logits`` [..., C]."""
    if torch.is_tensor(temperature) and temperature.dim() > 0:
        return temperature.to(logits).unsqueeze(-1)
    return float(temperature)


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float | torch.Tensor = 1.0, direction: str = "forward", *,
                   validate: bool = True) -> torch.Tensor:
    """Per-example KL between tempered distributions, shape ``logits.shape[:-1]``.

    ``direction="forward"``: KL(teacher || student) = sum p_t (log p_t - log p_s)  (Hinton's loss).
    ``direction="reverse"``: KL(student || teacher) = sum p_s (log p_s - log p_t).
    ``validate=False`` skips the checks that read values (NaN, temperature), which wait for a GPU:
    for training loops whose inputs are already checked.
    """
    check_choice("direction", direction, DIRECTIONS)
    if validate:
        check_logits("student_logits", student_logits)
        check_logits("teacher_logits", teacher_logits)
        check_same_shape(("student_logits", student_logits), ("teacher_logits", teacher_logits),
                         what="one distribution of the teacher per distribution of the student")
        check_temperature(temperature)
    t = _as_column(temperature, student_logits)
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    if direction == "forward":
        return (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    return (log_ps.exp() * (log_ps - log_pt)).sum(-1)


def check_kd_inputs(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
                    temperature: float | torch.Tensor = 4.0, alpha: float | torch.Tensor = 0.9,
                    direction: str = "forward", reduction: str = "mean", label_smoothing: float | torch.Tensor = 0.0,
                    *, mask: torch.Tensor | None = None, ignore_index: int | None = -100,
                    use_kl: bool | None = None, use_smoothing: bool | None = None,
                    targets_name: str = "targets") -> tuple[bool, bool]:
    """Raise a clear error if ``kd_loss`` would get bad inputs; return ``(use_kl, use_smoothing)``.

    Takes ``kd_loss``'s arguments. It reads tensor values (NaN checks, target ranges, whether ``alpha``
    or ``label_smoothing`` is zero everywhere), so on a GPU it waits for the device: call it once (per
    batch, or once per training run for the fixed settings), then ``kd_loss(..., validate=False,
    use_kl=use_kl, use_smoothing=use_smoothing)``, which never synchronises.

    ``use_kl`` is False iff ``alpha == 0`` everywhere (the KL would be multiplied by 0, so it is not
    computed); ``use_smoothing`` is False iff there are no targets or ``label_smoothing == 0``
    everywhere. Both depend only on ``alpha`` and ``label_smoothing``; passing ``False`` for a term
    whose weight is not zero everywhere is an error. ``targets_name``: what errors call the targets
    (``"labels"`` for the callers whose argument has that name).
    """
    check_logits("student_logits", student_logits, allow_empty=True)
    check_logits("teacher_logits", teacher_logits, allow_empty=True)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
                         f"vs {tuple(teacher_logits.shape)} (same batch and number of classes needed)")
    positions, n_classes = student_logits.shape[:-1], student_logits.shape[-1]
    check_choice("direction", direction, DIRECTIONS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_temperature(temperature)
    a, eps = torch.as_tensor(alpha), torch.as_tensor(label_smoothing)
    check_fraction("alpha", alpha, meaning="the weight of the distillation term")
    check_fraction("label_smoothing", label_smoothing)
    counted = None
    if mask is not None:
        check_mask("mask", mask, positions, what="the logits without the class dimension")
        counted = mask.bool()
    if targets is None:
        if not bool((a == 1).all()):
            raise ValueError(f"{targets_name} are required unless alpha == 1")
    else:
        check_targets(targets_name, targets, classes=n_classes, shape=positions, ignore_index=ignore_index,
                      counted=counted)
    if student_logits.numel() == 0:
        raise ValueError(f"student_logits is empty (shape {tuple(student_logits.shape)}): no position to average "
                         f"over, the mean would be 0/0 = NaN. Skip empty batches, or pass validate=False to get "
                         f"a loss of 0 with zero gradient")
    needs_kl, needs_smoothing = bool((a != 0).any()), targets is not None and bool((eps != 0).any())
    if use_kl is False and needs_kl:
        raise ValueError(f"use_kl=False but alpha is not zero everywhere ({alpha})")
    if use_smoothing is False and needs_smoothing:
        raise ValueError(f"use_smoothing=False but label_smoothing is not zero everywhere ({label_smoothing})")
    return needs_kl if use_kl is None else use_kl, needs_smoothing if use_smoothing is None else use_smoothing


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
            temperature: float | torch.Tensor = 4.0, alpha: float | torch.Tensor = 0.9,
            direction: str = "forward", reduction: str = "mean", return_parts: bool = False,
            label_smoothing: float | torch.Tensor = 0.0, *, mask: torch.Tensor | None = None,
            ignore_index: int | None = -100, validate: bool = True,
            use_kl: bool | None = None, use_smoothing: bool | None = None):
    """Hinton's knowledge-distillation loss, per position::

        loss = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, softmax(z_s))

    ``direction="reverse"`` uses KL(p_s^T || p_t^T). ``label_smoothing=eps`` makes the CE term
    ``(1 - eps) * CE + eps * mean_k(-log p_s[k])``, as ``nn.CrossEntropyLoss(label_smoothing=eps)``.
    The teacher is detached: no gradient ever reaches it.

    Shapes: logits ``[..., C]`` (e.g. ``[B, C]``, ``[B, L, C]`` tokens, ``[N, B, C]`` stacked models),
    ``targets`` ``[...]`` class indices or ``None`` (only with ``alpha == 1``). ``temperature``,
    ``alpha`` and ``label_smoothing`` are floats or tensors broadcasting against ``[...]``
    (e.g. ``[N, 1]``: one value per stacked model).

    A position counts iff ``mask`` (``[...]``, bool or 0/1; e.g. an attention mask) is true there
    AND its target is not ``ignore_index`` (``None``: no target is ignored). Other positions add
    nothing to either term and get no gradient. ``reduction``: ``"mean"`` over counted positions
    (0 if none counts), ``"sum"``, or ``"none"`` (per position, exactly 0 where not counted).
    ``return_parts=True`` also returns ``{"kl": ..., "ce": ...}``, reduced alike, KL without ``T^2``.

    ``validate=False`` skips ``check_kd_inputs`` and never waits for the GPU; ``use_kl=False`` /
    ``use_smoothing=False`` skip a term whose weight is 0 everywhere (``None``: decided by the checks,
    or, without them, from a float weight; a tensor weight then counts as non-zero).
    """
    if validate:
        use_kl, use_smoothing = check_kd_inputs(student_logits, teacher_logits, targets, temperature, alpha,
                                                direction, reduction, label_smoothing, mask=mask,
                                                ignore_index=ignore_index, use_kl=use_kl, use_smoothing=use_smoothing)
    keep = _counted(targets, mask, ignore_index, may_sync=validate)   # None: every position counts
    if targets is None:
        ce = student_logits.new_zeros(student_logits.shape[:-1])
    else:
        logp = F.log_softmax(student_logits, dim=-1)
        y = targets if keep is None else targets.masked_fill(~keep, 0)   # any valid index where not counted
        ce = -logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
        if _needed(label_smoothing, use_smoothing):
            e = label_smoothing.to(ce) if torch.is_tensor(label_smoothing) else float(label_smoothing)
            ce = (1 - e) * ce - e * logp.mean(-1)
    if _needed(alpha, use_kl):
        kl = soft_target_kl(student_logits, teacher_logits.detach(), temperature, direction, validate=False)
    else:
        kl = torch.zeros_like(ce)
    t = temperature if not torch.is_tensor(temperature) else temperature.to(kl)
    a = alpha if not torch.is_tensor(alpha) else alpha.to(kl)
    loss = a * t * t * kl + (1 - a) * ce
    loss, kl, ce = (_reduce(v, keep, reduction) for v in (loss, kl, ce))
    return (loss, {"kl": kl, "ce": ce}) if return_parts else loss


def _needed(weight, flag: bool | None) -> bool:
    """Whether a term with this weight must be computed: ``flag`` if given, else ``weight != 0`` for
    a Python number; a tensor counts as non-zero (looking inside it would wait for the GPU)."""
    if flag is not None:
        return flag
    return torch.is_tensor(weight) or weight != 0


def _counted(targets: torch.Tensor | None, mask: torch.Tensor | None, ignore_index: int | None,
             may_sync: bool) -> torch.Tensor | None:
    """Bool tensor of the positions that count (``mask`` and target != ``ignore_index``), or ``None``
    when all do. Without ``may_sync`` that is decided from the arguments alone, never from values."""
    keep = None if mask is None else mask.bool()
    if targets is not None and ignore_index is not None:
        keep = targets != ignore_index if keep is None else keep & (targets != ignore_index)
    if may_sync and keep is not None and bool(keep.all()):
        return None                  # the plain path: same operations as without any mask
    return keep


def _reduce(values: torch.Tensor, keep: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Per-position values -> ``reduction``, over the positions in ``keep`` (all when ``None``)."""
    if keep is not None:
        values = torch.where(keep, values, values.new_zeros(()))
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.mean() if keep is None else values.sum() / keep.sum().clamp_min(1)
