"""How long notebook 08's cached runs should take on a GPU, from their arithmetic: an estimate for a
profile that has not been run on one (the full profile's bert-base-uncased on SST-2), printed by the
notebook with its assumptions, until a measured time replaces it.

FLOPs: training costs ``6 x parameters x tokens`` (forward 2, backward 4), a forward ``2 x parameters x
tokens`` (Kaplan et al. 2020, section 2.1), counting the encoder layers' matmul parameters (the
embeddings are look-ups; the attention-score terms add ~1% at 64 tokens and are left out). Every run
of :func:`course_lib.encoder.experiment.student_runs` counts, with its epochs: the teacher's fine-tuning,
its outputs cached once, each student (the teacher's outputs cached, so no teacher forward there).
Time: :mod:`course_lib.estimate` (the FLOPs at an assumed share of a GPU's published fp32 peak, plus a
fixed cost per optimizer step). Not in an artifact's key: editing it rebuilds nothing.
"""
from __future__ import annotations

import math

from ..estimate import ASSUMED_UTILISATION, GPUS, Work, seconds, summary
from ..profiles import EncoderSettings, get_profile
from .experiment import student_runs

__all__ = ["GPU_FP32_TFLOPS", "ASSUMED_UTILISATION", "BERT_BASE", "SST2_VALIDATION", "layer_parameters",
           "run_flops", "gpu_minutes", "work", "full_profile_summary"]

GPU_FP32_TFLOPS = {name: spec["fp32_tflops"] for name, spec in GPUS.items()}
BERT_BASE = {"hidden": 768, "intermediate": 3072, "layers": 12}
SST2_VALIDATION = 872             # GLUE SST-2's validation sentences: the full profile's test set


def layer_parameters(hidden: int, intermediate: int) -> int:
    """The matmul parameters of one BERT encoder layer (Q, K, V, output; the feed-forward block),
    with their biases and the two LayerNorms."""
    return 4 * (hidden * hidden + hidden) + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden


def run_flops(settings: EncoderSettings, train_size: int, *, hidden: int, intermediate: int, teacher_layers: int,
              test_size: int = 0) -> float:
    """The FLOPs of every run of ``settings`` on ``train_size`` training texts (``test_size`` evaluated
    by each model), padded to ``settings.max_length`` tokens."""
    if train_size <= 0 or test_size < 0:
        raise ValueError(f"train_size must be > 0 and test_size >= 0, got {train_size}, {test_size}")
    per_layer = layer_parameters(hidden, intermediate)
    teacher, student = per_layer * teacher_layers, per_layer * len(settings.student_layers)
    tokens, test_tokens = train_size * settings.max_length, test_size * settings.max_length
    flops = settings.teacher_epochs * 6 * teacher * tokens + 2 * teacher * tokens + 2 * teacher * test_tokens
    for _, _, init, _ in student_runs(settings):
        epochs = settings.student_epochs if init == "copy" else settings.random_epochs
        flops += epochs * 6 * student * tokens + 2 * student * test_tokens
    return float(flops)


def gpu_minutes(flops: float, gpu: str = "T4", utilisation: float = ASSUMED_UTILISATION) -> float:
    """Minutes for ``flops`` at ``utilisation`` of ``gpu``'s fp32 peak (no per-step cost)."""
    return seconds([Work("flops", flops, 1, train=False)], gpu, utilisation) / 60


def work(settings: EncoderSettings, train_size: int, *, hidden: int, intermediate: int, teacher_layers: int,
         test_size: int = 0) -> list[Work]:
    """Notebook 08's cached runs as :class:`course_lib.estimate.Work`: their FLOPs (:func:`run_flops`)
    and their optimizer steps (the teacher's and every student's)."""
    per_epoch = math.ceil(train_size / settings.batch_size)
    steps = settings.teacher_epochs * per_epoch + sum(
        (settings.student_epochs if init == "copy" else settings.random_epochs) * per_epoch
        for _, _, init, _ in student_runs(settings))
    flops = run_flops(settings, train_size, hidden=hidden, intermediate=intermediate, teacher_layers=teacher_layers,
                      test_size=test_size)
    return [Work("teacher fine-tuning, its outputs, every student", flops, 1, train=False, steps=steps)]


def full_profile_summary(gpu: str = "T4") -> str:
    """What notebook 08 prints: the full profile's estimate on ``gpu`` (bert-base-uncased on SST-2)."""
    full = get_profile("full").encoder
    runs = work(full, full.train_reviews, test_size=SST2_VALIDATION, teacher_layers=BERT_BASE["layers"],
                hidden=BERT_BASE["hidden"], intermediate=BERT_BASE["intermediate"])
    return summary(runs, gpu) + "; its cached runs still train on the CPU"
