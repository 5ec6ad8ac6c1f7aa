"""Wall-clock measurements: best-of-k timing and the epoch cost of distillation.

Timings on a shared machine are only ever too slow, never too fast, so every figure here is the
best of several measurements. Nothing here is asserted in tests (wall-clock thresholds are flaky);
the figures are printed, recorded and compared. Notebook 02 times KD epochs with it; notebook 07
times inference latency with ``best_of``.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from .data import TensorData
from .engine import Execution, RunSpec, TrainConfig, fit


def best_of(fn: Callable[[], object], repeats: int = 5, warmup: int = 0) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn()`` (after ``warmup`` untimed calls)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_epochs(make_model: Callable[[], nn.Module], train: TensorData, config: TrainConfig,
                teacher: nn.Module, teacher_logits: torch.Tensor, epochs: int = 1,
                repeats: int = 6, execution: Execution | None = None) -> dict[str, float]:
    """Seconds per epoch of one model trained (a) alone, (b) with KD and a teacher forward every
    batch, (c) with KD from cached logits.

    (a) and (c), the pair whose ratio matters, are measured back to back ``repeats`` times, in
    alternating order (so that a drift of the machine's speed hits both alike); (b), several times
    slower, is measured twice. The best measurement of each is kept.
    """
    cfg = dataclasses.replace(config, epochs=epochs, eval_every=0)
    execution = dataclasses.replace(execution or Execution(), progress=False)
    variants = {
        "student_alone": dict(specs=[RunSpec("alone")]),
        "kd_teacher_forward": dict(specs=[RunSpec("kd", temperature=4, alpha=0.9)], teacher=teacher),
        "kd_cached_logits": dict(specs=[RunSpec("kd", temperature=4, alpha=0.9)], teacher_logits=teacher_logits),
    }
    best = {k: float("inf") for k in variants}
    for r in range(max(1, repeats)):
        pair = ["student_alone", "kd_cached_logits"]
        order = (pair if r % 2 == 0 else pair[::-1]) + (["kd_teacher_forward"] if r < 2 else [])
        for name in order:
            kwargs = variants[name]
            seconds = best_of(lambda kw=kwargs: fit(make_model, train=train, config=cfg, execution=execution, **kw),
                              repeats=1)
            best[name] = min(best[name], seconds / epochs)
    return best
