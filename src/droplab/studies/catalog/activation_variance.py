"""Exercise 3: the variance of each hidden layer's activations over training, with and without dropout.

Each claim is on log(variance with dropout / variance without) per seed, at the last evaluated
epoch: scale-free (a layer whose activations are ten times larger counts the same) and
symmetric (a halving and a doubling are equally far from 0). Margin log(1.1) ≈ 0.095: a
difference of less than 10 % in variance is too small to matter (activations' variances
differ by factors, not by percents, between layers and runs).
"""

from __future__ import annotations

import math

from ...stats import mean_estimate
from ...verdicts import Claim, Hypothesis, Table, format_interval
from ..registry import Analysis, study
from ..results import Results
from .common import BASE_10K, dropout, final, fixed, panel_curves, plain

ACT_PANELS = [
    ("act_var_1", "hidden 1, eval mode"),
    ("act_var_2", "hidden 2, eval mode"),
    ("act_var_train_1", "hidden 1 after noise, training mode"),
    ("act_var_train_2", "hidden 2 after noise, training mode"),
]
MARGIN = math.log(1.1)  # 10 % of variance (see the module docstring)

TRAIN_1 = Hypothesis("in training, what follows hidden layer 1 varies more with dropout (log variance ratio)",
                     margin=MARGIN, primary=True, unit="")  # fmt: skip
TRAIN_2 = Hypothesis("in training, what follows hidden layer 2 varies more with dropout (log variance ratio)",
                     margin=MARGIN, unit="")  # fmt: skip
EVAL_1 = Hypothesis("hidden layer 1's activations (eval mode) vary more with dropout (log variance ratio)",
                    margin=MARGIN, unit="")  # fmt: skip
EVAL_2 = Hypothesis("hidden layer 2's activations (eval mode) vary more with dropout (log variance ratio)",
                    margin=MARGIN, unit="")  # fmt: skip
CLAIMS = [(TRAIN_1, "act_var_train_1"), (TRAIN_2, "act_var_train_2"), (EVAL_1, "act_var_1"), (EVAL_2, "act_var_2")]


def log_ratios(r: Results, key: str) -> list[float]:
    """Per seed, log(``key`` with dropout / ``key`` without) at the last evaluated epoch."""
    return [math.log(d / p) for d, p in zip(final(r, "dropout 0.5", key), final(r, "plain", key))]


@study(
    name="activation-variance",
    title="Variance of the hidden activations over training (exercise 3)",
    question="What happens to the variance of each hidden layer's activations with and without dropout?",
    variants=fixed(
        plain(track_activations=True),
        dropout(track_activations=True),
    ),
    base=BASE_10K,
    order=40,
    hypotheses=[h for h, _ in CLAIMS],
    max_epochs=20,
    seeds=5,
    regime="10,000 training images; variances at the last evaluated epoch",
)
def analyze(r: Results) -> Analysis:
    claims: list[Claim] = []
    for h, key in CLAIMS:
        ratios = log_ratios(r, key)
        claims.append(r.measure(h, mean_estimate(ratios), ["dropout 0.5", "plain"],
                                f"log({key} of dropout 0.5 / of plain), last evaluated epoch", ratios))  # fmt: skip
    rows = [
        [v.name] + [format_interval(mean_estimate(final(r, v.name, k)).interval(), 4) for k, _ in ACT_PANELS]
        for v in r.variants
    ]
    table = Table("variance per unit over 2,000 validation images, last evaluated epoch",
                  ["variant"] + [t for _, t in ACT_PANELS], rows)  # fmt: skip
    figs = {"activation_variance": panel_curves(r, "variance of hidden activations per epoch", ACT_PANELS)}
    return Analysis(claims, [table], figs)
