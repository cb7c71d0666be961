"""Figures: a run's training curves (as on d2l's board) and the models of a comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["run_curves", "compare_curves"]

COLORS = {"plain": "#7f7f7f", "scratch": "#1f77b4", "concise": "#ff7f0e"}
LINESTYLES = {"plain": "-", "scratch": "-", "concise": "--"}  # concise often overlays scratch


def _style(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def run_curves(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Train loss, val loss and val accuracy per epoch on one axes, as d2l's board draws them."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(epochs, [h["train_loss"] for h in history], "-", color="#1f77b4", label="train_loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "--", color="#d62728", label="val_loss")
    ax.plot(epochs, [h["val_acc"] for h in history], "-.", color="#2ca02c", label="val_acc")
    _style(ax, title, "loss / accuracy")
    ax.legend(frameon=False)
    return fig


def compare_curves(curves: Mapping[str, Mapping[str, np.ndarray]], title: str = "") -> Figure:
    """One panel per metric; per model the mean over seeds with a band of ±1 std.

    ``curves[model][metric]`` is an array of shape (seeds, epochs).
    """
    panels = [
        ("train_loss", "train loss (dropout on)", "loss"),
        ("val_loss", "validation loss", "loss"),
        ("val_acc", "validation accuracy", "accuracy"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for ax, (metric, panel_title, ylabel) in zip(axes, panels):
        for model, per_metric in curves.items():
            values = np.asarray(per_metric[metric], dtype=float)
            epochs = np.arange(1, values.shape[1] + 1)
            mean = values.mean(axis=0)
            color = COLORS.get(model)
            ax.plot(epochs, mean, LINESTYLES.get(model, "-"), color=color, lw=2,
                    label=f"{model} (n={values.shape[0]})")
            if values.shape[0] > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        _style(ax, panel_title, ylabel)
    axes[0].legend(frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
