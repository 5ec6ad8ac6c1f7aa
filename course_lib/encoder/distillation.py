"""DistilBERT's triple loss and the Trainer that applies it (see :mod:`course_lib.encoder`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from ..losses import check_kd_inputs, soft_target_kl
from ..modes import eval_mode
from ..profiles import EncoderSettings
from ..trainers import TeacherStudentTrainer, check_teacher
from ..validation import check_mask, check_temperature, check_tensor, check_weight
from .reviews import EncodedReviews
from .students import _check_bert_classifier

__all__ = ["DEFAULT_WEIGHTS", "TEACHER_KEYS", "default_layer_map", "hidden_cosine_loss", "triple_loss",
           "EncoderDistillationTrainer", "teacher_outputs", "predict_labels", "evaluate_accuracy"]

DEFAULT_WEIGHTS = EncoderSettings.weights    # (kd, ce, cos): the quick profile's (notebook 08's artifact)
TEACHER_KEYS = ("teacher_logits", "teacher_hidden")


# --------------------------------------------------------------------------- the triple loss

def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """``{i: round(i * teacher_layers / student_layers)}`` for ``i = 1..student_layers``, in
    ``hidden_states`` indices (0 is the embeddings' output, ``i`` the output of layer ``i``): each
    student layer stands for ``teacher_layers / student_layers`` teacher layers and its output should
    resemble theirs; the last maps to the last. 3 of 6: ``{1: 2, 2: 4, 3: 6}``."""
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"need 0 < student_layers <= teacher_layers, got {student_layers} and {teacher_layers}")
    return {i: round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)}


def _as_list(hidden) -> list[torch.Tensor]:
    if torch.is_tensor(hidden):
        return [hidden] if hidden.dim() == 3 else list(hidden.unbind(1)) if hidden.dim() == 4 else [hidden]
    return list(hidden)


def hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask: torch.Tensor | None = None, *,
                       validate: bool = True) -> torch.Tensor:
    """The mean of ``1 - cos(h_s, h_t)`` over the real tokens (``attention_mask == 1``; all tokens
    without a mask) of every paired layer. With one pair, the last hidden states, it is DistilBERT's
    cosine loss (the reference ``CosineEmbeddingLoss`` with target 1 over the unmasked tokens); with
    several pairs, a multi-layer variant in the spirit of PKD and TinyBERT (which use other
    distances).

    ``student_hidden`` and ``teacher_hidden``: one ``[B, S, H]`` tensor each, or equally long
    sequences of them (the pairs), or ``[B, K, S, H]`` stacks. The teacher is detached. Padding
    tokens add nothing and get no gradient. In [0, 2]; 0 iff every pair points the same way.
    A mask without a real token gives 0 (the sum over no token, divided by max(count, 1)).
    ``validate=False`` skips the checks that read values (empty, NaN, a 0/1 mask).
    """
    students, teachers = _as_list(student_hidden), _as_list(teacher_hidden)
    if not students or len(students) != len(teachers):
        raise ValueError(f"need as many student as teacher hidden states (at least one), got {len(students)} "
                         f"and {len(teachers)}")
    total = None
    for k, (s, t) in enumerate(zip(students, teachers)):
        if not torch.is_tensor(s) or not torch.is_tensor(t) or s.dim() != 3 or s.shape != t.shape:
            shapes = [tuple(x.shape) if torch.is_tensor(x) else type(x).__name__ for x in (s, t)]
            raise ValueError(f"hidden-state pair {k}: expected two [B, S, H] tensors of one shape, got {shapes} "
                             f"(a student narrower than its teacher needs a projection first)")
        if validate:
            check_tensor(f"student_hidden[{k}]", s)
            check_tensor(f"teacher_hidden[{k}]", t)
        distance = 1 - F.cosine_similarity(s.float(), t.detach().float(), dim=-1)          # [B, S]
        if attention_mask is None:
            term = distance.mean()
        else:
            if not torch.is_tensor(attention_mask) or attention_mask.shape != distance.shape:
                got = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
                raise ValueError(f"attention_mask must be [B, S] = {tuple(distance.shape)}, got {got}")
            if validate:
                check_mask("attention_mask", attention_mask, distance.shape)
            keep = attention_mask.bool()
            term = torch.where(keep, distance, distance.new_zeros(())).sum() / keep.sum().clamp_min(1)
        total = term if total is None else total + term
    return total / len(students)


def _check_weights(weights) -> tuple[float, float, float]:
    try:
        kd, ce, cos = weights
    except (TypeError, ValueError):
        raise ValueError(f"weights must be three numbers (kd, ce, cos), got {weights!r}") from None
    for name, w in (("kd", kd), ("ce", ce), ("cos", cos)):
        check_weight(f"weight {name}", w, allow_tensor=False)
    if kd == ce == cos == 0:
        raise ValueError("all three weights are 0: nothing to train on")
    return float(kd), float(ce), float(cos)


def triple_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor | None,
                student_hidden=None, teacher_hidden=None, attention_mask: torch.Tensor | None = None, *,
                temperature: float = 2.0, weights: Sequence[float] = DEFAULT_WEIGHTS, validate: bool = True):
    """DistilBERT's triple loss for a classifier: ``(total, {"kl", "ce", "cos"})`` with

        total = w_kd * T^2 * kl + w_ce * ce + w_cos * cos,

    * ``kl``: the forward KL(p_t^T || p_s^T) of the tempered class distributions, averaged over the
      batch (``losses.soft_target_kl``; without ``T^2``). The ``T^2`` keeps its gradient's scale
      comparable to the CE's as ``T`` changes (Hinton et al. 2015).
    * ``ce``: cross-entropy of the student's logits (at ``T = 1``) and ``labels``, batch mean.
    * ``cos``: :func:`hidden_cosine_loss` of the paired hidden states over the real tokens of
      ``attention_mask``.

    ``weights = (w_kd, w_ce, w_cos)``, each >= 0 (default ``DEFAULT_WEIGHTS``, the quick profile's setting;
    DistilBERT used (5, 2, 1) with a masked-LM CE). A term whose weight is 0 is not computed (its
    inputs may be ``None``) and is reported as 0. Logits ``[B, C]``; labels ``[B]`` class indices;
    the teacher is detached. ``validate=False`` skips the value checks (NaN, label range), which wait
    for a GPU.
    """
    w_kd, w_ce, w_cos = _check_weights(weights)
    check_temperature(temperature, allow_tensor=False)
    if not torch.is_tensor(student_logits) or student_logits.dim() != 2:
        shape = tuple(student_logits.shape) if torch.is_tensor(student_logits) else type(student_logits).__name__
        raise ValueError(f"student_logits must be [B, C], got {shape}")
    if w_kd and teacher_logits is None:
        raise ValueError("teacher_logits are needed when the kd weight is > 0")
    if w_ce and labels is None:
        raise ValueError("labels are needed when the ce weight is > 0")
    if w_cos and (student_hidden is None or teacher_hidden is None):
        raise ValueError("student_hidden and teacher_hidden are needed when the cos weight is > 0")
    if validate:
        reference = teacher_logits if teacher_logits is not None else student_logits.detach()
        check_kd_inputs(student_logits, reference, labels if w_ce else None, temperature,
                        alpha=0.5 if w_ce else 1.0, ignore_index=None, targets_name="labels")
    zero = student_logits.new_zeros(())
    kl = soft_target_kl(student_logits, teacher_logits.detach(), temperature, validate=False).mean() if w_kd else zero
    ce = F.cross_entropy(student_logits, labels) if w_ce else zero
    cos = hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask, validate=validate) if w_cos else zero
    total = w_kd * temperature ** 2 * kl + w_ce * ce + w_cos * cos
    return total, {"kl": kl, "ce": ce, "cos": cos}


# --------------------------------------------------------------------------- the trainer

def _hidden_width(model: nn.Module) -> int:
    return int(model.config.hidden_size)


class EncoderDistillationTrainer(TeacherStudentTrainer):
    """A ``transformers.Trainer`` whose ``compute_loss`` is :func:`triple_loss`: the student ``model``
    learns from a frozen ``teacher``'s logits and hidden states, so mixed precision, gradient
    accumulation, logging and ``torchrun`` / ``accelerate`` launches are the Trainer's own::

        trainer = EncoderDistillationTrainer(model=layer_copy_student(teacher), teacher=teacher,
                                             args=TrainingArguments(...), train_dataset=encode_reviews(...),
                                             temperature=2.0, weights=(0.5, 0.5, 1.0))
        trainer.train()

    Arguments beyond the Trainer's (keyword-only): ``teacher`` (a ``BertForSequenceClassification``
    with the student's labels; ``None`` when the batches carry its cached outputs, or when the kd
    and cos weights are 0: plain fine-tuning on the labels through the same code), ``layer_map``
    (``{student hidden_states index: teacher hidden_states index}``, 0 = embeddings' output, ``i`` =
    output of layer ``i``; default :func:`default_layer_map`), ``temperature``, ``weights``
    (``(kd, ce, cos)``).

    **The teacher** is put in eval mode (no dropout) with ``requires_grad`` off, moved to
    ``args.device``, runs under ``torch.no_grad``, stays out of the optimizer and of the saved
    checkpoints. It must not share tensors with the student (copy it first).

    **Cached teacher.** A batch may carry ``teacher_logits`` ``[B, C]`` and, for the cos term,
    ``teacher_hidden`` ``[B, K, S, H]`` (the teacher's hidden states at ``layer_map``'s teacher
    indices, in the order of its sorted student indices: :func:`teacher_outputs` computes them);
    the teacher is then not run. Without dropout in the teacher, cached and live give the same loss.

    **Normalisation and logs** are :class:`course_lib.trainers.TeacherStudentTrainer`'s, the items
    being the examples: under gradient accumulation each micro-batch's mean is weighted by its share
    of the step's examples, so unequal micro-batches (the last one of an epoch) weigh per example (the
    ``cos`` term, a mean over a micro-batch's real tokens, is weighted by its examples too).
    Besides ``loss``, the logs have ``kl``, ``ce`` and ``cos`` (unweighted, ``kl`` without ``T^2``),
    averaged over the examples since the last log.
    """

    teacher_columns = TEACHER_KEYS
    part_names = ("kl", "ce", "cos")

    def __init__(self, model: nn.Module | None = None, args: transformers.TrainingArguments | None = None, *,
                 teacher: nn.Module | None = None, layer_map: Mapping[int, int] | None = None,
                 temperature: float = 2.0, weights: Sequence[float] = DEFAULT_WEIGHTS, **kwargs: Any):
        if model is None:
            raise ValueError("EncoderDistillationTrainer needs the student as model=")
        _check_bert_classifier(model, "the student (model=)")
        self.weights = _check_weights(weights)
        if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        s_layers = model.config.num_hidden_layers
        if teacher is not None:
            _check_bert_classifier(teacher, "teacher")
            check_teacher(teacher, model, "a BertForSequenceClassification")
            if teacher.config.num_labels != model.config.num_labels:
                raise ValueError(f"teacher has {teacher.config.num_labels} labels, the student "
                                 f"{model.config.num_labels}")
            if self.weights[2] and _hidden_width(teacher) != _hidden_width(model):
                raise ValueError(f"the cos term needs equal widths: student {_hidden_width(model)}, teacher "
                                 f"{_hidden_width(teacher)}; give weights=(kd, ce, 0) for a narrower student")
            t_layers = teacher.config.num_hidden_layers
        else:
            t_layers = None
        if layer_map is None:
            if self.weights[2] and t_layers is None:
                raise ValueError("without a teacher, give layer_map= for the cos term (it cannot be inferred)")
            layer_map = default_layer_map(s_layers, t_layers) if t_layers is not None else {}
        layer_map = {int(k): int(v) for k, v in layer_map.items()}
        if self.weights[2] and not layer_map:
            raise ValueError("the cos weight is > 0 but layer_map is empty")
        for s, t in layer_map.items():
            if not 0 <= s <= s_layers or (t_layers is not None and not 0 <= t <= t_layers):
                raise ValueError(f"layer_map {s} -> {t} is out of range: hidden_states indices are 0..{s_layers} "
                                 f"for the student and 0..{t_layers} for the teacher")
        self.layer_map = dict(sorted(layer_map.items()))
        self.temperature = float(temperature)
        kwargs.setdefault("data_collator", transformers.default_data_collator)
        super().__init__(model=model, args=args, teacher=teacher, **kwargs)

    def count_items(self, batch: dict) -> torch.Tensor:
        """The batch's examples."""
        return torch.tensor(len(batch["input_ids"]))

    def _teacher_targets(self, inputs: dict, cached_logits, cached_hidden):
        """``(teacher_logits, teacher_hidden list)`` from the batch's cache or from the frozen teacher."""
        w_kd, _, w_cos = self.weights
        need_logits, need_hidden = bool(w_kd) and cached_logits is None, bool(w_cos) and cached_hidden is None
        logits, hidden = cached_logits, None if cached_hidden is None else list(cached_hidden.unbind(1))
        if need_logits or need_hidden:
            if self.teacher is None:
                raise ValueError(f"no teacher: pass teacher= to EncoderDistillationTrainer, or put its cached outputs "
                                 f"in every batch as {TEACHER_KEYS} (teacher_outputs computes them)")
            if self.teacher.training:
                self.teacher.eval()
            with torch.no_grad():
                out = self.teacher(**inputs, output_hidden_states=need_hidden)
            logits = out.logits if logits is None else logits
            if need_hidden:
                hidden = [out.hidden_states[t] for t in self.layer_map.values()]
        if hidden is not None and len(hidden) != len(self.layer_map):
            raise ValueError(f"teacher_hidden holds {len(hidden)} layers but layer_map pairs {len(self.layer_map)}")
        return logits, hidden

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """:func:`triple_loss` of this batch (a mean over its examples); see the class docstring."""
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        cached_logits, cached_hidden = self.pop_teacher_columns(inputs)
        w_kd, w_ce, w_cos = self.weights
        outputs = model(**inputs, output_hidden_states=bool(w_cos))
        teacher_logits, teacher_hidden = self._teacher_targets(inputs, cached_logits, cached_hidden)
        student_hidden = [outputs.hidden_states[s] for s in self.layer_map] if w_cos else None
        loss, parts = triple_loss(outputs.logits, teacher_logits, labels, student_hidden, teacher_hidden,
                                  inputs.get("attention_mask"), temperature=self.temperature, weights=self.weights)
        examples = self.count_items(inputs)
        if model.training:
            self.record_parts([parts[k] for k in self.part_names], examples)
        loss = self.normalise(loss, examples, num_items_in_batch, model)
        if return_outputs:
            return loss, transformers.modeling_outputs.SequenceClassifierOutput(loss=loss, logits=outputs.logits)
        return loss


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, dataset: EncodedReviews, layer_map: Mapping[int, int] | None = None, *,
                    batch_size: int = 64, dtype: torch.dtype = torch.float32) -> EncodedReviews:
    """``dataset`` with the teacher's cached outputs added: ``teacher_logits`` ``[N, C]`` (float32) and,
    with a ``layer_map``, ``teacher_hidden`` ``[N, K, S, H]`` in ``dtype`` (the teacher's hidden states at
    the map's teacher indices, ordered by student index, as :class:`EncoderDistillationTrainer` reads
    them). Eval mode (no dropout), restored afterwards; on the teacher's device, stored on the CPU.
    Memory: 4000 reviews x 3 layers x 48 tokens x 384 x 4 bytes = 1.2 GB in float32 (half in float16)."""
    targets = [] if layer_map is None else [int(v) for _, v in sorted(layer_map.items())]
    device = next(teacher.parameters()).device
    logits, hidden = [], []
    with eval_mode(teacher):
        for start in range(0, len(dataset), batch_size):
            batch = {k: dataset.tensors[k][start:start + batch_size].to(device)
                     for k in ("input_ids", "attention_mask", "token_type_ids") if k in dataset.tensors}
            out = teacher(**batch, output_hidden_states=bool(targets))
            logits.append(out.logits.float().cpu())
            if targets:
                hidden.append(torch.stack([out.hidden_states[t] for t in targets], 1).to("cpu", dtype))
    extra = {"teacher_logits": torch.cat(logits)}
    if targets:
        extra["teacher_hidden"] = torch.cat(hidden)
    return dataset.with_tensors(**extra)


@torch.no_grad()
@torch.no_grad()
def predict_labels(model: nn.Module, dataset: EncodedReviews, *, batch_size: int = 64) -> torch.Tensor:
    """The predicted class of every review of ``dataset`` (``[n]`` int64; eval mode, restored after)."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(dataset), batch_size):
            batch = {k: dataset.tensors[k][start:start + batch_size].to(device)
                     for k in ("input_ids", "attention_mask", "token_type_ids") if k in dataset.tensors}
            out.append(model(**batch).logits.argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def evaluate_accuracy(model: nn.Module, dataset: EncodedReviews, *, batch_size: int = 64) -> float:
    """Top-1 accuracy in percent of a sequence classifier on ``dataset`` (eval mode, restored after)."""
    predicted = predict_labels(model, dataset, batch_size=batch_size)
    return 100.0 * float((predicted == dataset.tensors["labels"]).sum()) / len(dataset)


