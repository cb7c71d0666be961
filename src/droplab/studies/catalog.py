"""The studies: the lecture's claims and d2l's seven exercises, each a list of configurations
and an analysis that turns the runs into verdict lines, tables and plots.

Every study trains the general MLP (784-256-256-10, ReLU; the lecture's DropoutMLPScratch
layer for layer when the noise is dropout) with the lecture's SGD setting unless it says
otherwise, on the 55,000/5,000 train/validation split; train-set metrics on 10,000 of the
training images. Claims compare variants paired by seed (for one seed every variant starts
from the same weights and sees the same minibatch order).
"""

from __future__ import annotations

from itertools import product

import numpy as np

from .. import plots
from ..stats import mean_interval, paired_interval
from .engine import Analysis, Claim, Results, Study, Table, Variant, format_interval, variants_table

__all__ = ["STUDIES"]

BASE = {"model": "mlp", "hidden": (256, 256), "eval_train_size": 10_000}
COLUMNS = [
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


def _plain() -> Variant:
    return Variant("plain", {"dropout": (0.0, 0.0)})


def _dropout(name: str = "dropout 0.5", **extra) -> Variant:
    return Variant(name, {"dropout": (0.5, 0.5), **extra})


def _series(results: Results, keys) -> dict:
    return {v.name: {k: np.array(results.history(v.name, k)) for k in keys} for v in results.variants}


def _leaderboard(results: Results, title: str) -> tuple[Table, object]:
    order = sorted(results.variants, key=lambda v: -np.mean(results.values(v.name, "val_acc")))
    rows = [
        [str(i + 1), v.name] + [format_interval(results.interval(v.name, k, s), d) for k, _, s, d in COLUMNS]
        for i, v in enumerate(order)
    ]
    table = Table(title, ["rank", "variant"] + [h for _, h, _, _ in COLUMNS], rows)
    fig = plots.intervals(
        [v.name for v in order],
        [results.values(v.name, "val_acc", 100.0) for v in order],
        title,
        "validation accuracy % (dots: seeds; bars: 95% interval)",
    )
    return table, fig


def _final(results: Results, variant: str, key: str) -> list[float]:
    return [h[-1] for h in results.history(variant, key)]


# 1 ---------------------------------------------------------------------------------------------


def _headline(r: Results) -> Analysis:
    claims = [
        r.claim("dropout raises validation accuracy", "dropout 0.5", "plain", "val_acc"),
        r.claim("dropout raises test accuracy", "dropout 0.5", "plain", "test_acc"),
        r.claim("dropout shrinks the gap between val and train loss", "dropout 0.5", "plain", "gap", False),
    ]
    figs = {
        "curves": plots.curves(PANELS, _series(r, [k for k, _ in PANELS]), "dropout 0.5 vs plain, mean and 95% band"),
        "val_acc": plots.intervals(
            ["plain", "dropout 0.5"],
            [r.values(n, "val_acc", 100) for n in ("plain", "dropout 0.5")],
            "validation accuracy",
            "%",
        ),
    }
    return Analysis(claims, [variants_table(r, "mean ± 95% interval half-width over seeds", COLUMNS)], figs)


# 2 ---------------------------------------------------------------------------------------------

GRID = (0.0, 0.1, 0.3, 0.5, 0.7)
GRID_QUICK = (0.0, 0.5)


def _rate_name(p1: float, p2: float) -> str:
    return f"p1={p1} p2={p2}"


def _layer_rate_variants(quick: bool) -> list[Variant]:
    grid = GRID_QUICK if quick else GRID
    return [Variant(_rate_name(a, b), {"dropout": (a, b)}) for a, b in product(grid, grid)]


def _layer_rates(r: Results) -> Analysis:
    grid = sorted({v.overrides["dropout"][0] for v in r.variants})
    means = np.array([[np.mean(r.values(_rate_name(a, b), "val_acc", 100)) for b in grid] for a in grid])
    swaps = [(a, b) for a in grid for b in grid if a < b]
    claims = []
    for a, b in swaps:
        if (a, b) in ((0.1, 0.5), (0.3, 0.7), (0.0, 0.5)):  # exercise 1's swap, at a few rates
            claims.append(
                r.claim(f"less dropout early: ({a}, {b}) beats its swap ({b}, {a})", _rate_name(a, b), _rate_name(b, a))
            )
    early = [np.mean([r.values(_rate_name(a, b), "val_acc", 100)[i] for a, b in swaps]) for i in range(len(r.seeds))]
    late = [np.mean([r.values(_rate_name(b, a), "val_acc", 100)[i] for a, b in swaps]) for i in range(len(r.seeds))]
    claims.append(
        Claim(f"less dropout early, more later, over all {len(swaps)} swapped pairs", paired_interval(early, late))
    )
    best = max(r.variants, key=lambda v: np.mean(r.values(v.name, "val_acc")))
    claims.append(r.claim(f"the best cell ({best.name}) beats no dropout", best.name, _rate_name(0.0, 0.0)))
    order = sorted(r.variants, key=lambda v: -np.mean(r.values(v.name, "val_acc")))
    rows = [
        [v.name, format_interval(r.interval(v.name, "val_acc", 100)), format_interval(r.interval(v.name, "gap", 1), 4)]
        for v in order
    ]
    figs = {
        "heatmap": plots.heatmap(
            means, grid, grid, "mean validation accuracy %", "p1 (first hidden layer)", "p2 (second hidden layer)"
        )
    }
    return Analysis(claims, [Table("all cells, best first", ["(p1, p2)", "val acc %", "gap"], rows)], figs)


# 3 ---------------------------------------------------------------------------------------------


def _long_training(r: Results) -> Analysis:
    claims = [
        r.claim("after 100 epochs dropout has the higher validation accuracy", "dropout 0.5", "plain", "val_acc"),
        r.claim("after 100 epochs dropout has the smaller val − train loss gap", "dropout 0.5", "plain", "gap", False),
    ]
    rows, notes = [], []
    for v in r.variants:
        val = np.array(r.history(v.name, "val_loss"))
        best_epoch = int(np.argmin(val.mean(axis=0))) + 1
        rise = mean_interval(list(val[:, -1] - val.min(axis=1)))
        claims.append(Claim(f"{v.name} overfits: its final val loss exceeds its lowest", rise, ""))
        rows.append(
            [
                v.name,
                str(best_epoch),
                format_interval(mean_interval(list(val.min(axis=1))), 4),
                format_interval(mean_interval(list(val[:, -1])), 4),
                format_interval(r.interval(v.name, "val_acc", 100)),
            ]
        )
        notes.append(f"{v.name}: mean validation loss is lowest at epoch {best_epoch} of {val.shape[1]}")
    table = Table(
        "validation loss over training",
        ["variant", "epoch of lowest mean val loss", "lowest val loss", "final val loss", "final val acc %"],
        rows,
    )
    figs = {"curves": plots.curves(PANELS, _series(r, [k for k, _ in PANELS]), "100 epochs: mean and 95% band")}
    return Analysis(claims, [table, variants_table(r, "final epoch", COLUMNS)], figs, notes)


# 4 ---------------------------------------------------------------------------------------------

ACT_PANELS = [
    ("act_var_1", "hidden 1, eval mode"),
    ("act_var_2", "hidden 2, eval mode"),
    ("act_var_train_1", "hidden 1 after noise, training mode"),
    ("act_var_train_2", "hidden 2 after noise, training mode"),
]


def _activation_variance(r: Results) -> Analysis:
    claims = []
    for i in (1, 2):
        d, p = _final(r, "dropout 0.5", f"act_var_train_{i}"), _final(r, "plain", f"act_var_train_{i}")
        claims.append(
            Claim(f"in training, what follows hidden layer {i} varies more with dropout", paired_interval(d, p), "")
        )
        d, p = _final(r, "dropout 0.5", f"act_var_{i}"), _final(r, "plain", f"act_var_{i}")
        claims.append(
            Claim(f"hidden layer {i}'s activations (eval mode) vary more with dropout", paired_interval(d, p), "")
        )
    rows = [
        [v.name] + [format_interval(mean_interval(_final(r, v.name, k)), 4) for k, _ in ACT_PANELS] for v in r.variants
    ]
    table = Table(
        "variance per unit over 2,000 validation images, final epoch", ["variant"] + [t for _, t in ACT_PANELS], rows
    )
    figs = {
        "activation_variance": plots.curves(
            ACT_PANELS, _series(r, [k for k, _ in ACT_PANELS]), "variance of hidden activations per epoch"
        )
    }
    return Analysis(claims, [table], figs)


# 5 ---------------------------------------------------------------------------------------------


def _ensemble(r: Results) -> Analysis:
    name = r.variants[0].name
    ks = r.get(name, r.seeds[0])["probes"]["mc"]["ks"]

    def v(key: str, scale: float = 1.0) -> list[float]:
        return r.values(name, f"mc.{key}", scale)

    top = max(ks)
    claims = [
        Claim(
            f"averaging {top} thinned networks beats the weight-scaled network (test accuracy)",
            paired_interval(v(f"mc{top}_acc", 100), v("scaled_acc", 100)),
        ),
        Claim(
            f"averaging {top} thinned networks has the lower test NLL",
            paired_interval(v(f"mc{top}_nll"), v("scaled_nll")),
            "",
            False,
        ),
        Claim(
            "the weight-scaled network beats a single thinned network",
            paired_interval(v("scaled_acc", 100), v("mc1_acc", 100)),
        ),
        Claim(
            f"MC dropout ({top} samples) is better calibrated: lower ECE",
            paired_interval(v("mc_ece"), v("scaled_ece")),
            "",
            False,
        ),
    ]
    rows = [
        [
            f"MC, k={k}",
            format_interval(mean_interval(v(f"mc{k}_acc", 100))),
            format_interval(mean_interval(v(f"mc{k}_nll")), 4),
        ]
        for k in ks
    ]
    rows.append(
        [
            "weight scaling",
            format_interval(mean_interval(v("scaled_acc", 100))),
            format_interval(mean_interval(v("scaled_nll")), 4),
        ]
    )
    ece = Table(
        "expected calibration error (15 bins), test set",
        ["method", "ECE"],
        [
            ["weight scaling", format_interval(mean_interval(v("scaled_ece")), 4)],
            [f"MC, k={top}", format_interval(mean_interval(v("mc_ece")), 4)],
        ],
    )
    cover = []
    for method, key in (("weight scaling", "scaled_acc_vs_conf"), (f"MC, k={top}", "mc_acc_vs_conf")):
        per_seed = [r.get(name, s)["probes"]["mc"][key] for s in r.seeds]
        for j, row in enumerate(per_seed[0]):
            cover.append(
                [
                    method,
                    f"≥ {row['threshold']}",
                    format_interval(mean_interval([100 * p[j]["coverage"] for p in per_seed])),
                    _accuracy_among([p[j]["accuracy"] for p in per_seed]),
                ]
            )
    figs = {
        "mc_accuracy": plots.xy_intervals(
            ks,
            {"MC dropout": [v(f"mc{k}_acc", 100) for k in ks]},
            "test accuracy: MC average of k thinned networks",
            "k",
            "accuracy %",
            logx=True,
            hline=float(np.mean(v("scaled_acc", 100))),
        ),
        "mc_nll": plots.xy_intervals(
            ks,
            {"MC dropout": [v(f"mc{k}_nll") for k in ks]},
            "test NLL (dotted: weight scaling)",
            "k",
            "NLL",
            logx=True,
            hline=float(np.mean(v("scaled_nll"))),
        ),
        "reliability": plots.reliability_diagram(
            {
                "weight scaling": _pooled(r, name, "scaled_reliability"),
                f"MC dropout, k={top}": _pooled(r, name, "mc_reliability"),
            },
            "reliability, test set, all seeds pooled",
        ),
    }
    tables = [
        Table(
            "test set: accuracy and NLL (dotted line in the plots: weight scaling)",
            ["method", "accuracy %", "NLL"],
            rows,
        ),
        ece,
        Table("accuracy vs confidence", ["method", "confidence", "coverage %", "accuracy %"], cover),
    ]
    return Analysis(claims, tables, figs)


def _accuracy_among(values: list) -> str:
    """Mean ± half-width over the seeds that had any example above the threshold (stored
    results hold null where none did)."""
    present = [100 * a for a in values if a is not None and a == a]
    if not present:
        return "no examples"
    return format_interval(mean_interval(present)) + ("" if len(present) == len(values) else f" ({len(present)} seeds)")


def _pooled(r: Results, name: str, key: str) -> list[dict]:
    per_seed = [r.get(name, s)["probes"]["mc"][key] for s in r.seeds]
    out = []
    for j, b in enumerate(per_seed[0]):
        n = sum(p[j]["count"] for p in per_seed)
        acc = sum(p[j]["accuracy"] * p[j]["count"] for p in per_seed if p[j]["count"]) / n if n else float("nan")
        conf = sum(p[j]["confidence"] * p[j]["count"] for p in per_seed if p[j]["count"]) / n if n else float("nan")
        out.append({"low": b["low"], "high": b["high"], "count": n, "accuracy": acc, "confidence": conf})
    return out


# 6 ---------------------------------------------------------------------------------------------

WD = 5e-4


def _weight_decay(r: Results) -> Analysis:
    n, d, w, b = (r.values(x, "val_acc", 100) for x in ("plain", "dropout 0.5", f"weight decay {WD}", "both"))
    interaction = [bi - di - wi + ni for ni, di, wi, bi in zip(n, d, w, b)]
    claims = [
        r.claim("dropout raises validation accuracy", "dropout 0.5", "plain"),
        r.claim("weight decay raises validation accuracy", f"weight decay {WD}", "plain"),
        r.claim("both beat dropout alone", "both", "dropout 0.5"),
        r.claim("both beat weight decay alone", "both", f"weight decay {WD}"),
        Claim(
            "the two are more than additive (interaction: both − dropout − decay + plain)", mean_interval(interaction)
        ),
    ]
    i = mean_interval(interaction)
    kind = (
        "additive (the interaction's interval contains 0)"
        if i.low <= 0 <= i.high
        else "diminishing: together they gain less than the sum"
        if i.high < 0
        else "more than additive"
    )
    if np.mean(b) <= max(np.mean(d), np.mean(w)):
        kind += "; cancelling: both together do no better than the better one alone"
    return Analysis(
        claims,
        [variants_table(r, "mean ± 95% half-width", COLUMNS)],
        {"val_acc": _leaderboard(r, "dropout and weight decay")[1]},
        [f"measured: {kind}"],
    )


# 7, 8, 10, 11 -----------------------------------------------------------------------------------


def _identical(r: Results) -> list[str]:
    """Notes on variants whose runs came out identical on every seed: a setting that never
    acted (e.g. a max-norm bound the weights never reach)."""
    notes, names = [], [v.name for v in r.variants]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if all(r.get(a, s)["history"] == r.get(b, s)["history"] for s in r.seeds):
                notes.append(f"'{a}' and '{b}' trained identically on every seed: what tells them apart never acted")
    return notes


def _versus(pairs):
    def analyze(r: Results) -> Analysis:
        claims = [r.claim(text, a, b) for text, a, b in pairs]
        table, fig = _leaderboard(r, "leaderboard by validation accuracy")
        return Analysis(claims, [table], {"leaderboard": fig}, _identical(r))

    return analyze


# 9 ---------------------------------------------------------------------------------------------

SIZES = (1000, 2000, 5000, 10_000, 30_000, 0)  # 0: all 55,000
# Every subset gets about the updates 10 epochs on all 55,000 images take, so a small set is
# not simply under-trained: 1,000 images are seen about 700 times. Every update is a full batch
# of 256 (drop_last): at lr 0.1 a final step on a remainder of 16 images (10,000 = 39 x 256 + 16)
# moved validation accuracy by up to 30 points, noise that is about batch size, not data size.
UPDATES = 10 * (55_000 // 256)
EVALUATIONS = 10  # about this many evaluations a run, however many epochs it has


def size_epochs(n: int, batch_size: int = 256) -> int:
    """Epochs that give ``n`` training images (0: all) about ``UPDATES`` full-batch updates."""
    return max(1, round(UPDATES / max(1, (n or 55_000) // batch_size)))


def _size_name(n: int, kind: str) -> str:
    return f"n={n or 'all'} {kind}"


def _data_size_variants(quick: bool) -> list[Variant]:
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


def _data_size(r: Results) -> Analysis:
    sizes = [v.overrides["train_size"] for v in r.variants][::2]  # (plain, dropout) per size
    gains = {
        n: [
            a - b
            for a, b in zip(
                r.values(_size_name(n, "dropout"), "val_acc", 100), r.values(_size_name(n, "plain"), "val_acc", 100)
            )
        ]
        for n in sizes
    }
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
    xs = [n or 55_000 for n in sizes]
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
    figs = {
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
    return Analysis(
        claims,
        [
            Table(
                "by training-set size (train acc: on the images trained on, in eval mode)",
                [
                    "images", "epochs", "plain train acc %", "dropout train acc %",
                    "plain val acc %", "dropout val acc %", "gain pp",
                ],
                rows,
            )  # fmt: skip
        ],
        figs,
    )


# 12 --------------------------------------------------------------------------------------------


def _no_rescale(r: Results) -> Analysis:
    claims = [
        r.claim(
            "without the 1/(1-p) scale and without a test-time correction, test accuracy drops",
            "no rescale",
            "inverted",
            "test_acc",
            False,
        ),
        r.claim("... and the validation loss rises", "no rescale", "inverted", "val_loss"),
        r.claim(
            "scaling activations by (1-p) at test time repairs it",
            "no rescale, test-time scaling",
            "no rescale",
            "test_acc",
        ),
        r.claim(
            "test-time scaling then matches inverted dropout (or beats it)",
            "no rescale, test-time scaling",
            "inverted",
            "test_acc",
        ),
    ]
    cols = COLUMNS + [("val_loss", "val loss", 1.0, 4)]
    return Analysis(
        claims,
        [variants_table(r, "mean ± 95% half-width", cols)],
        {"curves": plots.curves(PANELS, _series(r, [k for k, _ in PANELS]), "no rescale vs inverted")},
    )


# the catalog ------------------------------------------------------------------------------------


def _fixed(*variants: Variant):
    return lambda quick: list(variants)


STUDIES: dict[str, Study] = {
    s.name: s
    for s in [
        Study(
            "headline",
            "Dropout vs the plain MLP (the lecture's comparison)",
            "Does dropout raise validation and test accuracy and shrink the gap between train and test loss?",
            _fixed(_plain(), _dropout()),
            _headline,
            base=BASE,
        ),
        Study(
            "layer-rates",
            "Dropout rates per layer: (p1, p2) over {0, 0.1, 0.3, 0.5, 0.7}²",
            "The lecture: less dropout near the input, more later. Exercise 1: swap the two rates.",
            _layer_rate_variants,
            _layer_rates,
            base=BASE,
        ),
        Study(
            "long-training",
            "100 epochs with and without dropout (exercise 2)",
            "Where does the plain network start to overfit, and what does dropout change?",
            _fixed(_plain(), _dropout()),
            _long_training,
            epochs=100,
            base=BASE,
        ),
        Study(
            "activation-variance",
            "Variance of the hidden activations over training (exercise 3)",
            "What happens to the variance of each hidden layer's activations with and without dropout?",
            _fixed(
                Variant("plain", {"dropout": (0.0, 0.0), "track_activations": True}),
                Variant("dropout 0.5", {"dropout": (0.5, 0.5), "track_activations": True}),
            ),
            _activation_variance,
            base=BASE,
        ),
        Study(
            "ensemble",
            "Weight scaling vs Monte-Carlo averaging of thinned networks; MC dropout's calibration",
            "The test-time network approximates an average of exponentially many thinned subnetworks: how close, "
            "and is the average better calibrated?",
            _fixed(Variant("dropout 0.5", {"dropout": (0.5, 0.5)}, probes=("mc",))),
            _ensemble,
            base=BASE,
        ),
        Study(
            "weight-decay",
            "Dropout, weight decay, both (exercise 5)",
            "Are the gains of dropout and weight decay additive, diminishing, or cancelling?",
            _fixed(
                _plain(),
                _dropout(),
                Variant(f"weight decay {WD}", {"dropout": (0.0, 0.0), "weight_decay": WD}),
                Variant("both", {"dropout": (0.5, 0.5), "weight_decay": WD}),
            ),
            _weight_decay,
            base=BASE,
        ),
        Study(
            "dropconnect",
            "DropConnect: dropping weights instead of activations (exercise 6)",
            "Does dropping weights regularize like dropping activations?",
            _fixed(_plain(), _dropout(), Variant("dropconnect 0.5", {"dropout": (0.5, 0.5), "noise": "dropconnect"})),
            _versus(
                [
                    ("dropconnect raises validation accuracy over plain", "dropconnect 0.5", "plain"),
                    ("dropconnect beats dropout", "dropconnect 0.5", "dropout 0.5"),
                    ("dropout raises validation accuracy over plain", "dropout 0.5", "plain"),
                ]
            ),
            base=BASE,
        ),
        Study(
            "noise",
            "Other noise at each layer (exercise 7): a leaderboard on 784-256-256-10",
            "Gaussian multiplicative noise with dropout's variance, additive Gaussian noise (σ = 1), alpha dropout "
            "(p = 0.1), and droplab's stratified dropout (exactly p·n units dropped per example), against dropout 0.5.",
            _fixed(
                _plain(),
                _dropout(),
                Variant("gaussian (var 1)", {"dropout": (0.5, 0.5), "noise": "gaussian"}),
                Variant("additive σ=1", {"dropout": (0.5, 0.5), "noise": "additive"}),
                Variant("alpha 0.1", {"dropout": (0.1, 0.1), "noise": "alpha"}),
                Variant("stratified 0.5", {"dropout": (0.5, 0.5), "noise": "stratified"}),
            ),
            _versus(
                [
                    ("dropout raises validation accuracy over plain", "dropout 0.5", "plain"),
                    ("Gaussian multiplicative noise beats dropout", "gaussian (var 1)", "dropout 0.5"),
                    ("additive noise beats dropout", "additive σ=1", "dropout 0.5"),
                    ("alpha dropout beats dropout", "alpha 0.1", "dropout 0.5"),
                    ("stratified dropout beats dropout", "stratified 0.5", "dropout 0.5"),
                ]
            ),
            base=BASE,
        ),
        Study(
            "data-size",
            "Dropout's gain as the training set shrinks",
            "The lecture: dropout shines when capacity exceeds the data. Training subsets of 1k to 55k images "
            "(every subset gets the 2,140 full-batch updates of 10 epochs on all 55,000, so small sets are trained, "
            "not starved).",
            _data_size_variants,
            _data_size,
            base=BASE,
        ),
        Study(
            "normalization",
            "Dropout vs BatchNorm vs LayerNorm",
            "The lecture: modern networks often replace dropout with normalization. Does either beat dropout here, "
            "and does dropout still add to them?",
            _fixed(
                _plain(),
                _dropout(),
                Variant("batchnorm", {"dropout": (0.0, 0.0), "norm": "batch"}),
                Variant("layernorm", {"dropout": (0.0, 0.0), "norm": "layer"}),
                Variant("batchnorm + dropout", {"dropout": (0.5, 0.5), "norm": "batch"}),
                Variant("layernorm + dropout", {"dropout": (0.5, 0.5), "norm": "layer"}),
            ),
            _versus(
                [
                    ("BatchNorm alone beats dropout alone", "batchnorm", "dropout 0.5"),
                    ("LayerNorm alone beats dropout alone", "layernorm", "dropout 0.5"),
                    ("dropout adds to BatchNorm", "batchnorm + dropout", "batchnorm"),
                    ("dropout adds to LayerNorm", "layernorm + dropout", "layernorm"),
                ]
            ),
            base=BASE,
        ),
        Study(
            "regularizers",
            "The paper's regularizers on Fashion-MNIST: L2, max-norm, dropout + L2, dropout + max-norm",
            "The paper (Table 9): dropout with max-norm beats dropout with L2 and every regularizer alone. "
            "SGD with momentum 0.9 here (as in the paper): without momentum the weights never reach max-norm 3.",
            _fixed(
                _plain(),
                Variant(f"L2 {WD}", {"dropout": (0.0, 0.0), "weight_decay": WD}),
                Variant("max-norm 3", {"dropout": (0.0, 0.0), "max_norm": 3.0}),
                _dropout(),
                Variant(f"dropout + L2 {WD}", {"dropout": (0.5, 0.5), "weight_decay": WD}),
                Variant("dropout + max-norm 3", {"dropout": (0.5, 0.5), "max_norm": 3.0}),
            ),
            _versus(
                [
                    ("dropout + max-norm beats dropout + L2", "dropout + max-norm 3", f"dropout + L2 {WD}"),
                    ("dropout + max-norm beats max-norm alone", "dropout + max-norm 3", "max-norm 3"),
                    ("dropout + L2 beats L2 alone", f"dropout + L2 {WD}", f"L2 {WD}"),
                    ("dropout + max-norm beats dropout alone", "dropout + max-norm 3", "dropout 0.5"),
                ]
            ),
            base={**BASE, "momentum": 0.9},
        ),
        Study(
            "no-rescale",
            "Dropout without the 1/(1-p) scale: the train/test mismatch",
            "Dropping units without rescaling and without a test-time correction changes the scale of every "
            "activation between training and test. How much does that cost?",
            _fixed(
                Variant("inverted", {"dropout": (0.5, 0.5)}),
                Variant("no rescale", {"dropout": (0.5, 0.5), "noise": "no-rescale"}),
                Variant("no rescale, test-time scaling", {"dropout": (0.5, 0.5), "noise": "no-rescale-test-scaled"}),
            ),
            _no_rescale,
            base=BASE,
        ),
    ]
}
