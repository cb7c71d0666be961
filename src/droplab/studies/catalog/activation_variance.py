"""Exercise 3: the variance of each hidden layer's activations over training, with and without dropout."""

from __future__ import annotations

from ...stats import mean_interval, paired_interval
from ...verdicts import Claim, Table, format_interval
from ..registry import Analysis, study
from ..results import Results
from .common import BASE, dropout, final, fixed, panel_curves, plain

ACT_PANELS = [
    ("act_var_1", "hidden 1, eval mode"),
    ("act_var_2", "hidden 2, eval mode"),
    ("act_var_train_1", "hidden 1 after noise, training mode"),
    ("act_var_train_2", "hidden 2 after noise, training mode"),
]


@study(
    name="activation-variance",
    title="Variance of the hidden activations over training (exercise 3)",
    question="What happens to the variance of each hidden layer's activations with and without dropout?",
    variants=fixed(
        plain(track_activations=True),
        dropout(track_activations=True),
    ),
    base=BASE,
    order=40,
)
def analyze(r: Results) -> Analysis:
    claims = []
    for i in (1, 2):
        d, p = final(r, "dropout 0.5", f"act_var_train_{i}"), final(r, "plain", f"act_var_train_{i}")
        claims.append(
            Claim(f"in training, what follows hidden layer {i} varies more with dropout", paired_interval(d, p), "")
        )
        d, p = final(r, "dropout 0.5", f"act_var_{i}"), final(r, "plain", f"act_var_{i}")
        claims.append(
            Claim(f"hidden layer {i}'s activations (eval mode) vary more with dropout", paired_interval(d, p), "")
        )
    rows = [
        [v.name] + [format_interval(mean_interval(final(r, v.name, k)), 4) for k, _ in ACT_PANELS] for v in r.variants
    ]
    table = Table(
        "variance per unit over 2,000 validation images, final epoch", ["variant"] + [t for _, t in ACT_PANELS], rows
    )
    figs = {"activation_variance": panel_curves(r, "variance of hidden activations per epoch", ACT_PANELS)}
    return Analysis(claims, [table], figs)
