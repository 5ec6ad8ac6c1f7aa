"""Notebook 06's LLM distillation experiment, built once as a cached artifact (``make setup``).

Training students long enough to compare objectives takes longer than a notebook's minutes on a
CPU, so the runs are made here, once, keyed by their inputs (:mod:`course_lib.artifacts`), and the
notebook loads them, re-runs short versions live and says which figures come from here.

**The runs** (``LLMSettings``; quick profile: ``steps`` optimizer steps of ``batch_size`` blocks of
``block_size`` Shakespeare tokens, drawn from ``train_blocks`` distinct blocks per seed, so each block
is seen ``steps * batch_size / train_blocks`` times; Hamlet held out). Every student is the same
layer-pruned copy of the teacher (``pruned_student``: teacher layers 0, 5, 10, 15, 20, 25 and 29,
embeddings frozen, as DistilBERT keeps every other layer), trained with the same optimizer (AdamW,
constant learning rate after a short warm-up, so that a run's state at step ``k`` is what a
``k``-step run would give). A seed picks the training blocks (a random subset) and their order.

- ``alone``: cross-entropy on the blocks (plain ``transformers.Trainer``), on every seed. It runs
  past ``steps`` until it has used the wall time of the matching distilled run *plus* the
  teacher's caching; a callback snapshots its weights at ``steps`` (equal steps) and stops it at the
  time (equal wall time).
- ``forward KL``: ``DistillationTrainer`` on the teacher's cached top-``k`` logits of the same blocks,
  ``alpha`` KD + ``1 - alpha`` cross-entropy, on every seed.
- ``reverse KL`` and ``JSD`` (beta 0.5): the same from the same cache, on the first seed. Over the
  teacher's top-k both distributions are renormalised (``llm.losses.topk_divergence``), so the
  student's mass outside those tokens is never penalised, the penalty that defines reverse KL.
- ``responses`` (sequence-level KD, Kim & Rush 2016): the teacher's greedy continuations of the
  first ``prompt_tokens`` of each training block (written to ``responses.jsonl``), the student
  fine-tuned with cross-entropy on the continuations only, on the first seed.

Each is evaluated on ``eval_blocks`` held-out Hamlet blocks evenly spaced over the play
(:func:`evaluation_blocks`): perplexity and top-1 agreement with the teacher. The artifact holds
``results.json`` (every figure and timing), the responses and the trainable weights of the ``alone``
and ``forward KL`` students of every seed and of the ``responses`` student (the notebook's demos and
the drafts of notebook 06 part 2, :mod:`course_lib.llm.speculative_experiment`), about 100 MB each.

**Why few blocks, seen often.** ``train_blocks`` is small and each block is seen several times, so
that a student trained alone can over-fit its blocks and the teacher's distributions can act as a
regulariser (notebook 02's few-labels regime): the setting in which the claim
``06.kd_beats_alone_steps`` (:mod:`course_lib.profiles`) is made, on every seed. The caching of the
teacher is timed (``cache_seconds``) so that the equal-time comparison counts it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ..experiments import CachedExperiment
from ..profiles import PROFILES, LLMSettings
from .corpus import token_blocks
from .evaluation import perplexity, teacher_predictions, top1_agreement
from .losses import topk_mass, topk_teacher_logits
from .responses import response_examples, teacher_continuations, write_responses
from .students import pruned_student, trainable_parameters
from .teacher import load_teacher, teacher_key_inputs

EXPERIMENT_NAME = "llm_distillation"
RESULTS_FILE = "results.json"
RESPONSES_FILE = "responses.jsonl"
RECIPE_VERSION = 1


QUICK = PROFILES["quick"].llm      # the settings make setup builds (course_lib.profiles.LLMSettings)


def evaluation_blocks(held_out: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` blocks evenly spaced over ``held_out`` (the whole play, not only its opening scene)."""
    if not 1 <= n <= len(held_out):
        raise ValueError(f"need 1 <= eval_blocks <= {len(held_out)} (the held-out blocks), got {n}")
    return held_out[torch.linspace(0, len(held_out) - 1, n).round().long()]


def _training_args(folder: Path, settings: LLMSettings, seed: int, max_steps: int, progress: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(folder), max_steps=max_steps, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=settings.warmup_steps,
        weight_decay=0.0, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=seed,
        data_seed=seed, disable_tqdm=not progress, dataloader_num_workers=0)


def _snapshot(model) -> dict[str, torch.Tensor]:
    """The trainable weights only (the frozen embeddings are the teacher's)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class _Clock:
    """A ``TrainerCallback``: wall time since training began at every step, the trainable weights at
    chosen steps, and a stop once ``stop_after`` seconds have passed."""

    def __new__(cls, snapshot_at: tuple[int, ...] = (), stop_after: float | None = None):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self):
                self.start, self.seconds, self.snapshots = None, {}, {}

            def on_train_begin(self, args, state, control, **kwargs):
                self.start = time.perf_counter()

            def on_step_end(self, args, state, control, model=None, **kwargs):
                self.seconds[state.global_step] = time.perf_counter() - self.start
                if state.global_step in snapshot_at:
                    self.snapshots[state.global_step] = _snapshot(model)
                if stop_after is not None and self.seconds[state.global_step] >= stop_after:
                    control.should_training_stop = True

        return Clock()


def _train(trainer, progress: bool) -> None:
    """``trainer.train()``; without progress bars, also without the Trainer's printed log lines."""
    from transformers.trainer_callback import PrinterCallback

    if not progress:
        trainer.remove_callback(PrinterCallback)
    trainer.train()


def _losses(trainer) -> list[float]:
    return [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]


def _evaluate(student, held_out, teacher_top1, progress: bool) -> dict:
    return {"perplexity": round(perplexity(student, held_out, progress=progress), 2),
            "top1_agreement": round(top1_agreement(student, teacher_top1, held_out, progress=progress), 2)}


def _with_weights(student, weights: dict[str, torch.Tensor]):
    model = copy.deepcopy(student)
    model.load_state_dict(weights, strict=False)
    return model


def run_experiment(folder: Path, settings: LLMSettings = QUICK, progress: bool = True, *,
                   teacher=None, tokenizer=None) -> dict:
    """Run every student of the module docstring into ``folder``; return the results. ``teacher`` and
    ``tokenizer`` default to ``load_teacher(model=settings.teacher_model)`` (tests pass the ones they
    already loaded)."""
    from transformers import Trainer

    from .trainer import DistillationTrainer, TokenBlockDataset, collate_token_blocks

    torch.manual_seed(0)
    build_start = time.perf_counter()
    if teacher is None or tokenizer is None:
        teacher, tokenizer = load_teacher(model=settings.teacher_model)
    train, held_out = token_blocks(tokenizer, settings.block_size, progress=progress)
    held_out = evaluation_blocks(held_out, settings.eval_blocks)
    start = time.perf_counter()
    teacher_ppl = perplexity(teacher, held_out, progress=progress)
    teacher_top1 = teacher_predictions(teacher, held_out, progress=progress)
    results = {"settings": dataclasses.asdict(settings), "teacher": {
        "perplexity": round(teacher_ppl, 2), "eval_seconds": round(time.perf_counter() - start, 1),
        "parameters": sum(p.numel() for p in teacher.parameters())}, "runs": []}
    base = pruned_student(teacher, layers=settings.student_layers)
    results["student"] = {"layers": list(settings.student_layers), "trainable": trainable_parameters(base),
                          "parameters": sum(p.numel() for p in base.parameters()),
                          **_evaluate(base, held_out, teacher_top1, progress)}
    n_blocks = settings.train_blocks

    def record(name, seed, model, steps, seconds, losses, **extra):
        row = {"name": name, "seed": seed, "steps": steps, "train_seconds": round(seconds, 1), "losses": losses,
               **extra,
               **_evaluate(model, held_out, teacher_top1, progress)}
        results["runs"].append(row)
        return row

    kept = {}
    for i, seed in enumerate(settings.seeds):
        g = torch.Generator().manual_seed(seed)
        blocks = train[torch.randperm(len(train), generator=g)[:n_blocks]]
        # the teacher's top-k logits on these blocks, once (what KD costs beyond CE)
        start = time.perf_counter()
        values, indices, masses = [], [], []
        with torch.no_grad():
            for b in range(0, n_blocks, settings.batch_size):
                logits = teacher(input_ids=blocks[b:b + settings.batch_size], use_cache=False).logits
                v, ix = topk_teacher_logits(logits, settings.topk)
                values.append(v)
                indices.append(ix)
                masses.append(topk_mass(logits, settings.topk).mean())
        cache_seconds = time.perf_counter() - start
        cache = {"input_ids": blocks, "teacher_topk_values": torch.cat(values),
                 "teacher_topk_indices": torch.cat(indices)}
        topk_share = float(torch.stack(masses).mean())

        def distil(name, divergence, seed=seed, cache=cache, cache_seconds=cache_seconds, topk_share=topk_share):
            """One KD run from this seed's cache."""
            student = copy.deepcopy(base)
            clock = _Clock()
            trainer = DistillationTrainer(
                model=student, args=_training_args(folder / "tmp", settings, seed, settings.steps, progress),
                teacher=None, train_dataset=TokenBlockDataset(**cache), callbacks=[clock], divergence=divergence,
                beta=settings.jsd_beta, temperature=settings.temperature, alpha=settings.alpha)
            _train(trainer, progress)
            row = record(name, seed, student, settings.steps, clock.seconds[settings.steps], _losses(trainer),
                         teacher=f"cached top-{settings.topk}", cache_seconds=round(cache_seconds, 1),
                         topk_mass=round(topk_share, 4))
            return student, row

        suffix = "" if i == 0 else f"_seed{seed}"     # the files: student_<name><suffix>.pt
        student, kd = distil("forward KL", "forward_kl")
        kept[f"forward_kl{suffix}"] = _snapshot(student)

        # alone: past `steps` until the distilled run's time plus its cache (equal wall time)
        target = kd["train_seconds"] + cache_seconds
        student = copy.deepcopy(base)
        clock = _Clock(snapshot_at=(settings.steps,), stop_after=target)
        trainer = Trainer(model=student, args=_training_args(folder / "tmp", settings, seed, 10 * settings.steps,
                                                             progress),
                          train_dataset=TokenBlockDataset(blocks), data_collator=collate_token_blocks,
                          callbacks=[clock])
        _train(trainer, progress)
        losses = _losses(trainer)
        record("alone", seed, _with_weights(base, clock.snapshots[settings.steps]), settings.steps,
               clock.seconds[settings.steps], losses[:settings.steps])
        done = trainer.state.global_step
        record("alone (equal wall time)", seed, student, done, clock.seconds[done], losses,
               target_seconds=round(target, 1))
        kept[f"alone{suffix}"] = clock.snapshots[settings.steps]
        if i == 0:
            distil("reverse KL", "reverse_kl")
            distil(f"JSD (beta {settings.jsd_beta:g})", "jsd")

            # sequence-level: the teacher's continuations of each block's first prompt_tokens
            start = time.perf_counter()
            prompts = blocks[:, :settings.prompt_tokens]
            responses, real = teacher_continuations(teacher, prompts, settings.block_size - settings.prompt_tokens,
                                                        batch_size=16, eos_token_id=tokenizer.eos_token_id,
                                                        progress=progress)
            generate_seconds = time.perf_counter() - start
            write_responses(folder / RESPONSES_FILE, tokenizer, prompts, responses, real)
            input_ids, labels = response_examples(prompts, responses, real)
            student = copy.deepcopy(base)
            clock = _Clock()
            trainer = Trainer(model=student, args=_training_args(folder / "tmp", settings, seed, settings.steps,
                                                                 progress),
                              train_dataset=TokenBlockDataset(input_ids, labels=labels),
                              data_collator=collate_token_blocks, callbacks=[clock])
            _train(trainer, progress)
            record("responses (sequence-level)", seed, student, settings.steps, clock.seconds[settings.steps],
                   _losses(trainer), generate_seconds=round(generate_seconds, 1),
                   response_tokens=int(real.sum()))
            kept["responses"] = _snapshot(student)
    for name, weights in kept.items():
        torch.save(weights, folder / f"student_{name}.pt")
    results["build_seconds"] = round(time.perf_counter() - build_start, 1)
    results["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


EXPERIMENT = CachedExperiment(EXPERIMENT_NAME, RECIPE_VERSION, settings_field="llm", module=sys.modules[__name__],
                              run=run_experiment, notebook="06",
                              extra_key=lambda settings: {"teacher": teacher_key_inputs(settings.teacher_model)})
settings_for, experiment_key_inputs = EXPERIMENT.settings_for, EXPERIMENT.key_inputs
experiment, load_results = EXPERIMENT.folder, EXPERIMENT.load_results


STUDENTS = ("alone", "forward_kl", "responses")


def load_student(name: str, teacher, settings: LLMSettings = QUICK, seed: int | None = None):
    """A saved student rebuilt on ``teacher``: ``alone`` or ``forward_kl`` (every seed; ``seed``
    defaults to the first) or ``responses`` (the first seed only)."""
    if name not in STUDENTS:
        raise ValueError(f"no saved student {name!r}: the artifact keeps {', '.join(STUDENTS)}")
    seed = settings.seeds[0] if seed is None else seed
    if seed not in settings.seeds or (name == "responses" and seed != settings.seeds[0]):
        raise ValueError(f"no {name!r} student for seed {seed}: seeds {settings.seeds}"
                         + (" (responses: the first only)" if name == "responses" else ""))
    suffix = "" if seed == settings.seeds[0] else f"_seed{seed}"
    student = pruned_student(teacher, layers=settings.student_layers)
    student.load_state_dict(torch.load(experiment(settings) / f"student_{name}{suffix}.pt"), strict=False)
    return student.eval()


def summary(results: dict) -> str:
    """One line per run: name, seed, steps, held-out perplexity, top-1 agreement, training seconds."""
    lines = [f"teacher: perplexity {results['teacher']['perplexity']}"]
    for r in results["runs"]:
        lines.append(f"{r['name']:<28} seed {r['seed']}  {r['steps']:>3} steps  perplexity {r['perplexity']:>9.2f}  "
                     f"agreement {r['top1_agreement']:5.2f}%  {r['train_seconds']:6.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    EXPERIMENT.main(summary)
