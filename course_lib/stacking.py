"""Train several small models as one: stacked (grouped) layers.

N students of the same architecture - different seeds, or different distillation settings - are
independent problems, but each one alone is too small to keep a CPU busy. Stacking them makes one
module whose layers hold all N weight sets: a convolution with ``groups=N`` runs N convolutions in
one kernel call, ``torch.baddbmm`` runs N linear layers. Every model still sees its own inputs and
gets exactly its own gradient (the loss is a *sum* of per-model losses, and AdamW is elementwise),
so training the stack is the same computation as training the N models one by one - a test checks
that parameters agree after several steps.

Layout: a stacked model takes ``[N, B, ...]`` inputs and returns ``[N, B, classes]``. Inside, conv
activations live as ``[B, N*C, H, W]`` (model ``n`` owns channels ``n*C ... (n+1)*C - 1``); use
``split_models`` to view them as ``[N, B, C, H, W]``.

``stack_models(models)`` returns the stacked module (or raises ``TypeError`` for classes that do not
support it, e.g. models with BatchNorm, whose batch statistics would have to be kept per model);
``module.unstack()`` gives back ordinary, independent models.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F

from .models import MLPStudent, StudentCNN


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
            conv = nn.Conv2d(in_c, out_c // n, (kh, kw), self.stride, self.padding)
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
            lin = nn.Linear(w.shape[0], w.shape[1])
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


class StackedMLP(nn.Module):
    """N ``MLPStudent`` models as one module: ``[N, B, ...]`` -> ``[N, B, classes]``."""

    def __init__(self, models: list[MLPStudent]):
        super().__init__()
        self.n_models = len(models)
        per_layer = zip(*[[l for l in m.net if isinstance(l, nn.Linear)] for m in models])
        self.layers = nn.ModuleList(GroupedLinear(list(ls)) for ls in per_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def unstack(self) -> list[MLPStudent]:
        per_model = zip(*[layer.unstack() for layer in self.layers])
        models = []
        for linears in per_model:
            hidden = tuple(l.out_features for l in linears[:-1])
            m = MLPStudent(linears[0].in_features, linears[-1].out_features, hidden)
            for dst, src in zip([l for l in m.net if isinstance(l, nn.Linear)], linears):
                dst.load_state_dict(src.state_dict())
            models.append(m)
        return models


STACKABLE = {StudentCNN: StackedStudentCNN, MLPStudent: StackedMLP}


def can_stack(models: list[nn.Module]) -> bool:
    cls = type(models[0])
    return cls in STACKABLE and all(type(m) is cls for m in models)


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One stacked module computing all ``models`` (copies their weights; the inputs are untouched)."""
    if not models:
        raise ValueError("stack_models needs at least one model")
    if not can_stack(models):
        names = sorted({type(m).__name__ for m in models})
        raise TypeError(f"cannot stack {names}: stacking supports one class at a time among "
                        f"{[c.__name__ for c in STACKABLE]}")
    return STACKABLE[type(models[0])](models)
