"""The dropout paper's regularizers (its Table 9) on Fashion-MNIST: L2, max-norm, and each with dropout.

SGD with momentum 0.9, as in the paper (without momentum the weights never reach max-norm 3),
so the learning-rate grid is ten times smaller than the plain SGD studies' (momentum 0.9 makes
each step about ten times longer). A note names any setting that never acted (identical runs).

Margins: 0.5 pp of test accuracy (the smallest difference between two nets worth a reader's
attention on Fashion-MNIST).
"""

from __future__ import annotations

from ...verdicts import Hypothesis
from .common import BASE_10K, WD, dropout, leaderboard_study, plain

MAXNORM_VS_L2 = Hypothesis("dropout + max-norm beats dropout + L2 (the paper's Table 9)", margin=0.5, primary=True)
MAXNORM_ADDS = Hypothesis("dropout + max-norm beats max-norm alone", margin=0.5)
L2_ADDS = Hypothesis("dropout + L2 beats L2 alone", margin=0.5)
OVER_DROPOUT = Hypothesis("dropout + max-norm beats dropout alone", margin=0.5)

leaderboard_study(
    name="regularizers",
    title="The paper's regularizers on Fashion-MNIST: L2, max-norm, dropout + L2, dropout + max-norm",
    question="The paper (Table 9): dropout with max-norm beats dropout with L2 and every regularizer alone. "
    "SGD with momentum 0.9 here (as in the paper): without momentum the weights never reach max-norm 3.",
    variants=[
        plain(),
        plain(f"L2 {WD}", weight_decay=WD),
        plain("max-norm 3", max_norm=3.0),
        dropout(),
        dropout(f"dropout + L2 {WD}", weight_decay=WD),
        dropout("dropout + max-norm 3", max_norm=3.0),
    ],
    claims=[
        (MAXNORM_VS_L2, "dropout + max-norm 3", f"dropout + L2 {WD}"),
        (MAXNORM_ADDS, "dropout + max-norm 3", "max-norm 3"),
        (L2_ADDS, f"dropout + L2 {WD}", f"L2 {WD}"),
        (OVER_DROPOUT, "dropout + max-norm 3", "dropout 0.5"),
    ],
    base={**BASE_10K, "momentum": 0.9},
    order=110,
    max_epochs=30,
    seeds=6,
    lr_grid=(0.01, 0.03, 0.1),
    regime="10,000 training images; SGD with momentum 0.9",
)
