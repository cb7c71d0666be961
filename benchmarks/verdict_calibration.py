"""Are droplab's verdicts calibrated? Simulated studies with a known truth, no training.

Method: each simulated claim is a matrix of per-image paired differences in pp,
diff[i, j] = effect + s_i + g_j + e_ij over n seeds and N evaluation images (seed effects s,
image heterogeneity g, residual e; normal, at magnitudes like a 0/1 correctness difference
times 100). Each matrix goes through the path a study's claims take in the engine:
droplab.stats.two_way_estimate (random-effects two-way ANOVA, Satterthwaite df), a
droplab.verdicts.Claim of its Hypothesis (3 superiority claims expecting a gain, 2 equivalence
claims), droplab.verdicts.adjust (Holm over the 10 tests of the 5 claims: each claim's own test
and its other one), then the claim's outcome. The margin delta is the design's mde with the
family of 10 tests (from the true standard error and the Satterthwaite df of the expected mean
squares): the tightest design the issue allows (MDE <= delta).

Checks (bounds: 3 binomial sigmas of the replicate count, sqrt(p (1 - p) / count)):
  - null effect: the two-sided difference test alone rejects in <= 0.05 of claims (its size);
  - null effect: false supported-or-contradicted rate per superiority claim, raw p-values, <= 0.05;
  - null effect: family-wise rate of any false supported-or-contradicted in a study after Holm <= 0.05;
  - null effect: rate of `equivalent` per claim after Holm >= 0.8;
  - one claim at 2 delta beside 4 null claims: power (supported, after Holm) >= 0.8;
  - that claim at delta (the mde itself): power >= 0.8; the 95% interval's coverage 0.95;
  - mixed truth (two superiority claims at delta, the rest at 0): any wrong outcome in a study
    after Holm (a false supported/contradicted at 0, a contradicted or equivalent at delta) <= 0.05.

    python benchmarks/verdict_calibration.py [--replicates 4000] [--seed 13]

The last line is `calibration: ok` or `calibration: FAILED` (exit status 1).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from droplab.stats import ALPHA, mde, p_difference, two_way_estimate
from droplab.verdicts import Claim, Hypothesis, adjust

KINDS = ("superiority",) * 3 + ("equivalence",) * 2
DESIGN = {"n": 10, "N": 2000, "sd_seed": 0.3, "sd_image": 10.0, "sd_resid": 30.0}


def design_se_df(n: int, N: int, sd_seed: float, sd_image: float, sd_resid: float) -> tuple[float, float]:
    """The true standard error of the mean difference and the Satterthwaite df of the expected mean squares."""
    ms_s, ms_j, ms_e = sd_resid**2 + N * sd_seed**2, sd_resid**2 + n * sd_image**2, sd_resid**2
    var = sd_seed**2 / n + sd_image**2 / N + sd_resid**2 / (n * N)
    df = (ms_s + ms_j - ms_e) ** 2 / (ms_s**2 / (n - 1) + ms_j**2 / (N - 1) + ms_e**2 / ((n - 1) * (N - 1)))
    return math.sqrt(var), df


def simulate_study(rng: np.random.Generator, effects: list[float], margin: float) -> list[tuple[str, str, bool, bool]]:
    """One 5-claim study, per claim: (raw outcome, Holm-adjusted outcome, the interval covers the
    truth, p_difference < alpha)."""
    d = DESIGN
    claims = []
    for i, (effect, kind) in enumerate(zip(effects, KINDS)):
        seeds, images = rng.standard_normal((d["n"], 1)), rng.standard_normal((1, d["N"]))
        resid = rng.standard_normal((d["n"], d["N"]))
        diff = effect + d["sd_seed"] * seeds + d["sd_image"] * images + d["sd_resid"] * resid
        claims.append(Claim(Hypothesis(f"claim {i}", kind=kind, margin=margin), two_way_estimate(diff)))
    rows = []
    for c, a, effect in zip(claims, adjust(claims, "holm"), effects):
        iv = c.estimate.interval()
        rows.append((c.outcome, a.outcome, iv.low < effect < iv.high, p_difference(c.estimate) < ALPHA))
    return rows


def wrong(outcome: str, effect: float, margin: float) -> bool:
    """Whether ``outcome`` is wrong for a true ``effect`` (0 or the margin itself)."""
    if effect == 0:
        return outcome in ("supported", "contradicted")
    return outcome in ("contradicted", "equivalent")  # at the margin: a gain, not within it


def check(name: str, rate: float, count: int, target: float, at_least: bool) -> bool:
    sigma = math.sqrt(target * (1 - target) / count)
    bound = target - 3 * sigma if at_least else target + 3 * sigma
    ok = rate >= bound if at_least else rate <= bound
    side = ">=" if at_least else "<="
    print(f"  {name:<62} {rate:7.4f}  {side} {bound:.4f}  (n={count})  {'ok' if ok else 'FAILED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=4000, help="simulated studies per scenario")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rng, reps, start = np.random.default_rng(args.seed), args.replicates, time.perf_counter()
    se, df = design_se_df(**DESIGN)
    delta = mde(se, df, family=2 * len(KINDS))
    print(f"design: {DESIGN}; se {se:.4f} pp, df {df:.1f}; "
          f"margin delta = mde(family={2 * len(KINDS)}) = {delta:.4f} pp; "
          f"{reps} studies per scenario, alpha {ALPHA}")
    null = [simulate_study(rng, [0.0] * 5, delta) for _ in range(reps)]
    false = {"supported", "contradicted"}
    raw_sup = np.mean([row[0] in false for study in null for row, k in zip(study, KINDS) if k == "superiority"])
    raw_eq = np.mean([row[0] in false for study in null for row, k in zip(study, KINDS) if k == "equivalence"])
    fwer = np.mean([any(row[1] in false for row in study) for study in null])
    equivalent = np.mean([row[1] == "equivalent" for study in null for row in study])
    cover = np.mean([row[2] for study in null for row in study])
    size = np.mean([row[3] for study in null for row in study])
    alt2 = [simulate_study(rng, [2 * delta] + [0.0] * 4, delta) for _ in range(reps)]
    alt1 = [simulate_study(rng, [delta] + [0.0] * 4, delta) for _ in range(reps)]
    power2 = np.mean([study[0][1] == "supported" for study in alt2])
    power1 = np.mean([study[0][1] == "supported" for study in alt1])
    truth = [delta, delta, 0.0, 0.0, 0.0]
    mixed = [simulate_study(rng, truth, delta) for _ in range(reps)]
    any_wrong = np.mean([any(wrong(row[1], t, delta) for row, t in zip(study, truth)) for study in mixed])
    print(f"  (for information: false supported/contradicted per equivalence claim, raw p: {raw_eq:.4f})")
    results = [
        check("null: the difference test's size, p_difference < alpha per claim", size, 5 * reps, ALPHA, False),
        check("null: false supported/contradicted per superiority claim (raw p)", raw_sup, 3 * reps, ALPHA, False),
        check("null: family-wise false supported/contradicted, 5 claims, Holm", fwer, reps, ALPHA, False),
        check("null: equivalent per claim (Holm, margin = mde)", equivalent, 5 * reps, 0.8, True),
        check("effect 2 delta beside 4 nulls: supported (Holm)", power2, reps, 0.8, True),
        check("effect delta (the mde) beside 4 nulls: supported (Holm)", power1, reps, 0.8, True),
        check("null: 95% interval covers the truth", cover, 5 * reps, 0.95, True),
        check("mixed truth: any wrong outcome in a 5-claim study, Holm", any_wrong, reps, ALPHA, False),
    ]
    print(f"{time.perf_counter() - start:.1f} s")
    print("calibration: ok" if all(results) else "calibration: FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
