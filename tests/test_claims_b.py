"""Every claim of the studies layer-rates, weight-decay, dropconnect, noise, normalization,
regularizers and data-size, recomputed from what their quick runs stored in ``study.json``.

A claim stores its per-seed values; these tests compute them again from the runs' summaries,
independently of the analyses: a claim computed as b − a instead of a − b, or on the wrong
variant, fails here. :data:`RECOMPUTE_B` holds the studies' own statistics (``Results.measure``:
contrasts of test accuracy over several variants); :data:`PAIRS_B` the two variants each other
claim (``Results.claim``, a − b in test accuracy) must compare, written from its hypothesis.
"""

import math
import re

import numpy as np
import pytest

from droplab.studies import STUDIES

QUICK = {"seeds": 3, "quick": True, "verify": False, "val_size": 100, "log": lambda line: None}
STUDIES_B = ("layer-rates", "weight-decay", "dropconnect", "noise", "normalization", "regularizers", "data-size")
GENERIC = re.compile(r"(?P<key>[\w.]+): (?P<a>.+) − (?P<b>.+)")


def _acc(study: dict, variant: str) -> list[float]:
    """Test accuracy (pp) of each seed's run of ``variant``."""
    return [100.0 * r["summary"]["test_acc"] for r in study["variants"][variant]["per_seed"]]


def _sum(study: dict, weights: dict[str, float]) -> list[float]:
    """Per seed: the weighted sum of the variants' test accuracies (pp)."""
    return [sum(w * x for w, x in zip(weights.values(), xs)) for xs in zip(*(_acc(study, v) for v in weights))]


def _interaction(wd: str):
    return lambda s: _sum(s, {f"dropout + weight decay {wd}": 1, "dropout 0.5": -1, f"weight decay {wd}": -1,
                              "plain": 1})  # fmt: skip


def _sizes(study: dict) -> list[str]:
    """The sizes' labels in the variants' order ("1000", ..., "all"), the 256-wide nets'."""
    return list(dict.fromkeys(v.split()[0][2:] for v in study["variants"] if "wide" not in v))


def _gain(study: dict, size: str, width: str = "") -> list[float]:
    return _sum(study, {f"n={size}{width} dropout": 1, f"n={size}{width} plain": -1})


def _minus(xs: list[float], ys: list[float], scale: float = 1.0) -> list[float]:
    return [scale * (x - y) for x, y in zip(xs, ys)]


# (study, hypothesis text) -> per-seed values from study.json
RECOMPUTE_B = {
    # --- layer-rates: (0.2, 0.5) − (0.5, 0.2), averaged over input dropout 0 and 0.2
    ("layer-rates", "less dropout early, more later: hidden rates (0.2, 0.5) beat their swap (0.5, 0.2), averaged "
                    "over input dropout 0 and 0.2"):
        lambda s: [(a - b + c - d) / 2 for a, b, c, d in zip(
            _acc(s, "input 0, hidden (0.2, 0.5)"), _acc(s, "input 0, hidden (0.5, 0.2)"),
            _acc(s, "input 0.2, hidden (0.2, 0.5)"), _acc(s, "input 0.2, hidden (0.5, 0.2)"))],
    # --- weight-decay: both − dropout − decay + plain
    ("weight-decay", "dropout and weight decay 5e-3 add up: their interaction (both − dropout − decay + plain) is "
                     "within ±1 pp"): _interaction("0.005"),
    ("weight-decay", "dropout and weight decay 1e-3 add up: their interaction is within ±1 pp"):
        _interaction("0.001"),
    # --- data-size: gains g = dropout − plain per size (1k, 2k, 10k, all)
    ("data-size", "dropout gains more with 10,000 training images than with all 55,000"):
        lambda s: _minus(_gain(s, _sizes(s)[2]), _gain(s, _sizes(s)[3])),
    ("data-size", "dropout gains more with 2,000 training images than with 1,000 (the inverted U's rising side)"):
        lambda s: _minus(_gain(s, _sizes(s)[1]), _gain(s, _sizes(s)[0])),
    ("data-size", "dropout gains more in the 256-wide net than in the 64-wide one at 10,000 images"):
        lambda s: _minus(_gain(s, _sizes(s)[2]), _gain(s, _sizes(s)[2], " 64-wide")),
}  # fmt: skip


# (study, hypothesis text) -> (a, b) of the claims made as a − b in test accuracy (Results.claim): written
# here from the hypotheses' meaning, so that a study that declares one the wrong way round fails
_BEST = "the best dropout cell, chosen on the tuning seeds' validation, beats no dropout on fresh seeds"
_NOISE = ", at its tuned strength, does as well as tuned dropout: no more than 0.5 pp below it in test accuracy"
PAIRS_B = {
    ("layer-rates", "input dropout 0.2 adds to hidden dropout (0.5, 0.5)"):
        ("input 0.2, hidden (0.5, 0.5)", "input 0, hidden (0.5, 0.5)"),
    ("layer-rates", _BEST): (None, "input 0, hidden (0, 0)"),  # a: the tuning's choice (tested below)
    ("weight-decay", "weight decay 5e-3 raises test accuracy over the plain net"): ("weight decay 0.005", "plain"),
    **{(name, "dropout 0.5 raises test accuracy over the plain net (10,000 images)"): ("dropout 0.5", "plain")
       for name in ("weight-decay", "dropconnect")},
    ("dropconnect", "DropConnect 0.5 raises test accuracy over the plain net"): ("dropconnect 0.5", "plain"),
    ("dropconnect", "DropConnect 0.5 matches dropout 0.5 within ±0.5 pp of test accuracy"):
        ("dropconnect 0.5", "dropout 0.5"),
    ("noise", "Gaussian multiplicative noise" + _NOISE): ("gaussian", "dropout"),
    ("noise", "additive Gaussian noise" + _NOISE): ("additive", "dropout"),
    ("noise", "stratified dropout" + _NOISE): ("stratified", "dropout"),
    ("noise", "alpha dropout in a SELU net" + _NOISE): ("alpha", "dropout"),
    ("noise", "tuned dropout raises test accuracy over the plain net"): ("dropout", "plain"),
    ("noise", "alpha dropout, at its tuned strength, raises the SELU net's test accuracy"): ("alpha", "selu plain"),
    ("normalization", "BatchNorm replaces dropout: its test accuracy is no more than 0.5 pp below dropout's"):
        ("batchnorm", "dropout 0.5"),
    ("normalization", "LayerNorm replaces dropout: its test accuracy is no more than 0.5 pp below dropout's"):
        ("layernorm", "dropout 0.5"),
    ("normalization", "dropout adds to BatchNorm: BatchNorm + dropout beats BatchNorm alone"):
        ("batchnorm + dropout", "batchnorm"),
    ("normalization", "dropout adds to LayerNorm: LayerNorm + dropout beats LayerNorm alone"):
        ("layernorm + dropout", "layernorm"),
    ("regularizers", "dropout + max-norm beats dropout + L2 (the paper's Table 9)"):
        ("dropout + max-norm 3", "dropout + L2 0.0005"),
    ("regularizers", "dropout + max-norm beats max-norm alone"): ("dropout + max-norm 3", "max-norm 3"),
    ("regularizers", "dropout + L2 beats L2 alone"): ("dropout + L2 0.0005", "L2 0.0005"),
    ("regularizers", "dropout + max-norm beats dropout alone"): ("dropout + max-norm 3", "dropout 0.5"),
    **{("data-size", f"dropout raises test accuracy with {n:,} training images"): (i, None)
       for i, n in enumerate((1000, 2000, 10_000, 55_000))},  # the i-th size's dropout − plain
}  # fmt: skip


def _pair(study: dict, name: str, text: str) -> tuple[str, str]:
    """The variants a generic claim must compare, from :data:`PAIRS_B`."""
    a, b = PAIRS_B[name, text]
    if name == "data-size":
        size = _sizes(study)[a]
        return f"n={size} dropout", f"n={size} plain"
    if a is None:  # layer-rates' best cell: the one the statistic names (its choice is tested on its own)
        a = GENERIC.fullmatch(next(c for c in study["claims"] if c["text"] == text)["statistic"])["a"]
    return a, b


@pytest.mark.parametrize("name", STUDIES_B)
def test_every_claim_is_recomputed_from_the_stored_runs(name, quick_study):
    study = quick_study(name)
    assert [c["text"] for c in study["claims"]] == [h.text for h in STUDIES[name].hypotheses]
    assert sum(c["primary"] for c in study["claims"]) == 1
    for c in study["claims"]:
        if (name, c["text"]) in RECOMPUTE_B:
            expected = RECOMPUTE_B[name, c["text"]](study)
        else:
            a, b = _pair(study, name, c["text"])
            assert c["statistic"] == f"test_acc: {a} − {b}", c["text"]
            expected = _minus(_acc(study, a), _acc(study, b))
        assert np.allclose(c["per_seed"], expected, rtol=0, atol=1e-9), c["text"]
        assert math.isclose(c["estimate"], float(np.mean(expected)), rel_tol=1e-9, abs_tol=1e-9), c["text"]


def test_layer_rates_confirms_the_cell_best_on_the_tuning_seeds(quick_study):
    """The best cell is the one with the highest tuning score (the ★ cells of the tuning table), not
    the best on the confirmation runs: its claim is that cell − no dropout."""
    study = quick_study("layer-rates")
    tuning = next(t for t in study["tables"] if t["title"].startswith("tuning"))
    starred = {row[0]: float(next(c for c in row[1:] if "★" in c).strip("* ★")) for row in tuning["rows"]}
    del starred["input 0, hidden (0, 0)"]
    best = max(starred, key=starred.get)  # the first of the best, as the analysis takes it
    claim = study["claims"][2]
    assert claim["statistic"] == f"test_acc: {best} − input 0, hidden (0, 0)"
    assert f"the best dropout cell on the tuning seeds' validation accuracy: {best}" in study["notes"]


def test_every_hypothesis_of_the_studies_is_recomputed_here():
    declared = {(name, h.text) for name in STUDIES_B for h in STUDIES[name].hypotheses}
    assert declared == set(RECOMPUTE_B) | set(PAIRS_B) and not set(RECOMPUTE_B) & set(PAIRS_B)
