"""Distillation losses.

Notation: ``z_s`` student logits, ``z_t`` teacher logits, ``T`` the temperature,
``p^T = softmax(z / T)``.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531)::

    L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, softmax(z_s))

**Which KL is it?** ``nn.KLDivLoss()(log_softmax(z_s / T), softmax(z_t / T))`` computes
``sum p_t (log p_t - log p_s) = KL(teacher || student)`` - the *forward* KL, mass-covering: the
student is pushed to put probability wherever the teacher does. Many write-ups (including the
article this course corrects) label it KL(student || teacher); that is the *reverse*, mode-seeking
KL, available here as ``direction="reverse"``.

The ``T^2`` factor: the gradient of the soft term w.r.t. the student logits is
``(p_s^T - p_t^T) / T``, which shrinks like ``1/T^2`` for large ``T`` (Hinton 2015, sec. 2.1);
multiplying by ``T^2`` keeps its scale comparable to the hard-label term as ``T`` changes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DIRECTIONS = ("forward", "reverse")


def _check_temperature(temperature) -> None:
    t = torch.as_tensor(temperature)
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")


def _check_logits(*named: tuple[str, torch.Tensor]) -> None:
    for name, z in named:
        if not torch.is_tensor(z) or not z.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if z.dim() < 1:
            raise ValueError(f"{name} must have a class dimension, got shape {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise ValueError(f"{name} contains NaN or infinite values")


def softmax_with_temperature(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``softmax(logits / T)`` over the last dimension (``T`` broadcast over the leading ones)."""
    _check_temperature(temperature)
    return F.softmax(logits / _as_column(temperature, logits), dim=-1)


def entropy(probs: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Shannon entropy in nats, ``-sum p log p`` over the last dimension (``0 log 0 = 0``)."""
    logp = torch.log(probs.clamp_min(eps)) if eps else torch.log(probs)
    return -(torch.where(probs > 0, probs * logp, torch.zeros_like(probs))).sum(-1)


def _as_column(temperature, logits: torch.Tensor) -> torch.Tensor | float:
    """Let a per-row (or per-model) temperature broadcast against ``logits`` [..., C]."""
    if torch.is_tensor(temperature) and temperature.dim() > 0:
        return temperature.to(logits).unsqueeze(-1)
    return float(temperature)


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float | torch.Tensor = 1.0, direction: str = "forward") -> torch.Tensor:
    """Per-example KL between tempered distributions, shape ``logits.shape[:-1]``.

    ``direction="forward"``: KL(teacher || student) = sum p_t (log p_t - log p_s)  (Hinton's loss).
    ``direction="reverse"``: KL(student || teacher) = sum p_s (log p_s - log p_t).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    t = _as_column(temperature, student_logits)
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    if direction == "forward":
        return (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    return (log_ps.exp() * (log_ps - log_pt)).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
            temperature: float | torch.Tensor = 4.0, alpha: float | torch.Tensor = 0.9,
            direction: str = "forward", reduction: str = "mean", return_parts: bool = False,
            label_smoothing: float | torch.Tensor = 0.0):
    """Hinton's knowledge-distillation loss.

    ``alpha * T^2 * KL + (1 - alpha) * CE(targets, student)``, with ``KL = KL(teacher || student)``
    at temperature ``T`` by default (``direction="reverse"`` for KL(student || teacher)).

    Shapes: logits ``[..., C]`` (e.g. ``[B, C]``, or ``[N, B, C]`` for N stacked models), targets
    ``[...]`` class indices. ``temperature`` and ``alpha`` are floats or tensors that broadcast
    against ``logits.shape[:-1]`` (e.g. shape ``[N, 1]`` for one value per stacked model).
    ``targets=None`` is allowed only with ``alpha == 1`` (pure soft-target distillation).
    The teacher's logits are detached: no gradient ever flows into the teacher (in mutual learning,
    each peer is a fixed target for the other at every step, as in Zhang et al. 2018).

    ``label_smoothing`` (float or broadcastable tensor, like ``alpha``) smooths the hard-label term
    as ``nn.CrossEntropyLoss(label_smoothing=eps)`` does: ``(1 - eps) * NLL + eps * mean_k(-log p_k)``.
    When ``alpha == 0`` everywhere the KL is not computed (it would be multiplied by 0).

    ``reduction``: ``"mean"`` over all examples, or ``"none"`` for per-example values.
    With ``return_parts=True`` returns ``(loss, {"kl": ..., "ce": ...})`` with the unweighted,
    identically reduced terms (``kl`` without the ``T^2`` factor).
    """
    _check_logits(("student_logits", student_logits), ("teacher_logits", teacher_logits))
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
                         f"vs {tuple(teacher_logits.shape)} (same batch and number of classes needed)")
    _check_temperature(temperature)
    a = torch.as_tensor(alpha)
    if not torch.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if targets is None:
        if not bool((a == 1).all()):
            raise ValueError("targets are required unless alpha == 1")
        ce = torch.zeros(student_logits.shape[:-1], dtype=student_logits.dtype, device=student_logits.device)
    else:
        if targets.shape != student_logits.shape[:-1]:
            raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits "
                             f"{tuple(student_logits.shape)} without the class dimension")
        eps = torch.as_tensor(label_smoothing)
        if not torch.isfinite(eps).all() or (eps < 0).any() or (eps > 1).any():
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
        logp = F.log_softmax(student_logits, dim=-1)
        ce = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        if bool((eps > 0).any()):
            e = label_smoothing.to(ce) if torch.is_tensor(label_smoothing) else float(label_smoothing)
            ce = (1 - e) * ce - e * logp.mean(-1)
    if bool((a > 0).any()):
        kl = soft_target_kl(student_logits, teacher_logits.detach(), temperature, direction)
    else:
        kl = torch.zeros_like(ce)
    t = temperature if not torch.is_tensor(temperature) else temperature.to(kl)
    a = alpha if not torch.is_tensor(alpha) else alpha.to(kl)
    loss = a * t * t * kl + (1 - a) * ce
    if reduction == "mean":
        loss, kl, ce = loss.mean(), kl.mean(), ce.mean()
    return (loss, {"kl": kl, "ce": ce}) if return_parts else loss
