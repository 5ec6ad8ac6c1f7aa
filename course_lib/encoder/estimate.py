"""How long notebook 08's cached runs should take on a GPU, from their arithmetic: an estimate for a
profile that has not been run on one (the full profile's bert-base-uncased on SST-2), printed by the
notebook with its assumptions, until a measured time replaces it.

FLOPs: training costs ``6 x parameters x tokens`` (forward 2, backward 4), a forward ``2 x parameters x
tokens`` (Kaplan et al. 2020, section 2.1), counting the encoder layers' matmul parameters (the
embeddings are look-ups; the attention-score terms add ~1% at 64 tokens and are left out). Every run
of :func:`course_lib.encoder.experiment.student_runs` counts, with its epochs: the teacher's fine-tuning,
its outputs cached once, each student (the teacher's outputs cached, so no teacher forward there).
Time: the FLOPs at an assumed share (:data:`ASSUMED_UTILISATION`) of a GPU's published fp32 peak
(:data:`GPU_FP32_TFLOPS`: NVIDIA's data sheets). Not in an artifact's key: editing it rebuilds nothing.
"""
from __future__ import annotations

from ..profiles import EncoderSettings
from .experiment import student_runs

__all__ = ["GPU_FP32_TFLOPS", "ASSUMED_UTILISATION", "BERT_BASE", "layer_parameters", "run_flops", "gpu_minutes"]

GPU_FP32_TFLOPS = {"T4": 8.1, "L4": 30.3, "A100": 19.5}   # dense fp32 peak, NVIDIA data sheets
ASSUMED_UTILISATION = 0.35        # fp32 BERT fine-tuning at batch 32 x 64 tokens: an assumption, not measured
BERT_BASE = {"hidden": 768, "intermediate": 3072, "layers": 12}


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
    """Minutes for ``flops`` at ``utilisation`` of ``gpu``'s fp32 peak."""
    if gpu not in GPU_FP32_TFLOPS:
        raise ValueError(f"unknown GPU {gpu!r}; one of {sorted(GPU_FP32_TFLOPS)}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must lie in (0, 1], got {utilisation}")
    return flops / (GPU_FP32_TFLOPS[gpu] * 1e12 * utilisation) / 60
