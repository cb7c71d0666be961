"""Exercise 7: other noise at each layer, each at its strength tuned on validation, against tuned dropout.

Each kind is a group of two strengths (:class:`~droplab.studies.registry.Variant`'s ``group``):
under the fair protocol every strength is tuned over the learning rates (0.1, 0.3) on the
tuning seeds and the kind's best on validation is confirmed on fresh seeds. Strengths, as the
dropout probability p whose variance the noise matches (:data:`droplab.noise.NOISE_KINDS`):

- dropout p {0.2, 0.5};
- Gaussian multiplicative noise N(1, p/(1−p)): variance {0.25, 1} (p 0.2, 0.5);
- additive Gaussian noise of σ = sqrt(p/(1−p)): σ {0.5, 1} (p 0.2, 0.5);
- stratified dropout (exactly p·n units dropped per example) p {0.2, 0.5};
- alpha dropout p {0.05, 0.1} in a SELU net (LeCun-normal weights), the setting it was made
  for (Klambauer et al. 2017 use 0.05-0.1); beside it the SELU net without noise, so that
  alpha dropout's own effect is not confused with the change of activation.

Claim forms: the paper (section 10) finds Gaussian multiplicative noise as good as or better
than dropout: non-inferiority (no more than 0.5 pp below tuned dropout) is the primary claim, so
that doing better supports it (an equivalence claim would call a clear win *contradicted*, as a
review pointed out). Additive, stratified and alpha dropout are asked the same question
(exercise 7, "what happens?"): does each do as well as dropout? Margins: 0.5 pp of test
accuracy, the smallest difference between two nets worth a reader's attention that the test set
can resolve.
"""

from __future__ import annotations

import math

from ...verdicts import Hypothesis
from ..registry import Variant
from .common import STUDY_10K, leaderboard_study, plain

STRENGTHS = {"dropout": (0.2, 0.5), "gaussian": (0.2, 0.5), "additive": (0.2, 0.5), "stratified": (0.2, 0.5),
             "alpha": (0.05, 0.1)}  # fmt: skip
SELU = {"activation": "selu"}  # alpha dropout's setting: SELU units (and their LeCun-normal initialization)


STRENGTH = {  # each kind's strength in its own terms, from the dropout probability p it is given
    "gaussian": lambda p: f"var {p / (1 - p):g}",
    "additive": lambda p: f"σ {math.sqrt(p / (1 - p)):g}",
}


def _kind(kind: str) -> list[Variant]:
    """The strengths of one kind of noise, as one group named after it."""
    extra = SELU if kind == "alpha" else {}
    noise = {} if kind == "dropout" else {"noise": kind}
    return [Variant(f"{kind} {STRENGTH.get(kind, lambda p: f'{p:g}')(p)}", {"dropout": (p, p), **noise, **extra},
                    group=kind) for p in STRENGTHS[kind]]  # fmt: skip


def _as_good(words: str, primary: bool = False) -> Hypothesis:
    return Hypothesis(f"{words}, at its tuned strength, does as well as tuned dropout: no more than 0.5 pp below "
                      "it in test accuracy",
                      kind="noninferiority", margin=0.5, primary=primary)  # fmt: skip


GAUSSIAN = _as_good("Gaussian multiplicative noise", primary=True)
ADDITIVE = _as_good("additive Gaussian noise")
STRATIFIED = _as_good("stratified dropout")
ALPHA = _as_good("alpha dropout in a SELU net")
DROPOUT_RAISES = Hypothesis("tuned dropout raises test accuracy over the plain net", margin=0.5)
ALPHA_RAISES = Hypothesis("alpha dropout, at its tuned strength, raises the SELU net's test accuracy", margin=0.5)

leaderboard_study(
    name="noise",
    title="Other noise at each layer (exercise 7), each at its tuned strength, against tuned dropout",
    question="Gaussian multiplicative noise, additive Gaussian noise, stratified dropout (exactly p·n units "
    "dropped per example) and alpha dropout in a SELU net, each at its strength chosen on validation: do they "
    "match dropout?",
    variants=[plain(), *_kind("dropout"), *_kind("gaussian"), *_kind("additive"), *_kind("stratified"),
              plain("selu plain", **SELU), *_kind("alpha")],  # fmt: skip
    claims=[
        (GAUSSIAN, "gaussian", "dropout"),
        (DROPOUT_RAISES, "dropout", "plain"),
        (ADDITIVE, "additive", "dropout"),
        (STRATIFIED, "stratified", "dropout"),
        (ALPHA, "alpha", "dropout"),
        (ALPHA_RAISES, "alpha", "selu plain"),
    ],
    order=80,
    **STUDY_10K,
    lr_grid=(0.1, 0.3),
    regime="10,000 training images; each kind's strength tuned on validation",
)
