"""Perplexity and top-1 agreement of next-token predictions (see :mod:`course_lib.llm`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..modes import eval_mode
from .losses import shift_for_causal_lm

__all__ = ["perplexity", "teacher_predictions", "top1_agreement"]


# --------------------------------------------------------------------------- evaluation

def _check_blocks(blocks: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    if not torch.is_tensor(blocks) or blocks.dim() != 2 or blocks.dtype.is_floating_point or blocks.shape[1] < 2:
        shape = tuple(blocks.shape) if torch.is_tensor(blocks) else type(blocks).__name__
        raise ValueError(f"blocks must be an integer tensor [N, S] with S >= 2, got {shape}")
    if attention_mask is not None and (not torch.is_tensor(attention_mask) or attention_mask.shape != blocks.shape):
        shape = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have the blocks' shape {tuple(blocks.shape)}, got {shape}")


def _batched_logits(model: nn.Module, blocks: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int,
                    progress: bool, desc: str):
    """``(logits [b, S, V] float32, ids, mask)`` per batch, under ``no_grad`` in eval mode (restored after)."""
    from tqdm.auto import tqdm

    _check_blocks(blocks, attention_mask)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = next(model.parameters()).device
    with eval_mode(model):
        with torch.no_grad():
            for start in tqdm(range(0, len(blocks), batch_size), desc=desc, disable=not progress, leave=False):
                ids = blocks[start:start + batch_size].to(device)
                mask = None if attention_mask is None else attention_mask[start:start + batch_size].to(device)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                yield logits.float(), ids, mask


def perplexity(model: nn.Module, blocks: torch.Tensor, *, batch_size: int = 8,
               attention_mask: torch.Tensor | None = None, progress: bool = True) -> float:
    """``exp(mean next-token NLL)`` of a causal LM on token ``blocks`` ``[N, S]``.

    The mean is over the predictions of real tokens (module docstring): ``S - 1`` per full block;
    with ``attention_mask`` (1 real, 0 padding) a prediction counts iff the token it reads and the
    token it predicts are both real.
    """
    total, count = 0.0, 0
    for logits, ids, mask in _batched_logits(model, blocks, attention_mask, batch_size, progress, "perplexity"):
        logits, labels = shift_for_causal_lm(logits, ids, mask)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        count += int((labels != -100).sum())
    if count == 0:
        raise ValueError("no real token to predict: every block is shorter than two real tokens")
    return math.exp(total / count)


def _argmax(logits: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    if vocab_size is not None:
        if vocab_size > logits.shape[-1]:
            raise ValueError(f"vocab_size={vocab_size} is larger than the model's {logits.shape[-1]} output rows")
        logits = logits[..., :vocab_size]
    return logits.argmax(-1)


def teacher_predictions(teacher: nn.Module, blocks: torch.Tensor, *, batch_size: int = 8,
                        attention_mask: torch.Tensor | None = None, vocab_size: int | None = None,
                        progress: bool = True) -> torch.Tensor:
    """The teacher's most likely next token at every position, ``[N, S]`` int64 on the CPU: compute
    it once and pass it to :func:`top1_agreement` for every student. ``vocab_size`` trims padded
    output rows before the argmax (:func:`shared_vocab_size`)."""
    return torch.cat([_argmax(logits, vocab_size).cpu() for logits, _, _ in
                      _batched_logits(teacher, blocks, attention_mask, batch_size, progress, "teacher predictions")])


def top1_agreement(student: nn.Module, teacher: nn.Module | torch.Tensor, blocks: torch.Tensor, *,
                   batch_size: int = 8, attention_mask: torch.Tensor | None = None, vocab_size: int | None = None,
                   progress: bool = True) -> float:
    """Percentage of next-token positions where the student's most likely token is the teacher's.

    ``teacher``: the teacher model, or its :func:`teacher_predictions` for these ``blocks``. The
    positions are those :func:`perplexity` scores (``S - 1`` per full block; with ``attention_mask``,
    a position counts iff it reads a real token and the next token is real). ``vocab_size`` trims
    padded output rows of the student (and of a teacher model) before the argmax.
    """
    if isinstance(teacher, nn.Module):
        teacher = teacher_predictions(teacher, blocks, batch_size=batch_size, attention_mask=attention_mask,
                                      vocab_size=vocab_size, progress=progress)
    if not torch.is_tensor(teacher) or teacher.shape != blocks.shape:
        shape = tuple(teacher.shape) if torch.is_tensor(teacher) else type(teacher).__name__
        raise ValueError(f"teacher must be a model or its predictions for these blocks {tuple(blocks.shape)}, "
                         f"got {shape}")
    agree, count, start = 0, 0, 0
    for logits, ids, mask in _batched_logits(student, blocks, attention_mask, batch_size, progress, "top-1 agreement"):
        reference = teacher[start:start + len(ids)].to(ids.device)
        start += len(ids)
        _, labels = shift_for_causal_lm(logits, ids, mask)            # -100 where a position does not count
        keep = labels != -100
        same = _argmax(logits[:, :-1], vocab_size) == reference[:, :-1]
        agree += int((same & keep).sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no position to compare: every block is shorter than two real tokens")
    return 100.0 * agree / count


