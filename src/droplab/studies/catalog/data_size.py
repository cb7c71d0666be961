"""Dropout's gain as the training set shrinks: subsets of 1,000 to 55,000 images.

Every subset gets about the updates 10 epochs on all 55,000 images take, so a small set is
not simply under-trained: 1,000 images are seen about 700 times. Every update is a full batch
of 256 (drop_last): at lr 0.1 a final step on a remainder of 16 images (10,000 = 39 x 256 + 16)
moved validation accuracy by up to 30 points, noise that is about batch size, not data size.
"""

from __future__ import annotations

from ... import plots
from ...stats import mean_interval, paired_interval
from ...verdicts import Claim, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import BASE

SIZES = (1000, 2000, 5000, 10_000, 30_000, 0)  # 0: all 55,000
UPDATES = 10 * (55_000 // 256)
EVALUATIONS = 10  # about this many evaluations a run, however many epochs it has


def size_epochs(n: int, batch_size: int = 256) -> int:
    """Epochs that give ``n`` training images (0: all) about ``UPDATES`` full-batch updates.

    Examples::

        >>> size_epochs(0), size_epochs(1000), size_epochs(30_000)
        (10, 713, 18)
    """
    return max(1, round(UPDATES / max(1, (n or 55_000) // batch_size)))


def _size_name(n: int, kind: str) -> str:
    return f"n={n or 'all'} {kind}"


def variants(quick: bool) -> list[Variant]:
    """Per training-set size, the plain MLP and dropout 0.5, each with its epochs."""
    sizes = (200, 0) if quick else SIZES
    out = []
    for n in sizes:
        for kind, p in (("plain", 0.0), ("dropout", 0.5)):
            epochs = size_epochs(n)
            overrides = {
                "dropout": (p, p), "train_size": n, "drop_last": True, "eval_every": max(1, epochs // EVALUATIONS),
            }  # fmt: skip
            out.append(Variant(_size_name(n, kind), overrides, epochs=epochs))
    return out


@study(
    name="data-size",
    title="Dropout's gain as the training set shrinks",
    question="The lecture: dropout shines when capacity exceeds the data. Training subsets of 1k to 55k images "
    "(every subset gets the 2,140 full-batch updates of 10 epochs on all 55,000, so small sets are trained, "
    "not starved).",
    variants=variants,
    base=BASE,
    order=90,
)
def analyze(r: Results) -> Analysis:
    sizes = [v.overrides["train_size"] for v in r.variants][::2]  # (plain, dropout) per size
    gains = {
        n: [a - b for a, b in zip(r.values(_size_name(n, "dropout"), "val_acc", 100),
                                  r.values(_size_name(n, "plain"), "val_acc", 100))]
        for n in sizes
    }  # fmt: skip
    claims = [
        r.claim(
            f"dropout raises validation accuracy with {n or 'all'} training images",
            _size_name(n, "dropout"),
            _size_name(n, "plain"),
        )
        for n in sizes
    ]
    small, full = sizes[0], sizes[-1]
    claims.append(
        Claim(
            f"dropout gains more with {small} images than with {full or 'all'}",
            paired_interval(gains[small], gains[full]),
        )
    )
    return Analysis(claims, [_table(r, sizes, gains)], _figures(r, sizes, gains))


def _table(r: Results, sizes: list[int], gains: dict) -> Table:
    rows = [
        [
            str(n or "all (55,000)"),
            str(r.get(_size_name(n, "plain"), r.seeds[0])["job"]["train"]["epochs"]),
            format_interval(r.interval(_size_name(n, "plain"), "train_acc", 100)),
            format_interval(r.interval(_size_name(n, "dropout"), "train_acc", 100)),
            format_interval(r.interval(_size_name(n, "plain"), "val_acc", 100)),
            format_interval(r.interval(_size_name(n, "dropout"), "val_acc", 100)),
            format_interval(mean_interval(gains[n])),
        ]
        for n in sizes
    ]
    return Table(
        "by training-set size (train acc: on the images trained on, in eval mode)",
        ["images", "epochs", "plain train acc %", "dropout train acc %", "plain val acc %", "dropout val acc %",
         "gain pp"],
        rows,
    )  # fmt: skip


def _figures(r: Results, sizes: list[int], gains: dict) -> dict:
    xs = [n or 55_000 for n in sizes]
    return {
        "gain": plots.xy_intervals(
            xs,
            {"dropout − plain": [gains[n] for n in sizes]},
            "dropout's gain in validation accuracy",
            "training images",
            "pp",
            logx=True,
            hline=0.0,
        ),
        "val_acc": plots.xy_intervals(
            xs,
            {kind: [r.values(_size_name(n, kind), "val_acc", 100) for n in sizes] for kind in ("plain", "dropout")},
            "validation accuracy",
            "training images",
            "%",
            logx=True,
        ),
    }
