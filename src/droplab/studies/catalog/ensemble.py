"""Weight scaling against Monte-Carlo averages of thinned networks, and MC dropout's calibration.

The study's probe, ``mc``, lives here with it: after training, each run of the study measures on
the test set the weight-scaled network and the average of k thinned networks (k in ``MC_KS``),
their accuracy, NLL, calibration and accuracy against confidence. Its figures are stored with
the run, under ``probes.mc``.
"""

from __future__ import annotations

import numpy as np

from ... import plots
from ...ensemble import (
    MC_KS,
    accuracy_nll,
    accuracy_vs_confidence,
    expected_calibration_error,
    predict_mc,
    predict_scaled,
    reliability,
)
from ...stats import mean_interval, paired_interval
from ...verdicts import Claim, Table, format_interval
from ..registry import Analysis, Variant, probe, study
from ..results import Results
from .common import BASE, fixed

KEYS = ("scaled_acc", "scaled_nll", "scaled_ece", "scaled_reliability", "scaled_acc_vs_conf", "ks", "mc_ece",
        "mc_reliability", "mc_acc_vs_conf", *(f"mc{k}_{m}" for k in MC_KS for m in ("acc", "nll")))  # fmt: skip


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
    top = mc[max(MC_KS)]
    out["mc_ece"] = expected_calibration_error(top, y)
    out["mc_reliability"] = reliability(top, y)
    out["mc_acc_vs_conf"] = accuracy_vs_confidence(top, y)
    return out


@study(
    name="ensemble",
    title="Weight scaling vs Monte-Carlo averaging of thinned networks; MC dropout's calibration",
    question="The test-time network approximates an average of exponentially many thinned subnetworks: how close, "
    "and is the average better calibrated?",
    variants=fixed(Variant("dropout 0.5", {"dropout": (0.5, 0.5)}, probes=("mc",))),
    base=BASE,
    order=50,
)
def analyze(r: Results) -> Analysis:
    name = r.variants[0].name
    ks = r.get(name, r.seeds[0])["probes"]["mc"]["ks"]

    def v(key: str, scale: float = 1.0) -> list[float]:
        return r.values(name, f"mc.{key}", scale)

    top = max(ks)
    tables = [
        Table(
            "test set: accuracy and NLL (dotted line in the plots: weight scaling)",
            ["method", "accuracy %", "NLL"],
            [[f"MC, k={k}", _mean(v(f"mc{k}_acc", 100)), _mean(v(f"mc{k}_nll"), 4)] for k in ks]
            + [["weight scaling", _mean(v("scaled_acc", 100)), _mean(v("scaled_nll"), 4)]],
        ),
        Table(
            "expected calibration error (15 bins), test set",
            ["method", "ECE"],
            [["weight scaling", _mean(v("scaled_ece"), 4)], [f"MC, k={top}", _mean(v("mc_ece"), 4)]],
        ),
        Table("accuracy vs confidence", ["method", "confidence", "coverage %", "accuracy %"], _coverage(r, name, top)),
    ]
    return Analysis(_claims(v, top), tables, _figures(r, name, v, ks))


def _mean(values: list[float], digits: int = 2) -> str:
    return format_interval(mean_interval(values), digits)


def _claims(v, top: int) -> list[Claim]:
    return [
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


def _coverage(r: Results, name: str, top: int) -> list[list[str]]:
    """Per method and confidence threshold: the share of test images at or above it, and their accuracy."""
    rows = []
    for method, key in (("weight scaling", "scaled_acc_vs_conf"), (f"MC, k={top}", "mc_acc_vs_conf")):
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


def _figures(r: Results, name: str, v, ks: list[int]) -> dict:
    top = max(ks)
    return {
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


def _accuracy_among(values: list) -> str:
    """Mean ± half-width over the seeds that had any example above the threshold (stored
    results hold null where none did)."""
    present = [100 * a for a in values if a is not None and a == a]
    if not present:
        return "no examples"
    return format_interval(mean_interval(present)) + ("" if len(present) == len(values) else f" ({len(present)} seeds)")


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
