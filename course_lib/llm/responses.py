"""Sequence-level KD's data: the teacher's greedy continuations of prompts, written and read as
JSON lines (see :mod:`course_lib.llm`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..modes import eval_mode
from .evaluation import _check_blocks

__all__ = ["teacher_continuations", "response_examples", "write_responses", "read_responses"]


# ----------------------------------------------------------------------- sequence-level KD
def teacher_continuations(teacher: nn.Module, prompts: torch.Tensor, max_new_tokens: int = 64, *,
                          batch_size: int = 16, eos_token_id: int | None = None,
                          progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's greedy continuations of equal-length ``prompts`` ``[N, P]`` (no padding needed):
    ``(responses [N, max_new_tokens], real [N, max_new_tokens] bool)``. ``real`` is True up to and
    including the first ``eos_token_id`` (the tokens ``generate`` adds after it are filler). Greedy
    decoding with the KV cache, in batches; the teacher's mode is restored afterwards.

    This is sequence-level KD's data (Kim & Rush 2016, arXiv:1606.07947): the student is then
    fine-tuned with plain cross-entropy on the teacher's outputs (:func:`response_examples`)."""
    from tqdm.auto import tqdm

    _check_blocks(prompts, None)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(teacher.parameters()).device
    pad = eos_token_id if eos_token_id is not None else 0
    outs = []
    with eval_mode(teacher):
        with torch.no_grad():
            for start in tqdm(range(0, len(prompts), batch_size), desc="teacher continuations", disable=not progress,
                              leave=False):
                ids = prompts[start:start + batch_size].to(device)
                full = teacher.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                        max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens
                                        if eos_token_id is None else None, eos_token_id=eos_token_id,
                                        pad_token_id=pad)
                new = full[:, ids.shape[1]:].cpu()
                outs.append(F.pad(new, (0, max_new_tokens - new.shape[1]), value=pad))
    responses = torch.cat(outs)
    real = torch.ones_like(responses, dtype=torch.bool)
    if eos_token_id is not None:
        is_eos = (responses == eos_token_id).long()
        real = (is_eos.cumsum(1) - is_eos) == 0                       # up to and including the first EOS
    return responses, real


def response_examples(prompts: torch.Tensor, responses: torch.Tensor,
                      real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [N, P + R], labels [N, P + R])`` for fine-tuning on the teacher's responses: the
    labels are the tokens themselves on the response's real tokens and ``-100`` on the prompt and
    after the response ended (the loss learns the teacher's answers, not the prompts). Labels are
    aligned with ``input_ids`` (shift them for a causal LM: ``llm.losses.shift_for_causal_lm``)."""
    if prompts.dim() != 2 or responses.dim() != 2 or prompts.shape[0] != responses.shape[0]:
        raise ValueError(f"prompts [N, P] and responses [N, R] must share N, got {tuple(prompts.shape)} and "
                         f"{tuple(responses.shape)}")
    real = torch.ones_like(responses, dtype=torch.bool) if real is None else real
    if real.shape != responses.shape:
        raise ValueError(f"real must have the responses' shape {tuple(responses.shape)}, got {tuple(real.shape)}")
    input_ids = torch.cat([prompts, responses], dim=1)
    labels = torch.cat([torch.full_like(prompts, -100), responses.masked_fill(~real, -100)], dim=1)
    return input_ids, labels


def write_responses(path: str | Path, tokenizer, prompts: torch.Tensor, responses: torch.Tensor,
                    real: torch.Tensor) -> Path:
    """The teacher's responses as JSONL, one object per prompt: ``prompt`` and ``response`` (text, for
    reading), ``prompt_ids`` and ``response_ids`` (the real tokens: text does not always re-tokenise
    to the same ids, so training reads the ids). Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for p, r, keep in zip(prompts.tolist(), responses.tolist(), real.tolist()):
            r = [t for t, k in zip(r, keep) if k]
            f.write(json.dumps({"prompt": tokenizer.decode(p), "response": tokenizer.decode(r),
                                "prompt_ids": p, "response_ids": r}) + "\n")
    tmp.replace(path)
    return path


def read_responses(path: str | Path, pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(prompts, responses, real)`` from :func:`write_responses`' JSONL (prompts of one length;
    responses padded with ``pad_token_id`` to the longest, ``real`` marking their real tokens)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no responses")
    if len({len(r["prompt_ids"]) for r in rows}) != 1:
        raise ValueError(f"{path}: prompts of different lengths; expected one length")
    width = max(len(r["response_ids"]) for r in rows)
    responses = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        responses[i, :len(r["response_ids"])] = torch.tensor(r["response_ids"], dtype=torch.long)
        real[i, :len(r["response_ids"])] = True
    return torch.tensor([r["prompt_ids"] for r in rows], dtype=torch.long), responses, real
