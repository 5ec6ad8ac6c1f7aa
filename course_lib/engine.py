"""One train / evaluate / distill loop for every image notebook.

``fit(make_model, specs, train, config)`` trains one model per ``RunSpec`` and returns the runs.
What each run minimises is its **objective**: a small module that reads one training step (all N
models' outputs, the labels, the row indices, each run's teacher targets) and returns one loss per
model. The default, ``HintonKD``, is Hinton's loss with each run's ``temperature`` and ``alpha``
(``alpha = 0``: the student trained alone with cross-entropy). Other methods bring their own:
DeiT's two heads (notebook 04), deep mutual learning, where each model reads the *other* models'
logits (05). ``extra_loss`` adds terms on top (hints, attention transfer: 03); the parameters of
both (e.g. FitNets regressors) are optimised together with the students'.

Teacher targets are cached logits: one table for every run (``[n, classes]``), or one table per
run (``[N, n, classes]`` or a list), so that born-again generation k of seed s distils from
generation k-1 of seed s while all seeds train together. ``teacher=`` runs a live teacher forward
every batch instead (needed with augmentation, where the teacher must see each augmented view).

Seeds: ``RunSpec.seed`` fixes the initial weights, ``RunSpec.data_seed`` (default: the same) the
order of the batches, so "alone" and "distilled" with the same seed are a paired comparison, and
peers with different weights can share their batches.

Speed, what makes a seeds-by-methods grid affordable on a CPU:

* **Teacher-logit caching**: a KD epoch costs what a cross-entropy epoch costs.
* **Stacking** (``course_lib.stacking``): runs of one architecture train as one stacked module,
  each with its own data order and settings; ``Execution`` says whether, how many per stack
  and on which device (the one place for those settings).

Teachers are deep-copied, frozen and kept in eval mode (``freeze``): a teacher is never the same
object as a student. Models may return several outputs (a tuple of logits, e.g. a class head and a
distillation head): every head is evaluated, and the prediction is the mean of their logits.

Longer than the package's ~500-line guide because it is one idea: the one loop every image
notebook trains through (runs, objectives, cached teacher logits, evaluation and history share its
state); split, each part would need the others' internals.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import TensorData
from .losses import kd_loss
from .modes import eval_mode
from .profiles import get_device
from .stacking import can_stack, stack_models
from .validation import check_choice, check_fraction, check_logits, check_temperature

@dataclass(frozen=True)
class RunSpec:
    """One training run: a name (the method), seeds and the KD settings (alpha=0: no teacher).

    ``seed`` fixes the initial weights; ``data_seed`` the batch order (None: ``seed``).
    """

    name: str
    seed: int = 0
    temperature: float = 1.0
    alpha: float = 0.0
    direction: str = "forward"
    label_smoothing: float = 0.0   # applied to the hard-label cross-entropy term
    data_seed: int | None = None

    def __post_init__(self):
        check_temperature(self.temperature, allow_tensor=False)
        check_fraction("alpha", self.alpha, allow_tensor=False, meaning="the weight of the distillation term")
        check_fraction("label_smoothing", self.label_smoothing, allow_tensor=False)
        check_choice("direction", self.direction, ("forward", "reverse"))

    @property
    def uses_teacher(self) -> bool:
        return self.alpha > 0

    @property
    def order_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


@dataclass(frozen=True)
class TrainConfig:
    """What is trained how long: epochs, batch size, AdamW settings, schedule, monitoring."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"       # "cosine" (per step) or "constant"
    eval_every: int = 10           # epochs between evaluations on the monitor set (0: never)

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")

    @classmethod
    def from_profile(cls, profile, epochs: int | None = None, **changes) -> TrainConfig:
        v = profile.vision
        settings = dict(epochs=epochs if epochs is not None else v.student_epochs, batch_size=v.batch_size,
                        lr=v.lr, weight_decay=v.weight_decay, eval_every=v.eval_every)
        return cls(**{**settings, **changes})


@dataclass(frozen=True)
class Execution:
    """Where and how runs execute - never what they compute.

    ``device``: None picks ``profiles.get_device()`` (cuda, then mps, then cpu). ``stack``: train
    runs of one stackable architecture as one module, at most ``max_stack`` per stack (balanced:
    14 runs with 6 -> 5, 5, 4); ``stack_method`` is passed to ``stacking.stack_models``.
    ``progress``: tqdm bars.
    """

    device: str | torch.device | None = None
    stack: bool = True
    max_stack: int | None = 6
    stack_method: str = "auto"
    progress: bool = True

    def resolved_device(self) -> torch.device:
        return torch.device(self.device) if self.device is not None else get_device()


@dataclass
class Step:
    """One training step of a group of N models (batch B), as objectives and extra losses see it."""

    epoch: int
    group: nn.Module               # the stacked module, or the single model being trained
    stacked: bool
    specs: list[RunSpec]           # the N runs of this group
    x: torch.Tensor                # [N, B, ...] inputs (after augmentation)
    y: torch.Tensor                # [N, B] labels
    idx: torch.Tensor              # [N, B] row numbers in the training set (to read cached tensors)
    outputs: torch.Tensor | tuple  # [N, B, classes], or a tuple of them (one per head)
    teacher_logits: torch.Tensor | None   # [N, B, classes]: each run's own targets, or None

    @property
    def logits(self) -> torch.Tensor:
        """The first (or only) head's logits, ``[N, B, classes]``."""
        return heads(self.outputs)[0]


@dataclass
class Run:
    """A finished run: its spec, the trained model and its history (one entry per epoch)."""

    spec: RunSpec
    model: nn.Module
    history: dict[str, list] = field(default_factory=dict)
    seconds: float = 0.0
    test_accuracy: float | None = None            # of the prediction (mean of the heads' logits)
    test_accuracy_heads: list[float] | None = None  # one per head, when the model has several


def heads(outputs) -> tuple[torch.Tensor, ...]:
    """A model's outputs as a tuple of logits tensors (one per head)."""
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def prediction(outputs) -> torch.Tensor:
    """The logits a model predicts with: its only head, or the mean of its heads' logits (DeiT)."""
    hs = heads(outputs)
    return hs[0] if len(hs) == 1 else torch.stack(hs).mean(0)


class HintonKD(nn.Module):
    """The default objective: ``alpha T^2 KL(p_t^T || p_s^T) + (1 - alpha) CE`` for each run.

    Reads each run's temperature, alpha, KL direction and label smoothing from its ``RunSpec``.
    Returns ``(loss [N], {"ce": [N], "kl": [N]})``.
    """

    def __init__(self, specs: Sequence[RunSpec], device=None):
        super().__init__()
        directions = {s.direction for s in specs}
        if len(directions) > 1:
            raise ValueError("runs trained together must share the KL direction")
        self.direction = directions.pop()
        self.register_buffer("temperature", torch.tensor([[s.temperature] for s in specs], device=device))
        self.register_buffer("alpha", torch.tensor([[s.alpha] for s in specs], device=device))
        self.register_buffer("smoothing", torch.tensor([[s.label_smoothing] for s in specs], device=device))
        self.any_teacher = any(s.alpha > 0 for s in specs)          # decided once, on the host
        self.any_smoothing = any(s.label_smoothing > 0 for s in specs)

    def forward(self, step: Step):
        if len(heads(step.outputs)) > 1:
            raise ValueError("HintonKD trains a single head; a model with several heads needs its own "
                             "objective (e.g. course_lib.engine.DeiT-style two-head loss)")
        logits = step.outputs
        target = step.teacher_logits if step.teacher_logits is not None else logits.detach()
        loss, parts = kd_loss(logits, target, step.y, self.temperature, self.alpha, direction=self.direction,
                              label_smoothing=self.smoothing, reduction="none", return_parts=True,
                              validate=False, use_kl=self.any_teacher, use_smoothing=self.any_smoothing,
                              ignore_index=None)
        return loss.mean(1), {"ce": parts["ce"].mean(1), "kl": parts["kl"].mean(1)}


ObjectiveFactory = Callable[["GroupContext"], nn.Module]


class TransferSetKD(HintonKD):
    """Hinton's loss on a **transfer set**: labelled rows and rows whose labels are never used.

    ``labelled[i]`` (bool, one per training row) says whether row ``i``'s label may be used. A
    labelled row gets each run's ``alpha T^2 KL + (1 - alpha) CE``; an unlabelled row the soft term
    alone, ``T^2 KL`` (alpha = 1): its label never enters the loss or its gradient, whatever it is
    (Hinton et al. 2015 distil on a transfer set of which only part need be labelled). Every run must
    distil (``alpha > 0``). Returns ``(loss [N], {"ce": [N], "kl": [N]})``, ``ce`` over labelled rows.
    """

    def __init__(self, specs: Sequence[RunSpec], labelled: torch.Tensor, device=None):
        super().__init__(specs, device)
        if any(not s.uses_teacher for s in specs):
            raise ValueError("every run on a transfer set must distil (alpha > 0): an unlabelled row has "
                             "nothing else to learn from; train the students alone on the labelled rows only")
        labelled = torch.as_tensor(labelled)
        if labelled.dim() != 1 or labelled.dtype != torch.bool:
            raise ValueError(f"labelled must be a 1-d bool tensor (one flag per training row), "
                             f"got {labelled.dtype} of shape {tuple(labelled.shape)}")
        self.register_buffer("labelled", labelled.to(device))
        self._checked = False

    def forward(self, step: Step):
        if len(heads(step.outputs)) > 1:
            raise ValueError("TransferSetKD trains a single head")
        if not self._checked:                                                 # once: it waits for the device
            if int(step.idx.max()) >= len(self.labelled):
                raise ValueError(f"labelled has {len(self.labelled)} flags but the training set has more rows")
            self._checked = True
        has_label = self.labelled[step.idx]                                   # [N, B]
        alpha = torch.where(has_label, self.alpha, torch.ones_like(self.alpha))
        y = torch.where(has_label, step.y, torch.zeros_like(step.y))          # never read where unlabelled
        loss, parts = kd_loss(step.outputs, step.teacher_logits, y, self.temperature, alpha,
                              direction=self.direction, label_smoothing=self.smoothing, reduction="none",
                              return_parts=True, validate=False, use_kl=True, use_smoothing=self.any_smoothing,
                              ignore_index=None)
        weight = has_label.to(parts["ce"])
        ce = (parts["ce"] * weight).sum(1) / weight.sum(1).clamp_min(1)
        return loss.mean(1), {"ce": ce.detach(), "kl": parts["kl"].mean(1)}


def transfer_set_kd(labelled: torch.Tensor) -> ObjectiveFactory:
    """``objective`` factory for ``fit``: :class:`TransferSetKD` with the row flags ``labelled``."""
    return lambda ctx: TransferSetKD(ctx.specs, labelled, ctx.device)



@dataclass
class GroupContext:
    """What an objective or extra-loss factory is given when a group of runs starts training."""

    module: nn.Module              # the stacked module (or single model) being trained
    specs: list[RunSpec]
    stacked: bool
    device: torch.device

    @property
    def n_models(self) -> int:
        return len(self.specs)


def default_objective(ctx: GroupContext) -> nn.Module:
    return HintonKD(ctx.specs, ctx.device)


class ModelList(nn.Module):
    """Several models of any class as one module on ``[N, B, ...]`` inputs (a Python loop).

    The fallback for runs that must train together (``couples_runs`` objectives such as mutual
    learning) when their architecture cannot be stacked. Sub-module paths are ``"0.conv1"``, ...
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.n_models = len(models)

    def forward(self, x: torch.Tensor):
        outs = [heads(m(x[i])) for i, m in enumerate(self.models)]
        stacked = tuple(torch.stack(h) for h in zip(*outs))
        return stacked[0] if len(stacked) == 1 else stacked

    def unstack(self) -> list[nn.Module]:
        return list(self.models)


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
def predict_outputs(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, ...]:
    """Every head's logits of ``model`` (in eval mode; its mode is restored) over ``x``, on the CPU."""
    with eval_mode(model):
        device = _device_of(model)
        chunks = [heads(model(x[i:i + batch_size].to(device))) for i in range(0, len(x), batch_size)]
    return tuple(torch.cat([c[h].float().cpu() for c in chunks]) for h in range(len(chunks[0])))


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The logits ``model`` predicts with (mean over heads if it has several), ``[n, classes]``."""
    return prediction(predict_outputs(model, x, batch_size))


def cache_logits(teacher: nn.Module, data: TensorData | torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Run the (frozen) teacher once over the training images: ``[n, classes]`` logits."""
    x = data.x if isinstance(data, TensorData) else data
    return predict_logits(freeze(teacher), x, batch_size)


def logits_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent: ``logits`` ``[n, classes]``, ``labels`` ``[n]`` class indices."""
    check_logits("logits", logits, dims=2, layout="[n, classes]", finite=False)
    if not torch.is_tensor(labels) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got "
                        f"{labels.dtype if torch.is_tensor(labels) else type(labels).__name__}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"{logits.shape[0]} predictions for {labels.shape[0] if labels.dim() else 0} labels: labels "
                         f"must be [n] = ({logits.shape[0]},), got {tuple(labels.shape)}")
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> float:
    """Top-1 test accuracy (percent) of one model's prediction."""
    return logits_accuracy(predict_logits(model, data.x, batch_size), data.y)


def evaluate_heads(model: nn.Module, data: TensorData, batch_size: int = 1000) -> dict:
    """Accuracy of the prediction and of each head: ``{"prediction": a, "heads": [a1, a2, ...]}``."""
    outs = predict_outputs(model, data.x, batch_size)
    return {"prediction": logits_accuracy(prediction(outs), data.y),
            "heads": [logits_accuracy(h, data.y) for h in outs]}


def _forward(group: nn.Module, stacked: bool, x: torch.Tensor):
    """``x`` is ``[N, B, ...]``; returns ``[N, B, classes]`` (or a tuple of them, one per head)."""
    if stacked:
        return group(x)
    out = tuple(h.unsqueeze(0) for h in heads(group(x[0])))
    return out[0] if len(out) == 1 else out


@torch.no_grad()
def _evaluate_group(group: nn.Module, stacked: bool, n: int, data: TensorData,
                    batch_size: int = 500) -> tuple[list[float], list[list[float]], list[float]]:
    """Per model: accuracy of the prediction, of each head, and how often all heads agree (100 for one head)."""
    with eval_mode(group):
        device = _device_of(group)
        correct, correct_heads, agree = torch.zeros(n), None, torch.zeros(n)
        for i in range(0, len(data), batch_size):
            x = data.x[i:i + batch_size].to(device)
            y = data.y[i:i + batch_size].to(device)
            out = _forward(group, stacked, x.unsqueeze(0).expand(n, *x.shape))
            correct += (prediction(out).argmax(-1) == y).sum(-1).float().cpu()
            votes = torch.stack([h.argmax(-1) for h in heads(out)])                     # [H, N, B]
            per_head = (votes == y).sum(-1).float().cpu()                                 # [H, N]
            correct_heads = per_head if correct_heads is None else correct_heads + per_head
            agree += (votes == votes[0]).all(0).sum(-1).float().cpu()
    to_pct = lambda c: (100.0 * c / len(data)).tolist()
    return to_pct(correct), [to_pct(c) for c in correct_heads.t()], to_pct(agree)


@dataclass
class _Job:
    """Everything ``fit`` was given, in one place, for the training of each group."""

    train: TensorData
    config: TrainConfig
    execution: Execution
    device: torch.device
    tables: list[torch.Tensor | None]      # per spec: its cached teacher logits [n, classes], or None
    teacher: nn.Module | None              # a frozen live teacher, or None
    monitor: TensorData | None
    augment: Callable | None
    objective: ObjectiveFactory
    extra_loss: ObjectiveFactory | None
    desc: str


def _per_run_tables(teacher_logits, specs: list[RunSpec], n_rows: int) -> list[torch.Tensor | None]:
    """``teacher_logits`` as one table (or None) per spec."""
    if teacher_logits is None:
        return [None] * len(specs)
    if torch.is_tensor(teacher_logits) and teacher_logits.dim() == 2:
        tables = [teacher_logits] * len(specs)           # one table shared by every run
    elif torch.is_tensor(teacher_logits) and teacher_logits.dim() == 3:
        tables = list(teacher_logits.unbind(0))
    elif isinstance(teacher_logits, (list, tuple)):
        tables = list(teacher_logits)
    else:
        raise TypeError("teacher_logits must be a [n, classes] tensor (shared), a [runs, n, classes] tensor "
                        "or a list with one [n, classes] tensor (or None) per RunSpec")
    if len(tables) != len(specs):
        raise ValueError(f"{len(tables)} teacher-logit tables for {len(specs)} runs: give one per RunSpec "
                         "(or a single [n, classes] table shared by all)")
    checked = set()
    for s, t in zip(specs, tables):
        if t is None or id(t) in checked:
            continue
        if t.dim() != 2 or t.shape[0] != n_rows:
            raise ValueError(f"teacher_logits for run {s.name!r} (seed {s.seed}) has shape {tuple(t.shape)}; "
                             f"expected [{n_rows} rows (one per training image), classes]")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise ValueError(f"teacher_logits for run {s.name!r} (seed {s.seed}) must be finite floats")
        checked.add(id(t))
    return tables


def fit(make_model: Callable[[], nn.Module], specs: list[RunSpec], train: TensorData, config: TrainConfig,
        *, teacher_logits=None, teacher: nn.Module | None = None,
        objective: ObjectiveFactory | None = None, extra_loss: ObjectiveFactory | None = None,
        monitor: TensorData | None = None, test: TensorData | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        execution: Execution | None = None, desc: str = "") -> list[Run]:
    """Train one model per spec; return the runs in the order of ``specs``.

    ``make_model()`` builds a fresh model; it is called after ``torch.manual_seed(spec.seed)``.
    Teacher targets: ``teacher_logits`` - a ``[len(train), classes]`` table shared by all runs, a
    ``[len(specs), len(train), classes]`` tensor or a list with one table (or None) per spec - or
    ``teacher``, a live teacher run on every batch (required with ``augment``).

    ``objective(ctx)`` builds, for each group of runs trained together, the module that maps a
    ``Step`` to per-model losses ``[N]`` (or ``(losses, {"part": [N], ...})``, parts go to the
    history); default ``HintonKD``. If the module has ``couples_runs = True`` (its loss for one model
    reads the others' outputs, as in mutual learning), all specs train in one group. ``extra_loss(ctx)``
    builds a module whose per-model losses are added (history key ``"extra"``). Parameters of both
    are optimised together with the students'; a ``close()`` method is called when the group is done.

    ``monitor`` is evaluated every ``config.eval_every`` epochs and at the end (learning curves);
    ``test`` once at the end. ``execution`` (default ``Execution()``) says on which device and
    whether runs are stacked.
    """
    if not specs:
        raise ValueError("fit needs at least one RunSpec")
    execution = execution or Execution()
    tables = _per_run_tables(teacher_logits, specs, len(train))
    if teacher is None and any(s.uses_teacher and t is None for s, t in zip(specs, tables)):
        raise ValueError("a run with alpha > 0 needs teacher_logits (cached) or teacher")
    if teacher_logits is not None and augment is not None:
        raise ValueError("cached teacher logits belong to the un-augmented images; with augment= "
                         "pass teacher= so the teacher sees each augmented view")
    if train.y.dtype != torch.long or not len(train) or int(train.y.min()) < 0:
        raise ValueError("the training set must be non-empty, its labels int64 class indices >= 0")
    device = execution.resolved_device()
    job = _Job(train, config, execution, device, tables,
               freeze(teacher).to(device) if teacher is not None else None, monitor, augment,
               objective or default_objective, extra_loss, desc)

    models = []
    for s in specs:
        torch.manual_seed(s.seed)
        models.append(make_model())
    coupled = bool(getattr(objective, "couples_runs", False))
    stackable = execution.stack and len(specs) > 1 and can_stack(models)
    if coupled:
        groups = [list(range(len(specs)))]
    elif stackable:
        n_groups = math.ceil(len(specs) / (execution.max_stack or len(specs)))   # balanced: 14 -> 5, 5, 4
        bounds = [round(i * len(specs) / n_groups) for i in range(n_groups + 1)]
        groups = [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]
    else:
        groups = [[i] for i in range(len(specs))]

    runs: list[Run | None] = [None] * len(specs)
    for members in groups:
        group_models = [models[i] for i in members]
        if len(members) == 1:
            module, stacked = group_models[0], False
        elif stackable:
            module, stacked = stack_models(group_models, method=execution.stack_method), True
        else:
            module, stacked = ModelList(group_models), True
        trained, histories, seconds = _train_group(job, module, stacked, [specs[i] for i in members],
                                                   [tables[i] for i in members])
        for i, m, h in zip(members, trained, histories):
            runs[i] = Run(specs[i], m, h, seconds / len(members))
    if test is not None:
        for r in runs:
            result = evaluate_heads(r.model, test)
            r.test_accuracy = result["prediction"]
            r.test_accuracy_heads = result["heads"] if len(result["heads"]) > 1 else None
    return runs


def _targets_reader(tables: list[torch.Tensor | None], device):
    """A function ``idx [N, B] -> [N, B, classes]`` reading each run's own table (None: no table)."""
    present = [t for t in tables if t is not None]
    if not present:
        return None
    if all(t is present[0] for t in tables):        # one table shared by every run of the group
        table = present[0].to(device)
        return lambda idx: table[idx]
    stacked = torch.stack([t if t is not None else torch.zeros_like(present[0]) for t in tables]).to(device)
    rows = torch.arange(len(tables), device=device)[:, None]
    return lambda idx: stacked[rows, idx]


def _as_loss_and_parts(out, n: int, what: str):
    loss, parts = out if isinstance(out, tuple) else (out, {})
    if not torch.is_tensor(loss) or loss.shape != (n,):
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise ValueError(f"{what} must return one value per model, shape ({n},); got {shape}")
    return loss, parts


def _train_group(job: _Job, module: nn.Module, stacked: bool, specs: list[RunSpec],
                 tables: list[torch.Tensor | None]):
    n, config, device = len(specs), job.config, job.device
    group = module.to(device).train()
    ctx = GroupContext(group, specs, stacked, device)
    objective = job.objective(ctx).to(device).train()
    extra = job.extra_loss(ctx).to(device).train() if job.extra_loss is not None else None
    params = [p for m in (group, objective, extra) if m is not None for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(job.train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    schedule = (lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))) \
        if config.schedule == "cosine" else (lambda step: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    generators = [torch.Generator().manual_seed(s.order_seed) for s in specs]
    aug_gen = torch.Generator().manual_seed(specs[0].order_seed + 10_007)
    x_all, y_all = job.train.x.to(device), job.train.y.to(device)
    read_targets = _targets_reader(tables, device)
    live_teacher = job.teacher if read_targets is None and any(s.uses_teacher for s in specs) else None
    max_label = int(job.train.y.max())     # checked against the models' class count at the first step

    history = [{"epoch": [], "monitor_epoch": [], "monitor_acc": []} for _ in range(n)]
    label = job.desc or (specs[0].name if n == 1 else f"{n} runs")
    bar = tqdm(range(1, config.epochs + 1), desc=label, disable=not job.execution.progress, leave=False)
    start = time.perf_counter()
    for epoch in bar:
        perms = torch.stack([torch.randperm(len(job.train), generator=g) for g in generators]).to(device)
        sums: dict[str, torch.Tensor] = {}
        for step in range(steps_per_epoch):
            idx = perms[:, step * config.batch_size:(step + 1) * config.batch_size]   # [N, B]
            xb, yb = x_all[idx], y_all[idx]
            if job.augment is not None:
                xb = job.augment(xb.flatten(0, 1), aug_gen).view_as(xb)
            if read_targets is not None:
                tb = read_targets(idx)
            elif live_teacher is not None:
                with torch.no_grad():
                    tb = live_teacher(xb.flatten(0, 1)).view(*idx.shape, -1)
            else:
                tb = None
            outputs = _forward(group, stacked, xb)
            if max_label is not None:
                classes = heads(outputs)[0].shape[-1]
                if max_label >= classes:
                    raise ValueError(f"label {max_label} in the training set, but the model outputs {classes} "
                                     f"classes (labels must lie in 0..{classes - 1})")
                max_label = None
            s = Step(epoch, group, stacked, specs, xb, yb, idx, outputs, tb)
            per_model, parts = _as_loss_and_parts(objective(s), n, "the objective")
            terms = {"loss": per_model, **parts}
            if extra is not None:
                extra_term, _ = _as_loss_and_parts(extra(s), n, "extra_loss")
                per_model = per_model + extra_term
                terms["loss"], terms["extra"] = per_model, extra_term
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()      # sum: each model gets exactly its own gradient
            opt.step()
            sched.step()
            with torch.no_grad():
                for k, v in terms.items():
                    v = v.detach() * idx.shape[1]
                    sums[k] = sums[k] + v if k in sums else v
        for k, v in sums.items():
            means = (v / len(job.train)).cpu().tolist()
            for i in range(n):
                history[i].setdefault(k, []).append(float(means[i]))
        for i in range(n):
            history[i]["epoch"].append(epoch)
        if job.monitor is not None and config.eval_every and (epoch % config.eval_every == 0
                                                               or epoch == config.epochs):
            accs, accs_heads, agreement = _evaluate_group(group, stacked, n, job.monitor)
            for i in range(n):
                history[i]["monitor_epoch"].append(epoch)
                history[i]["monitor_acc"].append(accs[i])
                if len(accs_heads[i]) > 1:
                    history[i].setdefault("monitor_acc_heads", []).append(accs_heads[i])
                    history[i].setdefault("monitor_head_agreement", []).append(agreement[i])
            bar.set_postfix(loss=f"{sum(history[i]['loss'][-1] for i in range(n)) / n:.3f}",
                            acc=f"{sum(accs) / len(accs):.1f}")
    seconds = time.perf_counter() - start
    for m in (objective, extra):
        if m is not None and hasattr(m, "close"):
            m.close()
    trained = group.unstack() if stacked else [group]
    for m in trained:
        m.eval()
    return trained, history, seconds

