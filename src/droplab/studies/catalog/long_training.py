"""Exercise 2: 100 epochs with and without dropout, and where each starts to overfit."""

from __future__ import annotations

import numpy as np

from ...stats import mean_interval
from ...verdicts import Claim, Table, format_interval
from ..registry import Analysis, study
from ..results import Results
from .common import BASE, COLUMNS, dropout, fixed, panel_curves, plain, variants_table


@study(
    name="long-training",
    title="100 epochs with and without dropout (exercise 2)",
    question="Where does the plain network start to overfit, and what does dropout change?",
    variants=fixed(plain(), dropout()),
    epochs=100,
    base=BASE,
    order=30,
)
def analyze(r: Results) -> Analysis:
    claims = [
        r.claim("after 100 epochs dropout has the higher validation accuracy", "dropout 0.5", "plain", "val_acc"),
        r.claim("after 100 epochs dropout has the smaller val − train loss gap", "dropout 0.5", "plain", "gap", False),
    ]
    rows, notes = [], []
    for v in r.variants:
        val = np.array(r.history(v.name, "val_loss"))
        best_epoch = int(np.argmin(val.mean(axis=0))) + 1
        rise = mean_interval(list(val[:, -1] - val.min(axis=1)))
        claims.append(Claim(f"{v.name} overfits: its final val loss exceeds its lowest", rise, ""))
        rows.append(
            [
                v.name,
                str(best_epoch),
                format_interval(mean_interval(list(val.min(axis=1))), 4),
                format_interval(mean_interval(list(val[:, -1])), 4),
                format_interval(r.interval(v.name, "val_acc", 100)),
            ]
        )
        notes.append(f"{v.name}: mean validation loss is lowest at epoch {best_epoch} of {val.shape[1]}")
    table = Table(
        "validation loss over training",
        ["variant", "epoch of lowest mean val loss", "lowest val loss", "final val loss", "final val acc %"],
        rows,
    )
    figs = {"curves": panel_curves(r, "100 epochs: mean and 95% band")}
    return Analysis(claims, [table, variants_table(r, "final epoch", COLUMNS)], figs, notes)
