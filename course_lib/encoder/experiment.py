"""Notebook 08's DistilBERT case study, built once as a cached artifact (like
:mod:`course_lib.llm.experiment`): the teacher fine-tuned, every student trained, latency measured.

A teacher fine-tuning takes minutes on a CPU, and the students several more, so the runs are made
here, once, keyed by their inputs (:mod:`course_lib.artifacts`); the notebook loads the results,
re-measures the saved models live and runs a short distillation itself.

**The runs** (``EncoderSettings``; quick profile). Reviews tokenised to ``max_length`` tokens,
batches of ``batch_size``, AdamW with linear decay after a ``warmup_ratio`` warm-up, all through
:class:`course_lib.encoder.EncoderDistillationTrainer` (the teacher's fine-tuning too: weights
``(0, 1, 0)`` is plain cross-entropy on the labels through the same code).

- ``teacher``: all-MiniLM-L6-v2 with a new 2-class head, fine-tuned ``teacher_epochs`` epochs
  (the first seed). Its logits and its hidden states at the layers ``default_layer_map`` pairs with
  the student's are cached once over the training set (:func:`encoder.teacher_outputs`).
- Students (3 layers; copied ones ``student_epochs`` epochs at ``student_lr``, random ones
  ``random_epochs`` at ``random_lr``), on every seed unless noted:
  ``copy + KD`` (teacher layers ``student_layers`` copied, DistilBERT's rule; triple loss with
  ``weights``, its cosine term over every pair of ``default_layer_map``: a multi-layer variant, not
  DistilBERT's last-hidden-state term), ``copy, labels only`` (same initialisation, CE only),
  ``random, labels only`` (the same architecture re-initialised: :func:`encoder.random_student`)
  and, on the first seed,
  ``random + KD`` and the ablation of ``copy + KD``: each of the three terms dropped once.
  A seed sets the data order, the dropout and (random students) the initial weights.
- Evaluation: accuracy on the 1,000 test reviews; parameters; latency of the teacher and the
  student (forward, eval mode, best of ``latency_repeats``) at ``batch_size x latency_length``
  and ``1 x latency_length`` tokens; the majority and TF-IDF + logistic-regression baselines.

The artifact holds ``results.json`` (every figure and timing) and the weights of the fine-tuned
teacher and of the first seed's ``copy + KD`` student (``teacher.pt``, ``student_copy_kd.pt``).

**Why the random students have their own schedule** (``random_epochs``, ``random_lr``). At the
copied students' schedule a re-initialised student stayed at the majority class (labels only,
both seeds); one epoch left one seed far behind the other. The first random schedule, two epochs
at 1e-3, trained on both seeds on one machine and stayed on the majority class for seed 0 on
another - and here too with one torch thread instead of two: 1e-3 sits at the edge where a
post-LayerNorm encoder trained from scratch collapses, and the order of floating-point sums
decides on which side a run lands. The schedule now is two epochs at 5e-4 (warm-up 10%), chosen
on seeds 0-5 with two threads and checked on seeds 0-1 with one thread: every run learnt, none
near the majority class (each build records every run's ``largest_class_share``). The build's
budget was then cut (48 tokens instead of 64, one teacher epoch instead of two: CI time) and every
claim of notebook 08 re-checked on seeds 0-7 at the new budget: each held on every seed, no run
near one class. Twice the
copied students' steps, in the control's favour: this protects the claim
``08.copy_beats_random_labels_only`` from a straw-man control, and ``class_collapse`` flags any
run that still collapses (``08.no_one_class_runs``).

**Where the figures are.** Every accuracy, timing and ratio of a build is in its ``results.json``;
notebook 08 prints them (and tests its "within noise" statements with McNemar's exact test), and
``build/results.json`` / the README table record them. None is repeated here, so no docstring goes
stale when the settings or the machine change. The runs are deterministic for one machine, thread
count and set of library versions (two builds here gave identical predictions for every review):
a rebuild gives the same accuracies, only the timings move. Another CPU or thread count sums in
another order, and training amplifies that into differences of the size of the seed-to-seed
spread (``artifact.json`` records what built each artifact: ``artifacts.build_environment``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from ..experiments import CachedExperiment
from ..modes import eval_mode
from ..profiles import PROFILES, EncoderSettings
from ..timing import best_of
from .baselines import majority_baseline, tf_idf_baseline
from .distillation import EncoderDistillationTrainer, default_layer_map, predict_labels, teacher_outputs
from .reviews import encode_reviews, load_texts
from .students import ENCODER_PACKAGE, layer_copy_student, load_encoder, random_student

EXPERIMENT_NAME = "distilbert_case_study"
RESULTS_FILE = "results.json"
TEACHER_FILE = "teacher.pt"
STUDENT_FILE = "student_copy_kd.pt"
RECIPE_VERSION = 3
ONE_CLASS_SHARE = 0.98   # a run whose predictions put at least this share on one class has not learnt


def class_collapse(predicted: torch.Tensor, classes: int = 2) -> tuple[float, bool]:
    """``(share of the most predicted class, one_class)`` of a run's test predictions: the guard
    that flags a student stuck on (almost) one class - it has learnt nothing, and its accuracy is
    the share of that class in the test set, not a measurement of its recipe. Flagged runs are
    reported as such (results, notebook 08), never averaged in silently."""
    predicted = torch.as_tensor(predicted)
    if predicted.dim() != 1 or predicted.numel() == 0 or predicted.dtype in (torch.float16, torch.float32,
                                                                             torch.float64, torch.bool):
        raise ValueError(f"predicted must be a non-empty 1-D tensor of class indices, got "
                         f"{tuple(predicted.shape)} {predicted.dtype}")
    if int(predicted.min()) < 0 or int(predicted.max()) >= classes:
        raise ValueError(f"predicted holds classes outside 0..{classes - 1}")
    share = float(torch.bincount(predicted, minlength=classes).max()) / predicted.numel()
    return round(share, 4), share >= ONE_CLASS_SHARE


QUICK = PROFILES["quick"].encoder      # the settings make setup builds (profiles.EncoderSettings)


def _ablation(settings: EncoderSettings) -> dict[str, tuple[float, float, float]]:
    """``copy + KD`` with each term of ``weights`` dropped once (the two others unchanged)."""
    kd, ce, cos = settings.weights
    return {"copy + KD, no KL": (0.0, ce, cos), "copy + KD, no CE": (kd, 0.0, cos),
            "copy + KD, no cos": (kd, ce, 0.0)}


def _args(folder: Path, settings: EncoderSettings, seed: int, epochs: int, lr: float, progress: bool,
          examples: int):
    from transformers import TrainingArguments

    steps = math.ceil(examples / settings.batch_size) * epochs     # transformers 5 has no warmup_ratio
    return TrainingArguments(
        output_dir=str(folder), num_train_epochs=epochs, per_device_train_batch_size=settings.batch_size,
        learning_rate=lr, lr_scheduler_type="linear", warmup_steps=round(settings.warmup_ratio * steps),
        weight_decay=0.01,
        logging_steps=10, save_strategy="no", report_to="none", use_cpu=True, seed=seed, data_seed=seed,
        disable_tqdm=not progress, dataloader_num_workers=0)


def _train(model, dataset, args, *, weights, layer_map, temperature, progress) -> tuple[float, list[float]]:
    """Train ``model`` in place; ``(seconds, logged losses)``."""
    from transformers.trainer_callback import PrinterCallback

    trainer = EncoderDistillationTrainer(model=model, args=args, train_dataset=dataset, teacher=None,
                                            layer_map=layer_map, temperature=temperature, weights=weights)
    if not progress:
        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return seconds, [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]


@torch.no_grad()
def latency_ms(model, batch: int, length: int, repeats: int = 5, vocab: int = 30522) -> float:
    """Best-of-``repeats`` milliseconds of one eval-mode forward over ``batch x length`` random tokens
    (every token real), after one warm-up call."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    with eval_mode(model):
        return 1000 * best_of(lambda: model(input_ids=ids, attention_mask=mask), repeats=repeats, warmup=1)


def student_runs(settings: EncoderSettings) -> list[tuple[str, int, str, tuple[float, float, float]]]:
    """``(name, seed, init, weights)`` of every student run, in the order they are made."""
    first = settings.seeds[0]
    runs = []
    for seed in settings.seeds:
        runs += [("copy + KD", seed, "copy", settings.weights), ("copy, labels only", seed, "copy", (0.0, 1.0, 0.0)),
                 ("random, labels only", seed, "random", (0.0, 1.0, 0.0))]
    runs.append(("random + KD", first, "random", settings.weights))
    runs += [(name, first, "copy", w) for name, w in _ablation(settings).items()]
    return runs


def run_experiment(folder: Path, settings: EncoderSettings = QUICK, progress: bool = True) -> dict:
    """Every run of the module docstring into ``folder``; returns the results."""
    def say(message: str) -> None:
        if progress:
            print(f"[distilbert] {message}", flush=True)

    build_start = time.perf_counter()
    train, test = load_texts(settings.dataset)
    if settings.train_reviews is not None:
        train = train.subset(settings.train_reviews)
    if settings.test_reviews is not None:
        test = test.subset(settings.test_reviews)
    results: dict = {"settings": dataclasses.asdict(settings), "data": {"train": len(train), "test": len(test)},
                     "baselines": {"majority": majority_baseline(train, test),
                                   "tf_idf": tf_idf_baseline(train, test)}}
    say(f"baselines: {results['baselines']}")
    teacher, tokenizer = load_encoder(num_labels=2, seed=settings.seeds[0], model=settings.teacher_model)
    enc_train = encode_reviews(tokenizer, train, max_length=settings.max_length)
    enc_test = encode_reviews(tokenizer, test, max_length=settings.max_length)
    real = enc_train.tensors["attention_mask"].sum(1).float()
    results["data"]["truncated_share"] = round(float((real == settings.max_length).float().mean()), 4)

    # the teacher: fine-tuned on the labels through the same trainer
    args = _args(folder / "tmp", settings, settings.seeds[0], settings.teacher_epochs, settings.teacher_lr, progress,
                 len(enc_train))
    seconds, losses = _train(teacher, enc_train, args, weights=(0.0, 1.0, 0.0), layer_map={},
                             temperature=settings.temperature, progress=progress)
    teacher.eval()
    labels = enc_test.tensors["labels"]
    predicted = predict_labels(teacher, enc_test)
    results["test_labels"] = labels.tolist()
    results["teacher"] = {"accuracy": round(100 * float((predicted == labels).float().mean()), 2),
                          "predictions": predicted.tolist(),
                          "train_seconds": round(seconds, 1), "losses": losses,
                          "parameters": sum(p.numel() for p in teacher.parameters())}
    say(f"teacher: {results['teacher']['accuracy']}% after {seconds:.0f} s")
    torch.save(teacher.state_dict(), folder / TEACHER_FILE)

    # its outputs, cached once for every student
    layer_map = default_layer_map(len(settings.student_layers), teacher.config.num_hidden_layers)
    start = time.perf_counter()
    cached = teacher_outputs(teacher, enc_train, layer_map)
    results["teacher"]["cache_seconds"] = round(time.perf_counter() - start, 1)
    results["layer_map"] = {str(k): v for k, v in layer_map.items()}

    results["runs"] = []
    for name, seed, init, weights in student_runs(settings):
        student = (layer_copy_student(teacher, settings.student_layers) if init == "copy"
                   else random_student(teacher, settings.student_layers, seed=seed))
        dataset = cached if weights[0] or weights[2] else enc_train
        epochs, lr = ((settings.student_epochs, settings.student_lr) if init == "copy"
                      else (settings.random_epochs, settings.random_lr))
        seconds, losses = _train(student, dataset, _args(folder / "tmp", settings, seed, epochs, lr, progress,
                                                         len(enc_train)),
                                 weights=weights, layer_map=layer_map if dataset is cached else {},
                                 temperature=settings.temperature, progress=progress)
        predicted = predict_labels(student, enc_test)
        share, one_class = class_collapse(predicted)
        row = {"name": name, "seed": seed, "init": init, "weights": list(weights), "epochs": epochs, "lr": lr,
               "accuracy": round(100 * float((predicted == labels).float().mean()), 2),
               "train_seconds": round(seconds, 1), "losses": losses,
               # per-review predictions (paired tests in the notebook) and the one-class guard: a run that
               # predicts (almost) one class everywhere has not learnt, and is flagged, not averaged in silently
               "predictions": predicted.tolist(), "largest_class_share": share, "one_class": one_class}
        row["retained"] = round(100 * row["accuracy"] / results["teacher"]["accuracy"], 2)
        results["runs"].append(row)
        say(f"{name:<22} seed {seed}: {row['accuracy']}% ({row['retained']}% of the teacher) in {seconds:.0f} s")
        if name == "copy + KD" and seed == settings.seeds[0]:
            torch.save(student.state_dict(), folder / STUDENT_FILE)
            kept = student

    # size and speed, teacher against the student
    results["size_speed"] = {}
    for label, model in (("teacher", teacher), ("student", kept)):
        results["size_speed"][label] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "layers": model.config.num_hidden_layers,
            f"ms_batch_{settings.batch_size}": round(latency_ms(model, settings.batch_size, settings.latency_length,
                                                                settings.latency_repeats), 1),
            "ms_batch_1": round(latency_ms(model, 1, settings.latency_length, settings.latency_repeats), 2)}
    t, s = results["size_speed"]["teacher"], results["size_speed"]["student"]
    key = f"ms_batch_{settings.batch_size}"
    results["size_speed"]["speedup_batch"] = round(t[key] / s[key], 3)
    results["size_speed"]["speedup_1"] = round(t["ms_batch_1"] / s["ms_batch_1"], 3)
    results["size_speed"]["parameter_ratio"] = round(s["parameters"] / t["parameters"], 4)
    say(f"size and speed: {results['size_speed']}")
    results["build_seconds"] = round(time.perf_counter() - build_start, 1)
    results["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


EXPERIMENT = CachedExperiment(EXPERIMENT_NAME, RECIPE_VERSION, settings_field="encoder", module=sys.modules[__name__],
                              run=run_experiment, notebook="08",
                              extra_key=lambda settings: {"encoder": ENCODER_PACKAGE})
settings_for, experiment_key_inputs = EXPERIMENT.settings_for, EXPERIMENT.key_inputs
experiment, load_results = EXPERIMENT.folder, EXPERIMENT.load_results


def load_models(settings: EncoderSettings = QUICK):
    """``(teacher, student, tokenizer)``: the fine-tuned teacher and the first seed's ``copy + KD``
    student, rebuilt from the artifact's weights, in eval mode."""
    folder = experiment(settings)
    teacher, tokenizer = load_encoder(num_labels=2, seed=settings.seeds[0], model=settings.teacher_model)
    teacher.load_state_dict(torch.load(folder / TEACHER_FILE))
    student = layer_copy_student(teacher, settings.student_layers)
    student.load_state_dict(torch.load(folder / STUDENT_FILE))
    return teacher.eval(), student.eval(), tokenizer


if __name__ == "__main__":
    EXPERIMENT.main()
