"""Exercise 5: dropout, weight decay and both, and whether their gains add up."""

from __future__ import annotations

import numpy as np

from ...stats import mean_interval
from ...verdicts import Claim
from ..registry import Analysis, study
from ..results import Results
from .common import BASE, COLUMNS, WD, dropout, fixed, leaderboard, plain, variants_table


@study(
    name="weight-decay",
    title="Dropout, weight decay, both (exercise 5)",
    question="Are the gains of dropout and weight decay additive, diminishing, or cancelling?",
    variants=fixed(
        plain(),
        dropout(),
        plain(f"weight decay {WD}", weight_decay=WD),
        dropout("both", weight_decay=WD),
    ),
    base=BASE,
    order=60,
)
def analyze(r: Results) -> Analysis:
    n, d, w, b = (r.values(x, "val_acc", 100) for x in ("plain", "dropout 0.5", f"weight decay {WD}", "both"))
    interaction = [bi - di - wi + ni for ni, di, wi, bi in zip(n, d, w, b)]
    claims = [
        r.claim("dropout raises validation accuracy", "dropout 0.5", "plain"),
        r.claim("weight decay raises validation accuracy", f"weight decay {WD}", "plain"),
        r.claim("both beat dropout alone", "both", "dropout 0.5"),
        r.claim("both beat weight decay alone", "both", f"weight decay {WD}"),
        Claim(
            "the two are more than additive (interaction: both − dropout − decay + plain)", mean_interval(interaction)
        ),
    ]
    i = mean_interval(interaction)
    kind = (
        "additive (the interaction's interval contains 0)"
        if i.low <= 0 <= i.high
        else "diminishing: together they gain less than the sum"
        if i.high < 0
        else "more than additive"
    )
    if np.mean(b) <= max(np.mean(d), np.mean(w)):
        kind += "; cancelling: both together do no better than the better one alone"
    return Analysis(
        claims,
        [variants_table(r, "mean ± 95% half-width", COLUMNS)],
        {"val_acc": leaderboard(r, "dropout and weight decay")[1]},
        [f"measured: {kind}"],
    )
