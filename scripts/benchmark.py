"""Speed figures of the engine, written to build/benchmark.json (never asserted in tests).

    python scripts/benchmark.py [--repeats 8] [--out build/benchmark.json]

Measures, on this machine, for the quick profile's student (StudentCNN, 20,490 parameters):

1. seconds per epoch of one student (a) trained alone, (b) distilled with a teacher forward pass
   every batch, (c) distilled from cached teacher logits - on the students' 2k images and on the
   teacher's 10k images; the issue's budget is (c) <= 1.15 x (a);
2. seconds per model-epoch when N runs train through ``fit`` one by one vs stacked, by each
   stacking mechanism (grouped convolutions, ``torch.func`` vmap), for the StudentCNN (2k images)
   and the small ViT (500 images), N = 1, 4, 6: the figures behind ``stacking.STACK_METHOD`` and
   ``Execution(max_stack=6)``;
3. the notebooks' own timings, copied from build/results.json ("suite") when present.

The figures go to ``--out`` and to the ``benchmark`` entry of the results file (so the report and
the README table show them).

Timings are the best of ``--repeats`` runs (a shared machine only ever makes things slower);
the teacher-forward variant, several times slower, is timed twice (see ``timing.time_epochs``).
"""
from __future__ import annotations

import argparse
import dataclasses
from functools import partial
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from course_lib.data import profile_data  # noqa: E402
from course_lib.engine import Execution, RunSpec, TrainConfig, cache_logits, fit  # noqa: E402
from course_lib.timing import best_of, time_epochs  # noqa: E402
from course_lib.models import build_model  # noqa: E402
from course_lib.profiles import configure_threads, get_profile  # noqa: E402
from course_lib.results import load_results, record_many  # noqa: E402
from course_lib.teachers import pretrained_teacher  # noqa: E402


# Which stacking mechanisms exist per architecture (course_lib.stacking.STACK_METHOD picks per class)
STACKING_ARCHITECTURES = {"student_cnn": ("grouped", "vmap"), "vit": ("vmap",)}


def stacking(datasets, config, sizes, repeats, epochs=1):
    """Seconds per model-epoch, N runs through ``fit`` one by one vs stacked by each mechanism.

    The mechanisms take turns within each repeat (the order rotates) and the best of ``repeats``
    is kept. ``datasets`` maps an architecture to its training set.
    """
    cfg = dataclasses.replace(config, epochs=epochs, eval_every=0)
    out = {}
    for arch, mechanisms in STACKING_ARCHITECTURES.items():
        data = datasets[arch]
        make = lambda arch=arch, data=data: build_model(arch, data)
        out[arch] = {"images": len(data)}
        for n in sizes:
            specs = [RunSpec("alone", s) for s in range(n)]
            modes = {"one_by_one": Execution(stack=False, progress=False)}
            if n > 1:
                modes |= {m: Execution(max_stack=n, stack_method=m, progress=False) for m in mechanisms}
            best = {m: float("inf") for m in modes}
            names = list(modes)
            for r in range(repeats):
                for m in names[r % len(names):] + names[:r % len(names)]:
                    t = best_of(partial(fit, make, specs, data, cfg, execution=modes[m]), repeats=1)
                    best[m] = min(best[m], t / (n * epochs))
            row = {m: round(t, 4) for m, t in best.items()}
            if n > 1:
                fastest = min(mechanisms, key=best.get)
                row |= {"fastest_stacked": fastest, "speedup": round(best["one_by_one"] / best[fastest], 2)}
            out[arch][str(n)] = row
            print(f"{arch} N={n}: seconds per model-epoch {row}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "build" / "benchmark.json"))
    args = parser.parse_args(argv)
    threads = configure_threads()
    profile = get_profile()
    train, test = profile_data(profile)
    teacher, _ = pretrained_teacher(profile, train, test, progress=False)
    student_train = train.subset(profile.vision.student_train_size, seed=0)
    config = TrainConfig.from_profile(profile)
    make = lambda: build_model("student_cnn", train)
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": threads,
                          "cpu": platform.processor() or platform.machine(),
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
              "epoch_seconds": {}}
    for name, data in (("students_2k", student_train), ("teacher_10k", train)):
        # a 2k-image epoch lasts ~0.1 s: time 5 epochs per measurement so that noise stays small
        epochs = 5 if len(data) <= 5000 else 2
        times = time_epochs(make, data, config, teacher, cache_logits(teacher, data), epochs=epochs,
                            repeats=args.repeats)
        times = {k: round(v, 4) for k, v in times.items()}
        times["epochs_per_measurement"] = epochs
        times["cached_over_alone"] = round(times["kd_cached_logits"] / times["student_alone"], 3)
        times["within_1.15_budget"] = times["cached_over_alone"] <= 1.15
        times["teacher_forward_over_alone"] = round(times["kd_teacher_forward"] / times["student_alone"], 2)
        report["epoch_seconds"][name] = times
        print(f"{name} ({len(data)} images): {times}", flush=True)
    # the ViT trains ~4x slower per image than the CNN: 500 images keep its measurement short
    report["stacking"] = stacking({"student_cnn": student_train, "vit": student_train.subset(500, seed=0)},
                                  config, (1, 4, 6), repeats=max(1, args.repeats // 2))
    suite = load_results().get("suite")
    if suite:
        report["notebook_suite_seconds"] = suite
        report["notebooks_01_02_seconds"] = round(sum(v for k, v in suite.items() if k[:2] in ("01", "02")), 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    # also into the results file, so that build/report.md and the README table show the figures
    record_many("benchmark", {k: v for k, v in report.items() if k not in ("notebook_suite_seconds",)}
                | {"headline": ["epoch_seconds.students_2k.cached_over_alone",
                                "epoch_seconds.teacher_10k.cached_over_alone", "stacking.student_cnn.6.speedup",
                                "stacking.vit.6.speedup"]})
    print(f"wrote {out} and the 'benchmark' entry of the results file")


if __name__ == "__main__":
    main()
