"""What the studies share: the base configuration, the columns and panels most of them show,
the variants most of them hold, and the leaderboard studies' declaration and analysis.

Every study trains the general MLP (784-256-256-10, ReLU; the lecture's DropoutMLPScratch
layer for layer when the noise is dropout) with the lecture's SGD setting unless it says
otherwise, on the 55,000/5,000 train/validation split; train-set metrics on 10,000 of the
training images. Claims compare variants paired by seed (for one seed every variant starts
from the same weights and sees the same minibatch order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ... import plots
from ...verdicts import Table, format_interval
from ..registry import Analysis, Study, Variant, register
from ..results import Results

BASE = {"model": "mlp", "hidden": (256, 256), "eval_train_size": 2_000}
BASE_10K = {**BASE, "train_size": 10_000}  # the cheap studies' base: 10,000 training images, seconds a run
COLUMNS = [  # (summary key, heading, scale, digits)
    ("val_acc", "val acc %", 100.0, 2),
    ("test_acc", "test acc %", 100.0, 2),
    ("gap", "gap (val − train loss)", 1.0, 4),
    ("train_loss_eval", "train loss (eval)", 1.0, 4),
]
PANELS = [
    ("train_loss_eval", "train loss (eval mode)"),
    ("val_loss", "validation loss"),
    ("val_acc", "validation accuracy"),
]
WD = 5e-4  # the weight decay (L2) of the studies that try it


def plain(name: str = "plain", **extra) -> Variant:
    """No dropout (with ``extra`` overrides)."""
    return Variant(name, {"dropout": (0.0, 0.0), **extra})


def dropout(name: str = "dropout 0.5", **extra) -> Variant:
    """Dropout 0.5 on both hidden layers (with ``extra`` overrides)."""
    return Variant(name, {"dropout": (0.5, 0.5), **extra})


def fixed(*variants: Variant) -> Callable[[bool], list[Variant]]:
    """The same ``variants`` whether the study is quick or not."""
    return lambda quick: list(variants)


def series(results: Results, keys) -> dict:
    """``{variant: {key: array (seeds, evaluations)}}``, what :func:`droplab.plots.curves` draws."""
    return {v.name: {k: np.array(results.history(v.name, k)) for k in keys} for v in results.variants}


def panel_curves(results: Results, title: str, panels=PANELS):
    """One panel per ``(key, title)`` of ``panels``: per variant the mean over seeds and its 95% band."""
    return plots.curves(panels, series(results, [k for k, _ in panels]), title)


def final(results: Results, variant: str, key: str) -> list[float]:
    """``key`` at the last evaluation, one per seed."""
    return [h[-1] for h in results.history(variant, key)]


def variants_table(results: Results, title: str, columns: Sequence[tuple[str, str, float, int]]) -> Table:
    """Mean ± 95% half-width per variant for ``columns`` = (key, heading, scale, digits)."""
    rows = [
        [v.name] + [format_interval(results.interval(v.name, key, scale), d) for key, _, scale, d in columns]
        for v in results.variants
    ]
    return Table(title, ["variant"] + [h for _, h, _, _ in columns], rows)


def leaderboard(results: Results, title: str) -> tuple[Table, object]:
    """The variants ranked by mean validation accuracy: a table of :data:`COLUMNS` and a figure."""
    order = sorted(results.variants, key=lambda v: -np.mean(results.values(v.name, "val_acc")))
    rows = [
        [str(i + 1), v.name] + [format_interval(results.interval(v.name, k, s), d) for k, _, s, d in COLUMNS]
        for i, v in enumerate(order)
    ]
    table = Table(title, ["rank", "variant"] + [h for _, h, _, _ in COLUMNS], rows)
    fig = plots.intervals(
        [v.name for v in order],
        [results.values(v.name, "val_acc", 100.0) for v in order],
        title,
        "validation accuracy % (dots: seeds; bars: 95% interval)",
    )
    return table, fig


def identical(r: Results) -> list[str]:
    """Notes on variants whose runs came out identical on every seed: a setting that never
    acted (e.g. a max-norm bound the weights never reach)."""
    notes, names = [], [v.name for v in r.variants]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if all(r.get(a, s)["history"] == r.get(b, s)["history"] for s in r.seeds):
                notes.append(f"'{a}' and '{b}' trained identically on every seed: what tells them apart never acted")
    return notes


def versus(pairs: Sequence[tuple[str, str, str]]) -> Callable[[Results], Analysis]:
    """The analysis of a leaderboard study: a claim ``(text, a, b)`` that ``a`` beats ``b`` on
    validation accuracy for each of ``pairs``, the leaderboard, and notes on settings that never acted."""

    def analyze(r: Results) -> Analysis:
        claims = [r.claim(text, a, b) for text, a, b in pairs]
        table, fig = leaderboard(r, "leaderboard by validation accuracy")
        return Analysis(claims, [table], {"leaderboard": fig}, identical(r))

    return analyze


def leaderboard_study(
    name: str,
    title: str,
    question: str,
    variants: Sequence[Variant],
    claims: Sequence[tuple[str, str, str]],
    base: Mapping[str, Any] = BASE,
    order: int | None = None,
) -> Study:
    """Register a study that ranks fixed ``variants`` by validation accuracy (:func:`versus`).

    Args:
        name, title, question, base, order: as :class:`~droplab.studies.registry.Study`'s.
        variants: its configurations, the same whether the study is quick or not.
        claims: ``(text, a, b)``: variant ``a`` beats variant ``b`` on validation accuracy.

    Returns:
        the registered study.
    """
    return register(Study(name, title, question, fixed(*variants), versus(claims), base=base, order=order))
