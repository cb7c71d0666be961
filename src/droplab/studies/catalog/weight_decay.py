"""Exercise 5: dropout, weight decay and both, and whether their gains add up.

A grid of weight decay {0, 1e-3, 5e-3} x dropout {0, 0.5} on 10,000 images. Weight decay
binds only when lr·wd·steps is not small: each SGD step multiplies the weights by (1 − lr·wd),
so over the 1,600 steps of 40 epochs at lr 0.1, 5e-3 alone shrinks them to about 0.45 of their
size and 1e-3 to about 0.85 (5e-4, the earlier design's value, to about 0.90 over its 2,150
steps: barely active). The table prints each cell's shrink factor at its chosen learning rate
and epoch.

"Additive" is claimed as equivalence: the interaction (both − dropout − decay + plain), a
difference of differences of test accuracy, within ±1 pp: four nets, whose seed and image
variances add, so that 10,000 test images cannot resolve a smaller margin for it. The other
margins are 0.5 pp, the smallest difference between two nets worth a reader's attention that
the test set can resolve.
"""

from __future__ import annotations

import numpy as np

from ...verdicts import Hypothesis, Table, format_interval
from ..registry import Analysis, study
from ..results import Results
from .common import (
    DROPOUT_RAISES,
    STUDY_10K,
    chosen_lr,
    contrast_claim,
    dropout,
    fixed,
    label,
    leaderboard,
    plain,
    shrink,
    steps_per_epoch,
)

DECAYS = (1e-3, 5e-3)  # 5e-3 binds (the primary claim's); 1e-3 is the milder setting


def _decay(wd: float) -> str:
    return f"weight decay {wd:g}"


def _both(wd: float) -> str:
    return f"dropout + weight decay {wd:g}"


ADDITIVE = Hypothesis("dropout and weight decay 5e-3 add up: their interaction (both − dropout − decay + plain) is "
                      "within ±1 pp", kind="equivalence", margin=1.0, primary=True)  # fmt: skip
ADDITIVE_MILD = Hypothesis("dropout and weight decay 1e-3 add up: their interaction is within ±1 pp",
                           kind="equivalence", margin=1.0)  # fmt: skip
DECAY_RAISES = Hypothesis("weight decay 5e-3 raises test accuracy over the plain net", margin=0.5)


@study(
    name="weight-decay",
    title="Dropout, weight decay, both (exercise 5): weight decay {0, 1e-3, 5e-3} x dropout {0, 0.5}",
    question="Are the gains of dropout and weight decay additive, diminishing, or cancelling?",
    variants=fixed(plain(), dropout(), *(plain(_decay(wd), weight_decay=wd) for wd in DECAYS),
                   *(dropout(_both(wd), weight_decay=wd) for wd in DECAYS)),  # fmt: skip
    order=60,
    hypotheses=[ADDITIVE, DECAY_RAISES, DROPOUT_RAISES, ADDITIVE_MILD],
    **STUDY_10K,
    regime="10,000 training images",
)
def analyze(r: Results) -> Analysis:
    def interaction(h: Hypothesis, wd: float):
        return contrast_claim(r, h, {_both(wd): 1.0, "dropout 0.5": -1.0, _decay(wd): -1.0, "plain": 1.0})

    claims = [
        interaction(ADDITIVE, 5e-3),
        r.claim(DECAY_RAISES, _decay(5e-3), "plain"),
        r.claim(DROPOUT_RAISES, "dropout 0.5", "plain"),
        interaction(ADDITIVE_MILD, 1e-3),
    ]
    table, fig = leaderboard(r, "leaderboard by test accuracy (each run at its val-chosen epoch)")
    return Analysis(claims, [table, _shrink_table(r)], {"test_acc": fig})


def _shrink_table(r: Results) -> Table:
    """Per cell: its chosen learning rate, mean chosen epoch, and the factor weight decay alone
    shrinks the weights by up to that epoch, (1 − lr·wd)^steps."""
    rows = []
    for v in r.variants:
        train = r.get(v.name, r.seeds[0])["job"]["train"]
        epoch = float(np.mean(r.values(v.name, "best_epoch")))
        factor = shrink(train["lr"], train["weight_decay"], round(epoch * steps_per_epoch(train)), train["momentum"])
        rows.append([label(r, v.name), f"{train['weight_decay']:g}", chosen_lr(r, v.name), f"{epoch:.1f}",
                     f"{factor:.3f}", format_interval(r.interval(v.name, "test_acc", 100.0))])  # fmt: skip
    return Table("weight decay's shrink factor (1 − lr·wd)^steps at each cell's chosen lr and epoch",
                 ["variant", "weight decay", "lr", "epoch (mean)", "shrink", "test acc %"], rows)  # fmt: skip
