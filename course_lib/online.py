"""Born-again networks, online (mutual) distillation and ensembles - all through ``engine.fit``.

**Born-again networks** (Furlanello et al., ICML 2018): generation 1 is trained on the labels;
generation k is the same architecture, trained from scratch and distilled from generation k-1.
``born_again`` trains all seeds of one generation together (stacked), each distilling from *its
own* previous generation: the previous generation's logits are cached per seed (one table per run,
``[N, n, classes]``) from a **frozen deep copy** (``engine.freeze``). A known bug elsewhere passes
the same module object as teacher and student, so re-initialising the student re-initialises the
teacher; here every teacher is a distinct object with its own parameters, in eval mode, without
gradients, and it is kept with the result (``BornAgain.teachers``).

**Deep mutual learning** (Zhang et al., CVPR 2018): two or more students train together from
scratch, each on ``CE(z_i, y) + weight * T^2 * mean_{j != i} KL(p_j^T || p_i^T)``, where ``p_j``
is peer ``j``'s *current* prediction on the same batch, detached: each student treats its peers'
predictions as targets. The paper updates the peers in turn on each batch (peer 2's loss
uses peer 1's prediction after peer 1's step); here all peers are updated together, from the
logits of the same step - a simultaneous variant, which lets every peer of every seed train in
one stack. ``MutualLearning`` is an objective
with ``couples_runs = True``: ``fit`` keeps all peers in one group (one stack). Which runs are peers
is a function of the ``RunSpec`` (default: runs with the same data order, ``data_seed`` or else
``seed`` - peers see the same batches, and get different initial weights from their ``seed``).

**Ensembles**: ``ensemble_logits(models, x, how)`` (``combine_logits`` for logits already computed)
averages the members' probabilities (``how="probs"``, the default: the ensemble's prediction is a
mixture of its members' predictive distributions, as BAN's ensembles are reported) or their logits
(``how="logits"``, a geometric mean of the distributions); ``ensemble_accuracy`` scores it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorData
from .engine import Execution, Run, RunSpec, TrainConfig, cache_logits, fit, freeze, logits_accuracy, predict_logits
from .losses import soft_target_kl
from .validation import check_choice, check_fraction, check_logits, check_positive_int, check_temperature, check_weight


@dataclass
class BornAgain:
    """``generations[k][i]``: the run of generation ``k + 1``, seed ``seeds[i]``; ``teachers[k][i]``:
    the frozen copy generation ``k + 2`` of that seed distilled from (``teachers[0]`` taught generation 2)."""

    seeds: tuple[int, ...]
    generations: list[list[Run]] = field(default_factory=list)
    teachers: list[list[nn.Module]] = field(default_factory=list)

    def models(self, seed_index: int) -> list[nn.Module]:
        """Generation 1, 2, ... of one seed."""
        return [gen[seed_index].model for gen in self.generations]


def born_again(make_model: Callable[[], nn.Module], seeds: Sequence[int], train: TensorData, config: TrainConfig,
               *, generations: int = 3, temperature: float = 4.0, alpha: float = 0.9, first: list[Run] | None = None,
               test: TensorData | None = None, monitor: TensorData | None = None,
               execution: Execution | None = None, name: str = "gen") -> BornAgain:
    """Train ``generations`` born-again generations for every seed; generation ``k`` of seed ``s``
    distils (``temperature``, ``alpha``: Hinton's loss) from a frozen copy of generation ``k - 1`` of seed ``s``.

    Run names are ``f"{name}{k}"``; generation ``k`` of seed ``s`` uses weight seed ``s + 1000 * (k - 1)``
    (a new initialisation each generation, as in BAN) and data order ``s``. ``first`` reuses runs
    already trained on the labels (one per seed, in order) as generation 1.
    """
    check_positive_int("generations", generations)
    check_temperature(temperature, allow_tensor=False)
    check_fraction("alpha", alpha, allow_tensor=False, meaning="the weight of the distillation term")
    seeds = tuple(seeds)
    result = BornAgain(seeds)
    if first is not None:
        if [r.spec.seed for r in first] != list(seeds) or any(r.spec.uses_teacher for r in first):
            raise ValueError("first must hold one run per seed, in the order of seeds, trained on the labels alone")
        result.generations.append(list(first))
    else:
        specs = [RunSpec(f"{name}1", s) for s in seeds]
        result.generations.append(fit(make_model, specs, train, config, test=test, monitor=monitor,
                                      execution=execution, desc=f"{name}1"))
    for k in range(2, generations + 1):
        teachers = [freeze(run.model) for run in result.generations[-1]]          # distinct frozen copies
        tables = [cache_logits(t, train) for t in teachers]                        # one table per seed
        specs = [RunSpec(f"{name}{k}", s + 1000 * (k - 1), temperature, alpha, data_seed=s) for s in seeds]
        result.teachers.append(teachers)
        result.generations.append(fit(make_model, specs, train, config, teacher_logits=tables, test=test,
                                      monitor=monitor, execution=execution, desc=f"{name}{k}"))
    return result


class MutualLearning(nn.Module):
    """Deep mutual learning: ``CE(z_i, y) + weight * T^2 * mean over peers j of KL(p_j^T || p_i^T)``.

    Peers are the runs with equal ``peers_of(spec)`` (default: ``spec.order_seed``, the data order:
    ``data_seed``, else ``seed``); a run without a peer is an error. Returns per-model losses and
    the parts ``ce`` and ``kl``.
    """

    couples_runs = True

    def __init__(self, ctx, *, temperature: float = 1.0, weight: float = 1.0,
                 peers_of: Callable[[RunSpec], object] | None = None):
        super().__init__()
        check_temperature(temperature, allow_tensor=False)
        check_weight("weight", weight, allow_tensor=False, meaning="the weight of the peers' KL term")
        keys = [(peers_of or (lambda s: s.order_seed))(s) for s in ctx.specs]
        same = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32)
        same.fill_diagonal_(0)
        lonely = [s for s, row in zip(ctx.specs, same) if row.sum() == 0]
        if lonely:
            raise ValueError(f"mutual learning needs at least one peer per run; alone: {lonely}")
        self.register_buffer("peer_weights", (same / same.sum(1, keepdim=True)).to(ctx.device))   # [N, N]
        self.temperature, self.weight = float(temperature), float(weight)

    def forward(self, step):
        logits = step.logits                                                  # [N, B, C]
        n = logits.shape[0]
        ce = F.cross_entropy(logits.flatten(0, 1), step.y.flatten(), reduction="none").view(step.y.shape).mean(1)
        targets = logits.detach()
        t = self.temperature
        # kl[i, j] = KL(p_j || p_i), per model pair, averaged over the batch
        kl = torch.stack([soft_target_kl(logits, targets[j].expand_as(logits), t, validate=False).mean(1)
                          for j in range(n)], dim=1)
        distill = (self.peer_weights * kl).sum(1) * t * t
        return ce + self.weight * distill, {"ce": ce.detach(), "kl": distill.detach()}


def mutual_learning(*, temperature: float = 1.0, weight: float = 1.0, peers_of=None):
    """``objective`` factory for ``fit``: deep mutual learning among peers (see ``MutualLearning``)."""
    check_temperature(temperature, allow_tensor=False)
    check_weight("weight", weight, allow_tensor=False, meaning="the weight of the peers' KL term")
    factory = partial(MutualLearning, temperature=temperature, weight=weight, peers_of=peers_of)
    factory.couples_runs = True           # fit reads it from the factory: all peers in one group
    return factory


def combine_logits(logits: Sequence[torch.Tensor], how: str = "probs") -> torch.Tensor:
    """Combine members' logits ``[n, classes]`` (already computed) into the ensemble's scores: mean
    probability (``"probs"``; returned as its log, so argmax and softmax work as on logits) or mean
    logits (``"logits"``)."""
    check_choice("how", how, ("probs", "logits"))
    if not len(logits):
        raise ValueError("an ensemble needs at least one model: pass a list of logits tensors, one per member")
    for i, z in enumerate(logits):
        check_logits(f"logits[{i}]", z)
        if z.shape != logits[0].shape:
            raise ValueError(f"logits[{i}] has shape {tuple(z.shape)}, logits[0] {tuple(logits[0].shape)}: every "
                             f"member must score the same examples over the same classes")
    outs = torch.stack(list(logits))                                    # [M, n, C]
    if how == "logits":
        return outs.mean(0)
    return outs.softmax(-1).mean(0).log()


@torch.no_grad()
def ensemble_logits(models: Sequence[nn.Module], x: torch.Tensor, how: str = "probs") -> torch.Tensor:
    """The ensemble's scores ``[n, classes]`` on ``x`` (see ``combine_logits``)."""
    check_choice("how", how, ("probs", "logits"))
    if not models:
        raise ValueError("an ensemble needs at least one model")
    return combine_logits([predict_logits(m, x) for m in models], how)


def ensemble_accuracy(models: Sequence[nn.Module], data: TensorData, how: str = "probs") -> float:
    """Top-1 accuracy (percent) of ``ensemble_logits(models, data.x, how)``."""
    return logits_accuracy(ensemble_logits(models, data.x, how), data.y)
