"""Seconds per model-epoch: N models trained one by one vs stacked (grouped convolutions, vmap).

The figures behind ``course_lib.stacking.STACK_METHOD`` (which mechanism ``stack_models`` uses for
each class). For N in ``sizes`` it trains N ``StudentCNN``s one by one, as a hand-written grouped
stack and as a ``VmapStack``, and N ``ViT``s one by one and as a ``VmapStack``, each for ``epochs``
epochs with a minimal loop of its own (AdamW, cross-entropy, each model its own shuffling). The
mechanisms take turns within each repeat (the order rotates), and the best of ``repeats`` is kept:
on a shared machine the minimum is the least disturbed measurement.

    .venv/bin/python scripts/bench_stacking.py [--out build/bench_stacking.json] [--repeats 3]

``scripts/benchmark.py`` imports ``stacking_figures`` from here.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.models import build_model
from course_lib.stacking import stack_models

ARCHITECTURES = {"student_cnn": ("grouped", "vmap"), "vit": ("vmap",)}


def _train(module, x, y, n_models, stacked, *, epochs, batch_size, lr, seed=0):
    """``epochs`` epochs of AdamW on the sum of per-model cross-entropies; returns seconds."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(len(x), generator=g) for _ in range(n_models)])
        for i in range(0, len(x), batch_size):
            idx = perms[:, i:i + batch_size]                                  # [N, B]
            xb, yb = x[idx], y[idx]
            logits = module(xb) if stacked else module(xb[0]).unsqueeze(0)    # [N, B, classes]
            loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.view(n_models, -1).mean(1).sum().backward()
            opt.step()
    return time.perf_counter() - start


def _models(name, data, n):
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(build_model(name, data))
    return models


def _seconds(mechanism, name, data, n, **kw):
    """Wall-clock seconds to train ``n`` fresh models with ``mechanism``."""
    models = _models(name, data, n)
    if mechanism == "one_by_one":
        return sum(_train(m, data.x, data.y, 1, False, seed=i, **kw) for i, m in enumerate(models))
    return _train(stack_models(models, method=mechanism), data.x, data.y, n, True, **kw)


def stacking_figures(train, *, sizes=(1, 4, 6), repeats=3, epochs=1, batch_size=128, lr=3e-3,
                     vit_images=500) -> dict:
    """Best-of-``repeats`` seconds per model-epoch for each architecture, N and mechanism.

    ``train``: a ``TensorData`` (the CNN trains on all of it, the ViT on a balanced subset of
    ``vit_images``, its epochs being ~6x slower). Returns ``{"student_cnn": {"4": {"one_by_one": s,
    "grouped": s, "vmap": s, "best": "grouped"}, ...}, "vit": {...}, "settings": {...}}``.
    """
    kw = dict(epochs=epochs, batch_size=batch_size, lr=lr)
    datasets = {"student_cnn": train, "vit": train.subset(vit_images)}
    for name, mechanisms in ARCHITECTURES.items():         # warm-up: first-call allocations
        for mech in ("one_by_one", *mechanisms):
            _seconds(mech, name, datasets[name].subset(batch_size), 2, **kw)
    out = {}
    for name, mechanisms in ARCHITECTURES.items():
        data, mechs = datasets[name], ("one_by_one", *mechanisms)
        out[name] = {}
        for n in sizes:
            best = {m: float("inf") for m in mechs}
            for r in range(repeats):
                for m in mechs[r % len(mechs):] + mechs[:r % len(mechs)]:   # rotate the order
                    best[m] = min(best[m], _seconds(m, name, data, n, **kw) / (n * epochs))
            row = {m: round(s, 4) for m, s in best.items()}
            row["best"] = min(best, key=best.get)
            out[name][str(n)] = row
    out["settings"] = {"images": {k: len(d) for k, d in datasets.items()}, "epochs": epochs,
                       "batch_size": batch_size, "repeats": repeats, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "unit": "seconds per model-epoch, best of repeats"}
    return out


def _data(images: int):
    try:
        from course_lib.data import profile_data
        from course_lib.profiles import get_profile
        train, _ = profile_data(get_profile())
        return train.subset(images), "profile data"
    except FileNotFoundError:
        from course_lib.data import TensorData
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(images, 1, 28, 28, generator=g), torch.arange(images) % 10
        return TensorData(x, y, tuple(str(c) for c in range(10)), "random"), "random Fashion-MNIST-shaped data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/bench_stacking.json")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--vit-images", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 6])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    train, source = _data(args.images)
    start = time.perf_counter()
    figures = stacking_figures(train, sizes=tuple(args.sizes), repeats=args.repeats, vit_images=args.vit_images)
    figures["settings"].update(data=source, total_seconds=round(time.perf_counter() - start, 1))
    print(f"seconds per model-epoch ({source}; images: {figures['settings']['images']}, "
          f"best of {args.repeats}, {figures['settings']['threads']} threads)")
    for name in ARCHITECTURES:
        for n, row in figures[name].items():
            cells = "  ".join(f"{m} {s:.3f}" for m, s in row.items() if m != "best")
            print(f"  {name:12s} N={n:>2s}  {cells}  -> best: {row['best']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out} in {figures['settings']['total_seconds']} s")


if __name__ == "__main__":
    main()
