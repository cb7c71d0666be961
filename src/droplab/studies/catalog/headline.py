"""The lecture's comparison: dropout 0.5 against the plain MLP."""

from __future__ import annotations

from ... import plots
from ..registry import Analysis, study
from ..results import Results
from .common import BASE, COLUMNS, dropout, fixed, panel_curves, plain, variants_table


@study(
    name="headline",
    title="Dropout vs the plain MLP (the lecture's comparison)",
    question="Does dropout raise validation and test accuracy and shrink the gap between train and test loss?",
    variants=fixed(plain(), dropout()),
    base=BASE,
    order=10,
)
def analyze(r: Results) -> Analysis:
    claims = [
        r.claim("dropout raises validation accuracy", "dropout 0.5", "plain", "val_acc"),
        r.claim("dropout raises test accuracy", "dropout 0.5", "plain", "test_acc"),
        r.claim("dropout shrinks the gap between val and train loss", "dropout 0.5", "plain", "gap", False),
    ]
    figs = {
        "curves": panel_curves(r, "dropout 0.5 vs plain, mean and 95% band"),
        "val_acc": plots.intervals(
            ["plain", "dropout 0.5"],
            [r.values(n, "val_acc", 100) for n in ("plain", "dropout 0.5")],
            "validation accuracy",
            "%",
        ),
    }
    return Analysis(claims, [variants_table(r, "mean ± 95% interval half-width over seeds", COLUMNS)], figs)
