"""Why the lecture saw a gain: d2l's setting beside droplab's, measured before and after each
epoch's last optimizer step.

d2l's code trains on all 60,000 training images, so every epoch ends with a partial minibatch of
96 (60,000 = 234 x 256 + 96), evaluates right after that step, and reports its "validation"
accuracy on the test set. A step on 96 images at lr 0.1 moves the weights as far as a full
batch's but with a noisier gradient, and the net is measured just after it. This study replays
that setting (``split="d2l"``, the lecture's budget: lr 0.1, batch 256, 10 epochs, the last
epoch) beside droplab's (55,000 training images, last batch 216 = 55,000 − 214 x 256, the
5,000 held-out images as validation), and measures each evaluated epoch twice: just before its
last step (``eval_before_last_step``) and after it. It runs under the lecture's protocol only
(``Study.protocol``): tuning it would not be a replay.

Nets: "1-layer plain" is d2l's MLP of the previous deck (784-256-10), "plain" the same 784-256-256-10
net as "dropout" (0.5, 0.5) without dropout. droplab's layers start from PyTorch's default
initialization (``nn.Linear``'s, as d2l's ``DropoutMLPScratch`` with ``LazyLinear``); d2l's
one-layer ``MLPScratch`` draws its weights from N(0, 0.01²) with zero biases: that difference is
kept (droplab's models are not changed for the replay).

Figures from the history (before and after the last step) vary by seed only; claims on the final
accuracies (``test_acc``; under d2l's split the final "validation" accuracy is the test set's)
count the test images too. Margins: 0.5 pp of accuracy throughout (the smallest difference worth
a reader's attention that the test set can resolve). "The partial batch, not dropout, makes
the gain" is two claims: the primary one (the lead grows over the last step) and the lead before
it within ±0.5 pp (equivalence); only both together would say it.
"""

from __future__ import annotations

from ... import plots
from ...stats import mean_estimate
from ...verdicts import Claim, Hypothesis, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import BASE, dropout, final, fixed, plain

ONE, PLAIN, DROP = "d2l 1-layer plain", "d2l plain", "d2l dropout"
OURS_PLAIN, OURS_DROP = "droplab plain", "droplab dropout"
D2L = {"split": "d2l"}

PARTIAL = Hypothesis("the final partial batch makes part of the lecture's gain: d2l's dropout lead (dropout − "
                     "plain) is larger after the epoch's last step than before it", margin=0.5,
                     primary=True)  # fmt: skip
LEAD = Hypothesis("in d2l's setting dropout beats the same net without it, as the lecture saw (after the last step)",
                  margin=0.5)  # fmt: skip
LEAD_BEFORE = Hypothesis("before the last step, d2l's dropout lead is within ±0.5 pp", kind="equivalence",
                         margin=0.5)  # fmt: skip
COSTS_PLAIN = Hypothesis("the final partial step costs d2l's plain net accuracy (after − before the last step)",
                         margin=0.5, expect_positive=False)  # fmt: skip
LITERAL = Hypothesis("the lecture's literal comparison: the 256-256 dropout net beats d2l's one-hidden-layer plain "
                     "MLP", margin=0.5)  # fmt: skip
SECOND = Hypothesis("a second hidden layer, without dropout, raises accuracy (d2l plain − d2l 1-layer plain)",
                    margin=0.5)  # fmt: skip
OURS = Hypothesis("on droplab's split (55,000 images, last batch 216) dropout beats the plain net", margin=0.5)


@study(
    name="lecture-replay",
    title="Why the lecture saw a gain: d2l's partial last batch, replayed",
    question="d2l's dropout net beat its plain one: is that dropout, or the epoch's last step on a partial batch "
    "of 96 images, measured right after it? And does the lecture's literal comparison (against the one-layer "
    "MLP of the previous deck) hold?",
    variants=fixed(
        Variant(ONE, {**D2L, "hidden": (256,), "dropout": (0.0,)}),
        plain(PLAIN, **D2L),
        dropout(DROP, **D2L),
        plain(OURS_PLAIN),
        dropout(OURS_DROP),
    ),
    base={**BASE, "eval_before_last_step": True},
    order=15,
    hypotheses=[PARTIAL, LEAD, LEAD_BEFORE, COSTS_PLAIN, LITERAL, SECOND, OURS],
    seeds=10,
    protocol="lecture",
    regime="d2l's setting: all 60,000 training images (last batch 96), the test set as validation; droplab's: "
    "55,000 (last batch 216), 5,000 held out",
)
def analyze(r: Results) -> Analysis:
    after = {v.name: final(r, v.name, "val_acc") for v in r.variants}
    before = {v.name: final(r, v.name, "val_acc_before_last") for v in r.variants}
    lead_after = [100 * (d - p) for d, p in zip(after[DROP], after[PLAIN])]
    lead_before = [100 * (d - p) for d, p in zip(before[DROP], before[PLAIN])]
    shrink = [a - b for a, b in zip(lead_after, lead_before)]
    step = [100 * (a - b) for a, b in zip(after[PLAIN], before[PLAIN])]
    last = "last epoch's val_acc"
    claims: list[Claim] = [
        r.measure(PARTIAL, mean_estimate(shrink), [DROP, PLAIN], f"({DROP} − {PLAIN}) after − before the last step "
                  f"({last} − val_acc_before_last)", shrink),
        r.claim(LEAD, DROP, PLAIN),
        r.measure(LEAD_BEFORE, mean_estimate(lead_before), [DROP, PLAIN], f"{DROP} − {PLAIN}, val_acc_before_last "
                  "of the last epoch", lead_before),
        r.measure(COSTS_PLAIN, mean_estimate(step), [PLAIN], f"{PLAIN}: {last} − val_acc_before_last", step),
        r.claim(LITERAL, DROP, ONE),
        r.claim(SECOND, PLAIN, ONE),
        r.claim(OURS, OURS_DROP, OURS_PLAIN),
    ]  # fmt: skip
    rows = [
        [v.name, "d2l (test set)" if v.overrides.get("split") == "d2l" else "droplab (5,000 held out)",
         _pp(before[v.name]), _pp(after[v.name]), _pp([a - b for a, b in zip(after[v.name], before[v.name])]),
         format_interval(r.interval(v.name, "test_acc", 100))]
        for v in r.variants
    ]  # fmt: skip
    table = Table("the last epoch, measured just before its last step and after it (mean ± 95% half-width)",
                  ["variant", "split (validation on)", "val acc % before the last step", "val acc % after",
                   "the last step's change (pp)", "test acc %"], rows)  # fmt: skip
    change = plots.intervals([v.name for v in r.variants],
                             [[100 * (a - b) for a, b in zip(after[v.name], before[v.name])] for v in r.variants],
                             "change in val accuracy over the last step (d2l: test set)",
                             "pp (dots: seeds; bars: 95% interval)")  # fmt: skip
    return Analysis(claims, [table], {"last_step": change})


def _pp(fractions: list[float]) -> str:
    return format_interval(mean_estimate([100 * f for f in fractions]).interval())
