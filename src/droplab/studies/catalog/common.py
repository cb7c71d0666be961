"""What the studies share: the base configuration, the columns and panels most of them show,
the variants most of them hold, and the leaderboard studies' declaration and analysis.

Every study trains the general MLP (784-256-256-10, ReLU; the lecture's DropoutMLPScratch
layer for layer when the noise is dropout) with the lecture's SGD setting unless it says
otherwise, on the 55,000/5,000 train/validation split; train-set metrics on 2,000 of the
training images. Claims compare variants paired by seed (for one seed every variant starts
from the same weights and sees the same minibatch order).

Margins: 0.5 pp of test accuracy for a difference between two nets, 1 pp for a contrast of
four. They were 0.3 pp in the first full run; its first two studies showed that the 10,000
test images alone put the smallest resolvable margin of a paired difference near 0.3 pp at any
number of seeds (the images' variance does not shrink with seeds), so a 0.3 pp margin could
never be resolved. The margins were raised for that reason, a property of the variances,
before the other studies had finished and whatever the estimates' signs (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ... import plots
from ...stats import Estimate, mean_estimate, two_way_estimate
from ...verdicts import Claim, Hypothesis, Table, format_interval
from ..registry import Analysis, Study, Variant, register
from ..results import Results

BASE = {"model": "mlp", "hidden": (256, 256), "eval_train_size": 2_000}
BASE_10K = {**BASE, "train_size": 10_000}  # the cheap studies' base: 10,000 training images, seconds a run
COLUMNS = [  # (summary key, heading, scale, digits)
    ("val_acc", "val acc %", 100.0, 2),
    ("test_acc", "test acc %", 100.0, 2),
    ("gap", "gap (val − train loss)", 1.0, 4),
    ("train_loss_eval", "train loss (eval)", 1.0, 4),
]
PANELS = [
    ("train_loss_eval", "train loss (eval mode)"),
    ("val_loss", "validation loss"),
    ("val_acc", "validation accuracy"),
]
WD = 5e-4  # the regularizers study's weight decay (L2), the paper's order of magnitude
# The BASE_10K studies' shared runs: "plain" and "dropout 0.5", with the same epochs and grid in every study
# that holds them (layer-rates, weight-decay, dropconnect, noise, normalization), train once in a suite's store.
EPOCHS_10K = 40  # at most 1,600 steps on 10,000 images; each run keeps its val-best epoch (early stopping)
SEEDS_10K = 8  # what the suite's 90-minute budget affords them; each claim's line prints its MDE (power)
STUDY_10K = {"base": BASE_10K, "max_epochs": EPOCHS_10K, "seeds": SEEDS_10K}  # their Study fields, one place
DROPOUT_RAISES = Hypothesis("dropout 0.5 raises test accuracy over the plain net (10,000 images)", margin=0.5)


def plain(name: str = "plain", **extra) -> Variant:
    """No dropout (with ``extra`` overrides)."""
    return Variant(name, {"dropout": (0.0, 0.0), **extra})


def dropout(name: str = "dropout 0.5", **extra) -> Variant:
    """Dropout 0.5 on both hidden layers (with ``extra`` overrides)."""
    return Variant(name, {"dropout": (0.5, 0.5), **extra})


def fixed(*variants: Variant) -> Callable[[bool], list[Variant]]:
    """The same ``variants`` whether the study is quick or not."""
    return lambda quick: list(variants)


def series(results: Results, keys) -> dict:
    """``{variant: {key: array (seeds, evaluations)}}``, what :func:`droplab.plots.curves` draws."""
    return {v.name: {k: np.array(results.history(v.name, k)) for k in keys} for v in results.variants}


def panel_curves(results: Results, title: str, panels=PANELS):
    """One panel per ``(key, title)`` of ``panels``: per variant the mean over seeds and its 95% band."""
    return plots.curves(panels, series(results, [k for k, _ in panels]), title)


def final(results: Results, variant: str, key: str) -> list[float]:
    """``key`` at the last evaluation, one per seed."""
    return [h[-1] for h in results.history(variant, key)]


def variants_table(results: Results, title: str, columns: Sequence[tuple[str, str, float, int]]) -> Table:
    """Mean ± 95% half-width per variant for ``columns`` = (key, heading, scale, digits)."""
    rows = [
        [v.name] + [format_interval(results.interval(v.name, key, scale), d) for key, _, scale, d in columns]
        for v in results.variants
    ]
    return Table(title, ["variant"] + [h for _, h, _, _ in columns], rows)


def chosen_lr(r: Results, name: str) -> str:
    """The learning rate ``name``'s confirmation runs trained at (the fair protocol's choice)."""
    return f"{r.lr[name]:g}" if name in r.lr else f"{r.get(name, r.seeds[0])['job']['train']['lr']:g}"


def label(r: Results, name: str) -> str:
    """A variant's name, and for a group the member its tuning picked (e.g. ``gaussian (gaussian 0.5)``)."""
    return f"{name} ({r.picked[name]})" if name in r.picked else name


def leaderboard(results: Results, title: str) -> tuple[Table, object]:
    """The variants ranked by mean test accuracy of their confirmation runs (each at its
    validation-chosen epoch), with the chosen learning rate and epoch: a table and a figure."""
    r = results
    order = sorted(r.variants, key=lambda v: -np.mean(r.values(v.name, "test_acc")))
    rows = [
        [str(i + 1), label(r, v.name), chosen_lr(r, v.name), f"{np.mean(r.values(v.name, 'best_epoch')):.1f}"]
        + [format_interval(r.interval(v.name, k, s), d) for k, _, s, d in COLUMNS]
        for i, v in enumerate(order)
    ]
    table = Table(title, ["rank", "variant", "lr", "epoch (mean)"] + [h for _, h, _, _ in COLUMNS], rows)
    fig = plots.intervals(
        [label(r, v.name) for v in order],
        [r.values(v.name, "test_acc", 100.0) for v in order],
        title,
        "test accuracy % at the val-chosen epoch (dots: seeds; bars: 95% interval over seeds)",
    )
    return table, fig


def contrast(r: Results, weights: Mapping[str, float]) -> tuple[Estimate, list[float]]:
    """The contrast ``sum_v weights[v] * test accuracy of v`` in pp, paired by seed: its estimate
    over seeds and test images (:func:`~droplab.stats.two_way_estimate` on the per-image contrast;
    seeds only where the runs stored no per-image results) and its value on each seed."""
    per_seed = [sum(w * x for w, x in zip(weights.values(), xs)) for xs in
                zip(*(r.values(name, "test_acc", 100.0) for name in weights))]  # fmt: skip
    matrices = [r.correct(name) for name in weights]
    if any(m is None for m in matrices) or len(per_seed) < 2:  # one seed: no interval at all
        return mean_estimate(per_seed), per_seed
    x = 100.0 * sum(w * m.astype(np.float64) for w, m in zip(weights.values(), matrices))
    return two_way_estimate(x), [float(v) for v in x.mean(axis=1)]


def contrast_claim(r: Results, h: Hypothesis, weights: Mapping[str, float]) -> Claim:
    """The claim ``h`` measured as the test-accuracy :func:`contrast` ``weights`` (pp)."""
    estimate, per_seed = contrast(r, weights)
    terms = " ".join(f"{'+' if w >= 0 else '−'} {abs(w):g}·[{name}]" for name, w in weights.items())
    return r.measure(h, estimate, list(weights), f"test_acc contrast: {terms.lstrip('+ ')}", per_seed)


def shrink(lr: float, weight_decay: float, steps: int, momentum: float = 0.0) -> float:
    """How much weight decay alone shrinks the weights over ``steps`` SGD steps: ``(1 − lr·wd/(1 − momentum))^steps``
    (with momentum, decay's steady-state step is ``1/(1 − momentum)`` times larger).

    Examples::

        >>> round(shrink(0.1, 5e-3, 1600), 3), round(shrink(0.1, 5e-4, 2150), 3)
        (0.449, 0.898)
    """
    return (1.0 - lr * weight_decay / (1.0 - momentum)) ** steps


def steps_per_epoch(train: Mapping[str, Any]) -> int:
    """Optimizer steps per epoch of a run's configuration (``train_size`` 0: the training split,
    60,000 − ``val_size`` images)."""
    n = train["train_size"] or 60_000 - train["val_size"]
    return n // train["batch_size"] if train["drop_last"] else math.ceil(n / train["batch_size"])


def identical(r: Results) -> list[str]:
    """Notes on variants whose runs came out identical on every seed: a setting that never
    acted (e.g. a max-norm bound the weights never reach)."""
    notes, names = [], [v.name for v in r.variants]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if all(r.get(a, s)["history"] == r.get(b, s)["history"] for s in r.seeds):
                notes.append(f"'{a}' and '{b}' trained identically on every seed: what tells them apart never acted")
    return notes


def versus(pairs: Sequence[tuple[Hypothesis, str, str]]) -> Callable[[Results], Analysis]:
    """The analysis of a leaderboard study: for each ``(hypothesis, a, b)`` of ``pairs`` the
    claim measured as ``a − b`` in test accuracy, the leaderboard, and notes on settings that
    never acted (the engine adds the notes on convergence)."""

    def analyze(r: Results) -> Analysis:
        claims = [r.claim(h, a, b) for h, a, b in pairs]
        table, fig = leaderboard(r, "leaderboard by test accuracy (each run at its val-chosen epoch)")
        return Analysis(claims, [table], {"leaderboard": fig}, identical(r))

    return analyze


def leaderboard_study(
    name: str,
    title: str,
    question: str,
    variants: Sequence[Variant],
    claims: Sequence[tuple[Hypothesis, str, str]],
    base: Mapping[str, Any] = BASE,
    order: int | None = None,
    **options: Any,
) -> Study:
    """Register a study that ranks fixed ``variants`` by test accuracy (:func:`versus`).

    Args:
        name, title, question, base, order: as :class:`~droplab.studies.registry.Study`'s.
        variants: its configurations, the same whether the study is quick or not.
        claims: ``(hypothesis, a, b)``: the hypothesis measured as variant ``a`` − variant ``b``;
            the hypotheses are the study's, in this order.
        options: other fields of :class:`~droplab.studies.registry.Study` (``max_epochs``,
            ``seeds``, ``regime``, ``lr_grid``).

    Returns:
        the registered study.
    """
    hypotheses = tuple(h for h, _, _ in claims)
    return register(Study(name, title, question, fixed(*variants), versus(claims), base=base, order=order,
                          hypotheses=hypotheses, **options))  # fmt: skip
