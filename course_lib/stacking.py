"""Train several small models as one: stacked modules.

N students of the same architecture - different seeds, or different distillation settings - are
independent problems, but each one alone is too small to keep a CPU busy. Stacking them makes one
module that holds all N weight sets and computes all N models in each call. Every model still sees
its own inputs and gets exactly its own gradient (the loss is a *sum* of per-model losses, and AdamW
is elementwise), so training the stack is the same computation as training the N models one by
one - tests check that parameters agree after several steps.

A stacked module takes ``[N, B, ...]`` inputs (model ``n`` sees ``x[n]``) and returns what one model
returns with a leading ``N`` (``[N, B, classes]``, or a tuple of such tensors for multi-head models);
``module.unstack()`` gives back ordinary, independent models with the trained weights. Two ways of
building one:

* ``"grouped"`` - hand-written classes (``StackedStudentCNN``): a convolution with ``groups=N`` runs
  N convolutions in one kernel call, ``torch.baddbmm`` runs N linear layers. Inside, conv
  activations live as ``[B, N*C, H, W]`` (model ``n`` owns channels ``n*C ... (n+1)*C - 1``), which
  ``split_models`` views as ``[N, B, C, H, W]`` (feature hooks rely on this layout).
* ``"vmap"`` - ``VmapStack``, generic: ``torch.func.stack_module_state`` stacks the N weight sets into
  ``[N, ...]`` parameters and ``torch.vmap`` maps ``torch.func.functional_call`` over them. Works for
  any architecture without BatchNorm.

``stack_models(models, method="auto")`` picks the mechanism per class (``STACK_METHOD``; classes not
listed get ``"vmap"``), a choice based on ``scripts/benchmark.py`` ("stacking"): ``StudentCNN`` keeps
``"grouped"``, which the benchmark finds about as fast as vmap, because it is what the course's
results were computed with (vmap rounds differently) and feature hooks rely on its layout.
``can_stack(models)`` says whether a list can be stacked at all. Models with BatchNorm cannot: their
batch statistics (and running-statistics buffers, updated in place) would have to be kept per model.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from .models import StudentCNN, ViT


def split_models(h: torch.Tensor, n_models: int) -> torch.Tensor:
    """``[B, N*C, H, W]`` -> ``[N, B, C, H, W]`` (a view when possible)."""
    b, nc = h.shape[:2]
    return h.reshape(b, n_models, nc // n_models, *h.shape[2:]).transpose(0, 1)


def merge_models(x: torch.Tensor) -> torch.Tensor:
    """``[N, B, C, H, W]`` -> ``[B, N*C, H, W]``."""
    n, b, c = x.shape[:3]
    return x.transpose(0, 1).reshape(b, n * c, *x.shape[3:])


class GroupedConv2d(nn.Module):
    """N independent ``Conv2d`` layers as one grouped convolution on ``[B, N*C, H, W]``."""

    def __init__(self, convs: list[nn.Conv2d]):
        super().__init__()
        c0 = convs[0]
        self.n_models = len(convs)
        self.stride, self.padding = c0.stride, c0.padding
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in convs]).clone())
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in convs]).clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, self.weight, self.bias, self.stride, self.padding, groups=self.n_models)

    def unstack(self) -> list[nn.Conv2d]:
        n = self.n_models
        out_c, in_c, kh, kw = self.weight.shape
        convs = []
        for w, b in zip(self.weight.detach().chunk(n), self.bias.detach().chunk(n)):
            conv = nn.Conv2d(in_c, out_c // n, (kh, kw), self.stride, self.padding,
                             device=w.device, dtype=w.dtype)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            convs.append(conv)
        return convs


class GroupedLinear(nn.Module):
    """N independent ``Linear`` layers on ``[N, B, in]`` -> ``[N, B, out]`` (one batched matmul)."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach().t() for l in linears]).clone())
        self.bias = nn.Parameter(torch.stack([l.bias.detach()[None] for l in linears]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def unstack(self) -> list[nn.Linear]:
        out = []
        for w, b in zip(self.weight.detach(), self.bias.detach()):
            lin = nn.Linear(w.shape[0], w.shape[1], device=w.device, dtype=w.dtype)
            lin.weight.data.copy_(w.t())
            lin.bias.data.copy_(b[0])
            out.append(lin)
        return out


class StackedStudentCNN(nn.Module):
    """N ``StudentCNN`` models as one module: ``[N, B, C, H, W]`` -> ``[N, B, classes]``."""

    def __init__(self, models: list[StudentCNN]):
        super().__init__()
        self.n_models = len(models)
        self.template = copy.deepcopy(models[0])  # architecture for unstack(), not trained
        for p in self.template.parameters():
            p.requires_grad_(False)
        self.conv1 = GroupedConv2d([m.conv1 for m in models])
        self.conv2 = GroupedConv2d([m.conv2 for m in models])
        self.fc = GroupedLinear([m.fc for m in models])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_models
        h = torch.relu(self.conv1(merge_models(x).contiguous(memory_format=torch.channels_last)))
        h = torch.relu(self.conv2(h))
        h = split_models(h, n).reshape(n, h.shape[0], -1)
        return self.fc(h)

    def unstack(self) -> list[StudentCNN]:
        models = []
        for c1, c2, fc in zip(self.conv1.unstack(), self.conv2.unstack(), self.fc.unstack()):
            m = copy.deepcopy(self.template)
            m.conv1, m.conv2, m.fc = c1, c2, fc
            for p in m.parameters():
                p.requires_grad_(True)
            models.append(m)
        return models


def _batchnorm_layers(model: nn.Module) -> list[str]:
    """Names of the layers that normalise with batch statistics or keep running statistics."""
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            or (isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats)]


class VmapStack(nn.Module):
    """N models of one class as one module, by ``torch.vmap`` over ``torch.func.functional_call``.

    ``self.stacked`` is a copy of the first model whose parameters (and buffers) are replaced by
    ``[N, ...]`` stacks of all N models' - real ``nn.Parameter``s under the model's own names
    (``stacked.blocks.0.attn.qkv.weight``), so an optimizer trains them. It is never called
    directly: ``forward`` maps one model's ``functional_call`` over the leading ``N``.

    Randomness: ``vmap(randomness="different")``, so dropout draws an independent mask for each
    model, as N separately trained models would; the masks are not the ones the same seeds would
    give one by one, so stacked training equals one-by-one training exactly only for models without
    dropout (or in ``eval()`` mode). Forward hooks on ``stacked``'s submodules run inside vmap and see
    per-model (batched) tensors, which must not be kept past the call; use the grouped stacks for
    feature hooks.
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        _check_stackable(models)
        self.n_models = len(models)
        params, buffers = stack_module_state(models)
        self.stacked = copy.deepcopy(models[0])
        for name, t in params.items():
            _set_tensor(self.stacked, name, nn.Parameter(t.detach().clone(), t.requires_grad))
        for name, t in buffers.items():
            _set_tensor(self.stacked, name, t.detach().clone())

    def forward(self, x: torch.Tensor):
        def one_model(params, buffers, xi):
            return functional_call(self.stacked, (params, buffers), (xi,))

        params = dict(self.stacked.named_parameters())
        buffers = dict(self.stacked.named_buffers())
        return torch.vmap(one_model, randomness="different")(params, buffers, x)

    def unstack(self) -> list[nn.Module]:
        models = []
        for i in range(self.n_models):
            m = copy.deepcopy(self.stacked)
            for name, p in self.stacked.named_parameters():
                _set_tensor(m, name, nn.Parameter(p.detach()[i].clone(), p.requires_grad))
            for name, b in self.stacked.named_buffers():
                _set_tensor(m, name, b[i].clone())
            models.append(m)
        return models


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace the parameter or buffer ``name`` ("blocks.0.norm1.weight"); a buffer keeps its persistence."""
    path, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(path), leaf, value)


def _stack_problem(models: list[nn.Module]) -> str | None:
    """Why the (non-empty) list ``models`` cannot be stacked, or ``None`` if it can."""
    cls = type(models[0])
    names = sorted({type(m).__name__ for m in models})
    if any(type(m) is not cls for m in models):
        return f"cannot stack {names}: stacking needs models of one class"
    bn = _batchnorm_layers(models[0])
    if bn:
        return (f"cannot stack {names}: BatchNorm layers {bn} keep batch statistics, which would have "
                f"to be kept per model; train these models one by one")
    if not list(models[0].parameters()):
        return f"cannot stack {names}: the models have no parameters"
    shapes = [[(n, t.shape) for n, t in [*m.named_parameters(), *m.named_buffers()]] for m in models]
    if any(s != shapes[0] for s in shapes):
        return f"cannot stack {names}: the models' parameter shapes differ"
    if len(list(models[0].named_parameters(remove_duplicate=False))) != len(list(models[0].parameters())):
        return f"cannot stack {names}: the models share (tie) parameters between layers"
    return None


def _check_stackable(models: list[nn.Module]) -> None:
    if not models:
        raise ValueError("stacking needs at least one model")
    problem = _stack_problem(models)
    if problem:
        raise TypeError(problem)


# Hand-written stacks, and the mechanism "auto" uses per class; a class not listed gets "vmap".
# Based on scripts/benchmark.py, "stacking" (seconds per model-epoch, one by one vs grouped vs vmap; rerun
# it when adding a class or changing torch). StudentCNN stays "grouped" although vmap measures as
# fast or a little faster: grouped is bit-for-bit what notebook 02's results were computed with, and
# hooks (course_lib.hooks) read its [B, N*C, H, W] activations.
GROUPED = {StudentCNN: StackedStudentCNN}
STACK_METHOD = {StudentCNN: "grouped", ViT: "vmap"}
METHODS = ("auto", "grouped", "vmap")


def can_stack(models: list[nn.Module]) -> bool:
    """True for a non-empty list of same-class, same-shape models with parameters and no BatchNorm."""
    return bool(models) and _stack_problem(models) is None


def stack_models(models: list[nn.Module], method: str = "auto") -> nn.Module:
    """One stacked module computing all ``models`` (copies their weights; the inputs are untouched).

    ``method``: ``"auto"`` (the class's entry in ``STACK_METHOD``, else ``"vmap"``), ``"grouped"``
    (a hand-written stack, ``GROUPED``) or ``"vmap"`` (``VmapStack``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown stacking method {method!r}; expected one of {list(METHODS)}")
    _check_stackable(models)
    cls = type(models[0])
    if method == "auto":
        method = STACK_METHOD.get(cls, "vmap")
    if method == "grouped":
        if cls not in GROUPED:
            raise TypeError(f"no grouped (hand-written) stack for {cls.__name__}; those exist for "
                            f"{[c.__name__ for c in GROUPED]} - use method='vmap'")
        return GROUPED[cls](models)
    return VmapStack(models)
