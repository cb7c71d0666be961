"""Every claim of the studies headline, lecture-replay, long-training, activation-variance, ensemble,
no-rescale and best-recipe, recomputed from what their quick runs stored in ``study.json``.

A claim stores its per-seed values; these tests compute them again, independently of the
analyses, from the runs' summaries, histories and probes: a claim computed as b − a instead of
a − b, on the wrong variant or the wrong epoch, fails here. :data:`RECOMPUTE_A` holds every
claim: the studies' own statistics and the differences of two variants (``Results.claim``),
each in the order of the variants its text claims (the stored statistic names an order too,
but a swapped claim would name the swapped one).
"""

import base64
import math

import numpy as np
import pytest

from droplab.studies import STUDIES

QUICK = {"seeds": 3, "quick": True, "verify": False, "val_size": 100, "log": lambda line: None}
STUDIES_A = ("headline", "lecture-replay", "long-training", "activation-variance", "ensemble", "no-rescale",
             "best-recipe")  # fmt: skip


def _runs(study: dict, variant: str) -> list[dict]:
    return study["variants"][variant]["per_seed"]


def _last(study: dict, variant: str, key: str) -> list[float]:
    return [r["history"][-1][key] for r in _runs(study, variant)]


def _slopes(study: dict, variant: str) -> list[float]:
    """Least-squares slope of val_loss against epoch over the last 20 history rows (closed form)."""
    out = []
    for r in _runs(study, variant):
        rows = r["history"][-20:]
        x = np.array([h["epoch"] for h in rows], float)
        y = np.array([h["val_loss"] for h in rows], float)
        out.append(float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()))
    return out


def _mc(study: dict, variant: str, key: str) -> list[float]:
    return [r["probes"]["mc"][key] for r in _runs(study, variant)]


def _bits_mean(study: dict, variant: str, key: str) -> list[float]:
    """The share of set bits of a probe's packed per-image bits (the test set: 200 images in the quick data)."""
    return [float(np.unpackbits(np.frombuffer(base64.b64decode(t), np.uint8))[:200].mean())
            for t in _mc(study, variant, key)]  # fmt: skip


def _minus(xs: list[float], ys: list[float], scale: float = 1.0) -> list[float]:
    return [scale * (x - y) for x, y in zip(xs, ys)]


TEN, CONV = "dropout 0.5, 10 epochs", "dropout 0.5, converged"


def _lead(study: dict, key: str) -> list[float]:
    return _minus(_last(study, "d2l dropout", key), _last(study, "d2l plain", key), 100)


def _test_gap(study: dict, variant: str) -> list[float]:
    """Per seed, test loss − training loss (eval mode) at the run's selected epoch."""
    return [r["summary"]["test_loss"] - r["summary"]["train_loss_eval"] for r in _runs(study, variant)]


def _diff(a: str, b: str, key: str = "test_acc"):
    """Per seed, ``key`` of variant ``a`` − of ``b`` from the summaries (accuracies in pp)."""
    scale = 100.0 if key.endswith("acc") else 1.0
    return lambda s: _minus([r["summary"][key] for r in _runs(s, a)], [r["summary"][key] for r in _runs(s, b)], scale)


# (study, the start of the hypothesis's text) -> per-seed values from study.json; every claim has one
RECOMPUTE_A = {
    # --- headline
    ("headline", "dropout raises test accuracy"): _diff("dropout 0.5", "plain"),
    ("headline", "dropout shrinks the gap"): lambda s: _minus(_test_gap(s, "dropout 0.5"), _test_gap(s, "plain")),
    # --- long-training
    ("long-training", "with dropout, validation loss rises less"):
        lambda s: _minus(_slopes(s, "dropout 0.5"), _slopes(s, "plain")),
    ("long-training", "the plain net overfits"): lambda s: _slopes(s, "plain"),
    ("long-training", "with a budget of 100 epochs, dropout raises"): _diff("dropout 0.5", "plain"),
    # --- activation-variance: log(dropout / plain) at the last evaluated epoch
    **{("activation-variance", start): (lambda key: lambda s: [
        math.log(d / p) for d, p in zip(_last(s, "dropout 0.5", key), _last(s, "plain", key))])(key)
       for start, key in (("in training, what follows hidden layer 1", "act_var_train_1"),
                          ("in training, what follows hidden layer 2", "act_var_train_2"),
                          ("hidden layer 1's activations", "act_var_1"),
                          ("hidden layer 2's activations", "act_var_2"))},
    # --- ensemble
    ("ensemble", "weight scaling matches the average of 100 thinned networks in test accuracy (converged"):
        lambda s: _minus(_bits_mean(s, CONV, "scaled_correct"), _bits_mean(s, CONV, "mc_correct"), 100),
    ("ensemble", "weight scaling matches the average of 100 thinned networks in test accuracy (10-epoch"):
        lambda s: _minus(_bits_mean(s, TEN, "scaled_correct"), _bits_mean(s, TEN, "mc_correct"), 100),
    ("ensemble", "weight scaling and the average of 100 thinned networks predict the same class"):
        lambda s: [100 * (1 - a) for a in _bits_mean(s, CONV, "mc_agree")],
    ("ensemble", "the average of 100 thinned networks is within 0.02 nats"): lambda s: _mc(s, CONV, "mc100_kl"),
    ("ensemble", "averaging 100 thinned networks gives the lower test NLL"):
        lambda s: _minus(_mc(s, CONV, "mc100_nll"), _mc(s, CONV, "scaled_nll")),
    ("ensemble", "MC dropout (100 samples) is better calibrated"):
        lambda s: _minus(_mc(s, CONV, "mc_ece"), _mc(s, CONV, "scaled_ece")),
    ("ensemble", "the weight-scaled network beats a single thinned network"):
        lambda s: _minus(_mc(s, CONV, "scaled_acc"), _mc(s, CONV, "mc1_acc"), 100),
    # --- lecture-replay: the last epoch's row, after (val_acc) and before (val_acc_before_last) its last step
    ("lecture-replay", "the final partial batch makes part"):
        lambda s: _minus(_lead(s, "val_acc"), _lead(s, "val_acc_before_last")),
    ("lecture-replay", "before the last step, d2l's dropout lead"): lambda s: _lead(s, "val_acc_before_last"),
    ("lecture-replay", "the final partial step costs d2l's plain net"):
        lambda s: _minus(_last(s, "d2l plain", "val_acc"), _last(s, "d2l plain", "val_acc_before_last"), 100),
    ("lecture-replay", "in d2l's setting dropout beats"): _diff("d2l dropout", "d2l plain"),
    ("lecture-replay", "the lecture's literal comparison"): _diff("d2l dropout", "d2l 1-layer plain"),
    ("lecture-replay", "a second hidden layer"): _diff("d2l plain", "d2l 1-layer plain"),
    ("lecture-replay", "on droplab's split"): _diff("droplab dropout", "droplab plain"),
    # --- no-rescale
    ("no-rescale", "without the 1/(1-p) scale"): _diff("no rescale", "inverted"),
    ("no-rescale", "scaling activations by (1-p)"): _diff("no rescale, test-time scaling", "no rescale"),
    ("no-rescale", "with test-time scaling, no rescale matches"): _diff("no rescale, test-time scaling", "inverted"),
    # --- best-recipe
    ("best-recipe", "dropout adds to the best recipe"): _diff("best recipe", "best recipe, p = 0"),
}  # fmt: skip


def recompute(name: str, study: dict, claim: dict) -> list[float]:
    """A claim's per-seed values, computed again from ``study`` (study.json)."""
    own = [f for (s, start), f in RECOMPUTE_A.items() if s == name and claim["text"].startswith(start)]
    assert len(own) == 1, f"{name}: {claim['text']!r} has {len(own)} recomputations"
    return own[0](study)


def test_the_custom_statistics_are_each_declared_by_their_study():
    for name, start in RECOMPUTE_A:
        assert [h for h in STUDIES[name].hypotheses if h.text.startswith(start)], (name, start)


@pytest.mark.parametrize("name", STUDIES_A)
def test_every_claim_is_recomputed_from_study_json(name, quick_study):
    study = quick_study(name)  # as a reader of study.json sees it
    assert study["claims"]
    for claim in study["claims"]:
        expected = recompute(name, study, claim)
        assert claim["per_seed"] == pytest.approx(expected, abs=1e-9), claim["text"]
        assert claim["estimate"] == pytest.approx(float(np.mean(expected)), abs=1e-9), claim["text"]
        assert claim["seeds"] == len(expected) == 3
