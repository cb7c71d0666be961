"""Dropout without the 1/(1-p) scale: the mismatch between training and test, and its repair.

Dropping units without rescaling trains the same family of functions as inverted dropout in
another parametrization (the next layer's weights 1/(1-p) times larger), so at one fixed
learning rate the two differ by the mismatch between training and test *and* by their
different effective step sizes. The earlier design, every variant at lr 0.1, attributed both
to the mismatch. Under the fair protocol every variant is tuned over the learning-rate grid:
each is the lr-retuned variant, and what is left between them is the mismatch (the claims
below). The fixed-lr comparison stays available as ``--protocol lecture``.

"no rescale" and "no rescale, test-time scaling" train alike and differ only at test time:
the second multiplies activations by (1-p) there, which undoes the mismatch.

Margins: 0.5 pp of test accuracy (the smallest gain worth a reader's attention on
Fashion-MNIST); the same for "matches", tested as equivalence within ±0.5 pp.
"""

from __future__ import annotations

from ...verdicts import Hypothesis
from ..registry import Analysis, study
from ..results import Results
from .common import BASE_10K, COLUMNS, dropout, fixed, panel_curves, variants_table

DROPS = Hypothesis("without the 1/(1-p) scale and with no test-time correction, test accuracy drops "
                   "(no rescale − inverted, lr tuned for each)", margin=0.5, primary=True,
                   expect_positive=False)  # fmt: skip
REPAIRS = Hypothesis("scaling activations by (1-p) at test time repairs it (test-time scaling − no rescale)",
                     margin=0.5)  # fmt: skip
MATCHES = Hypothesis("with test-time scaling, no rescale matches inverted dropout within ±0.5 pp",
                     kind="equivalence", margin=0.5)  # fmt: skip


@study(
    name="no-rescale",
    title="Dropout without the 1/(1-p) scale: the train/test mismatch",
    question="Dropping units without rescaling and without a test-time correction changes the scale of every "
    "activation between training and test. How much does that cost, each variant at its own tuned learning rate?",
    variants=fixed(
        dropout("inverted"),
        dropout("no rescale", noise="no-rescale"),
        dropout("no rescale, test-time scaling", noise="no-rescale-test-scaled"),
    ),
    base=BASE_10K,
    order=120,
    hypotheses=[DROPS, REPAIRS, MATCHES],
    max_epochs=30,
    seeds=8,
    regime="10,000 training images",
)
def analyze(r: Results) -> Analysis:
    claims = [
        r.claim(DROPS, "no rescale", "inverted"),
        r.claim(REPAIRS, "no rescale, test-time scaling", "no rescale"),
        r.claim(MATCHES, "no rescale, test-time scaling", "inverted"),
    ]
    cols = COLUMNS + [("val_loss", "val loss", 1.0, 4)]
    return Analysis(
        claims,
        [variants_table(r, "at the epoch each run kept: mean ± 95% half-width over seeds", cols)],
        {"curves": panel_curves(r, "no rescale vs inverted")},
    )
