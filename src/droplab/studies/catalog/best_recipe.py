"""What dropout adds to droplab's best recipe: the recipe against itself with p = 0.

The recipe (:data:`droplab.recipes.RECIPES` ``"best"``: 784-1024-1024-10, dropout 0.1/0.3,
max-norm 3, SGD with momentum 0.9 under a one-cycle schedule peaking at lr 0.1, random shifts of
1 pixel, 60 epochs) fixes its own learning rate and schedule, so the study runs under the
lecture's protocol only (``Study.protocol``): each run trains the recipe as ``droplab train
--recipe best`` does and is scored at its last epoch. Retuning the recipe is not what is asked.

The recipe's test accuracy is reported with two intervals: over seeds only, and over seeds and
test images (:func:`droplab.stats.two_way_estimate` on the seeds x images matrix of 100 x
correct): the 10,000 test images are a sample too, and at about 90 % accuracy their sampling
alone is about ±0.6 pp (binomial: 1.96 x sqrt(0.9 x 0.1 / 10,000) = 0.59 pp), more than the
seeds' spread.

Margin: 0.5 pp of test accuracy (the smallest gain worth a reader's attention on Fashion-MNIST).
With 3 seeds (a run of the recipe takes minutes) the claim is likely underpowered; its line says so.
"""

from __future__ import annotations

from ... import plots
from ...recipes import RECIPES
from ...stats import two_way_estimate
from ...train import TrainConfig
from ...verdicts import Hypothesis, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import COLUMNS, variants_table

BEST = RECIPES["best"]
RECIPE = {k: v for k, v in BEST.to_dict().items() if k != "epochs" and v != getattr(TrainConfig(), k)}
WITH, WITHOUT = "best recipe", "best recipe, p = 0"

QUICK_HIDDEN = (128, 128)  # the quick setting's nets: a 1024-1024 run takes ten seconds even on tiny data


def variants(quick: bool) -> list[Variant]:
    """The recipe, and the recipe with dropout 0 (narrower in the quick setting)."""
    narrow = {"hidden": QUICK_HIDDEN} if quick else {}
    return [Variant(WITH, narrow), Variant(WITHOUT, {**narrow, "dropout": (0.0, 0.0)})]


ADDS = Hypothesis("dropout adds to the best recipe (the recipe − the same with dropout 0)", margin=0.5, primary=True)


@study(
    name="best-recipe",
    title="What dropout adds to droplab's best recipe (a p = 0 ablation)",
    question="droplab's best recipe for an MLP on Fashion-MNIST uses dropout 0.1/0.3: how much of its accuracy "
    "does dropout give, and how precisely is that accuracy known?",
    variants=variants,
    epochs=BEST.epochs,
    base=RECIPE,
    order=130,
    hypotheses=[ADDS],
    seeds=3,
    protocol="lecture",
    in_all=False,  # six 60-epoch runs, about 30 min on 2 cores: beyond the suite's budget, run by name
    regime="the best recipe: 784-1024-1024-10, dropout (0.1, 0.3), max-norm 3, momentum 0.9, one-cycle lr peaking "
    "at 0.1, shifts of 1 px; 55,000 training images",
)
def analyze(r: Results) -> Analysis:
    rows = [[v.name, format_interval(r.interval(v.name, "test_acc", 100)), *_with_images(r, v.name)]
            for v in r.variants]  # fmt: skip
    accuracy = Table("test accuracy %: mean ± 95% half-width, over seeds, and over seeds and test images",
                     ["variant", "over seeds", "over seeds and test images", "test images' share (se, pp)"],
                     rows)  # fmt: skip
    fig = plots.intervals([v.name for v in r.variants], [r.values(v.name, "test_acc", 100) for v in r.variants],
                          "test accuracy", "% (dots: seeds; bars: 95% interval over seeds)")  # fmt: skip
    return Analysis([r.claim(ADDS, WITH, WITHOUT)], [accuracy, variants_table(r, "last epoch", COLUMNS)],
                    {"test_acc": fig})  # fmt: skip


def _with_images(r: Results, variant: str) -> list[str]:
    """The interval of ``variant``'s test accuracy over seeds and test images, and the images'
    standard error (n/a without per-image results or with one seed)."""
    correct = r.correct(variant)
    if correct is None or len(r.seeds) < 2:
        return ["n/a", "n/a"]
    e = two_way_estimate(100.0 * correct.astype(float))
    return [format_interval(e.interval()), f"{e.image_se:.2f}"]
