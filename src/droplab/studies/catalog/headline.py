"""The lecture's comparison: dropout 0.5 against the same 784-256-256-10 network without it.

Margins: 0.5 pp of test accuracy (the smallest gain worth a reader's attention on Fashion-MNIST);
0.01 of loss for the gap between test and training loss (about a tenth of the plain network's
gap at 10 epochs). The gap is measured with the test loss: the validation loss at the epoch
validation chose is biased low (a review's point).
"""

from __future__ import annotations

from ... import plots
from ...stats import paired_estimate
from ...verdicts import Hypothesis
from ..registry import Analysis, study
from ..results import Results
from .common import BASE, COLUMNS, dropout, fixed, panel_curves, plain, variants_table

RAISES = Hypothesis("dropout raises test accuracy", margin=0.5, primary=True)
GAP = Hypothesis("dropout shrinks the gap between test and train loss", margin=0.01, expect_positive=False,
                 unit="")  # fmt: skip


@study(
    name="headline",
    title="Dropout vs the plain MLP (the lecture's comparison)",
    question="Does dropout raise validation and test accuracy and shrink the gap between train and test loss?",
    variants=fixed(plain(), dropout()),
    base=BASE,
    order=10,
    hypotheses=[RAISES, GAP],
    max_epochs=20,
    seeds=10,
)
def analyze(r: Results) -> Analysis:
    gaps = {v: [t - e for t, e in zip(r.values(v, "test_loss"), r.values(v, "train_loss_eval"))]
            for v in ("dropout 0.5", "plain")}  # fmt: skip
    per_seed = [d - p for d, p in zip(gaps["dropout 0.5"], gaps["plain"])]
    gap = r.measure(GAP, paired_estimate(gaps["dropout 0.5"], gaps["plain"]), ["dropout 0.5", "plain"],
                    "test_loss − train_loss_eval: dropout 0.5 − plain", per_seed)  # fmt: skip
    claims = [r.claim(RAISES, "dropout 0.5", "plain"), gap]
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
