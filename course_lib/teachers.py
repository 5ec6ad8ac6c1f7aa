"""The course's teacher: trained once per profile, cached, and re-evaluated by every notebook.

``python -m course_lib.teachers --profile quick`` (run by ``make setup``) trains the quick-profile
teacher if its cache is missing: ``TeacherCNN`` (390,634 parameters), ``profile.vision.teacher_epochs``
epochs on the profile's training subset (seed 0, no augmentation), AdamW with a cosine schedule.
The weights go to ``<cache>/teacher_<profile>_<dataset>.pt`` and the settings, training time and test
accuracy to a ``.json`` beside them. On Colab (full profile) the first notebook that needs the
teacher trains it on the GPU the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .data import profile_data
from .engine import RunSpec, TrainConfig, evaluate, fit
from .models import build_model, count_parameters
from .profiles import configure_threads, get_device, get_profile

TEACHER_SEED = 0


def cache_dir() -> Path:
    """``$COURSE_CACHE`` or ``<repo>/.cache/course``."""
    env = os.environ.get("COURSE_CACHE")
    return Path(env) if env else Path(__file__).resolve().parent.parent / ".cache" / "course"


def teacher_path(profile) -> Path:
    return cache_dir() / f"teacher_{profile.name}_{profile.vision.dataset}.pt"


def train_teacher(profile, train, test=None, progress: bool = True, device=None):
    """Train the profile's teacher from scratch; returns ``(model, info)``."""
    v = profile.vision
    config = TrainConfig.from_profile(profile, epochs=v.teacher_epochs, eval_every=0)
    start = time.perf_counter()
    [run] = fit(lambda: build_model("teacher", train), [RunSpec("teacher", TEACHER_SEED)], train, config,
                device=device or get_device(), progress=progress, desc="teacher")
    model = run.model.cpu().eval()
    info = {"profile": profile.name, "dataset": v.dataset, "train_size": len(train), "seed": TEACHER_SEED,
            "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
            "weight_decay": config.weight_decay, "schedule": config.schedule, "augmentation": None,
            "parameters": count_parameters(model), "train_seconds": round(time.perf_counter() - start, 1),
            "torch": torch.__version__}
    if test is not None:
        info["test_accuracy"] = evaluate(model, test)
    return model, info


def pretrained_teacher(profile=None, train=None, test=None, retrain: bool = False, progress: bool = True):
    """The cached teacher of ``profile`` (trained and cached first if missing): ``(model, info)``."""
    profile = profile or get_profile()
    if train is None:
        train, test = profile_data(profile)
    path = teacher_path(profile)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and not retrain:
        model = build_model("teacher", train)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(meta.read_text())
    model, info = train_teacher(profile, train, test, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    meta.write_text(json.dumps(info, indent=2))
    return model, info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train and cache the course teacher (idempotent).")
    parser.add_argument("--profile", default=None, help="quick (default) or full")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    args = parser.parse_args(argv)
    configure_threads()
    profile = get_profile(args.profile)
    path = teacher_path(profile)
    if path.exists() and path.with_suffix(".json").exists() and not args.retrain:
        print(f"teacher cached: {path}")
        return
    _, info = pretrained_teacher(profile, retrain=True)
    print(f"teacher trained and cached at {path}: {json.dumps(info)}")


if __name__ == "__main__":
    main()
