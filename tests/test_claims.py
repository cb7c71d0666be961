"""Every claim a study writes, recomputed from its own study.json; and claims of known sign and outcome.

A quick run of each study (tiny generated data) writes study.json; each claim is recomputed there
from the variants' stored per-seed results, independently of the code that made it:

- a *generic* claim (statistic ``"KEY: A − B"``, made by ``Results.claim``): its per-seed values are
  ``A``'s minus ``B``'s ``summary[KEY]`` (x100 for accuracies), its estimate their mean, its interval
  the two-way (seeds x test images) estimate of the per-image differences on ``test_acc``, else
  the paired estimate over seeds;
- a *custom* claim (``Results.measure``): its study's owner adds a function to :data:`RECOMPUTE`
  that computes its per-seed values from the study.json dict.

Then every claim's p-values are adjusted again by hand (Holm within the study) and its outcome
read from them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from test_claims_a import RECOMPUTE_A
from test_claims_b import RECOMPUTE_B

from droplab.stats import (
    Estimate,
    outcome,
    p_difference,
    p_equivalence,
    p_inferiority,
    p_nonequivalence,
    p_noninferiority,
    paired_estimate,
    two_way_estimate,
)
from droplab.studies import STUDIES, registry
from droplab.studies.records import pack_correct, unpack_correct
from droplab.studies.results import Results
from droplab.verdicts import Claim, Hypothesis, adjust

N_TEST = 200  # the tiny data's test images (conftest.write_dataset's default)
QUICK = {"seeds": 3, "quick": True, "verify": False, "val_size": 100, "log": lambda line: None}
FIELDS = {"text", "primary", "kind", "margin", "estimate", "interval", "p", "p_adjusted", "mde", "outcome", "regime",
          "seeds", "line", "identity", "per_seed"}  # fmt: skip
GENERIC = re.compile(r"(?P<key>[\w.]+): (?P<a>.+) − (?P<b>.+)")

# (study, hypothesis text) -> the claim's per-seed values, computed from the study.json dict.
# Each study's owner appends one block for the custom claims (Results.measure) of the study.
RECOMPUTE: dict[tuple[str, str], Callable[[dict], list[float]]] = {
    **RECOMPUTE_B,
    **{(s, h.text): f for (s, start), f in RECOMPUTE_A.items()
       for h in STUDIES[s].hypotheses if h.text.startswith(start)},  # fmt: skip
    # --- schedules: each model's crossover, [early − late] underfitting − [early − late] overfitting
    **{("schedules", h.text): (lambda s, m=m: _crossover(s, m))
       for h, m in ((STUDIES["schedules"].hypotheses[3], "vit"), (STUDIES["schedules"].hypotheses[5], "mlp"))},
    # --- transformer: LayerNorm's contrast, [MLP 0.3 − MLP 0] − [MLP+LayerNorm 0.3 − MLP+LayerNorm 0]
    ("transformer", STUDIES["transformer"].hypotheses[3].text): lambda s: _contrast(
        s, {"mlp 0.3": 1, "mlp 0": -1, "mlp+layernorm 0.3": -1, "mlp+layernorm 0": 1}),
}


def _contrast(study: dict, weights: dict[str, float]) -> list[float]:
    acc = [[100.0 * r["summary"]["test_acc"] for r in study["variants"][v]["per_seed"]] for v in weights]
    return [sum(w * x for w, x in zip(weights.values(), xs)) for xs in zip(*acc)]


def _crossover(study: dict, model: str) -> list[float]:
    acc = {v: [100.0 * r["summary"]["test_acc"] for r in study["variants"][f"{model} {v}"]["per_seed"]]
           for v in ("under early", "under late", "over early", "over late")}  # fmt: skip
    return [a - b - c + d for a, b, c, d in zip(*acc.values())]


def generic(study: dict, claim: dict) -> tuple[str, str, str] | None:
    """``(key, a, b)`` of a claim made as ``a − b`` on ``key`` by ``Results.claim``, else None."""
    m = GENERIC.fullmatch(claim["statistic"])
    if m is None or m["a"] not in study["variants"] or m["b"] not in study["variants"]:
        return None
    return m["key"], m["a"], m["b"]


def values(study: dict, variant: str, key: str) -> list[float]:
    """``summary[key]`` (a probe figure for ``probe.path``) of each seed's run, x100 for accuracies."""
    out = []
    for run in study["variants"][variant]["per_seed"]:
        v = run["probes"] if "." in key else run["summary"]
        for part in key.split("."):
            v = v[part]
        out.append(float(v) * (100.0 if key.endswith("acc") else 1.0))
    return out


def recomputed(study: dict, claim: dict) -> Estimate:
    """A generic claim's estimate, from the variants' stored results alone."""
    key, a, b = generic(study, claim)
    runs = [study["variants"][v]["per_seed"] for v in (a, b)]
    if key == "test_acc" and all("per_image" in r for rs in runs for r in rs):
        ca, cb = (np.stack([unpack_correct(r["per_image"]["test_correct"], N_TEST) for r in rs]) for rs in runs)
        return two_way_estimate(100.0 * (ca.astype(float) - cb.astype(float)))
    return paired_estimate(values(study, a, key), values(study, b, key))


def holm_by_hand(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, written out (NaN stays NaN and is not counted)."""
    known = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    out, running = list(ps), 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out


def nan(v) -> float:
    return math.nan if v is None else v


def close(x, y, rel=1e-9) -> bool:
    x, y = nan(x), nan(y)
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_claim_is_recomputed_from_study_json(name, quick_study):
    study = quick_study(name)
    assert study["claims"]
    for c in study["claims"]:
        assert FIELDS <= set(c), (c["text"], FIELDS - set(c))
        assert len(c["per_seed"]) == c["seeds"] == len(study["seeds"]), c["text"]
        assert math.isclose(np.mean(c["per_seed"]), c["estimate"], rel_tol=1e-9, abs_tol=1e-9), c["text"]
        if (g := generic(study, c)) is not None:
            key, a, b = g
            per_seed = [x - y for x, y in zip(values(study, a, key), values(study, b, key))]
            assert np.allclose(per_seed, c["per_seed"], rtol=0, atol=1e-9), c["text"]
            e = recomputed(study, c)
            assert close(e.mean, c["estimate"]) and close(e.se, c["se"]) and close(e.df, c["df"]), c["text"]
        else:
            assert (name, c["text"]) in RECOMPUTE, f"{name}: no recomputation for the custom claim {c['text']!r}"
            per_seed = RECOMPUTE[name, c["text"]](study)
            assert np.allclose(per_seed, c["per_seed"], rtol=0, atol=1e-9), c["text"]
            e = Estimate(c["estimate"], nan(c["se"]), nan(c["df"]), c["seeds"], nan(c["image_se"]))
        i = e.interval()
        assert close(i.low, c["interval"][0]) and close(i.high, c["interval"][1]), c["text"]
        if c["kind"] == "equivalence":
            p, p_other = p_equivalence(e, c["margin"]), p_nonequivalence(e, c["margin"])
        elif c["kind"] == "noninferiority":
            side = c["expect_positive"]
            p, p_other = p_noninferiority(e, c["margin"], side), p_inferiority(e, c["margin"], side)
        else:
            p, p_other = p_difference(e), p_equivalence(e, c["margin"])
        assert close(p, c["p"]) and close(p_other, c["p_other"]), c["text"]


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_outcome_follows_from_the_holm_adjusted_p_values(name, quick_study):
    claims = quick_study(name)["claims"]
    both = holm_by_hand([nan(c["p"]) for c in claims] + [nan(c["p_other"]) for c in claims])  # one family: 2m tests
    ps, others = both[: len(claims)], both[len(claims) :]
    for c, p, q in zip(claims, ps, others):
        assert close(p, c["p_adjusted"]) and close(q, c["p_other_adjusted"]), c["text"]
        assert c["family"] == 2 * len(claims)
        e = Estimate(c["estimate"], nan(c["se"]), nan(c["df"]), c["seeds"], nan(c["image_se"]))
        p_diff, p_equiv = (q, p) if c["kind"] == "equivalence" else (p, q)
        assert outcome(e, c["kind"], c["margin"], c["expect_positive"], p_diff, p_equiv) == c["outcome"], c["text"]
        assert c["line"].startswith(f"claim: {c['text']} — ") and f" — {c['outcome']}" in c["line"]
        assert c["regime"] and c["line"].endswith(f"({c['regime']})")


def test_every_custom_recomputation_names_a_declared_hypothesis():
    for study, text in RECOMPUTE:
        assert study in STUDIES and text in [h.text for h in STUDIES[study].hypotheses], (study, text)


# --- Results.claim on made-up runs of known sign ---------------------------------------------

A_WINS = Hypothesis("a beats b", margin=0.3)
A_WINS_VAL = Hypothesis("a beats b on validation", margin=0.3)


def made_up(n_images: int = 1000, seeds: int = 4) -> Results:
    """Runs of variants "a" and "b": on every seed b classifies images [0, 800) right and a the
    same plus images [800, 810): a beats b by exactly 1 pp on test; on validation by exactly 1 pp too."""
    study = registry.Study("signs", "", "", lambda quick: [], lambda r: None, hypotheses=(A_WINS, A_WINS_VAL))
    jobs = {}
    for s in range(seeds):
        for name, right in (("a", 810), ("b", 800)):
            correct = np.arange(n_images) < right
            val = 0.80 + 0.01 * s + (0.01 if name == "a" else 0.0)  # seeds differ; a - b is 1 pp on each
            job = {"train": {"seed": s, "lr": 0.1 if name == "a" else 0.3}}
            jobs[name, s] = {"summary": {"test_acc": right / n_images, "val_acc": val}, "history": [], "probes": {},
                             "job": job, "per_image": {"test_correct": pack_correct(correct)}}  # fmt: skip
    return Results(study, [registry.Variant("a"), registry.Variant("b")], list(range(seeds)), jobs, "made up",
                   n_images)  # fmt: skip


def test_a_claim_is_a_minus_b_with_its_sign():
    r = made_up()
    c = r.claim(A_WINS, "a", "b")
    assert math.isclose(c.estimate.mean, 1.0) and c.per_seed == (1.0,) * 4 and c.statistic == "test_acc: a − b"
    assert c.estimate.image_se > 0 and c.outcome == "supported"  # the 10 images are a sample: counted
    swapped = r.claim(A_WINS, "b", "a")
    assert math.isclose(swapped.estimate.mean, -1.0) and swapped.outcome == "contradicted"
    v = r.claim(A_WINS_VAL, "a", "b", key="val_acc")  # seeds only: exactly 1 pp on each seed
    assert math.isclose(v.estimate.mean, 1.0) and v.estimate.image_se == 0 and v.outcome == "supported"
    assert r.claim(A_WINS_VAL, "b", "a", key="val_acc").outcome == "contradicted"
    assert math.isclose(r.difference("a", "b").mean, 1.0) and math.isclose(r.difference("b", "a").mean, -1.0)
    assert " — +1.00 pp [" in c.line() and " — -1.00 pp [" in swapped.line()


def test_a_claim_not_declared_by_its_study_is_refused():
    from droplab.studies.results import UndeclaredHypothesis

    with pytest.raises(UndeclaredHypothesis, match="'signs' claims 'c beats b'"):
        made_up().claim(Hypothesis("c beats b"), "a", "b")


# --- the four outcomes, and Holm, on constructed estimates -----------------------------------


@pytest.mark.parametrize(
    "hypothesis, estimate, expected",
    [
        (Hypothesis("up"), Estimate(1.0, 0.2, 30.0, 31), "supported"),
        (Hypothesis("up"), Estimate(-1.0, 0.2, 30.0, 31), "contradicted"),
        (Hypothesis("down", expect_positive=False), Estimate(-1.0, 0.2, 30.0, 31), "supported"),
        (Hypothesis("down", expect_positive=False), Estimate(1.0, 0.2, 30.0, 31), "contradicted"),
        (Hypothesis("up"), Estimate(0.01, 0.05, 30.0, 31), "equivalent"),  # within ±0.3 although claimed up
        (Hypothesis("up"), Estimate(0.2, 0.3, 30.0, 31), "inconclusive"),
        (Hypothesis("same", kind="equivalence"), Estimate(0.05, 0.05, 30.0, 31), "equivalent"),
        (Hypothesis("same", kind="equivalence"), Estimate(1.5, 0.2, 30.0, 31), "contradicted"),  # beyond the margin
        (Hypothesis("same", kind="equivalence"), Estimate(-1.5, 0.2, 30.0, 31), "contradicted"),
        (Hypothesis("same", kind="equivalence"), Estimate(0.4, 0.1, 30.0, 31), "inconclusive"),  # ≠ 0, not beyond δ
        (Hypothesis("same", kind="equivalence"), Estimate(0.1, 0.5, 30.0, 31), "inconclusive"),
        (Hypothesis("up"), Estimate(1.0, math.nan, math.nan, 1), "inconclusive"),  # one seed: no interval
    ],
)
def test_the_four_outcomes(hypothesis, estimate, expected):
    c = Claim(hypothesis, estimate)
    assert c.outcome == expected
    assert c.record()["outcome"] == expected and c.line().split(" — ")[2].startswith(expected)


def test_holm_within_a_study_on_hand_computed_p_values():
    """Three superiority claims with z = 3.0, 2.4, 0.5 on (nearly) normal estimates: raw two-sided
    p 0.0027, 0.0164, 0.617, and their equivalence tests (margin 0.01) p about 1; one family of six
    tests. Holm: 6 x 0.0027 = 0.0162, max(0.0162, 5 x 0.0164) = 0.0820, min(1, 4 x 0.617) = 1."""
    df = 1e9  # t at this df is the normal
    claims = [Claim(Hypothesis(f"h{i}", margin=0.01), Estimate(z, 1.0, df, 10**9)) for i, z in enumerate((3, 2.4, .5))]
    raw = [c.p for c in claims]
    assert np.allclose(raw, [0.0026998, 0.0163951, 0.6170751], atol=1e-6)
    adjusted = adjust(claims, "holm")
    assert np.allclose([c.p_adjusted for c in adjusted], [0.0161988, 0.0819755, 1.0], atol=1e-6)
    assert [c.outcome for c in adjusted] == ["supported", "inconclusive", "inconclusive"]
    # the second survives alone (two tests: 2 x 0.0164), not among three claims (six tests)
    assert adjust([claims[1]], "holm")[0].outcome == "supported"
    weak = [Claim(Hypothesis(f"w{i}", margin=0.01), Estimate(0.1, 1.0, df, 10**9)) for i in range(2)]
    five = adjust([*claims, *weak], "holm")
    assert five[0].p_adjusted == pytest.approx(10 * raw[0], abs=1e-6) and five[0].outcome == "supported"
    assert five[1].p_adjusted == pytest.approx(9 * raw[1], abs=1e-6) and five[1].outcome == "inconclusive"
    assert all(c.family == 10 for c in five) and all(c.record()["p"] == c.p for c in five)
