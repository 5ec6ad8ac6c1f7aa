"""One train / evaluate / distill loop for every image notebook.

``fit`` trains a list of runs. A run is a seed plus its loss settings (``alpha = 0`` is the
student trained alone with cross-entropy; ``alpha > 0`` distils from the teacher at temperature
``T``). For each run the seed fixes both the initial weights and the order of the batches, so
"alone" and "distilled" with the same seed are a paired comparison.

Speed, which is what makes a seeds-by-methods grid affordable on a CPU:

* **Teacher-logit caching.** Without augmentation the teacher sees the same images every epoch,
  so ``cache_logits`` runs it once and the loop reads rows of that table; a KD epoch then costs
  what a cross-entropy epoch costs. With augmentation the teacher must see each augmented view,
  so pass ``teacher=`` instead (a forward per batch).
* **Stacking.** Runs whose models support it (``course_lib.stacking``) are trained together as one
  stacked module, each with its own data order, temperature and alpha.

Teachers are deep-copied, frozen and kept in eval mode (``freeze``): a teacher is never the same
object as a student.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import TensorData
from .losses import kd_loss
from .stacking import can_stack, stack_models


@dataclass(frozen=True)
class RunSpec:
    """One training run: a name (the method), a seed and the KD settings (alpha=0: no teacher)."""

    name: str
    seed: int = 0
    temperature: float = 1.0
    alpha: float = 0.0
    direction: str = "forward"
    label_smoothing: float = 0.0   # applied to the hard-label cross-entropy term

    @property
    def uses_teacher(self) -> bool:
        return self.alpha > 0


@dataclass
class Step:
    """What an ``extra_loss`` module sees at each training step (N models, batch B)."""

    epoch: int
    group: nn.Module               # the stacked module, or the single model being trained
    stacked: bool
    x: torch.Tensor                # [N, B, ...] inputs (after augmentation)
    y: torch.Tensor                # [N, B] labels
    idx: torch.Tensor              # [N, B] row numbers in the training set (to read cached tensors)
    logits: torch.Tensor           # [N, B, classes] student outputs
    teacher_logits: torch.Tensor | None   # [N, B, classes] or None


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"       # "cosine" (per step) or "constant"
    eval_every: int = 10           # epochs between evaluations on the monitor set (0: never)

    @classmethod
    def from_profile(cls, profile, epochs: int | None = None, **changes) -> "TrainConfig":
        v = profile.vision
        settings = dict(epochs=epochs if epochs is not None else v.student_epochs, batch_size=v.batch_size,
                        lr=v.lr, weight_decay=v.weight_decay, eval_every=v.eval_every)
        return cls(**{**settings, **changes})


@dataclass
class Run:
    """A finished run: its spec, the trained model and its history (one entry per epoch)."""

    spec: RunSpec
    model: nn.Module
    history: dict[str, list] = field(default_factory=dict)
    seconds: float = 0.0
    test_accuracy: float | None = None


def freeze(model: nn.Module) -> nn.Module:
    """A frozen deep copy in eval mode: no gradients, no shared parameters with anyone."""
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` (in eval mode; its mode is restored) over ``x``, on the CPU."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def cache_logits(teacher: nn.Module, data: TensorData | torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Run the (frozen) teacher once over the training images: ``[n, classes]`` logits."""
    x = data.x if isinstance(data, TensorData) else data
    return predict_logits(freeze(teacher), x, batch_size)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} predictions for {labels.shape[0]} labels")
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> float:
    """Top-1 test accuracy (percent) of one model."""
    return accuracy(predict_logits(model, data.x, batch_size), data.y)


@torch.no_grad()
def _evaluate_group(group: nn.Module, n: int, data: TensorData, batch_size: int = 500) -> list[float]:
    """Accuracies of the n models of a stacked group (or [acc] of a single model)."""
    was_training = group.training
    group.eval()
    device = _device_of(group)
    correct = torch.zeros(n)
    for i in range(0, len(data), batch_size):
        x = data.x[i:i + batch_size].to(device)
        y = data.y[i:i + batch_size].to(device)
        logits = group(x.unsqueeze(0).expand(n, *x.shape)) if n > 1 or hasattr(group, "n_models") \
            else group(x).unsqueeze(0)
        correct += (logits.argmax(-1) == y).sum(-1).float().cpu()
    group.train(was_training)
    return (100.0 * correct / len(data)).tolist()


def _group_forward(group: nn.Module, stacked: bool, x: torch.Tensor) -> torch.Tensor:
    """``x`` is ``[N, B, ...]``; returns ``[N, B, classes]``."""
    return group(x) if stacked else group(x[0]).unsqueeze(0)


def fit(make_model: Callable[[], nn.Module], specs: list[RunSpec], train: TensorData, config: TrainConfig,
        *, teacher_logits: torch.Tensor | None = None, teacher: nn.Module | None = None,
        monitor: TensorData | None = None, test: TensorData | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        stack: bool = True, max_stack: int | None = 6, device: torch.device | str | None = None,
        extra_loss: Callable[[nn.Module, int], nn.Module] | None = None,
        progress: bool = True, desc: str = "") -> list[Run]:
    """Train one model per spec; return the runs in the order of ``specs``.

    ``make_model()`` builds a fresh model; it is called after ``torch.manual_seed(spec.seed)``.
    Runs using a teacher need ``teacher_logits`` (cached, ``[len(train), classes]``) or ``teacher``
    (a forward pass per batch; required with ``augment``). ``monitor`` is evaluated every
    ``config.eval_every`` epochs and at the end (learning curves); ``test`` once at the end.
    ``stack=True`` trains all specs as one stacked module when the model class supports it,
    otherwise they are trained one after another with the same loop; ``max_stack`` caps how many
    models share one stack (stacks are balanced: 14 runs with max 6 -> 5, 5, 4). On 2 CPU cores
    (scripts/benchmark.py, 2k images) stacks of 4-6 students ran 0.083-0.11 s per model-epoch against
    0.125-0.13 s one by one (1.2-1.5x) in three runs; a stack of 11 measured anywhere from 0.074 to
    0.15 s, so the default caps stacks at 6.

    ``extra_loss(group, n_models)`` builds, for each group trained, a module that maps a ``Step`` to
    per-model losses ``[N]`` added to the KD loss (hints, attention transfer, relational losses).
    Its parameters - e.g. FitNets regressors - are **optimised together with the students'**; a
    ``close()`` method, if any, is called when the group is done (to remove feature hooks).
    """
    if not specs:
        raise ValueError("fit needs at least one RunSpec")
    if any(s.uses_teacher for s in specs) and teacher_logits is None and teacher is None:
        raise ValueError("a run with alpha > 0 needs teacher_logits (cached) or teacher")
    if teacher_logits is not None:
        if augment is not None:
            raise ValueError("cached teacher logits belong to the un-augmented images; with augment= "
                             "pass teacher= so the teacher sees each augmented view")
        if teacher_logits.shape[0] != len(train):
            raise ValueError(f"teacher_logits has {teacher_logits.shape[0]} rows for {len(train)} images")
    device = torch.device(device) if device is not None else torch.device("cpu")
    frozen_teacher = freeze(teacher).to(device) if teacher is not None else None

    models = []
    for s in specs:
        torch.manual_seed(s.seed)
        models.append(make_model())
    if stack and len(specs) > 1 and can_stack(models):
        n_groups = math.ceil(len(specs) / (max_stack or len(specs)))   # balanced: 14 -> 5, 5, 4
        bounds = [round(i * len(specs) / n_groups) for i in range(n_groups + 1)]
        groups = [(list(range(a, b)), True) for a, b in zip(bounds, bounds[1:])]
    else:
        groups = [([i], False) for i in range(len(specs))]

    runs: list[Run | None] = [None] * len(specs)
    for members, stacked in groups:
        stacked = stacked and len(members) > 1
        group_specs = [specs[i] for i in members]
        group_models = [models[i] for i in members]
        trained, histories, seconds = _train_group(
            group_models, group_specs, stacked, train, config, teacher_logits, frozen_teacher,
            monitor, augment, device, progress, desc, extra_loss)
        for i, m, h in zip(members, trained, histories):
            runs[i] = Run(specs[i], m, h, seconds / len(members))
    if test is not None:
        for r in runs:
            r.test_accuracy = evaluate(r.model, test)
    return runs


def _train_group(models, specs, stacked, train, config, teacher_logits, teacher, monitor, augment,
                 device, progress, desc, extra_loss=None):
    n = len(models)
    group = (stack_models(models) if stacked else models[0]).to(device).train()
    extra = extra_loss(group, n).to(device).train() if extra_loss is not None else None
    params = [p for p in group.parameters() if p.requires_grad]
    if extra is not None:
        params += [p for p in extra.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    schedule = (lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))) \
        if config.schedule == "cosine" else (lambda step: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    temperature = torch.tensor([[s.temperature] for s in specs], device=device)
    alpha = torch.tensor([[s.alpha] for s in specs], device=device)
    directions = {s.direction for s in specs}
    if len(directions) > 1:
        raise ValueError("runs trained together must share the KL direction")
    direction = directions.pop()
    smoothing = torch.tensor([[s.label_smoothing] for s in specs], device=device)
    generators = [torch.Generator().manual_seed(s.seed) for s in specs]
    aug_gen = torch.Generator().manual_seed(specs[0].seed + 10_007)
    x_all, y_all = train.x.to(device), train.y.to(device)
    tl_all = teacher_logits.to(device) if teacher_logits is not None else None
    needs_teacher = any(s.uses_teacher for s in specs)

    keys = ("loss", "ce", "kl", "extra")
    history = [{"epoch": [], **{k: [] for k in keys}, "monitor_epoch": [], "monitor_acc": []} for _ in range(n)]
    label = desc or (specs[0].name if n == 1 else f"{n} runs")
    bar = tqdm(range(1, config.epochs + 1), desc=label, disable=not progress, leave=False)
    start = time.perf_counter()
    for epoch in bar:
        perms = torch.stack([torch.randperm(len(train), generator=g) for g in generators]).to(device)
        sums = torch.zeros(len(keys), n, device=device)
        for step in range(steps_per_epoch):
            idx = perms[:, step * config.batch_size:(step + 1) * config.batch_size]   # [N, B]
            xb, yb = x_all[idx], y_all[idx]
            if augment is not None:
                xb = augment(xb.flatten(0, 1), aug_gen).view_as(xb)
            if not needs_teacher:
                tb = None
            elif tl_all is not None:
                tb = tl_all[idx]
            else:
                with torch.no_grad():
                    tb = teacher(xb.flatten(0, 1)).view(*idx.shape, -1)
            logits = _group_forward(group, stacked, xb)
            # alpha = 0 everywhere in a group without a teacher: kd_loss then skips the KL entirely
            loss, parts = kd_loss(logits, tb if tb is not None else logits.detach(), yb, temperature, alpha,
                                  direction=direction, label_smoothing=smoothing, reduction="none",
                                  return_parts=True)
            per_model = loss.mean(1)
            extra_term = torch.zeros_like(per_model)
            if extra is not None:
                extra_term = extra(Step(epoch, group, stacked, xb, yb, idx, logits, tb))
                if extra_term.shape != per_model.shape:
                    raise ValueError(f"extra_loss must return one value per model, shape {tuple(per_model.shape)}; "
                                     f"got {tuple(extra_term.shape)}")
                per_model = per_model + extra_term
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()      # sum: each model gets exactly its own gradient
            opt.step()
            sched.step()
            with torch.no_grad():
                sums += torch.stack([per_model, parts["ce"].mean(1), parts["kl"].mean(1), extra_term]) * idx.shape[1]
        means = (sums / len(train)).cpu()
        for i in range(n):
            history[i]["epoch"].append(epoch)
            for k, row in zip(keys, means):
                history[i][k].append(float(row[i]))
        if monitor is not None and config.eval_every and (epoch % config.eval_every == 0 or epoch == config.epochs):
            accs = _evaluate_group(group, n if stacked else 1, monitor)
            for i in range(n):
                history[i]["monitor_epoch"].append(epoch)
                history[i]["monitor_acc"].append(accs[i])
            bar.set_postfix(loss=f"{means[0].mean():.3f}", acc=f"{sum(accs) / len(accs):.1f}")
    seconds = time.perf_counter() - start
    if extra is not None and hasattr(extra, "close"):
        extra.close()
    trained = group.unstack() if stacked else [group]
    for m in trained:
        m.eval()
    return trained, history, seconds


def time_epochs(make_model: Callable[[], nn.Module], train: TensorData, config: TrainConfig,
                teacher: nn.Module, teacher_logits: torch.Tensor, epochs: int = 1,
                repeats: int = 6) -> dict[str, float]:
    """Seconds per epoch of one model trained (a) alone, (b) with KD and a teacher forward every
    batch, (c) with KD from cached logits.

    (a) and (c), the pair whose ratio matters, are measured back to back ``repeats`` times, in
    alternating order (so that a drift of the machine's speed hits both alike); (b), several times
    slower, is measured twice. The best measurement of each is kept: timings on a shared machine
    are only ever too slow, never too fast.
    """
    cfg = dataclasses.replace(config, epochs=epochs, eval_every=0)
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
            t0 = time.perf_counter()
            fit(make_model, train=train, config=cfg, progress=False, **variants[name])
            best[name] = min(best[name], (time.perf_counter() - t0) / epochs)
    return best
