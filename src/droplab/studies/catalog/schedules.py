"""When to drop: Liu et al.'s early and late dropout ("Dropout Reduces Underfitting", Liu, Xu, Darrell &
Liu, ICML 2023) against constant dropout and none, on a small ViT and on the lecture's MLP, in an
underfitting regime and an overfitting one.

Liu et al.'s claims: in an *underfitting* model, dropout for only the first part of training (early
dropout: p = 0.1 for 50 of 300 epochs) raises accuracy over no dropout (ViT-T on ImageNet: 73.9 →
74.3 %), where standard (constant) dropout lowers it (67.9 %); in an *overfitting* model, regularization
switched on late (late stochastic depth) beats standard regularization, and early dropout is not the
tool. Which schedule helps flips with the regime.

Setting. Schedules (``TrainConfig.dropout_schedule``, :mod:`droplab.train.dropout_schedule`): none
(rate 0), ``constant``, ``early:E`` (on for epochs 1..E, then off) and ``late:E`` (off for 1..E, then on),
with one switch epoch E = epochs // 6, at least 1: Liu et al.'s 50 of 300 epochs, the same E for early
and late so that the two are complementary halves of one run, as in the paper. Models: the ViT of
:mod:`droplab.vit` (width 32, depth 2, 2 heads, 7x7 patches, pre-LayerNorm) at rate 0.1 at its three
dropout sites (Liu et al.'s rate for ViT-T; DropPath 0: the paper's early-dropout ViT-T result is
dropout's, and its late stochastic depth is for larger models than this, so it is left out for the
budget), and the lecture's MLP (784-256-256, ReLU) at 0.5 on both hidden layers, the lecture's (and
Srivastava et al.'s) rate, so that its arm asks whether the schedules carry over to the lecture's
dropout. Both with Adam, learning rate tuned per variant over {0.001, 0.003} (widened where an end is
chosen). Two regimes, each a training-set size and a length, the same for both models:

- *underfitting*: 5,000 images, 6 epochs, batches of 256 (about 120 steps; E = 1). A ViT run of
  10,000 images x 4 epochs (no dropout) measured on this machine was still improving at its last epoch
  with training and validation accuracy within 2.4 pp: the models have not converged. This is "short
  training relative to data", not Liu et al.'s small model on ImageNet trained to the end: a laptop's
  stand-in for it, and a verdict here holds in this regime only;
- *overfitting*: 400 images, 12 epochs, batches of 25 (192 steps; E = 2). A no-dropout ViT run on
  500 images measured here reached 90 % training against 71 % validation accuracy, its validation
  loss rising from about epoch 10.

Every run keeps its validation-best epoch (the fair protocol's early stopping). A late run whose kept
epoch is ≤ E kept weights trained without any dropout, and an early run's kept epoch ≤ E weights from
its dropout phase: E at a sixth of the run puts the switch well before the end, and the table counts,
per variant, the runs that kept an epoch ≤ E, so that a reader sees when a schedule never acted on the
weights scored. ``--epochs`` would give both regimes the same length (not this design) and is refused
below E + 1 by the schedule's own check.

Claims, declared before any run (margins: 0.5 pp of test accuracy for a difference of two nets, 1 pp for
a contrast of four, as in the other studies); each names its regime:

- (primary) underfitting: the ViT's early dropout raises test accuracy over no dropout (Liu et al.'s
  headline);
- underfitting: the ViT's early dropout beats constant dropout;
- overfitting: the ViT's late dropout beats constant dropout (the paper's late stochastic depth result,
  here with dropout);
- the ViT's crossover: ``[early − late]`` in underfitting minus ``[early − late]`` in overfitting is
  above 0 (early helps where late does not, and the other way round);
- underfitting: the MLP's early dropout 0.5 raises test accuracy over no dropout;
- the MLP's crossover, as the ViT's.

Budget: 30 minutes on 2 cores at its defaults. 16 variants x (2 rates x 2 tuning seeds + 4 confirmation
seeds) = 128 runs, and up to 64 more if every grid widens twice (each widening step: 2 runs a variant).
The full run (docs/studies.md) trained 166 runs in 263 s of wall time on a quiet 2-core AMD EPYC
(1,013 s with the cores shared with the test suite). Before it runs at its defaults, the engine prints
its estimate from one step of each kind of run timed on this machine
(:func:`droplab.train.timing.time_step`), and whether that fits this budget.

The quick setting (tests, CI): 2 epochs (E = 1), on 300 images in batches of 64 (underfitting) and 100
in batches of 25 (overfitting), a ViT of width 16 and depth 1; the claims keep the full setting's words.
"""

from __future__ import annotations

import numpy as np

from ...verdicts import Hypothesis, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import contrast_claim, identical, leaderboard

VIT = {"model": "vit", "vit_width": 32, "vit_depth": 2, "vit_heads": 2, "vit_patch": 7}
QUICK_VIT = {**VIT, "vit_width": 16, "vit_depth": 1}
MLP = {"model": "mlp", "hidden": (256, 256)}
RATES = {"vit": 0.1, "mlp": 0.5}
SCHEDULES = ("none", "constant", "early", "late")
REGIMES = {  # name: (training images, epochs, batch size)
    "under": (5_000, 6, 256),
    "over": (400, 12, 25),
}
QUICK_REGIMES = {"under": (300, 2, 64), "over": (100, 2, 25)}  # the quick setting: 2 epochs whatever is asked;
# the regimes must still differ there, else a crossover contrast is zero on every image
BASE = {"optimizer": "adam", "eval_train_size": 1_000}

UNDER = "underfitting: 5,000 images, 6 epochs"
OVER = "overfitting: 400 images, 12 epochs"
EARLY_NONE = Hypothesis(f"{UNDER}: the ViT's early dropout (0.1, epoch 1 of 6) raises test accuracy over no dropout",
                        margin=0.5, primary=True)  # fmt: skip
EARLY_CONSTANT = Hypothesis(f"{UNDER}: the ViT's early dropout beats constant dropout 0.1", margin=0.5)
LATE_CONSTANT = Hypothesis(f"{OVER}: the ViT's late dropout (0.1 from epoch 3 of 12) beats constant dropout 0.1",
                           margin=0.5)  # fmt: skip
CROSS_VIT = Hypothesis("the ViT's early − late dropout is higher underfitting (5,000 images, 6 epochs) than "
                       "overfitting (400 images, 12 epochs): [early − late]_under − [early − late]_over",
                       margin=1.0)  # fmt: skip
MLP_EARLY = Hypothesis(f"{UNDER}: the MLP's early dropout (0.5, epoch 1 of 6) raises test accuracy over no dropout",
                       margin=0.5)  # fmt: skip
CROSS_MLP = Hypothesis("the MLP's early − late dropout 0.5 is higher underfitting than overfitting: "
                       "[early − late]_under − [early − late]_over", margin=1.0)  # fmt: skip


def switch(epochs: int) -> int:
    """The epoch after which early dropout stops and late dropout starts: a sixth of the run (Liu et al.'s
    50 of 300 epochs), at least 1.

    Examples::

        >>> switch(6), switch(12), switch(2)
        (1, 2, 1)
    """
    return max(1, epochs // 6)


def variant(model: str, regime: str, schedule: str, quick: bool = False) -> Variant:
    """``model`` ("vit" or "mlp") in ``regime`` ("under" or "over") with ``schedule`` (one of :data:`SCHEDULES`)."""
    images, epochs, batch = (QUICK_REGIMES if quick else REGIMES)[regime]
    p = 0.0 if schedule == "none" else RATES[model]
    kind = "constant" if schedule in ("none", "constant") else f"{schedule}:{switch(epochs)}"
    if model == "vit":
        arch = {**(QUICK_VIT if quick else VIT), "vit_attention_dropout": p, "vit_projection_dropout": p,
                "vit_mlp_dropout": p}  # fmt: skip
    else:
        arch = {**MLP, "dropout": (p, p)}
    overrides = {**arch, "train_size": images, "batch_size": batch, "dropout_schedule": kind}
    return Variant(f"{model} {regime} {schedule}", overrides, epochs=None if quick else epochs)


def variants(quick: bool) -> list[Variant]:
    return [variant(m, r, s, quick) for m in ("vit", "mlp") for r in REGIMES for s in SCHEDULES]


def crossover(model: str) -> dict[str, float]:
    """The weights of ``[early − late]_under − [early − late]_over`` for ``model``."""
    return {f"{model} under early": 1.0, f"{model} under late": -1.0, f"{model} over early": -1.0,
            f"{model} over late": 1.0}  # fmt: skip


@study(
    name="schedules",
    title="Early, late, constant or no dropout, underfitting and overfitting (Liu et al. 2023)",
    question="Liu et al. (ICML 2023): early dropout helps underfitting models, late regularization overfitting "
    "ones. On a small ViT (0.1) and the lecture's MLP (0.5), in an underfitting regime (5,000 images, 6 epochs) "
    "and an overfitting one (400 images, 12 epochs): which of none, constant, early and late dropout wins where?",
    variants=variants,
    base=BASE,
    order=150,
    hypotheses=[EARLY_NONE, EARLY_CONSTANT, LATE_CONSTANT, CROSS_VIT, MLP_EARLY, CROSS_MLP],
    max_epochs=12,
    seeds=4,
    lr_grid=(1e-3, 3e-3),
    regime="ViT width 32, depth 2 (rate 0.1 at 3 sites), MLP 256-256 (0.5), Adam; early/late switch at "
    "a sixth of the run",
    in_all=False,  # too long for the suite's budget: run by name
    budget_minutes=30,
)
def analyze(r: Results) -> Analysis:
    claims = [
        r.claim(EARLY_NONE, "vit under early", "vit under none"),
        r.claim(EARLY_CONSTANT, "vit under early", "vit under constant"),
        r.claim(LATE_CONSTANT, "vit over late", "vit over constant"),
        contrast_claim(r, CROSS_VIT, crossover("vit")),
        r.claim(MLP_EARLY, "mlp under early", "mlp under none"),
        contrast_claim(r, CROSS_MLP, crossover("mlp")),
    ]
    board, fig = leaderboard(r, "leaderboard by test accuracy (each run at its val-chosen epoch; both regimes)")
    return Analysis(claims, [_schedule_table(r), board], {"leaderboard": fig}, identical(r))


def _schedule_table(r: Results) -> Table:
    """Per variant: its schedule as run, the epoch kept, the runs that kept an epoch ≤ E (before the switch),
    and its training and test accuracy (the regime's fit: a large train − test gap is overfitting)."""
    rows = []
    for v in r.variants:
        train = r.get(v.name, r.seeds[0])["job"]["train"]
        kept = r.values(v.name, "best_epoch")
        e = train["dropout_schedule"].partition(":")[2]
        before = f"{sum(k <= int(e) for k in kept)} of {len(kept)}" if e else "—"
        schedule = "none" if v.name.endswith(" none") else train["dropout_schedule"]
        rows.append([v.name, schedule, str(train["epochs"]), f"{np.mean(kept):.1f}", before,
                     format_interval(r.interval(v.name, "train_acc", 100.0)),
                     format_interval(r.interval(v.name, "test_acc", 100.0))])  # fmt: skip
    return Table("schedules as run (E: the switch epoch; kept ≤ E: runs whose val-best epoch came before the switch)",
                 ["variant", "schedule", "epochs", "kept epoch (mean)", "kept ≤ E", "train acc %", "test acc %"],
                 rows)  # fmt: skip
