"""Dropout rates per layer: the lecture's advice (less dropout near the input), exercise 1 (swap them),
and the paper's input dropout.

Cells: input dropout {0, 0.2} (the paper's rate for inputs) x hidden rates (p1, p2) in {(0, 0),
(0.2, 0.5), (0.5, 0.2), (0.5, 0.5)}, on 10,000 images, up to 40 epochs (enough for the plain
net to overfit; each run keeps its validation-best epoch). The cell with no dropout anywhere
and the one with (0.5, 0.5) alone are the other studies' "plain" and "dropout 0.5".

The best cell is chosen on the *tuning* seeds' validation accuracy and its gain over no dropout
measured on the fresh confirmation seeds' test set, so the choice does not inflate the
estimate (no winner's curse). Under the lecture's protocol, which has no tuning seeds, the
choice falls back to the confirmation runs' validation accuracy, and a note says so.

Margins: 0.5 pp of test accuracy (the smallest difference between two nets worth a reader's
attention on Fashion-MNIST); the primary claim's contrast is a difference of two nets' mean
accuracies, on the same scale.
"""

from __future__ import annotations

import numpy as np

from ... import plots
from ...verdicts import Claim, Hypothesis, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import STUDY_10K, chosen_lr, contrast_claim

INPUT = (0.0, 0.2)
HIDDEN = ((0.0, 0.0), (0.2, 0.5), (0.5, 0.2), (0.5, 0.5))

EARLY = Hypothesis("less dropout early, more later: hidden rates (0.2, 0.5) beat their swap (0.5, 0.2), averaged "
                   "over input dropout 0 and 0.2", margin=0.5, primary=True)  # fmt: skip
INPUT_ADDS = Hypothesis("input dropout 0.2 adds to hidden dropout (0.5, 0.5)", margin=0.5)
BEST = Hypothesis("the best dropout cell, chosen on the tuning seeds' validation, beats no dropout on fresh seeds",
                  margin=0.5)  # fmt: skip


def _cell(p_in: float, hidden: tuple[float, float]) -> str:
    return f"input {p_in:g}, hidden ({hidden[0]:g}, {hidden[1]:g})"


def variants(quick: bool) -> list[Variant]:
    """Every cell of the grid (input dropout only where it is not 0: the no-input cells are the
    other studies' runs)."""
    return [Variant(_cell(a, h), {"dropout": h, **({"input_dropout": a} if a else {})}) for a in INPUT for h in HIDDEN]


@study(
    name="layer-rates",
    title="Dropout rates per layer: input {0, 0.2} x hidden (p1, p2)",
    question="The lecture: less dropout near the input, more later. Exercise 1: swap the two rates. "
    "The paper: drop inputs too, at about 0.2.",
    variants=variants,
    order=20,
    hypotheses=[EARLY, INPUT_ADDS, BEST],
    **STUDY_10K,
    regime="10,000 training images",
)
def analyze(r: Results) -> Analysis:
    early = {_cell(a, h): w / len(INPUT) for a in INPUT for h, w in (((0.2, 0.5), 1.0), ((0.5, 0.2), -1.0))}
    best, note = _best(r)
    adds = r.claim(INPUT_ADDS, _cell(0.2, (0.5, 0.5)), _cell(0.0, (0.5, 0.5)))
    claims = [contrast_claim(r, EARLY, early), adds, best]
    means = np.array([[np.mean(r.values(_cell(a, h), "test_acc", 100)) for h in HIDDEN] for a in INPUT])
    figs = {"heatmap": plots.heatmap(means, list(INPUT), [f"({p1:g}, {p2:g})" for p1, p2 in HIDDEN],
                                     "mean test accuracy % (val-chosen epoch)", "input dropout",
                                     "hidden rates (p1, p2)")}  # fmt: skip
    return Analysis(claims, [_table(r)], figs, [note])


def _best(r: Results) -> tuple[Claim, str]:
    """The dropout cell best on the tuning seeds' validation, against no dropout on the confirmation seeds."""
    none = _cell(0.0, (0.0, 0.0))
    cells = [v.name for v in r.variants if v.name != none]
    scores = {c: r.tuning_score(c) for c in cells}
    how = "tuning seeds' validation accuracy"
    if any(s is None for s in scores.values()):  # lecture protocol: no tuning seeds
        scores = {c: float(np.mean(r.values(c, "val_acc"))) for c in cells}
        how = "confirmation runs' own validation accuracy (biased: no tuning seeds)"
    best = max(cells, key=lambda c: scores[c])
    return r.claim(BEST, best, none), f"the best dropout cell on the {how}: {best}"


def _table(r: Results) -> Table:
    order = sorted(r.variants, key=lambda v: -np.mean(r.values(v.name, "test_acc")))
    rows = [
        [v.name, chosen_lr(r, v.name), _score(r, v.name), format_interval(r.interval(v.name, "val_acc", 100)),
         format_interval(r.interval(v.name, "test_acc", 100)), format_interval(r.interval(v.name, "gap", 1), 4)]
        for v in order
    ]  # fmt: skip
    return Table("all cells by test accuracy (each run at its val-chosen epoch)",
                 ["cell", "lr", "tuning val acc %", "val acc %", "test acc %", "gap"], rows)  # fmt: skip


def _score(r: Results, name: str) -> str:
    s = r.tuning_score(name)
    return "" if s is None else f"{100 * s:.2f}"
