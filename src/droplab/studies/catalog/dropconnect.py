"""Exercise 6: DropConnect, dropping weights instead of activations.

DropConnect here draws one weight mask per minibatch, shared by its examples
(:class:`droplab.weights.DropConnectLinear`), not one per example as Wan et al. (2013) do:
per-example masks hold batch-size copies of each weight matrix (256 x 784 x 256 floats, about
200 MB for the first layer alone, each step) and turn one matrix product into a batched one,
which this CPU budget cannot afford. The shared mask is a weaker, more correlated noise: the
lines say so in their regime.

Margins: 0.5 pp of test accuracy, the smallest difference between two nets worth a reader's
attention on Fashion-MNIST (the test set's own sampling adds about 0.1-0.2 pp to a paired difference).
"""

from __future__ import annotations

from ...verdicts import Hypothesis
from .common import DROPOUT_RAISES, STUDY_10K, dropout, leaderboard_study, plain

RAISES = Hypothesis("DropConnect 0.5 raises test accuracy over the plain net", margin=0.5, primary=True)
# Wan et al. report DropConnect on par with dropout (better on some sets, worse on others): equivalence.
MATCHES = Hypothesis("DropConnect 0.5 matches dropout 0.5 within ±0.5 pp of test accuracy", kind="equivalence",
                     margin=0.5)  # fmt: skip

leaderboard_study(
    name="dropconnect",
    title="DropConnect: dropping weights instead of activations (exercise 6)",
    question="Does dropping weights regularize like dropping activations?",
    variants=[plain(), dropout(), dropout("dropconnect 0.5", noise="dropconnect")],
    claims=[(RAISES, "dropconnect 0.5", "plain"), (MATCHES, "dropconnect 0.5", "dropout 0.5"),
            (DROPOUT_RAISES, "dropout 0.5", "plain")],  # fmt: skip
    order=70,
    **STUDY_10K,
    regime="10,000 training images; DropConnect: one weight mask per minibatch, not per example",
)
