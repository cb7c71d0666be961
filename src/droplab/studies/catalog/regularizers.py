"""The dropout paper's regularizers (its Table 9) on Fashion-MNIST: L2, max-norm, and each with dropout."""

from __future__ import annotations

from .common import BASE, WD, dropout, leaderboard_study, plain

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
        ("dropout + max-norm beats dropout + L2", "dropout + max-norm 3", f"dropout + L2 {WD}"),
        ("dropout + max-norm beats max-norm alone", "dropout + max-norm 3", "max-norm 3"),
        ("dropout + L2 beats L2 alone", f"dropout + L2 {WD}", f"L2 {WD}"),
        ("dropout + max-norm beats dropout alone", "dropout + max-norm 3", "dropout 0.5"),
    ],
    base={**BASE, "momentum": 0.9},
    order=110,
)
