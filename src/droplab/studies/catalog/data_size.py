"""Dropout's gain as the training set shrinks, and as the network narrows.

Sizes 1,000, 2,000, 10,000 and all 55,000 images, each with the plain net and dropout 0.5;
and at 10,000 images a 64-wide net (784-64-64-10) beside the 256-wide one ("capacity").
Every run gets about the same number of full-batch updates (5 epochs on all 55,000 images:
1,070), so a small set is trained, not starved (1,000 images are seen about 360 times), and
keeps its validation-best epoch out of about 10 evaluations. Every update is a full batch of
256 (drop_last): at lr 0.1 a final step on a remainder of 16 images (10,000 = 39 x 256 + 16)
moved validation accuracy by up to 30 points, noise that is about batch size, not data size.

Pre-registered shape (the paper's Figure 10): little or no gain at the smallest sizes, most
in the middle, less on the full set. An inverted U is its two sides, each a claim: the gain
rises from 1,000 to 2,000 images, and falls from 10,000 to 55,000 (the latter is the lecture's
claim, "dropout shines when capacity exceeds the data", the primary one); both supported is the
inverted U. (A single weighted contrast, (−g1k + g2k + g10k − g55k) / 2, would also come out
positive for gains that merely fall as data grows: a review caught that, and it is not used.)
Margins: 0.5 pp for a gain at one size (the smallest difference between two nets worth a
reader's attention that 10,000 test images can resolve); 1.0 pp for a difference of two gains,
four nets whose seed and image variances add.

In the quick setting (tests) the sizes shrink to 100, 200 and 300 images (and all); the claims
keep the full setting's words.
"""

from __future__ import annotations

from ... import plots
from ...stats import mean_interval
from ...verdicts import Hypothesis, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import BASE, contrast_claim

SIZES = (1000, 2000, 10_000, 0)  # 0: all 55,000
QUICK_SIZES = (100, 200, 300, 0)
NARROW = (64, 64)  # the capacity axis, at the third size (10,000)
UPDATES = 5 * (55_000 // 256)
EVALUATIONS = 10  # about this many evaluations a run, however many epochs it has

MORE_AT_10K = Hypothesis("dropout gains more with 10,000 training images than with all 55,000", margin=1.0,
                         primary=True)  # fmt: skip
RISES = Hypothesis("dropout gains more with 2,000 training images than with 1,000 (the inverted U's rising side)",
                   margin=1.0)  # fmt: skip
WIDTH = Hypothesis("dropout gains more in the 256-wide net than in the 64-wide one at 10,000 images", margin=1.0)
GAINS = {n: Hypothesis(f"dropout raises test accuracy with {n or 55_000:,} training images", margin=0.5)
         for n in SIZES}  # fmt: skip


def size_epochs(n: int, batch_size: int = 256) -> int:
    """Epochs that give ``n`` training images (0: all) about ``UPDATES`` full-batch updates.

    Examples::

        >>> size_epochs(0), size_epochs(1000), size_epochs(10_000)
        (5, 357, 27)
    """
    return max(1, round(UPDATES / max(1, (n or 55_000) // batch_size)))


def _name(n: int, kind: str, hidden: tuple[int, ...] = (256, 256)) -> str:
    width = "" if hidden == (256, 256) else f" {hidden[0]}-wide"
    return f"n={n or 'all'}{width} {kind}"


def variants(quick: bool) -> list[Variant]:
    """Per training-set size the plain MLP and dropout 0.5, each with its epochs; then the narrow pair."""
    sizes = QUICK_SIZES if quick else SIZES
    cells = [(n, (256, 256)) for n in sizes] + [(sizes[2], NARROW)]
    out = []
    for n, hidden in cells:
        for kind, p in (("plain", 0.0), ("dropout", 0.5)):
            epochs = size_epochs(n)
            overrides = {"hidden": hidden, "dropout": (p, p), "train_size": n, "drop_last": True,
                         "eval_every": max(1, epochs // EVALUATIONS)}  # fmt: skip
            out.append(Variant(_name(n, kind, hidden), overrides, epochs=epochs))
    return out


@study(
    name="data-size",
    title="Dropout's gain as the training set shrinks (and as the net narrows)",
    question="The lecture: dropout shines when capacity exceeds the data. Training subsets of 1k to 55k images, "
    f"each given the same {UPDATES:,} full-batch updates, so small sets are trained, not starved; and a 64-wide net "
    "beside the 256-wide one at 10,000 images.",
    variants=variants,
    base=BASE,
    order=90,
    hypotheses=[MORE_AT_10K, RISES, WIDTH, *GAINS.values()],
    seeds=16,  # 20 would cost about 820 s (cost model): over the suite's share; the lines print their MDE
    regime=f"{UPDATES:,} full-batch updates per run, best of about {EVALUATIONS} evaluations on val",
)
def analyze(r: Results) -> Analysis:
    sizes = [v.overrides["train_size"] for v in r.variants if v.overrides["hidden"] == (256, 256)][::2]
    narrow = sizes[2]

    def gain(n: int, hidden: tuple[int, ...] = (256, 256), w: float = 1.0) -> dict[str, float]:
        return {_name(n, "dropout", hidden): w, _name(n, "plain", hidden): -w}

    claims = [
        contrast_claim(r, MORE_AT_10K, gain(sizes[2]) | gain(sizes[3], w=-1.0)),
        contrast_claim(r, RISES, gain(sizes[1]) | gain(sizes[0], w=-1.0)),
        contrast_claim(r, WIDTH, gain(narrow) | gain(narrow, NARROW, -1.0)),
        *(r.claim(GAINS[full], _name(n, "dropout"), _name(n, "plain")) for n, full in zip(sizes, SIZES)),
    ]
    gains = {n: [a - b for a, b in zip(r.values(_name(n, "dropout"), "test_acc", 100),
                                       r.values(_name(n, "plain"), "test_acc", 100))] for n in sizes}  # fmt: skip
    return Analysis(claims, [_table(r, sizes, narrow)], _figures(r, sizes, gains))


def _table(r: Results, sizes: list[int], narrow: int) -> Table:
    def row(n: int, hidden: tuple[int, ...]) -> list[str]:
        plain, drop = _name(n, "plain", hidden), _name(n, "dropout", hidden)
        gain = [a - b for a, b in zip(r.values(drop, "test_acc", 100), r.values(plain, "test_acc", 100))]
        return [f"{n or 'all (55,000)'}" + ("" if hidden == (256, 256) else f", {hidden[0]}-wide"),
                str(r.get(plain, r.seeds[0])["job"]["train"]["epochs"]),
                *(format_interval(r.interval(x, "train_acc", 100)) for x in (plain, drop)),
                *(format_interval(r.interval(x, "test_acc", 100)) for x in (plain, drop)),
                format_interval(mean_interval(gain))]  # fmt: skip

    return Table(
        "by training-set size (train acc: on the images trained on, in eval mode; test acc at the val-chosen epoch)",
        ["images", "epochs", "plain train acc %", "dropout train acc %", "plain test acc %", "dropout test acc %",
         "gain pp"],
        [row(n, (256, 256)) for n in sizes] + [row(narrow, NARROW)],
    )  # fmt: skip


def _figures(r: Results, sizes: list[int], gains: dict) -> dict:
    xs = [n or 55_000 for n in sizes]
    return {
        "gain": plots.xy_intervals(xs, {"dropout − plain": [gains[n] for n in sizes]},
                                   "dropout's gain in test accuracy", "training images", "pp", logx=True, hline=0.0),
        "test_acc": plots.xy_intervals(
            xs, {kind: [r.values(_name(n, kind), "test_acc", 100) for n in sizes] for kind in ("plain", "dropout")},
            "test accuracy (val-chosen epoch)", "training images", "%", logx=True),
    }  # fmt: skip
