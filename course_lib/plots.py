"""Small matplotlib helpers shared by the notebooks (each returns its figure), and the toys behind
some figures (:func:`fit_gaussian_student`: notebook 06's one peak against two)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from .llm_losses import _check_divergence, token_divergence
from .validation import check_logits, check_positive_int, check_tensor, check_weight


def tempered_softmax_bars(probs_by_t: dict, classes, title: str = ""):
    """One bar chart per temperature of a single example's distribution."""
    fig, axes = plt.subplots(1, len(probs_by_t), figsize=(3.2 * len(probs_by_t), 3), sharey=True)
    for ax, (t, p) in zip(np.atleast_1d(axes), probs_by_t.items()):
        ax.bar(range(len(classes)), np.asarray(p), color="tab:blue")
        ax.set_title(f"T = {t:g}")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("probability")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap(matrix, row_labels, col_labels, title: str = "", fmt: str = "{:.2f}", log: bool = False):
    """Annotated heatmap (optionally on a log colour scale)."""
    from matplotlib.colors import LogNorm
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(m, cmap="viridis", norm=LogNorm(vmin=max(m[m > 0].min(), 1e-4), vmax=m.max()) if log else None)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            value = np.log(m[i, j] + 1e-12) if log else m[i, j]
            dark = value < (np.log(m.max()) - 3 if log else m.max() / 2)
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def line_plot(x, ys: dict, xlabel: str, ylabel: str, title: str = "", logx: bool = False, ax=None):
    """Several named curves over the same x."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    for name, y in ys.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def bars_with_errors(names, means, stds, ylabel: str, title: str = "", ax=None, ylim=None):
    """Bar chart of means with +-1 std error bars."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    ax.bar(names, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    ax.set(ylabel=ylabel, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    for i, (m, sd) in enumerate(zip(means, stds)):   # the value above its error bar
        ax.annotate(f"{m:.2f}", (i, m + sd), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    return fig


# ------------------------------------------------------------------ notebook 06's toy: one peak against several

@dataclass(frozen=True)
class GaussianFit:
    """A one-peak student over token positions: ``logits = -(i - mean)^2 / (2 width^2)``."""

    mean: float
    width: float
    value: float                 # the divergence at (mean, width)
    logits: torch.Tensor         # [V]


def gaussian_logits(positions: torch.Tensor, mean, width) -> torch.Tensor:
    """``-(positions - mean)^2 / (2 width^2)``: a Gaussian bump over token positions (softmax it for
    the distribution); ``mean`` and ``width`` (> 0) broadcast against ``positions``."""
    check_tensor("positions", positions, floating=False)
    check_weight("mean", mean, low=-math.inf)
    check_weight("width", width, low_open=True, meaning="the bump's standard deviation, in positions")
    return _gaussian(positions, mean, width)


def _gaussian(positions: torch.Tensor, mean, width) -> torch.Tensor:
    return -(positions - mean) ** 2 / (2 * width ** 2)


def fit_gaussian_student(teacher_logits: torch.Tensor, divergence: str = "forward_kl", *, beta: float = 0.5,
                         start: tuple[float, float] | None = None, means: torch.Tensor | None = None,
                         widths: torch.Tensor | None = None, steps: int = 200, lr: float = 0.1) -> GaussianFit:
    """The one-peak student (:func:`gaussian_logits` over positions ``0 .. V-1``) that minimises
    ``token_divergence(student, teacher, divergence, beta=beta)`` for a teacher's logits ``[V]``.

    ``start=None``: every ``(mean, width)`` of a grid is evaluated (``means`` default every quarter
    position, ``widths`` 160 log-spaced values from 0.5 to ``V``), then ``steps`` Adam steps refine
    the best one; the better of the two is returned. The grid is what makes the answer the global
    minimum (to its resolution): the reverse KL and the JSD have a local minimum per teacher mode
    and a broad one between them. ``start=(mean, width)``: Adam from that single start only, the
    naive fit, to show where it stops."""
    check_tensor("teacher_logits", teacher_logits, finite=False)
    if teacher_logits.dim() != 1:
        raise ValueError(f"teacher_logits must be [V] (one distribution), got {tuple(teacher_logits.shape)}")
    check_logits("teacher_logits", teacher_logits)
    _check_divergence(divergence, beta)
    check_positive_int("steps", steps, minimum=0, meaning="Adam steps after the grid")
    check_weight("lr", lr, low_open=True, allow_tensor=False)
    if means is not None:
        check_tensor("means", means, dims=1, floating=False)
    if widths is not None:
        check_tensor("widths", widths, dims=1, floating=False)
        check_weight("widths", widths, low_open=True)
    teacher = teacher_logits.detach().float()
    positions = torch.arange(teacher.shape[0], dtype=torch.float32)

    def objective(mean, width):
        student = _gaussian(positions, mean[..., None], width[..., None])
        return token_divergence(student, teacher.expand_as(student), divergence, beta=beta, validate=False)

    if start is None:
        means = torch.arange(0.0, teacher.shape[0], 0.25) if means is None else means.float()
        widths = (torch.logspace(math.log10(0.5), math.log10(teacher.shape[0]), 160) if widths is None
                  else widths.float())
        grid_m, grid_w = torch.meshgrid(means, widths, indexing="ij")
        with torch.no_grad():
            values = objective(grid_m.flatten(), grid_w.flatten())
        best = int(values.argmin())
        mean0, width0, value0 = float(grid_m.flatten()[best]), float(grid_w.flatten()[best]), float(values[best])
    else:
        mean0, width0 = (float(v) for v in start)
        if not math.isfinite(mean0) or not math.isfinite(width0) or width0 <= 0:
            raise ValueError(f"start must be (mean, width) with finite values and width > 0, got {start!r}")
        value0 = math.inf
    mean = torch.tensor(mean0, requires_grad=True)
    log_width = torch.tensor(math.log(width0), requires_grad=True)
    optimizer = torch.optim.Adam([mean, log_width], lr=lr)
    for _ in range(steps):
        loss = objective(mean, log_width.exp())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        refined = float(objective(mean, log_width.exp()))
    if refined <= value0:
        mean0, width0, value0 = mean.item(), log_width.exp().item(), refined
    return GaussianFit(mean0, width0, value0, gaussian_logits(positions, mean0, width0))
