"""LLM distillation with ``transformers.Trainer`` (notebook 06): one class that scales out.

``DistillationTrainer`` is a ``Trainer`` whose ``compute_loss`` is the token-level KD loss of
:mod:`course_lib.llm.losses`; everything else (optimizer, scheduler, gradient accumulation,
logging, saving, and ``torchrun`` / ``accelerate`` launches with DDP, FSDP or DeepSpeed) is the
Trainer's own. ``scripts/distill_llm.py`` runs it from the command line::

    trainer = DistillationTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                                  train_dataset=TokenBlockDataset(blocks), divergence="forward_kl",
                                  temperature=2.0, alpha=0.5)
    trainer.train()

**The loss of one batch.** The student's logits at position ``i`` are scored against token
``i + 1`` (``shift_for_causal_lm``; the teacher's logits shift the same way). A shifted position
counts iff the token it reads and the token it predicts are both real (``attention_mask == 1``)
and its label is not ``ignore_index``. Per counted token the loss is
``alpha * T^2 * D(p_t^T, p_s^T) + (1 - alpha) * CE`` (``token_kd_loss``), or, from a cached top-k
teacher, the forward KL to the renormalised top-k (``topk_kd_loss``).

**Gradient accumulation and several processes** (the convention of ``transformers`` 5.x,
``Trainer.get_batch_samples`` / ``_get_num_items_in_batch`` / ``compute_loss`` / ``training_step``):
before an optimizer step the Trainer fetches the step's ``k`` micro-batches and counts their real
tokens once, ``num_items_in_batch``; with ``average_tokens_across_devices`` (default ``True``) the
count is summed over all processes. Each micro-batch's loss is then its SUM over real tokens divided
by that count (and multiplied by the number of processes, since DDP averages gradients over
processes), and ``training_step`` does not divide it by ``k`` again. The accumulated gradient is
therefore the gradient of the mean over every real token of the optimizer step, on every process:
``k`` micro-batches give the gradient of one big batch, however unevenly padded. A per-micro-batch
mean divided by ``k`` (what a naive ``compute_loss`` returns) weights a token of a short
micro-batch more than one of a long one.

The Trainer only counts tokens for models that accept loss keyword arguments, by its own rule
(``labels[..., 1:] != -100``, blind to ``attention_mask``), so this class counts them itself, by
the rule above (``get_batch_samples`` is overridden), for every model.

Evaluation (``model.eval()``) returns the plain mean over the batch's real tokens.

**The teacher** is frozen (``eval()``, ``requires_grad_(False)``), moved to ``args.device``, kept
out of the optimizer and of the saved checkpoints (only ``self.model``, the student, is saved).
Every process holds a full copy of it: fine for DDP, and for FSDP with a teacher that fits one
device; a DeepSpeed ZeRO-3 teacher that does not fit is not handled here (TRL prepares it with
``deepspeed.initialize``).

**Cached teacher.** Batches may carry ``teacher_topk_values`` / ``teacher_topk_indices``
``[B, S, k]`` (``llm.losses.topk_teacher_logits`` of the teacher's logits over the same ``S``
positions as ``input_ids``, unshifted): the trainer then distils from them with ``topk_kd_loss``
(any divergence: see ``llm.losses.topk_divergence``) and needs no teacher (``teacher=None``). When a
batch carries them, they are used even if a teacher was given.

**Logs.** Besides the Trainer's ``loss``, each log has ``kd`` (the divergence per real token, without
``alpha`` and ``T^2``; 0 when ``alpha == 0``, as it is then not computed) and ``ce`` (the
cross-entropy per real token at ``T = 1``), averaged over the real tokens of the logging interval
on all processes. With one process, ``loss == alpha * T^2 * kd + (1 - alpha) * ce``.
"""
from __future__ import annotations

from numbers import Real
from typing import Any

import torch
import transformers
from torch import nn
from torch.utils.data import Dataset

from ..trainers import TeacherStudentTrainer, check_teacher
from .losses import DIVERGENCES, shift_for_causal_lm, token_kd_loss, topk_kd_loss
from .teacher import output_vocab_size

__all__ = ["TOPK_KEYS", "DistillationTrainer", "TokenBlockDataset", "collate_token_blocks", "shifted_labels",
           "count_real_tokens"]

TOPK_KEYS = ("teacher_topk_values", "teacher_topk_indices")


# --------------------------------------------------------------------------- data

class TokenBlockDataset(Dataset):
    """Fixed-length token blocks ``[N, S]`` as Trainer items: ``{"input_ids": [S], ...}``.

    Optional: ``attention_mask`` ``[N, S]`` (1 = real token), ``labels`` ``[N, S]`` (aligned with
    ``input_ids``, ``-100`` where a token is not a target, e.g. a prompt; default: the real tokens),
    and the teacher's cached top-k ``teacher_topk_values`` / ``teacher_topk_indices`` ``[N, S, k]``
    (both or neither).
    """

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 teacher_topk_values: torch.Tensor | None = None, teacher_topk_indices: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None):
        if not torch.is_tensor(input_ids) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            shape = tuple(input_ids.shape) if torch.is_tensor(input_ids) else type(input_ids).__name__
            raise ValueError(f"input_ids must be an integer tensor [N, S] of token blocks, got {shape}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} differs from input_ids "
                             f"{tuple(input_ids.shape)}")
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels {tuple(labels.shape)} differ from input_ids {tuple(input_ids.shape)}")
        if (teacher_topk_values is None) != (teacher_topk_indices is None):
            raise ValueError(f"give both {TOPK_KEYS[0]} and {TOPK_KEYS[1]}, or neither")
        if teacher_topk_values is not None:
            for name, t in zip(TOPK_KEYS, (teacher_topk_values, teacher_topk_indices)):
                if t.dim() != 3 or t.shape[:2] != input_ids.shape:
                    raise ValueError(f"{name} must be [N, S, k] with [N, S] = {tuple(input_ids.shape)}, "
                                     f"got {tuple(t.shape)}")
        self.tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                        TOPK_KEYS[0]: teacher_topk_values, TOPK_KEYS[1]: teacher_topk_indices}
        self.tensors = {k: v for k, v in self.tensors.items() if v is not None}

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def collate_token_blocks(features: list[dict[str, torch.Tensor]], *, ignore_index: int = -100) -> dict:
    """Stack equal-length items into a batch, adding what the trainer reads when missing:
    ``attention_mask`` (all ones) and ``labels`` (``input_ids`` with ``ignore_index`` where
    ``attention_mask == 0``). No padding is done: items must already have the same length."""
    if not features:
        raise ValueError("cannot collate an empty list of items")
    batch = {k: torch.stack([torch.as_tensor(f[k]) for f in features]) for k in features[0]}
    ids = batch["input_ids"].long()
    batch["input_ids"] = ids
    if "attention_mask" not in batch:
        batch["attention_mask"] = torch.ones_like(ids)
    if "labels" not in batch:
        batch["labels"] = ids.masked_fill(batch["attention_mask"] == 0, ignore_index)
    return batch


def shifted_labels(batch: dict, *, ignore_index: int = -100) -> torch.Tensor:
    """The labels ``[B, S - 1]`` the loss scores, by ``shift_for_causal_lm``'s rule: ``labels`` (else
    ``input_ids``) shifted by one, ``ignore_index`` where the read or predicted token is padding."""
    labels = batch.get("labels")
    if labels is None:
        labels = batch["input_ids"]
    empty = labels.new_empty(*labels.shape, 0)        # no logits needed: only the labels are shifted
    return shift_for_causal_lm(empty, labels, batch.get("attention_mask"), ignore_index=ignore_index)[1]


def count_real_tokens(batch: dict, *, ignore_index: int = -100) -> torch.Tensor:
    """Number of positions the loss averages over (a 0-dim int64 tensor)."""
    return (shifted_labels(batch, ignore_index=ignore_index) != ignore_index).sum()


# --------------------------------------------------------------------------- the trainer

class DistillationTrainer(TeacherStudentTrainer):
    """A ``transformers.Trainer`` that distils ``teacher`` into ``model`` token by token.

    Arguments beyond the Trainer's (all keyword-only): ``teacher`` (a causal LM sharing the
    student's tokenizer, or ``None`` when every batch carries cached top-k logits), ``divergence``
    (``"forward_kl"``, ``"reverse_kl"``, ``"jsd"``), ``beta`` (the JSD's mixture weight),
    ``temperature``, ``alpha`` (weight of the KD term; ``1 - alpha`` goes to the CE),
    ``vocab_size`` (trim both vocabularies to it, for output matrices padded beyond the tokenizer),
    ``ignore_index``. ``data_collator`` defaults to :func:`collate_token_blocks`. The teacher's
    handling, the loss normalisation and the logged parts are :class:`course_lib.trainers.TeacherStudentTrainer`'s
    (the items are the real tokens); see the module docstring.
    """

    teacher_columns = TOPK_KEYS
    part_names = ("kd", "ce")

    def __init__(self, model: nn.Module | None = None, args: transformers.TrainingArguments | None = None, *,
                 teacher: nn.Module | None = None, divergence: str = "forward_kl", beta: float = 0.5,
                 temperature: float = 1.0, alpha: float = 1.0, vocab_size: int | None = None,
                 ignore_index: int = -100, **kwargs: Any):
        if model is None:
            raise ValueError("DistillationTrainer needs the student as model=")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        for name, value in (("temperature", temperature), ("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if teacher is not None:
            check_teacher(teacher, model, "a torch.nn.Module (a causal LM)")
            t_rows, s_rows = output_vocab_size(teacher), output_vocab_size(model)
            if vocab_size is None and t_rows != s_rows:
                raise ValueError(
                    f"teacher and student vocabularies differ: the teacher ({type(teacher).__name__}) has {t_rows} "
                    f"output rows, the student ({type(model).__name__}) {s_rows}. If both use the same tokenizer and "
                    f"one output matrix is padded beyond it, pass vocab_size=len(tokenizer) to trim both; models with "
                    f"different tokenizers cannot be distilled token by token")
        kwargs.setdefault("data_collator", collate_token_blocks)
        super().__init__(model=model, args=args, teacher=teacher, **kwargs)
        self.divergence, self.beta, self.temperature, self.alpha = divergence, beta, temperature, alpha
        self.vocab_size, self.ignore_index = vocab_size, ignore_index
        self._validated = False                  # the loss checks its inputs' values until one batch passed

    def count_items(self, batch: dict) -> torch.Tensor:
        """The batch's real tokens, by this loss's rule (:func:`count_real_tokens`)."""
        return count_real_tokens(batch, ignore_index=self.ignore_index)

    # ---------------------------------------------------------------- the loss

    def _teacher_logits(self, model_inputs: dict) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(**model_inputs).logits

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """The KD loss of this batch: its mean over real tokens, weighted for the optimizer step by
        :meth:`~course_lib.trainers.TeacherStudentTrainer.normalise` (training), or the mean itself
        (``num_items_in_batch`` None, or ``model.eval()``)."""
        inputs = dict(inputs)
        labels = shifted_labels(inputs, ignore_index=self.ignore_index)
        inputs.pop("labels", None)
        cached = self.pop_teacher_columns(inputs)
        if (cached[0] is None) != (cached[1] is None):
            raise ValueError(f"the batch has only one of {TOPK_KEYS}: give both, or neither")
        if cached[0] is None and self.teacher is None:
            raise ValueError(f"no teacher: pass teacher= to DistillationTrainer, or put the teacher's cached top-k "
                             f"logits in every batch as {TOPK_KEYS[0]!r} and {TOPK_KEYS[1]!r}")
        model_inputs = {"use_cache": False, **inputs}
        outputs = model(**model_inputs)
        student = outputs.logits[:, :-1]
        count = (labels != self.ignore_index).sum()
        validate = not self._validated and bool(count)     # reads a value only until the first batch passed
        common = dict(temperature=self.temperature, alpha=self.alpha, ignore_index=self.ignore_index,
                      vocab_size=self.vocab_size, reduction="sum", return_parts=True, validate=validate)
        if cached[0] is not None:
            values, indices = (c[:, :-1] for c in cached)
            loss, parts = topk_kd_loss(student, values, indices, labels, divergence=self.divergence, beta=self.beta,
                                       **common)
        else:
            teacher = self._teacher_logits(model_inputs)[:, :-1]
            loss, parts = token_kd_loss(student, teacher, labels, divergence=self.divergence, beta=self.beta,
                                        **common)
        self._validated = self._validated or validate
        tokens = count.clamp_min(1)
        if model.training:
            self.record_parts([parts["divergence"] / tokens, parts["ce"] / tokens], count)
        loss = self.normalise(loss / tokens, count, num_items_in_batch, model)
        return (loss, outputs) if return_outputs else loss
