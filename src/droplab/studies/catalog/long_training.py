"""Exercise 2: 100 epochs with and without dropout, and whether each still overfits at the end.

The statistic is the least-squares slope of the validation loss over the last ``WINDOW``
evaluated epochs, per seed: a rising loss (slope > 0) is overfitting still under way, a flat
one (≈ 0) is none. Unlike the earlier "final minus lowest validation loss", which is ≥ 0 by
construction (the lowest is never above the final), the slope has no built-in sign: a net that
has stopped overfitting scores about 0.

Margins: 0.0005 of loss per epoch for slopes, i.e. a rise of 0.01 over the 20-epoch window,
the headline's margin for the val − train loss gap (about a tenth of the plain net's gap at 10
epochs): a rise below it is too small to call overfitting. 0.5 pp of test accuracy as
elsewhere (the smallest gain worth a reader's attention on Fashion-MNIST).
"""

from __future__ import annotations

import numpy as np

from ...stats import mean_estimate, paired_estimate
from ...verdicts import Hypothesis, Table, format_interval
from ..registry import Analysis, study
from ..results import Results
from .common import BASE_10K, COLUMNS, dropout, fixed, panel_curves, plain, variants_table

WINDOW = 20  # the last evaluated epochs the slope is fitted over
KEPT = "at the epoch each run kept (fair protocol: its best on validation; lecture: its last)"
SLOPE_MARGIN = 0.0005  # loss per epoch: 0.01 over the window (see the module docstring)

RISES_LESS = Hypothesis(
    f"with dropout, validation loss rises less over the last {WINDOW} of 100 epochs than without "
    "(slope, dropout − plain)",
    margin=SLOPE_MARGIN, primary=True, expect_positive=False, unit="",
)  # fmt: skip
PLAIN_OVERFITS = Hypothesis(
    f"the plain net overfits: its validation loss rises over the last {WINDOW} of 100 epochs (slope)",
    margin=SLOPE_MARGIN, unit="",
)  # fmt: skip
RAISES = Hypothesis("with a budget of 100 epochs, dropout raises test accuracy", margin=0.5)


def slopes(r: Results, variant: str) -> list[float]:
    """Per seed, the least-squares slope of validation loss per epoch over the last :data:`WINDOW`
    evaluated epochs (all of them when fewer)."""
    out = []
    for s in r.seeds:
        rows = r.get(variant, s)["history"][-WINDOW:]
        x = np.array([h["epoch"] for h in rows], dtype=float)
        y = np.array([h["val_loss"] for h in rows], dtype=float)
        out.append(float(np.polyfit(x, y, 1)[0]))
    return out


@study(
    name="long-training",
    title="100 epochs with and without dropout (exercise 2)",
    question="Where does the plain network start to overfit, and what does dropout change?",
    variants=fixed(plain(), dropout()),
    epochs=100,
    max_epochs=100,
    base=BASE_10K,
    order=30,
    hypotheses=[RISES_LESS, PLAIN_OVERFITS, RAISES],
    seeds=8,
    regime="10,000 training images",
)
def analyze(r: Results) -> Analysis:
    d, p = slopes(r, "dropout 0.5"), slopes(r, "plain")
    statistic = f"slope of val_loss per epoch over the last {WINDOW} evaluated epochs"
    claims = [
        r.measure(RISES_LESS, paired_estimate(d, p), ["dropout 0.5", "plain"], f"{statistic}: dropout 0.5 − plain",
                  [a - b for a, b in zip(d, p)]),
        r.measure(PLAIN_OVERFITS, mean_estimate(p), ["plain"], f"{statistic}: plain", p),
        r.claim(RAISES, "dropout 0.5", "plain"),
    ]  # fmt: skip
    rows, notes = [], []
    for v in r.variants:
        val = np.array(r.history(v.name, "val_loss"))
        lowest = int(np.argmin(val.mean(axis=0))) + 1
        rows.append([
            v.name, str(lowest), format_interval(mean_estimate(list(val.min(axis=1))).interval(), 4),
            format_interval(mean_estimate(list(val[:, -1])).interval(), 4),
            format_interval(mean_estimate(slopes(r, v.name)).interval(), 5),
            format_interval(r.interval(v.name, "best_epoch"), 1),
        ])  # fmt: skip
        notes.append(f"{v.name}: mean validation loss is lowest at epoch {lowest} of {val.shape[1]}")
    table = Table(
        "validation loss over training",
        ["variant", "epoch of lowest mean val loss", "lowest val loss", "final val loss",
         f"slope over the last {WINDOW} epochs (per epoch)", "epoch kept"],
        rows,
    )  # fmt: skip
    figs = {"curves": panel_curves(r, "100 epochs: mean and 95% band")}
    return Analysis(claims, [table, variants_table(r, KEPT, COLUMNS)], figs, notes)
