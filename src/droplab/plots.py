"""Figures: a run's training curves (as on d2l's board), the models of a comparison, and the
studies' plots (intervals over seeds, heatmaps, curves with bands, reliability diagrams).

Every function returns a matplotlib Figure drawn on the Agg backend; matplotlib is imported with
the first figure, not with this module.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["run_curves", "compare_curves", "intervals", "heatmap", "curves", "xy_intervals", "reliability_diagram"]

COLORS = {"plain": "#7f7f7f", "scratch": "#1f77b4", "concise": "#ff7f0e"}
LINESTYLES = {"plain": "-", "scratch": "-", "concise": "--"}  # concise often overlays scratch


@functools.cache
def _pyplot():
    """matplotlib's pyplot on the Agg backend (files, no window), imported with the first figure:
    importing this module, and the studies that draw with it, stays cheap (workers never draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def run_curves(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Train loss, val loss and val accuracy per epoch on one axes, as d2l's board draws them."""
    epochs = [h["epoch"] for h in history]
    fig, ax = _pyplot().subplots(figsize=(6, 4), layout="constrained")
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
    fig, axes = _pyplot().subplots(1, 3, figsize=(13, 4), layout="constrained")
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


# --- studies -------------------------------------------------------------------------------

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]


def _t975(n: int) -> float:
    from .stats import t_quantile_975

    return t_quantile_975(n - 1) if n > 1 else float("nan")


def intervals(labels: Sequence[str], values: Sequence[Sequence[float]], title: str, xlabel: str) -> Figure:
    """Per label: every seed's value (dots) and the mean with its 95% t interval (bar), sorted
    as given, best read from the top."""
    fig, ax = _pyplot().subplots(figsize=(7, 0.45 * len(labels) + 1.4), layout="constrained")
    for i, (label, vals) in enumerate(zip(labels, values)):
        v = np.asarray(vals, dtype=float)
        y = len(labels) - 1 - i
        color = PALETTE[i % len(PALETTE)]
        ax.scatter(v, np.full(len(v), y) + np.linspace(-0.12, 0.12, len(v)), s=12, color=color, alpha=0.5, lw=0)
        if len(v) > 1:
            half = _t975(len(v)) * v.std(ddof=1) / np.sqrt(len(v))
            ax.errorbar(v.mean(), y, xerr=half, fmt="o", color=color, capsize=4, lw=2)
        else:
            ax.plot(v.mean(), y, "o", color=color)
    ax.set_yticks(range(len(labels)), list(reversed(list(labels))))
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def heatmap(values: np.ndarray, rows: Sequence, cols: Sequence, title: str, row_label: str, col_label: str) -> Figure:
    """A grid of means with the value written in each cell."""
    fig, ax = _pyplot().subplots(figsize=(6, 5), layout="constrained")
    im = ax.imshow(values, cmap="viridis", origin="lower")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=11, loc="left")
    lo, hi = np.nanmin(values), np.nanmax(values)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            light = (v - lo) / (hi - lo + 1e-12) < 0.6
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white" if light else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def curves(
    panels: Sequence[tuple[str, str]],
    series: Mapping[str, Mapping[str, np.ndarray]],
    title: str = "",
    logy: bool = False,
) -> Figure:
    """One panel per (key, panel title); per series the mean over seeds with a 95% band.

    ``series[name][key]`` has shape (seeds, epochs).
    """
    size = (4.6 * len(panels), 3.8)
    fig, axes = _pyplot().subplots(1, len(panels), figsize=size, layout="constrained", squeeze=False)
    for ax, (key, panel_title) in zip(axes[0], panels):
        for i, (name, per_key) in enumerate(series.items()):
            v = np.asarray(per_key[key], dtype=float)
            x = np.arange(1, v.shape[1] + 1)
            mean = v.mean(axis=0)
            color = PALETTE[i % len(PALETTE)]
            ax.plot(x, mean, color=color, lw=1.8, label=name)
            if v.shape[0] > 1:
                half = _t975(v.shape[0]) * v.std(axis=0, ddof=1) / np.sqrt(v.shape[0])
                ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.2, lw=0)
        if logy:
            ax.set_yscale("log")
        _style(ax, panel_title, "")
    axes[0][0].legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def xy_intervals(
    x: Sequence[float],
    series: Mapping[str, Sequence[Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    hline: float | None = None,
) -> Figure:
    """Per series, at each x: the mean over seeds with its 95% t interval; ``series[name][i]``
    holds the seeds' values at ``x[i]``."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2), layout="constrained")
    for i, (name, per_x) in enumerate(series.items()):
        v = [np.asarray(p, dtype=float) for p in per_x]
        mean = np.array([a.mean() for a in v])
        half = np.array([_t975(len(a)) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0 for a in v])
        ax.errorbar(x, mean, yerr=half, fmt="o-", color=PALETTE[i % len(PALETTE)], capsize=3, lw=1.6, label=name)
    if hline is not None:
        ax.axhline(hline, color="black", lw=0.8, ls=":")
    if logx:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    return fig


def reliability_diagram(panels: Mapping[str, Sequence[Mapping[str, float]]], title: str = "") -> Figure:
    """Accuracy against confidence per bin (bars; the diagonal is perfect calibration), one
    panel per method; ``panels[name]`` is a list of bins pooled over seeds."""
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(4.4 * len(panels), 4), layout="constrained", squeeze=False)
    for ax, (name, bins) in zip(axes[0], panels.items()):
        lows = np.array([b["low"] for b in bins])
        width = np.array([b["high"] - b["low"] for b in bins])
        acc = np.array([b["accuracy"] for b in bins], dtype=float)
        conf = np.array([b["confidence"] for b in bins], dtype=float)
        ok = ~np.isnan(acc)
        ax.bar(lows[ok], acc[ok], width=width[ok], align="edge", color="#4c72b0", alpha=0.8, edgecolor="white")
        ax.bar(lows[ok], conf[ok] - acc[ok], bottom=acc[ok], width=width[ok], align="edge",
               color="#c44e52", alpha=0.35, edgecolor="none", label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(name, fontsize=11, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].legend(frameon=False, fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
