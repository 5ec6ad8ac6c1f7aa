"""The course's teacher: trained once per profile, cached as a keyed artifact, re-evaluated by every notebook.

``python -m course_lib.teachers --profile quick`` (run by ``make setup``) trains the quick-profile
teacher if it is not cached yet: ``TeacherCNN``, ``profile.vision.teacher_epochs`` epochs on the
profile's training subset (seed ``TEACHER_SEED``, no augmentation), AdamW with a cosine schedule.
``pretrained_teacher`` returns it, training it first where it is missing (on Colab, full profile,
the first notebook that needs it trains it on the GPU the same way).

The teacher is a :mod:`course_lib.artifacts` artifact: the folder
``<cache>/teacher_<profile>_<dataset>-<key>/`` holds ``teacher.pt`` (the state dict),
``teacher.json`` (settings, training time, test accuracy) and ``artifact.json`` (the key's
inputs). ``<cache>`` is :func:`course_lib.paths.cache_dir`. The key (:func:`teacher_key_inputs`)
hashes what determines the weights:

* the profile's vision settings the training reads: dataset, ``teacher_epochs``, ``batch_size``,
  ``lr``, ``weight_decay`` (not the students' settings, seeds or evaluation sizes);
* the training data: a fingerprint of the training tensors' bytes (so the subset's size and seed,
  and the normalisation, are covered without listing them);
* ``TEACHER_SEED``;
* the code: the source of ``TeacherCNN`` and of :func:`train_teacher`, plus
  ``TEACHER_RECIPE_VERSION``; and torch's major.minor version.

Deliberately *not* hashed: the rest of ``course_lib.engine`` (the training loop, optimizer and
schedule behind ``fit``) and ``course_lib.data``. Hashing them would retrain the teacher on every
edit of the engine, most of which (progress bars, stacking, distillation terms) do not change how a
teacher trains. The price: a change to the engine or the data pipeline that *does* change the
teacher must bump ``TEACHER_RECIPE_VERSION`` by hand. The device is not in the key either: a
teacher trained on a GPU and one trained on the CPU differ in rounding only.

A stale teacher is therefore never reused, an unchanged one is shared by every clone that uses the
same cache, and old teachers stay in their own folders until deleted.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .artifacts import (artifact_dir, artifact_metadata, cached_artifact, source_fingerprint, tensor_fingerprint,
                        torch_version)
from .data import get_augmentation, profile_data
from .engine import Execution, RunSpec, TrainConfig, evaluate, fit
from .models import TeacherCNN, build_model, count_parameters
from .profiles import configure_threads, get_profile

TEACHER_SEED = 0
# Bump when a change outside TeacherCNN and train_teacher changes how the teacher trains (the
# engine's optimizer, schedule or batching; the data pipeline): it retrains every cached teacher.
TEACHER_RECIPE_VERSION = 1
WEIGHTS_FILE = "teacher.pt"
INFO_FILE = "teacher.json"


def teacher_name(profile, augmentation: str | None = None) -> str:
    """The readable part of the teacher's folder name: ``teacher_<profile>_<dataset>[_<augmentation>]``."""
    return f"teacher_{profile.name}_{profile.vision.dataset}" + (f"_{augmentation}" if augmentation else "")


def teacher_epochs(profile, augmentation: str | None = None) -> int:
    """Epochs of the teacher: ``teacher_epochs``, or ``aug_teacher_epochs`` when trained with augmentation."""
    v = profile.vision
    return v.aug_teacher_epochs if augmentation else v.teacher_epochs


def teacher_key_inputs(profile, train, augmentation: str | None = None) -> dict:
    """What the teacher's cache key hashes (see the module docstring for what is left out and why)."""
    v = profile.vision
    extra = {}
    if augmentation:     # only for augmented teachers, so the plain teacher's key is unchanged
        extra = {"augmentation": {"name": augmentation, "code": source_fingerprint(get_augmentation(augmentation))},
                 "settings": {"epochs": teacher_epochs(profile, augmentation), "batch_size": v.batch_size,
                              "lr": v.lr, "weight_decay": v.weight_decay}}
    return {
        "recipe_version": TEACHER_RECIPE_VERSION,
        "dataset": v.dataset,
        "settings": {"epochs": v.teacher_epochs, "batch_size": v.batch_size, "lr": v.lr,
                     "weight_decay": v.weight_decay},
        "train_data": {"size": len(train), "fingerprint": tensor_fingerprint(train.x, train.y)},
        "seed": TEACHER_SEED,
        "code": source_fingerprint(TeacherCNN, train_teacher),
        "torch": torch_version(),
        **extra,
    }


def teacher_dir(profile, train=None, augmentation: str | None = None) -> Path:
    """The teacher's artifact folder for ``profile`` trained on ``train`` (default: the profile's
    training subset, loaded to fingerprint it), whether or not it is built yet."""
    if train is None:
        train, _ = profile_data(profile)
    return artifact_dir(teacher_name(profile, augmentation), teacher_key_inputs(profile, train, augmentation))


def teacher_path(profile, train=None, augmentation: str | None = None) -> Path:
    """The teacher's weights file, ``<teacher_dir>/teacher.pt``; its info is ``teacher.json`` beside it."""
    return teacher_dir(profile, train, augmentation) / WEIGHTS_FILE


def is_cached(profile, train=None, augmentation: str | None = None) -> bool:
    """Whether the teacher of ``profile`` (on ``train``, with ``augmentation``) is built."""
    folder = teacher_dir(profile, train, augmentation)
    return artifact_metadata(folder) is not None and (folder / WEIGHTS_FILE).exists()


def train_teacher(profile, train, test=None, progress: bool = True, device=None, augmentation: str | None = None):
    """Train the profile's teacher from scratch (on augmented batches if ``augmentation`` names one
    of ``data.AUGMENTATIONS``); returns ``(model, info)``."""
    v = profile.vision
    config = TrainConfig.from_profile(profile, epochs=teacher_epochs(profile, augmentation), eval_every=0)
    start = time.perf_counter()
    [run] = fit(lambda: build_model("teacher", train), [RunSpec("teacher", TEACHER_SEED)], train, config,
                augment=get_augmentation(augmentation) if augmentation else None,
                execution=Execution(device=device, progress=progress), desc=teacher_name(profile, augmentation))
    model = run.model.cpu().eval()
    info = {"profile": profile.name, "dataset": v.dataset, "train_size": len(train), "seed": TEACHER_SEED,
            "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
            "weight_decay": config.weight_decay, "schedule": config.schedule, "augmentation": augmentation,
            "parameters": count_parameters(model), "train_seconds": round(time.perf_counter() - start, 1),
            "torch": torch.__version__}
    if test is not None:
        info["test_accuracy"] = evaluate(model, test)
    return model, info


def pretrained_teacher(profile=None, train=None, test=None, retrain: bool = False, progress: bool = True,
                       augmentation: str | None = None):
    """The cached teacher of ``profile`` (trained and cached first if missing): ``(model, info)``.

    ``train``/``test`` default to the profile's data; ``retrain=True`` trains again and replaces
    the cached one. ``augmentation`` (e.g. ``"shift_flip"``): a separate teacher trained on
    augmented batches for ``aug_teacher_epochs`` (notebook 04: a teacher must know the views its
    student is distilled on).
    """
    profile = profile or get_profile()
    if train is None:
        train, test = profile_data(profile)

    def build(folder: Path) -> None:
        model, info = train_teacher(profile, train, test, progress=progress, augmentation=augmentation)
        torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")

    folder = cached_artifact(teacher_name(profile, augmentation), teacher_key_inputs(profile, train, augmentation),
                             build, rebuild=retrain)
    model = build_model("teacher", train)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train and cache the course teacher (idempotent).")
    parser.add_argument("--profile", default=None, help="quick (default) or full")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    parser.add_argument("--augmentation", action="append", default=None, metavar="NAME",
                        help="also (or, with --only-augmented, only) the teacher trained with this augmentation "
                             "(e.g. shift_flip; repeatable)")
    parser.add_argument("--only-augmented", action="store_true", help="skip the plain teacher")
    args = parser.parse_args(argv)
    configure_threads()
    profile = get_profile(args.profile)
    train, test = profile_data(profile)
    wanted = ([] if args.only_augmented else [None]) + list(args.augmentation or [])
    for augmentation in wanted:
        path = teacher_path(profile, train, augmentation)
        if is_cached(profile, train, augmentation) and not args.retrain:
            print(f"teacher cached: {path}")
            continue
        _, info = pretrained_teacher(profile, train, test, retrain=args.retrain, augmentation=augmentation)
        print(f"teacher trained and cached at {path}: {json.dumps(info)}")


if __name__ == "__main__":
    main()
