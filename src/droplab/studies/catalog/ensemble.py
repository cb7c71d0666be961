"""Weight scaling against Monte-Carlo averages of thinned networks, and MC dropout's calibration.

The study's probe, ``mc``, lives here with it: after training, each run of the study measures on
the test set the weight-scaled network and the average of k thinned networks (k in ``MC_KS``):
their accuracy, NLL, calibration, accuracy against confidence, and how far apart the two are
(the share of images where they predict the same class, the mean KL divergence of the MC
average from the weight-scaled net); and, for the top k, which test images each classified
right and where the two agree (bits, so that accuracy claims count the test images too). Its
figures are stored with the run, under ``probes.mc``.

The dropout net is measured at two budgets: 10 epochs (the lecture's) and "converged" (up to 60
epochs, the epoch chosen on validation): the weight-scaling rule is an approximation whose
quality may change as the net trains.

Margins: 0.5 pp of test accuracy (the smallest gain worth a reader's attention on
Fashion-MNIST); 1 pp of test images for disagreement (the claim: they agree on at least 99 %);
0.02 nats for the mean KL divergence (a fifteenth of the test NLL, about 0.3: a difference in
predictive distributions below it changes no decision); 0.005 for NLL (under 2 % of the test
NLL) and for ECE (half a point of mean |confidence − accuracy|, about the ECE's own sampling
noise on 10,000 test images).
"""

from __future__ import annotations

import numpy as np

from ... import plots
from ...ensemble import (
    MC_KS,
    accuracy_nll,
    accuracy_vs_confidence,
    agreement,
    expected_calibration_error,
    kl_divergence,
    predict_mc,
    predict_scaled,
    reliability,
)
from ...stats import mean_estimate, paired_estimate, two_way_estimate
from ...verdicts import Claim, Hypothesis, Table, format_interval
from ..records import pack_correct, unpack_correct
from ..registry import Analysis, Variant, probe, study
from ..results import Results
from .common import BASE_10K

TOP = max(MC_KS)
TEN, CONVERGED = "dropout 0.5, 10 epochs", "dropout 0.5, converged"
BUDGETS = (TEN, CONVERGED)
BITS = ("scaled_correct", "mc_correct", "mc_agree")  # per test image, packed (top k)
KEYS = ("scaled_acc", "scaled_nll", "scaled_ece", "scaled_reliability", "scaled_acc_vs_conf", "ks", "mc_ece",
        "mc_reliability", "mc_acc_vs_conf", *BITS,
        *(f"mc{k}_{m}" for k in MC_KS for m in ("acc", "nll", "agree", "kl")))  # fmt: skip

MATCHES = Hypothesis(f"weight scaling matches the average of {TOP} thinned networks in test accuracy "
                     "(converged net; weight scaling − MC)", kind="equivalence", margin=0.5, primary=True)  # fmt: skip
MATCHES_10 = Hypothesis(f"weight scaling matches the average of {TOP} thinned networks in test accuracy "
                        "(10-epoch net; weight scaling − MC)", kind="equivalence", margin=0.5)  # fmt: skip
AGREE = Hypothesis(f"weight scaling and the average of {TOP} thinned networks predict the same class on at least "
                   "99 % of test images (converged net; % of images where they differ)", kind="equivalence",
                   margin=1.0)  # fmt: skip
KL = Hypothesis(f"the average of {TOP} thinned networks is within 0.02 nats of weight scaling "
                "(mean KL(MC ‖ weight scaling), converged net)", kind="equivalence", margin=0.02, unit="")  # fmt: skip
NLL = Hypothesis(f"averaging {TOP} thinned networks gives the lower test NLL (MC − weight scaling, converged net)",
                 margin=0.005, expect_positive=False, unit="")  # fmt: skip
ECE = Hypothesis(f"MC dropout ({TOP} samples) is better calibrated: lower ECE (MC − weight scaling, converged net)",
                 margin=0.005, expect_positive=False, unit="")  # fmt: skip
SINGLE = Hypothesis("the weight-scaled network beats a single thinned network (test accuracy, converged net)",
                    margin=0.5)  # fmt: skip


@probe("mc", KEYS)
def mc_probe(model, data, seed: int) -> dict:
    """Weight scaling against Monte-Carlo averages of k thinned networks, on the test set."""
    x, y = data.test_x, data.test_y
    scaled = predict_scaled(model, x)
    mc = predict_mc(model, x, MC_KS, seed=seed)
    acc_s, nll_s = accuracy_nll(scaled, y)
    out = {
        "scaled_acc": acc_s,
        "scaled_nll": nll_s,
        "scaled_ece": expected_calibration_error(scaled, y),
        "scaled_reliability": reliability(scaled, y),
        "scaled_acc_vs_conf": accuracy_vs_confidence(scaled, y),
        "ks": list(MC_KS),
    }
    for k, probs in mc.items():
        acc, nll = accuracy_nll(probs, y)
        out[f"mc{k}_acc"], out[f"mc{k}_nll"] = acc, nll
        out[f"mc{k}_agree"] = agreement(probs, scaled).double().mean().item()
        out[f"mc{k}_kl"] = kl_divergence(probs, scaled).mean().item()
    top = mc[max(MC_KS)]
    out["mc_ece"] = expected_calibration_error(top, y)
    out["mc_reliability"] = reliability(top, y)
    out["mc_acc_vs_conf"] = accuracy_vs_confidence(top, y)
    for key, bits in zip(BITS, (scaled.argmax(dim=1) == y, top.argmax(dim=1) == y, agreement(top, scaled))):
        out[key] = pack_correct(bits.numpy())
    return out


@study(
    name="ensemble",
    title="Weight scaling vs Monte-Carlo averaging of thinned networks; MC dropout's calibration",
    question="The test-time network approximates an average of exponentially many thinned subnetworks: how close, "
    "after 10 epochs and at convergence, and is the average better calibrated?",
    variants=lambda quick: [Variant(TEN, {"dropout": (0.5, 0.5)}, ("mc",), 10),
                            Variant(CONVERGED, {"dropout": (0.5, 0.5)}, ("mc",), 60)],  # fmt: skip
    base=BASE_10K,
    order=50,
    hypotheses=[MATCHES, MATCHES_10, AGREE, KL, NLL, ECE, SINGLE],
    seeds=8,
    regime="10,000 training images; the dropout net after 10 epochs and converged (≤ 60 epochs)",
)
def analyze(r: Results) -> Analysis:
    ks = r.get(CONVERGED, r.seeds[0])["probes"]["mc"]["ks"]
    tables = [
        Table("test set: accuracy and NLL (dotted line in the plots: weight scaling)", ["method"] +
              [f"{h} ({b})" for b in BUDGETS for h in ("accuracy %", "NLL")],
              [[f"MC, k={k}"] + _cells(r, f"mc{k}_acc", f"mc{k}_nll") for k in ks]
              + [["weight scaling"] + _cells(r, "scaled_acc", "scaled_nll")]),
        Table("MC average of k thinned networks against weight scaling: same class predicted, KL(MC ‖ scaled)",
              ["k"] + [f"{h} ({b})" for b in BUDGETS for h in ("agreement %", "KL nats")],
              [[str(k)] + _cells(r, f"mc{k}_agree", f"mc{k}_kl") for k in ks]),
        Table("expected calibration error (15 bins), test set", ["method"] + [f"ECE ({b})" for b in BUDGETS],
              [["weight scaling"] + [_mean(_v(r, b, "scaled_ece"), 4) for b in BUDGETS],
               [f"MC, k={TOP}"] + [_mean(_v(r, b, "mc_ece"), 4) for b in BUDGETS]]),
        Table(f"accuracy vs confidence ({CONVERGED})", ["method", "confidence", "coverage %", "accuracy %"],
              _coverage(r, CONVERGED)),
    ]  # fmt: skip
    return Analysis(_claims(r), tables, _figures(r, ks))


def _v(r: Results, variant: str, key: str, scale: float = 1.0) -> list[float]:
    """The ``mc`` probe's ``key`` of ``variant``, one per seed."""
    return r.values(variant, f"mc.{key}", scale)


def bits(r: Results, variant: str, key: str) -> np.ndarray:
    """The probe's per-image bits ``key`` (:data:`BITS`) of ``variant``: float (seeds, test images), 0 or 1."""
    return np.stack([unpack_correct(r.get(variant, s)["probes"]["mc"][key], r.n_test) for s in r.seeds]).astype(float)


def _cells(r: Results, acc: str, nll: str) -> list[str]:
    """Per budget: ``acc`` in % (a fraction in the probe) and ``nll`` (4 digits)."""
    return [c for b in BUDGETS for c in (_mean(_v(r, b, acc, 100)), _mean(_v(r, b, nll), 4))]


def _mean(values: list[float], digits: int = 2) -> str:
    return format_interval(mean_estimate(values).interval(), digits)


def _claims(r: Results) -> list[Claim]:
    out = []
    for h, variant in ((MATCHES, CONVERGED), (MATCHES_10, TEN)):
        diff = 100 * (bits(r, variant, "scaled_correct") - bits(r, variant, "mc_correct"))
        out.append(r.measure(h, _over_images(diff), [variant], f"test images right, {variant}: weight scaling "
                             f"− MC k={TOP} (seeds x images)", diff.mean(axis=1)))  # fmt: skip
    differ = 100 * (1 - bits(r, CONVERGED, "mc_agree"))
    out.append(r.measure(AGREE, _over_images(differ), [CONVERGED], f"test images where MC k={TOP} and weight "
                         f"scaling predict different classes, % (seeds x images), {CONVERGED}", differ.mean(axis=1)))
    kl = _v(r, CONVERGED, f"mc{TOP}_kl")
    out.append(r.measure(KL, mean_estimate(kl), [CONVERGED], f"mean KL(MC k={TOP} ‖ weight scaling), nats", kl))
    for h, a, b, scale in ((NLL, f"mc{TOP}_nll", "scaled_nll", 1.0), (ECE, "mc_ece", "scaled_ece", 1.0),
                           (SINGLE, "scaled_acc", "mc1_acc", 100.0)):  # fmt: skip
        xs, ys = _v(r, CONVERGED, a, scale), _v(r, CONVERGED, b, scale)
        out.append(r.measure(h, paired_estimate(xs, ys), [CONVERGED], f"{a} − {b}, {CONVERGED}",
                             [x - y for x, y in zip(xs, ys)]))  # fmt: skip
    return out


def _over_images(x: np.ndarray):
    """The mean of ``x`` (seeds, test images) over seeds and test images (one seed: over seeds, NaN se)."""
    return two_way_estimate(x) if len(x) >= 2 else mean_estimate(list(x.mean(axis=1)))


def _coverage(r: Results, name: str) -> list[list[str]]:
    """Per method and confidence threshold: the share of test images at or above it, and their accuracy."""
    rows = []
    for method, key in (("weight scaling", "scaled_acc_vs_conf"), (f"MC, k={TOP}", "mc_acc_vs_conf")):
        per_seed = [r.get(name, s)["probes"]["mc"][key] for s in r.seeds]
        for j, row in enumerate(per_seed[0]):
            rows.append(
                [
                    method,
                    f"≥ {row['threshold']}",
                    _mean([100 * p[j]["coverage"] for p in per_seed]),
                    _accuracy_among([p[j]["accuracy"] for p in per_seed]),
                ]
            )
    return rows


def _figures(r: Results, ks: list[int]) -> dict:
    return {
        "mc_accuracy": plots.xy_intervals(
            ks,
            {b: [_v(r, b, f"mc{k}_acc", 100) for k in ks] for b in BUDGETS},
            "test accuracy, MC average of k nets (dotted: scaled, converged)",
            "k",
            "accuracy %",
            logx=True,
            hline=float(np.mean(_v(r, CONVERGED, "scaled_acc", 100))),
        ),
        "mc_nll": plots.xy_intervals(
            ks,
            {b: [_v(r, b, f"mc{k}_nll") for k in ks] for b in BUDGETS},
            "test NLL (dotted: weight scaling, converged)",
            "k",
            "NLL",
            logx=True,
            hline=float(np.mean(_v(r, CONVERGED, "scaled_nll"))),
        ),
        "reliability": plots.reliability_diagram(
            {f"{method}, {b.removeprefix('dropout 0.5, ')}": _pooled(r, b, key) for b in BUDGETS
             for method, key in (("weight scaling", "scaled_reliability"), (f"MC k={TOP}", "mc_reliability"))},
            "reliability, test set, all seeds pooled",
        ),  # fmt: skip
    }


def _accuracy_among(values: list) -> str:
    """Mean ± half-width over the seeds that had any example above the threshold (stored
    results hold null where none did)."""
    present = [100 * a for a in values if a is not None and a == a]
    if not present:
        return "no examples"
    return _mean(present) + ("" if len(present) == len(values) else f" ({len(present)} seeds)")


def _pooled(r: Results, name: str, key: str) -> list[dict]:
    """A reliability diagram's bins over all seeds: counts summed, accuracy and confidence count-weighted."""
    per_seed = [r.get(name, s)["probes"]["mc"][key] for s in r.seeds]
    out = []
    for j, b in enumerate(per_seed[0]):
        n = sum(p[j]["count"] for p in per_seed)
        acc = sum(p[j]["accuracy"] * p[j]["count"] for p in per_seed if p[j]["count"]) / n if n else float("nan")
        conf = sum(p[j]["confidence"] * p[j]["count"] for p in per_seed if p[j]["count"]) / n if n else float("nan")
        out.append({"low": b["low"], "high": b["high"], "count": n, "accuracy": acc, "confidence": conf})
    return out
