"""Small matplotlib helpers shared by the notebooks (each returns its figure)."""
from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np



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
