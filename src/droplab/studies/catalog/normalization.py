"""Dropout against BatchNorm and LayerNorm, and dropout added to each.

The lecture: modern networks often *replace* dropout with normalization. A replacement is
claimed as non-inferiority: normalization alone no more than 0.5 pp below dropout's test
accuracy (doing better supports it too; an equivalence claim would call a clear win
*contradicted*, as a review pointed out). Each net
is compared at convergence as far as the budget allows: its learning rate tuned, up to 40 epochs,
its validation-best epoch kept (a note names the variants whose best epoch was the last).

Margins: 0.5 pp of test accuracy (the smallest difference between two nets worth a reader's
attention that the test set can resolve).
"""

from __future__ import annotations

from ...verdicts import Hypothesis
from .common import STUDY_10K, dropout, leaderboard_study, plain

BATCH = Hypothesis("BatchNorm replaces dropout: its test accuracy is no more than 0.5 pp below dropout's",
                   kind="noninferiority", margin=0.5, primary=True)  # fmt: skip
LAYER = Hypothesis("LayerNorm replaces dropout: its test accuracy is no more than 0.5 pp below dropout's",
                   kind="noninferiority", margin=0.5)  # fmt: skip
ADDS_BATCH = Hypothesis("dropout adds to BatchNorm: BatchNorm + dropout beats BatchNorm alone", margin=0.5)
ADDS_LAYER = Hypothesis("dropout adds to LayerNorm: LayerNorm + dropout beats LayerNorm alone", margin=0.5)

leaderboard_study(
    name="normalization",
    title="Dropout vs BatchNorm vs LayerNorm",
    question="The lecture: modern networks often replace dropout with normalization. Does either match dropout "
    "here, and does dropout still add to them?",
    variants=[
        plain(),
        dropout(),
        plain("batchnorm", norm="batch"),
        plain("layernorm", norm="layer"),
        dropout("batchnorm + dropout", norm="batch"),
        dropout("layernorm + dropout", norm="layer"),
    ],
    claims=[
        (BATCH, "batchnorm", "dropout 0.5"),
        (LAYER, "layernorm", "dropout 0.5"),
        (ADDS_BATCH, "batchnorm + dropout", "batchnorm"),
        (ADDS_LAYER, "layernorm + dropout", "layernorm"),
    ],
    order=100,
    **STUDY_10K,
    regime="10,000 training images",
)
