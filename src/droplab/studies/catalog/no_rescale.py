"""Dropout without the 1/(1-p) scale: the mismatch between training and test, and its repair."""

from __future__ import annotations

from ..registry import Analysis, study
from ..results import Results
from .common import BASE, COLUMNS, dropout, fixed, panel_curves, variants_table


@study(
    name="no-rescale",
    title="Dropout without the 1/(1-p) scale: the train/test mismatch",
    question="Dropping units without rescaling and without a test-time correction changes the scale of every "
    "activation between training and test. How much does that cost?",
    variants=fixed(
        dropout("inverted"),
        dropout("no rescale", noise="no-rescale"),
        dropout("no rescale, test-time scaling", noise="no-rescale-test-scaled"),
    ),
    base=BASE,
    order=120,
)
def analyze(r: Results) -> Analysis:
    claims = [
        r.claim(
            "without the 1/(1-p) scale and without a test-time correction, test accuracy drops",
            "no rescale",
            "inverted",
            "test_acc",
            False,
        ),
        r.claim("... and the validation loss rises", "no rescale", "inverted", "val_loss"),
        r.claim(
            "scaling activations by (1-p) at test time repairs it",
            "no rescale, test-time scaling",
            "no rescale",
            "test_acc",
        ),
        r.claim(
            "test-time scaling then matches inverted dropout (or beats it)",
            "no rescale, test-time scaling",
            "inverted",
            "test_acc",
        ),
    ]
    cols = COLUMNS + [("val_loss", "val loss", 1.0, 4)]
    return Analysis(
        claims,
        [variants_table(r, "mean ± 95% half-width", cols)],
        {"curves": panel_curves(r, "no rescale vs inverted")},
    )
