"""How long a notebook's profile should take on a GPU, from its work: an *estimate* for a profile
that has not been run on one (the full profile on a Colab T4), printed by every notebook with its
assumptions until a measured time (``scripts/gpu_check.py``) replaces it.

**The work** of a notebook is a list of :class:`Work` items, each one call of the training engine
(or a forward pass over a data set), counted from the same profile settings the notebook reads:
the FLOPs of one forward pass of its model on one example (counted by
``torch.utils.flop_counter.FlopCounterMode`` on the real model, :func:`forward_flops`), the
examples, the epochs, the runs and whether they train (a training step costs three forward passes:
forward 1, backward 2; Kaplan et al. 2020, section 2.1) and how many optimizer steps it makes
(stacked runs share their steps: :mod:`course_lib.stacking`). :func:`vision_work` is the plan of
the image notebooks (01-05, 07); ``llm.estimate`` and ``encoder.estimate`` count notebooks 06 and 08.

**The time** of a plan on a GPU (:func:`seconds`): its FLOPs at an assumed share
(:data:`ASSUMED_UTILISATION`) of the GPU's published fp32 peak (:data:`GPUS`: NVIDIA's data sheets),
plus a fixed cost per optimizer step (:data:`STEP_SECONDS`: kernel launches, the optimizer, Python;
the course's small CNNs are bound by it, not by arithmetic), plus, for autoregressive decoding,
each decoding step at the larger of its weights streamed at the GPU's memory bandwidth and
:data:`DECODE_STEP_FLOOR_SECONDS` (a 30-layer ``transformers`` step launches hundreds of kernels).
Every constant is an assumption stated here, not a measurement of this course. Not in an
artifact's key: editing this module rebuilds nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .models import build_model
from .stacking import can_stack

__all__ = ["GPUS", "ASSUMED_UTILISATION", "STEP_SECONDS", "DECODE_STEP_FLOOR_SECONDS", "Work", "forward_flops",
           "seconds", "minutes", "vision_work", "DATASETS", "FULL_BUDGET_MINUTES", "summary",
           "full_profile_summary"]

# dense fp32 peak (TFLOP/s) and memory bandwidth (GB/s), NVIDIA data sheets
GPUS = {"T4": {"fp32_tflops": 8.1, "bandwidth_gbs": 320.0},
        "L4": {"fp32_tflops": 30.3, "bandwidth_gbs": 300.0},
        "A100": {"fp32_tflops": 19.5, "bandwidth_gbs": 1555.0}}
ASSUMED_UTILISATION = 0.35          # share of the fp32 peak a training step reaches: an assumption
STEP_SECONDS = 0.008                # fixed cost of one optimizer step of a (stacked) model: an assumption
DECODE_STEP_FLOOR_SECONDS = 0.02    # one transformers decoding step on a GPU, at least: an assumption
BANDWIDTH_UTILISATION = 0.6         # share of the memory bandwidth a decoding step reaches: an assumption
FULL_BUDGET_MINUTES = 30            # what the full profile of every notebook is sized for, on a T4
DATASETS = {"cifar100": {"shape": (3, 32, 32), "classes": 100, "test": 10_000},
            "fashion_mnist": {"shape": (1, 28, 28), "classes": 10, "test": 10_000}}


@dataclass(frozen=True)
class Work:
    """One piece of a notebook's work: ``runs`` models of ``forward_flops`` FLOPs per example, over
    ``examples`` examples for ``epochs`` epochs (training, or a forward pass only), making ``steps``
    optimizer steps in all; or ``decode_steps`` autoregressive steps of a model of ``weight_bytes``."""

    what: str
    forward_flops: float = 0.0
    examples: int = 0
    epochs: float = 1.0
    runs: int = 1
    train: bool = True
    steps: int = 0
    decode_steps: int = 0
    weight_bytes: float = 0.0

    @property
    def flops(self) -> float:
        return (3 if self.train else 1) * self.forward_flops * self.examples * self.epochs * self.runs


def _gpu(gpu: str) -> dict:
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; one of {sorted(GPUS)}")
    return GPUS[gpu]


def forward_flops(model: nn.Module, example_shape: tuple[int, ...], dtype=torch.float32) -> float:
    """FLOPs of one forward pass of ``model`` on one example of ``example_shape`` (a multiply-add
    counts 2), counted by ``FlopCounterMode`` in eval mode on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode
    if not example_shape or any(int(d) <= 0 for d in example_shape):
        raise ValueError(f"example_shape must be positive sizes, got {example_shape}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *example_shape, dtype=dtype))
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def seconds(work: list[Work], gpu: str = "T4", utilisation: float = ASSUMED_UTILISATION) -> float:
    """Seconds for ``work`` on ``gpu`` under the module's assumptions."""
    spec = _gpu(gpu)
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must lie in (0, 1], got {utilisation}")
    total = 0.0
    for w in work:
        total += w.flops / (spec["fp32_tflops"] * 1e12 * utilisation) + w.steps * STEP_SECONDS
        if w.decode_steps:
            stream = w.weight_bytes / (spec["bandwidth_gbs"] * 1e9 * BANDWIDTH_UTILISATION)
            total += w.decode_steps * max(stream, DECODE_STEP_FLOOR_SECONDS)
    return total


def minutes(work: list[Work], gpu: str = "T4", utilisation: float = ASSUMED_UTILISATION) -> float:
    return seconds(work, gpu, utilisation) / 60


def summary(work: list[Work], gpu: str = "T4") -> str:
    """One line for a notebook: the estimate and what it rests on."""
    spec = _gpu(gpu)
    flops = sum(w.flops for w in work)
    steps = sum(w.steps for w in work)
    decode = sum(w.decode_steps for w in work)
    parts = [f"{flops / 1e15:.2f} PFLOP at an assumed {ASSUMED_UTILISATION:.0%} of its {spec['fp32_tflops']} fp32 "
             f"TFLOPS", f"{steps:,} optimizer steps at an assumed {1000 * STEP_SECONDS:g} ms each"]
    if decode:
        parts.append(f"{decode:,} decoding steps at >= {1000 * DECODE_STEP_FLOOR_SECONDS:g} ms each")
    return (f"full profile on a Colab {gpu}: about {math.ceil(minutes(work, gpu))} minutes "
            f"(estimated, not measured: {'; '.join(parts)})")


def _steps(examples: int, batch_size: int, epochs: float) -> int:
    return math.ceil(examples / batch_size) * math.ceil(epochs)


def vision_work(profile, notebook: str) -> list[Work]:
    """The work of image notebook ``notebook`` ("01"-"05", "07") in ``profile``: every ``engine.fit``
    call and teacher training of the notebook source, from the settings it reads. The teachers count
    in every notebook that uses them: a fresh Colab session has none cached."""
    v = profile.vision
    if v.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {v.dataset!r}; one of {sorted(DATASETS)}")
    spec = DATASETS[v.dataset]
    shape, b = spec["shape"], v.batch_size
    test = v.test_size or spec["test"]
    data = type("Shape", (), {"x": torch.zeros(1, *shape), "num_classes": spec["classes"]})()
    models: dict[str, tuple[float, bool]] = {}

    def model(name, **kw):
        """(forward FLOPs, stackable) of a model of the notebook."""
        key = f"{name}{sorted(kw.items())}"
        if key not in models:
            pair = [build_model(name, data, **kw) for _ in range(2)]
            models[key] = forward_flops(pair[0], shape), can_stack(pair)
        return models[key]

    teacher, student = model("teacher")[0], model("student_cnn")
    students = v.student_train_size or v.train_size

    def fit(what, spec, examples, epochs, runs, eval_every=0, monitor=0, coupled=False):
        """One engine.fit call: stackable runs train in stacks of at most 6 (engine.Execution), coupled
        ones (mutual learning) as one module, others one by one."""
        f, stackable = spec
        groups = 1 if coupled else math.ceil(runs / 6) if stackable else runs
        evaluations = (math.ceil(epochs / eval_every) if eval_every else 0)
        return [Work(what, f, examples, epochs, runs, steps=_steps(examples, b, epochs) * groups),
                Work(f"{what}: evaluation", f, test + evaluations * monitor, 1, runs, train=False)]

    def teacher_work(epochs, what="teacher"):
        return [Work(what, teacher, v.train_size, epochs, steps=_steps(v.train_size, b, epochs)),
                Work(f"{what}: evaluation and cached logits", teacher, test + v.train_size, train=False)]

    if notebook == "01":
        return teacher_work(v.teacher_epochs)
    if notebook == "02":
        main = 3 * len(v.seeds) + len(v.ablation_temperatures) + len(v.ablation_alphas)
        short = max(1, v.student_epochs // 10)
        work = teacher_work(v.teacher_epochs)
        work += fit("alone, KD, label smoothing and the ablation", student, students, v.student_epochs, main,
                    10, min(v.monitor_size, test))
        work += fit("alone + augmentation", student, students, v.student_epochs, len(v.seeds), 10,
                    min(v.monitor_size, test))
        work += fit("short schedule", student, students, short, 2 * len(v.seeds))
        transfer = min(v.transfer_size, v.train_size - students)
        work += fit("KD + transfer set", student, students + transfer, v.transfer_epochs, len(v.seeds))
        for size in v.transfer_sweep:
            rows = students + min(size, v.train_size - students)
            work += fit(f"KD + {size:,} transfer images", student, rows,
                        max(1, round(v.student_epochs * students / rows)), 1)
        return work
    if notebook == "03":
        work = teacher_work(v.teacher_epochs)
        work += [Work("teacher features cached", teacher, students, train=False)]
        work += fit("alone + KD", student, students, v.feature_epochs, 2 * len(v.seeds))
        for method in ("hint", "AT", "RKD"):
            work += fit(f"KD + {method}", student, students, v.feature_epochs, len(v.seeds))
        return work
    if notebook == "04":
        vit, deit = model("vit", **v.deit_vit), model("deit", **v.deit_vit)
        rows = (v.deit_train_size or v.train_size) * v.deit_views
        work = teacher_work(v.teacher_epochs, "plain teacher") + teacher_work(v.aug_teacher_epochs,
                                                                              "augmentation-trained teacher")
        work += [Work("both teachers on the views", teacher, rows, runs=2, train=False)]
        every = max(1, v.deit_epochs // 10)
        work += fit("ViT alone", vit, rows, v.deit_epochs, len(v.seeds), every, min(v.monitor_size, test))
        work += fit("DeiT hard and soft", deit, rows, v.deit_epochs, 2 * len(v.seeds), every,
                    min(v.monitor_size, test))
        return work
    if notebook == "05":
        f = model(v.ban_student)
        n = len(v.seeds)
        work = teacher_work(v.teacher_epochs)
        work += fit("gen 1 + KD + trained apart", f, students, v.ban_epochs, n * (2 + v.ban_generations - 1))
        for g in range(2, v.ban_generations + 1):
            work += [Work(f"gen {g - 1} logits cached", f[0], students, runs=n, train=False)]
            work += fit(f"born-again generation {g}", f, students, v.ban_epochs, n)
        work += fit("mutual learning", f, students, v.ban_epochs, 2 * n, coupled=True)
        return work
    if notebook == "07":
        return teacher_work(v.teacher_epochs) + fit("distilled student and its control", student, students,
                                                    v.student_epochs, 2)
    raise ValueError(f"no image notebook {notebook!r}; one of 01, 02, 03, 04, 05, 07")


def full_profile_summary(notebook: str, gpu: str = "T4") -> str:
    """What image notebook ``notebook`` prints: the full profile's estimate on ``gpu``."""
    from .profiles import get_profile
    return summary(vision_work(get_profile("full"), notebook), gpu)
