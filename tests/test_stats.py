"""droplab.stats: the t distribution, estimates (two-way variance on synthetic data with known
components), p-values, Holm and BH by hand, the four outcomes, and mde/seeds_for by simulation.
Fixed seeds everywhere; the simulations' bounds are 5 binomial (or standard-error) sigmas."""

import math

import numpy as np
import pytest

from droplab.stats import (
    OUTCOMES,
    Estimate,
    Interval,
    benjamini_hochberg,
    holm,
    mde,
    mean_estimate,
    mean_std,
    outcome,
    p_difference,
    p_equivalence,
    p_nonequivalence,
    paired_estimate,
    paired_interval,
    seeds_for,
    t_cdf,
    t_quantile,
    t_quantile_975,
    two_way_estimate,
    verdict,
)


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    m, s = mean_std([5.0])
    assert m == 5.0 and math.isnan(s)
    with pytest.raises(ValueError):
        mean_std([])


def test_t_quantiles():
    # the old rounded table's values, now exact (the 1000-df value was the normal's 1.960)
    assert t_quantile_975(1) == pytest.approx(12.706, abs=5e-4) and t_quantile_975(4) == pytest.approx(2.776, abs=5e-4)
    assert t_quantile_975(1000) == pytest.approx(1.962339, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile_975(0)


@pytest.mark.parametrize("q, df, x", [(0.975, 9, 2.262157), (0.95, 4, 2.131847), (0.8, 9, 0.883404),
                                      (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.995, 30, 2.749996),
                                      (0.975, math.inf, 1.959964), (0.9, math.inf, 1.281552)])
def test_t_table_values(q, df, x):
    assert t_quantile(q, df) == pytest.approx(x, abs=2e-6)
    assert t_quantile(1 - q, df) == pytest.approx(-x, abs=2e-6)
    assert t_cdf(x, df) == pytest.approx(q, abs=1e-6)


def test_t_cdf_closed_forms_and_numeric_integration():
    for x in (-3.0, -0.4, 0.0, 0.7, 2.5, 40.0):
        assert t_cdf(x, 1) == pytest.approx(0.5 + math.atan(x) / math.pi, abs=1e-13)  # Cauchy
        assert t_cdf(x, 2) == pytest.approx(0.5 + x / (2 * math.sqrt(2 + x * x)), abs=1e-13)
        s3 = math.sqrt(3)
        assert t_cdf(x, 3) == pytest.approx(0.5 + (x / (s3 * (1 + x * x / 3)) + math.atan(x / s3)) / math.pi, abs=1e-13)
        assert t_cdf(x, math.inf) == pytest.approx(0.5 * math.erfc(-x / math.sqrt(2)), abs=1e-15)
    # df = 2.5 (not an integer, as Satterthwaite gives): P(0 < T < x) by the trapezoid rule on the density
    df = 2.5
    for x in (0.5, 1.7, 6.0):
        u = np.linspace(0.0, x, 200_001)
        dens = np.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                      - (df + 1) / 2 * np.log1p(u * u / df))
        assert t_cdf(x, df) == pytest.approx(0.5 + np.trapezoid(dens, u), abs=1e-9)


def test_t_quantile_inverts_cdf_and_large_df_is_continuous():
    for df in (0.3, 1, 2.5, 7.3, 99.5, 9.9e4, 1.1e5, 1e9, math.inf):
        for q in (1e-6, 0.01, 0.2, 0.5, 0.77, 0.975, 0.999):
            x = t_quantile(q, df)
            assert t_cdf(x, df) == pytest.approx(q, rel=1e-9)
    # the large-df expansion meets the continued fraction without a step
    assert t_cdf(2.0, 99_999.0) == pytest.approx(t_cdf(2.0, 100_001.0), abs=1e-10)
    assert t_quantile(0.975, 1e12) == pytest.approx(1.959964, abs=1e-6)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="degrees of freedom"):
            t_cdf(1.0, bad)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            t_quantile(bad, 5)


def test_paired_interval_by_hand():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.5, 1.0]  # diffs 1, 1.5, 2: mean 1.5, sd 0.5
    iv = paired_interval(a, b)
    half = 4.302653 * 0.5 / math.sqrt(3)
    assert iv.mean == 1.5 and iv.n == 3
    assert iv.low == pytest.approx(1.5 - half) and iv.high == pytest.approx(1.5 + half)
    assert verdict(iv) == "supported" and verdict(iv, expect_positive=False) == "not supported"
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0], [1.0, 2.0])
    e = paired_estimate(a, b)
    assert (e.mean, e.se, e.df, e.n, e.image_se) == (1.5, pytest.approx(0.5 / math.sqrt(3)), 2, 3, 0.0)
    assert e.interval() == iv
    wide = e.interval(0.99)
    assert wide.low < iv.low and wide.high > iv.high
    one = mean_estimate([4.0])
    assert math.isnan(one.se) and math.isnan(one.interval().low) and math.isnan(p_difference(one))
    with pytest.raises(ValueError, match="level"):
        e.interval(1.0)


def test_verdicts():
    assert verdict(Interval(0.1, -0.2, 0.4, 5)) == "inconclusive"
    assert verdict(Interval(-1.0, -2.0, -0.5, 5)) == "not supported"
    assert verdict(paired_interval([1.0], [0.0])) == "inconclusive"


def test_two_way_by_hand():
    # x = [[1, 3, 5], [2, 3, 7]]: m = 3.5; row means 3, 4; column means 1.5, 3, 6
    # MS_s = 3 (0.25 + 0.25) / 1 = 1.5;  MS_j = 2 (4 + 0.25 + 6.25) / 2 = 10.5
    # residuals x - r - c + m: [[0, 0.5, -0.5], [0, -0.5, 0.5]]: MS_e = 1 / 2 = 0.5
    # Var = (1.5 + 10.5 - 0.5) / 6 = 11.5 / 6;  image part 10 / 6
    # df = 11.5^2 / (1.5^2 / 1 + 10.5^2 / 2 + 0.5^2 / 2) = 132.25 / 57.5 = 2.3
    e = two_way_estimate(np.array([[1, 3, 5], [2, 3, 7]]))
    assert e.mean == 3.5 and e.n == 2
    assert e.se == pytest.approx(math.sqrt(11.5 / 6)) and e.image_se == pytest.approx(math.sqrt(10 / 6))
    assert e.df == pytest.approx(2.3)
    # columns that differ less than the residual: no image term, the seed-only estimate
    x = np.array([[0.0, 2.0, 1.0, 3.0], [2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 2.0, 2.0]])
    e, seeds = two_way_estimate(x), mean_estimate(list(x.mean(axis=1)))
    assert e.image_se == 0 and e.df == 2 and e.se == pytest.approx(seeds.se) and e.mean == pytest.approx(seeds.mean)
    for bad, match in [(np.zeros(5), "2-D"), (np.zeros((1, 5)), "at least 2 seeds"), (np.zeros((3, 1)), "2 images"),
                       (np.array([[0.0, math.nan], [1.0, 1.0]]), "finite")]:
        with pytest.raises(ValueError, match=match):
            two_way_estimate(bad)


def _two_way_replicates(rng, reps, n, big_n, sd_s, sd_g, sd_e, mu=0.7):
    return (mu + sd_s * rng.standard_normal((reps, n, 1)) + sd_g * rng.standard_normal((reps, 1, big_n))
            + sd_e * rng.standard_normal((reps, n, big_n)))


def test_two_way_variance_and_coverage_on_known_components():
    rng = np.random.default_rng(20240613)
    reps, n, big_n, sd_s, sd_g, sd_e, mu = 2000, 8, 50, 1.0, 2.0, 3.0, 0.7
    true_var = sd_s**2 / n + sd_g**2 / big_n + sd_e**2 / (n * big_n)  # 0.125 + 0.08 + 0.0225
    true_image_var = sd_g**2 / big_n
    est = [two_way_estimate(d) for d in _two_way_replicates(rng, reps, n, big_n, sd_s, sd_g, sd_e, mu)]
    var = np.array([e.se**2 for e in est])
    image_var = np.array([e.image_se**2 for e in est])
    # (a) unbiased (max(0, .) truncates rarely here): within 5 standard errors of the replicates' mean
    assert abs(var.mean() - true_var) < 5 * var.std(ddof=1) / math.sqrt(reps)
    assert abs(image_var.mean() - true_image_var) < 5 * image_var.std(ddof=1) / math.sqrt(reps)
    # and the spread of the means over replicates is the true variance too
    means = np.array([e.mean for e in est])
    assert abs(means.var(ddof=1) / true_var - 1) < 5 * math.sqrt(2 / (reps - 1))
    # (b) the 95% interval covers mu within 5 binomial sigmas of 0.95
    ivs = [e.interval() for e in est]
    cover = np.mean([iv.low < mu < iv.high for iv in ivs])
    assert abs(cover - 0.95) < 5 * math.sqrt(0.95 * 0.05 / reps), cover
    # seed-only intervals ignore sigma_g: they under-cover (why the images are modelled)
    seed_only = [mean_estimate(list(d.mean(axis=1))).interval() for d in
                 _two_way_replicates(np.random.default_rng(7), 500, n, big_n, sd_s, sd_g, sd_e, mu)]
    assert np.mean([iv.low < mu < iv.high for iv in seed_only]) < 0.9


def test_two_way_without_image_variance_matches_seed_only():
    rng = np.random.default_rng(11)
    ratios = []
    for d in _two_way_replicates(rng, 300, 6, 400, 0.5, 0.0, 3.0):
        e, s = two_way_estimate(d), mean_estimate(list(d.mean(axis=1)))
        assert e.mean == pytest.approx(s.mean)
        assert e.se >= s.se * (1 - 1e-12)  # the image term is never negative
        ratios.append((e.interval().high - e.mean) / (s.interval().high - s.mean))
    ratios = np.array(ratios)
    assert np.mean(np.isclose(ratios, 1.0, rtol=1e-12)) > 0.3  # MS_j <= MS_e: exactly the seed-only interval
    assert 0.999 < np.median(ratios) < 1.001 and 0.98 < ratios.min() and ratios.max() < 1.02


def test_p_values():
    e = Estimate(0.5, 0.2, 9, 10)
    assert p_difference(e) == pytest.approx(2 * (1 - t_cdf(2.5, 9)))
    assert p_difference(Estimate(-0.5, 0.2, 9, 10)) == pytest.approx(p_difference(e))
    # TOST at 0.05 <=> the 90% interval inside (-margin, margin); at the boundary p = 0.05 exactly
    iv = e.interval(0.90)
    assert p_equivalence(e, iv.high) == pytest.approx(0.05)
    assert p_equivalence(e, iv.high * 1.01) < 0.05 < p_equivalence(e, iv.high * 0.99)
    assert p_equivalence(Estimate(-0.5, 0.2, 9, 10), iv.high) == pytest.approx(0.05)
    # non-equivalence: one-sided beyond the margin on the estimate's side; p = 0.5 at |mean| = margin
    assert p_nonequivalence(e, 0.5) == pytest.approx(0.5)
    assert p_nonequivalence(e, 0.1) == pytest.approx(1 - t_cdf(2.0, 9))
    assert p_nonequivalence(Estimate(-0.5, 0.2, 9, 10), 0.1) == pytest.approx(1 - t_cdf(2.0, 9))
    assert p_nonequivalence(e, 0.9) == pytest.approx(1 - t_cdf(-2.0, 9))
    # zero se: certain
    assert p_difference(Estimate(0.0, 0.0, 4, 5)) == 1.0 and p_difference(Estimate(0.1, 0.0, 4, 5)) == 0.0
    assert p_equivalence(Estimate(0.0, 0.0, 4, 5), 0.3) == 0.0
    nan = Estimate(0.1, math.nan, 0, 1)
    assert math.isnan(p_equivalence(nan, 0.3)) and math.isnan(p_nonequivalence(nan, 0.3))
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="margin"):
            p_equivalence(e, bad)
        with pytest.raises(ValueError, match="margin"):
            p_nonequivalence(e, bad)


def test_holm_by_hand():
    # p = 0.01, 0.04, 0.03, 0.005, NaN: m = 4 (NaN not counted); sorted 0.005, 0.01, 0.03, 0.04
    # times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running max: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005, math.nan]) == pytest.approx([0.03, 0.06, 0.06, 0.02, math.nan], nan_ok=True)
    # capped at 1: 0.3, 0.6 -> 0.3 x 2 = 0.6, 0.6 x 1 = 0.6
    assert holm([0.6, 0.3]) == pytest.approx([0.6, 0.6])
    assert holm([0.5, 0.7, 0.9]) == [1.0, 1.0, 1.0]  # 1.5, 1.4, 0.9 -> capped 1, then the running max
    assert holm([]) == [] and holm([0.2]) == [0.2]


def test_benjamini_hochberg_by_hand():
    # p = 0.01, 0.04, 0.03, 0.005, NaN: m = 4; sorted 0.005, 0.01, 0.03, 0.04 at ranks 1..4
    # m p / rank: 0.02, 0.02, 0.04, 0.04; running min from the top: 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005, math.nan]) == pytest.approx([0.02, 0.04, 0.04, 0.02, math.nan],
                                                                                     nan_ok=True)
    # step-up: 0.04, 0.045, 0.046 -> 0.12, 0.0675, 0.046 -> min from the top: 0.046 for all three
    assert benjamini_hochberg([0.045, 0.04, 0.046]) == pytest.approx([0.046, 0.046, 0.046])
    assert benjamini_hochberg([0.9, 0.6]) == pytest.approx([0.9, 0.9])  # 1.2 -> 0.9 (the larger rank's)
    for bad in ([0.1, 1.2], [-0.01], [math.inf]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            benjamini_hochberg(bad)


def _outcome(e, kind="superiority", margin=0.3, expect_positive=True):
    p_diff = p_difference(e) if kind == "superiority" else p_nonequivalence(e, margin)
    return outcome(e, kind, margin, expect_positive, p_diff, p_equivalence(e, margin))


def test_four_outcomes():
    up, down = Estimate(0.8, 0.2, 9, 10), Estimate(-0.8, 0.2, 9, 10)  # intervals beyond 0 and beyond the margin
    tiny = Estimate(0.12, 0.05, 9, 10)  # [+0.01, +0.23]: beyond 0 but inside +-0.3: equivalent first
    wide = Estimate(0.1, 0.5, 9, 10)
    assert _outcome(up) == "supported" and _outcome(up, expect_positive=False) == "contradicted"
    assert _outcome(down) == "contradicted" and _outcome(down, expect_positive=False) == "supported"
    assert _outcome(tiny) == "equivalent" and _outcome(tiny, expect_positive=False) == "equivalent"
    assert _outcome(wide) == "inconclusive" and _outcome(wide, expect_positive=False) == "inconclusive"
    assert _outcome(Estimate(0.8, math.nan, 0, 1)) == "inconclusive"
    # an equivalence claim: contradicted only when the difference is shown beyond the margin
    assert _outcome(up, "equivalence") == "contradicted" and _outcome(down, "equivalence") == "contradicted"
    assert _outcome(Estimate(0.4, 0.1, 9, 10), "equivalence") == "inconclusive"  # beyond 0, not beyond 0.3
    assert _outcome(tiny, "equivalence") == "equivalent" and _outcome(wide, "equivalence") == "inconclusive"
    assert {_outcome(e, k) for e in (up, tiny, wide) for k in ("superiority", "equivalence")} | {"contradicted"} \
        == set(OUTCOMES)
    # adjusted p-values decide: the same estimate, p adjusted above alpha, is inconclusive; NaN p too
    assert outcome(up, "superiority", 0.3, True, 0.06, 0.9) == "inconclusive"
    assert outcome(up, "superiority", 0.3, True, math.nan, 0.9) == "inconclusive"
    assert outcome(up, "superiority", 0.3, True, 0.01, math.nan) == "inconclusive"
    for kwargs, match in [({"kind": "better"}, "kind"), ({"margin": 0.0}, "margin"), ({"alpha": 1.0}, "alpha")]:
        args = {"e": up, "kind": "superiority", "margin": 0.3, "expect_positive": True, "p_diff_adj": 0.01,
                "p_equiv_adj": 0.5, **kwargs}
        with pytest.raises(ValueError, match=match):
            outcome(**args)


def _simulated_power(rng, reps, n, delta, margin, a):
    """Fractions of t tests on n normal values (sd 1, mean delta) rejecting 0 two-sided at a, and
    (at mean 0) of TOST showing equivalence within +-margin at a."""
    detect, equiv = 0, 0
    for shifted, null in zip(rng.standard_normal((reps, n)) + delta, rng.standard_normal((reps, n))):
        detect += p_difference(mean_estimate(list(shifted))) < a
        equiv += p_equivalence(mean_estimate(list(null)), margin) < a
    return detect / reps, equiv / reps


@pytest.mark.parametrize("n, family", [(10, 1), (5, 5)])
def test_mde_has_its_power(n, family):
    reps, a = 4000, 0.05 / family
    delta = mde(1 / math.sqrt(n), n - 1, family=family)
    detect, equiv = _simulated_power(np.random.default_rng(n * 100 + family), reps, n, delta, delta, a)
    sigma = 5 * math.sqrt(0.8 * 0.2 / reps)
    assert min(detect, equiv) > 0.8 - sigma, (detect, equiv)
    assert min(detect, equiv) < 0.8 + sigma, (detect, equiv)  # the binding one has no more than it needs
    assert mde(1 / math.sqrt(n), n - 1, family=family) > mde(1 / math.sqrt(n), math.inf, family=family)
    assert mde(0.2, 9) == pytest.approx(0.2 * mde(1.0, 9)) and mde(0.0, 9) == 0.0 and math.isnan(mde(math.nan, 9))
    for kwargs, match in [({"alpha": 0.0}, "alpha"), ({"power": 1.0}, "power"), ({"family": 0}, "family"),
                          ({"se": -1.0}, "standard error"), ({"df": 0.0}, "degrees of freedom")]:
        with pytest.raises(ValueError, match=match):
            mde(**{"se": 1.0, "df": 9, **kwargs})


def test_seeds_for_is_the_smallest_with_power():
    n = seeds_for(0.6, 1.0)
    assert mde(1 / math.sqrt(n), n - 1) <= 0.6 < mde(1 / math.sqrt(n - 1), n - 2)
    detect, equiv = _simulated_power(np.random.default_rng(5), 3000, n, 0.6, 0.6, 0.05)
    assert min(detect, equiv) > 0.8 - 5 * math.sqrt(0.8 * 0.2 / 3000)
    # images: their share does not shrink with seeds; too large a share and no n suffices
    n_img = seeds_for(0.6, 1.0, image_var=0.01, family=3)
    assert n_img > seeds_for(0.6, 1.0, family=3) > n
    assert seeds_for(0.3, 1.0, image_var=0.1) is None and seeds_for(0.6, 0.0) == 2
    assert seeds_for(0.3, 1.0, n_max=10) is None
    for kwargs, match in [({"margin": 0.0}, "margin"), ({"sd_seed": -1.0}, "sd_seed"), ({"n_max": 1}, "n_max")]:
        with pytest.raises(ValueError, match=match):
            seeds_for(**{"margin": 0.5, "sd_seed": 1.0, **kwargs})


def test_noninferiority_supports_a_win_and_contradicts_a_loss_beyond_the_margin():
    """A non-inferiority claim (a - b no worse than -0.5): one-sided tests at the margin, by hand
    at infinite df (the normal): +0.6 +- 0.2 -> z = (0.6 + 0.5) / 0.2 = 5.5, p ~ 2e-8: supported;
    -1.5 +- 0.2 -> z = -5, inferiority p ~ 3e-7: contradicted; -0.2 +- 0.2 -> z = 1.5, p 0.0668: neither."""
    from droplab.stats import p_inferiority, p_noninferiority

    win, loss, near = (Estimate(m, 0.2, math.inf, 10) for m in (0.6, -1.5, -0.2))
    assert p_noninferiority(near, 0.5) == pytest.approx(0.0668072, abs=1e-6)
    assert p_inferiority(near, 0.5) == pytest.approx(1 - 0.0668072, abs=1e-6)
    decide = lambda e: outcome(e, "noninferiority", 0.5, True, p_noninferiority(e, 0.5), p_inferiority(e, 0.5))  # noqa: E731
    assert [decide(e) for e in (win, loss, near)] == ["supported", "contradicted", "inconclusive"]
    # the claimed side flipped: "a - b no more than +0.5" for a figure where lower is better
    assert p_noninferiority(Estimate(-0.6, 0.2, math.inf, 10), 0.5, expect_positive=False) < 1e-6
