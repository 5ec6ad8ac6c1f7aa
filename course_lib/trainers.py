"""One base for the course's teacher-student ``transformers.Trainer`` subclasses: the LLM's
(:class:`course_lib.llm.trainer.DistillationTrainer`, notebook 06) and the encoder's
(:class:`course_lib.encoder.distillation.EncoderDistillationTrainer`, notebook 08).

What they share lives here, written once:

* **The teacher.** Checked to be a module that shares no tensor with the student (freezing it would
  freeze them in the student too), put in eval mode (no dropout) with ``requires_grad`` off, moved to
  ``args.device``; it stays out of the optimizer and of the saved checkpoints. ``teacher=None`` is
  allowed when every batch carries the teacher's cached outputs.
* **Cached teacher columns.** The Trainer drops item keys the model's ``forward`` lacks; the columns
  named by ``teacher_columns`` are kept.
* **One loss normalisation.** A subclass's ``compute_loss`` computes, for each micro-batch, the
  loss *averaged over the items it counts* (``count_items``: real tokens for the LLM, examples for
  the encoder) and hands it to :meth:`TeacherStudentTrainer.normalise`. In training, the base
  rescales it to ``mean * items_here / items_in_the_optimizer_step``, where the step's items are
  summed over its gradient-accumulation micro-batches (and over processes when
  ``average_tokens_across_devices``), so every item weighs the same, whatever the micro-batches'
  sizes. With one micro-batch per step on one process the factor is exactly 1 and the loss is the
  plain mean. In evaluation the mean is returned as it is.
* **Loss parts in the logs.** ``record_parts`` sums each part (weighted by the items it averaged
  over) between two logs; ``log`` adds their per-item means under ``part_names``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
import transformers

__all__ = ["TeacherStudentTrainer", "check_teacher"]


def check_teacher(teacher: Any, student: nn.Module, what: str = "a torch.nn.Module") -> None:
    """Raise unless ``teacher`` is an ``nn.Module`` that shares no parameter tensor with ``student``."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be {what} or None, got {type(teacher).__name__}")
    shared = {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}
    if shared:
        raise ValueError(f"teacher and student share {len(shared)} parameter tensors: freezing the teacher "
                         f"would freeze them in the student too. Copy the teacher (copy.deepcopy) first")


class TeacherStudentTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose ``model`` (the student) learns from a frozen ``teacher``.

    Subclasses set ``teacher_columns`` (cached teacher outputs a batch may carry) and ``part_names``
    (the loss parts they log), implement ``count_items(batch)`` and ``compute_loss``, and return
    ``self.normalise(mean_loss, items, num_items_in_batch, model)`` from it. See the module
    docstring for the normalisation.
    """

    teacher_columns: tuple[str, ...] = ()
    part_names: tuple[str, ...] = ()

    def __init__(self, model: nn.Module | None = None, args: transformers.TrainingArguments | None = None, *,
                 teacher: nn.Module | None = None, **kwargs: Any):
        if model is None:
            raise ValueError(f"{type(self).__name__} needs the student as model=")
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False).to(self.args.device)
        self._parts: torch.Tensor | None = None          # [part sums..., items] since the last log

    # ---------------------------------------------------------------- data plumbing

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the cached teacher columns: the Trainer drops item keys the model's forward lacks."""
        super()._set_signature_columns_if_needed()
        self._signature_columns += [k for k in self.teacher_columns if k not in self._signature_columns]

    def count_items(self, batch: dict) -> torch.Tensor:
        """How many items this batch's loss averages over (a 0-dim integer tensor)."""
        raise NotImplementedError

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """The Trainer's micro-batches of one optimizer step, with ``num_items_in_batch`` = their items
        by ``count_items`` (summed over processes with ``average_tokens_across_devices``)."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, None
        count = sum(self.count_items(b) for b in batches).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return batches, count

    # ---------------------------------------------------------------- the loss

    def pop_teacher_columns(self, inputs: dict) -> list:
        """Remove the cached teacher columns from ``inputs`` (in ``teacher_columns`` order; None if absent)."""
        return [inputs.pop(k, None) for k in self.teacher_columns]

    def normalise(self, loss: torch.Tensor, items: torch.Tensor, num_items_in_batch: torch.Tensor | int | None,
                  model: nn.Module) -> torch.Tensor:
        """``loss`` (this micro-batch's mean over its ``items``) weighted for the optimizer step: in
        training ``loss * items / num_items_in_batch`` (times the number of processes when they
        average their gradients), else ``loss`` itself. Sets ``loss_is_scaled_for_ga`` accordingly."""
        if num_items_in_batch is not None and model.training:
            total = num_items_in_batch
            total = total.clamp_min(1) if torch.is_tensor(total) else max(total, 1)
            loss = loss * (items / total)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes   # DDP averages the gradients over processes
            self.loss_is_scaled_for_ga = True                  # training_step must not divide by k again
        else:
            self.loss_is_scaled_for_ga = False                 # a mean: training_step divides it by k
        return loss

    # ---------------------------------------------------------------- logs

    def record_parts(self, parts: Sequence[torch.Tensor], items: torch.Tensor) -> None:
        """Add this micro-batch's loss parts (each a mean over its ``items``) to the sums since the last log."""
        weight = items.detach().float()
        row = torch.stack([p.detach().float() * weight for p in parts] + [weight])
        self._parts = row if self._parts is None else self._parts + row

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the loss parts (per item, all processes) to the training-loss logs."""
        if "loss" in logs and self._parts is not None:
            parts = self._parts.to(self.args.device)
            if self.args.world_size > 1:
                parts = self.accelerator.reduce(parts, reduction="sum")
            *sums, items = parts.tolist()
            logs = {**logs, **{name: value / max(items, 1.0) for name, value in zip(self.part_names, sums)}}
            self._parts = None
        super().log(logs, start_time)
