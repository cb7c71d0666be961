"""The statistics of a verdict: Student's t, estimates with their standard errors, p-values,
multiplicity adjustments, the four outcomes and the sensitivity (MDE) of a design.

Everything is numpy and ``math`` only (no scipy). The t distribution is exact for every real
df > 0 (the regularized incomplete beta by a continued fraction) and df = inf (the normal).
An :class:`Estimate` is a mean with its standard error and degrees of freedom: over seeds only
(:func:`paired_estimate`, :func:`mean_estimate`), or over seeds and evaluation images
(:func:`two_way_estimate`, a random-effects two-way ANOVA). Its p-values test a difference
(:func:`p_difference`), equivalence within a margin (:func:`p_equivalence`, TOST) or a
difference beyond the margin (:func:`p_nonequivalence`); :func:`holm` and
:func:`benjamini_hochberg` adjust them; :func:`outcome` turns them into one of
:data:`OUTCOMES`; :func:`mde` and :func:`seeds_for` size a design.

Size: one concept, the numbers behind a verdict line, read top to bottom: the t distribution
that every p-value and interval uses, then estimates, tests, adjustments, outcomes and power.
Split, each part would import the one before it and nothing else would use them apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "ALPHA", "OUTCOMES", "t_cdf", "t_quantile", "t_quantile_975", "mean_std", "Interval", "mean_interval",
    "paired_interval", "verdict", "Estimate", "mean_estimate", "paired_estimate", "two_way_estimate",
    "p_difference", "p_equivalence", "p_nonequivalence", "p_noninferiority", "p_inferiority", "holm",
    "benjamini_hochberg", "outcome", "mde", "seeds_for",
]

ALPHA = 0.05
OUTCOMES = ("supported", "contradicted", "equivalent", "inconclusive")
_LARGE_DF = 1e5  # beyond this, t's tail by its expansion in 1/df (error O(df^-3)), not the continued fraction


# --- Student's t ------------------------------------------------------------------------------

def _check_df(df: float) -> None:
    if not df > 0:  # also rejects NaN
        raise ValueError(f"degrees of freedom must be > 0, got {df}")


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function I_x(a, b) (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), with y = 1 - x given apart (no cancellation)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log(y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, y) / b


def _t_upper(x: float, df: float) -> float:
    """P(T > x) for x >= 0: 0.5 I_{df/(df+x^2)}(df/2, 1/2)."""
    if math.isinf(x):
        return 0.0
    if df > _LARGE_DF:  # Fisher's expansion: P(T > x) = Q(x) + phi(x) [(x^3+x)/4v + (5x^5+16x^3+3x)/96v^2]
        phi = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        corr = (x**3 + x) / (4 * df) + (5 * x**5 + 16 * x**3 + 3 * x) / (96 * df * df)
        return 0.5 * math.erfc(x / math.sqrt(2)) + phi * corr
    r = x * x / df
    return 0.5 * _betainc(df / 2, 0.5, 1.0 / (1.0 + r), r / (1.0 + r))


def _t_pdf(x: float, df: float) -> float:
    if math.isinf(df):
        return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    log = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log - (df + 1) / 2 * math.log1p(x * x / df))


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom (any real df > 0, or inf: the normal).

    Examples::

        >>> round(t_cdf(2.262157, 9), 6), t_cdf(0.0, 2.5), round(t_cdf(-1.959964, math.inf), 6)
        (0.975, 0.5, 0.025)
    """
    _check_df(df)
    if math.isnan(x):
        return math.nan
    upper = 0.5 * math.erfc(abs(x) / math.sqrt(2)) if math.isinf(df) else _t_upper(abs(x), df)
    return 1.0 - upper if x > 0 else upper


def t_quantile(q: float, df: float) -> float:
    """The x with P(T <= x) = q, for 0 < q < 1 (Newton's method on the tail from 0: convex, so monotone).

    Examples::

        >>> round(t_quantile(0.975, 9), 6), round(t_quantile(0.05, 4), 6), round(t_quantile(0.975, math.inf), 6)
        (2.262157, -2.131847, 1.959964)
    """
    _check_df(df)
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile's probability must lie in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    tail = min(q, 1.0 - q)  # solve P(T > x) = tail for x > 0, then mirror
    x = 0.0
    for _ in range(2000):
        upper = 0.5 * math.erfc(x / math.sqrt(2)) if math.isinf(df) else _t_upper(x, df)
        step = (upper - tail) / _t_pdf(x, df)
        x += step
        if abs(step) <= 1e-14 * max(1.0, x):
            break
    return x if q > 0.5 else -x


def t_quantile_975(df: float) -> float:
    """t_{0.975} with ``df`` degrees of freedom (exact; the half-width factor of a 95% interval)."""
    return t_quantile(0.975, df)


# --- Means over seeds ---------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the std is NaN for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval over ``n`` values (NaN bounds when n = 1)."""

    mean: float
    low: float
    high: float
    n: int


def mean_interval(values: Sequence[float]) -> Interval:
    """95% t interval of the mean of ``values`` (NaN bounds for a single value)."""
    return mean_estimate(values).interval()


def paired_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """95% t interval of the mean of ``a[i] - b[i]`` (paired, e.g. by seed)."""
    return paired_estimate(a, b).interval()


def verdict(interval: Interval, expect_positive: bool = True) -> str:
    """``supported`` if the interval lies on the expected side of 0, ``not supported`` if it
    lies on the other side, ``inconclusive`` if it straddles 0 (or cannot be computed)."""
    if math.isnan(interval.low):
        return "inconclusive"
    low, high = (interval.low, interval.high) if expect_positive else (-interval.high, -interval.low)
    if low > 0:
        return "supported"
    if high < 0:
        return "not supported"
    return "inconclusive"


# --- Estimates --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error ``se`` on ``df`` degrees of freedom, over ``n`` seeds.

    ``image_se`` is the part of ``se`` that comes from sampling the evaluation images (0 when
    not modelled): se^2 = seed part^2 + image_se^2. NaN ``se`` (one seed) gives NaN bounds and p-values.
    """

    mean: float
    se: float
    df: float
    n: int
    image_se: float = 0.0

    def interval(self, level: float = 0.95) -> Interval:
        """The two-sided t interval mean +- t_{(1+level)/2, df} se.

        Examples::

            >>> iv = Estimate(1.5, 0.5 / math.sqrt(3), 2, 3).interval()
            >>> round(iv.low, 4), round(iv.high, 4)
            (0.2579, 2.7421)
        """
        _check_level(level, "level")
        if math.isnan(self.se):
            return Interval(self.mean, math.nan, math.nan, self.n)
        half = t_quantile((1 + level) / 2, self.df) * self.se if self.se > 0 else 0.0
        return Interval(self.mean, self.mean - half, self.mean + half, self.n)


def _check_level(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value}")


def mean_estimate(values: Sequence[float]) -> Estimate:
    """The mean of ``values`` with se = sd / sqrt(n) on n - 1 df (NaN se for one value)."""
    mean, std = mean_std(values)
    n = len(values)
    return Estimate(mean, std / math.sqrt(n), n - 1, n)


def paired_estimate(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """The mean of ``a[i] - b[i]`` over seeds i (se over seeds only, n - 1 df).

    Examples::

        >>> paired_estimate([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])  # differences 1, 1.5, 2
        Estimate(mean=1.5, se=0.288..., df=2, n=3, image_se=0.0)
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    return mean_estimate([x - y for x, y in zip(a, b)])


def two_way_estimate(diff: np.ndarray) -> Estimate:
    """The mean of per-image paired differences ``diff[i, j]`` (seed i, image j), with a standard
    error that counts both the seeds and the sampling of the evaluation images.

    Method: random-effects two-way ANOVA without replication, diff[i, j] = mu + s_i + g_j + e_ij,
    with seed effects s_i (var sigma_s^2), image effects g_j (sigma_g^2) and residuals (sigma_e^2).
    The mean squares MS_s = N sum_i (r_i - m)^2 / (n-1), MS_j = n sum_j (c_j - m)^2 / (N-1) and
    MS_e = sum_ij (x_ij - r_i - c_j + m)^2 / ((n-1)(N-1)) (r, c: row and column means, m: grand
    mean) have expectations sigma_e^2 + N sigma_s^2, sigma_e^2 + n sigma_g^2 and sigma_e^2, so

        Var(m) = sigma_s^2/n + sigma_g^2/N + sigma_e^2/(nN)  is estimated by
        (MS_s + max(0, MS_j - MS_e)) / (nN);

    the first term alone is the seed-only variance of the mean of the per-seed means, the second
    (``image_se``^2) the evaluation images' share. Degrees of freedom by Satterthwaite:
    (MS_s + MS_j - MS_e)^2 / (MS_s^2/(n-1) + MS_j^2/(N-1) + MS_e^2/((n-1)(N-1))), and n - 1 when
    the image term is 0. O(nN) time and memory.

    Args:
        diff: array (n seeds >= 2, N images >= 2), e.g. 100 * (correct_a - correct_b) in pp.

    Returns:
        An :class:`Estimate` with ``image_se`` set.

    Examples::

        >>> e = two_way_estimate(np.array([[1.0, 3.0, 2.0], [2.0, 4.0, 3.0]]))  # no residual
        >>> e.mean, round(e.se, 4), e.df, round(e.image_se, 4)
        (2.5, 0.7638, 2.88..., 0.5774)
    """
    x = np.asarray(diff, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"per-image differences must be a 2-D array (seeds, images), got {x.ndim}-D")
    n, big_n = x.shape
    if n < 2 or big_n < 2:
        raise ValueError(f"per-image differences need at least 2 seeds and 2 images, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("per-image differences must be finite")
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_s = big_n * float(((rows - grand) ** 2).sum()) / (n - 1)
    ms_j = n * float(((cols - grand) ** 2).sum()) / (big_n - 1)
    df_e = (n - 1) * (big_n - 1)
    ms_e = float(((x - rows[:, None] - cols[None, :] + grand) ** 2).sum()) / df_e
    image = max(0.0, ms_j - ms_e)
    df = float(n - 1)
    if image > 0:
        df = (ms_s + image) ** 2 / (ms_s**2 / (n - 1) + ms_j**2 / (big_n - 1) + ms_e**2 / df_e)
    return Estimate(float(grand), math.sqrt((ms_s + image) / (n * big_n)), df, n, math.sqrt(image / (n * big_n)))


# --- Tests --------------------------------------------------------------------------------------

def _upper_p(t: float, df: float) -> float:
    """P(T > t), with t = +-inf or NaN (from a zero se) handled."""
    return math.nan if math.isnan(t) else 1.0 - t_cdf(t, df)


def _t_stat(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return math.copysign(math.inf, diff) if diff != 0 else 0.0


def _check_margin(margin: float) -> None:
    if not margin > 0 or math.isinf(margin):
        raise ValueError(f"a margin must be a finite number > 0, got {margin}")


def p_difference(e: Estimate) -> float:
    """Two-sided p-value of H0: mean = 0, 2 P(T > |mean| / se) (NaN when se is NaN)."""
    if math.isnan(e.se) or math.isnan(e.mean):
        return math.nan
    t = abs(_t_stat(e.mean, e.se))
    return 1.0 if t == 0 else min(1.0, 2 * _upper_p(t, e.df))


def p_equivalence(e: Estimate, margin: float) -> float:
    """TOST p-value that |mean| < margin: the larger of the one-sided p-values of
    H0: mean <= -margin and H0: mean >= +margin. At level alpha it is below alpha exactly when
    the (1 - 2 alpha) interval lies inside (-margin, margin).

    Examples::

        >>> round(p_equivalence(Estimate(0.0, 0.1, 9, 10), 0.3), 4)
        0.0075
    """
    _check_margin(margin)
    if math.isnan(e.se) or math.isnan(e.mean):
        return math.nan
    above_low = _upper_p(_t_stat(e.mean + margin, e.se), e.df)  # H0: mean <= -margin
    below_high = 1.0 - _upper_p(_t_stat(e.mean - margin, e.se), e.df)  # H0: mean >= margin
    return max(above_low, below_high)


def p_nonequivalence(e: Estimate, margin: float) -> float:
    """One-sided p-value that the mean lies beyond the margin on the estimate's side:
    H0: mean <= margin when mean >= 0 (else H0: mean >= -margin). Small: a difference shown
    larger than the margin, which contradicts an equivalence claim.
    """
    _check_margin(margin)
    if math.isnan(e.se) or math.isnan(e.mean):
        return math.nan
    return _upper_p(_t_stat(abs(e.mean) - margin, e.se), e.df)


def p_noninferiority(e: Estimate, margin: float, expect_positive: bool = True) -> float:
    """One-sided p-value that the mean is no worse than the margin on the claimed side:
    H0: mean <= -margin (``expect_positive``; else H0: mean >= +margin). Small: non-inferiority
    shown (the claim "a does at least as well as b, within the margin")."""
    _check_margin(margin)
    if math.isnan(e.se) or math.isnan(e.mean):
        return math.nan
    side = e.mean if expect_positive else -e.mean
    return _upper_p(_t_stat(side + margin, e.se), e.df)


def p_inferiority(e: Estimate, margin: float, expect_positive: bool = True) -> float:
    """One-sided p-value that the mean is worse than the margin on the claimed side:
    H0: mean >= -margin (``expect_positive``). Small: inferiority beyond the margin shown,
    which contradicts a non-inferiority claim."""
    _check_margin(margin)
    if math.isnan(e.se) or math.isnan(e.mean):
        return math.nan
    side = e.mean if expect_positive else -e.mean
    return _upper_p(_t_stat(-(side + margin), e.se), e.df)


# --- Multiplicity -------------------------------------------------------------------------------

def _ranked(ps: Sequence[float]) -> tuple[list[float], list[int]]:
    """The p-values checked, and the indices of the non-NaN ones from the smallest p up."""
    ps = [float(p) for p in ps]
    bad = [p for p in ps if not (math.isnan(p) or 0.0 <= p <= 1.0)]
    if bad:
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {bad}")
    return ps, sorted((i for i, p in enumerate(ps) if not math.isnan(p)), key=lambda i: ps[i])


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: with the m non-NaN p sorted,
    p~_(k) = max_{j <= k} min(1, (m - j + 1) p_(j)). NaN stays NaN and is not counted in m.

    Examples::

        >>> holm([0.01, 0.04, 0.03, math.nan])
        [0.03, 0.06, 0.06, nan]
    """
    ps, order = _ranked(ps)
    out, running, m = list(ps), 0.0, len(order)
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


def benjamini_hochberg(ps: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate), in the order given:
    p~_(k) = min_{j >= k} min(1, m p_(j) / j). NaN stays NaN and is not counted in m.

    Examples::

        >>> benjamini_hochberg([0.01, 0.04, 0.03, math.nan])
        [0.03, 0.04, 0.04, nan]
    """
    ps, order = _ranked(ps)
    out, running, m = list(ps), 1.0, len(order)
    for k in range(m - 1, -1, -1):
        i = order[k]
        running = min(running, m * ps[i] / (k + 1))
        out[i] = running
    return out


# --- Outcomes -----------------------------------------------------------------------------------

def outcome(e: Estimate, kind: str, margin: float, expect_positive: bool, p_diff_adj: float,
            p_equiv_adj: float, alpha: float = ALPHA) -> str:
    """One of :data:`OUTCOMES` from adjusted p-values.

    ``equivalent`` if ``p_equiv_adj`` < alpha (the difference is within +-margin, whatever the
    claim said); else, if ``p_diff_adj`` < alpha: for kind ``superiority`` (``p_diff_adj`` from
    :func:`p_difference`) ``supported`` when the mean lies on the claimed side
    (``expect_positive``), ``contradicted`` otherwise; for kind ``equivalence`` (``p_diff_adj``
    from :func:`p_nonequivalence`) ``contradicted``; else ``inconclusive`` (also for any NaN).
    For kind ``noninferiority``, ``p_diff_adj`` is :func:`p_noninferiority`'s and ``p_equiv_adj``
    :func:`p_inferiority`'s: ``supported`` (no worse than the margin), else ``contradicted``
    (worse beyond it), else ``inconclusive``.

    Examples::

        >>> e = Estimate(0.8, 0.2, 9, 10)
        >>> outcome(e, "superiority", 0.3, True, p_difference(e), p_equivalence(e, 0.3))
        'supported'
    """
    if kind not in ("superiority", "equivalence", "noninferiority"):
        raise ValueError(f"a claim's kind is 'superiority', 'equivalence' or 'noninferiority', got {kind!r}")
    _check_margin(margin)
    _check_level(alpha, "alpha")
    if any(math.isnan(v) for v in (e.mean, p_diff_adj, p_equiv_adj)):
        return "inconclusive"
    if kind == "noninferiority":
        return "supported" if p_diff_adj < alpha else "contradicted" if p_equiv_adj < alpha else "inconclusive"
    if p_equiv_adj < alpha:
        return "equivalent"
    if p_diff_adj < alpha:
        if kind == "equivalence" or (e.mean > 0) != expect_positive:
            return "contradicted"
        return "supported"
    return "inconclusive"


# --- Power --------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _se_ratio_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes S and weights (summing to 1) for E[f(S)], S = se_estimate / se = sqrt(chi2_df / df):
    the trapezoid rule over log chi2 (exponentially accurate for smooth f); S = 1 for df = inf."""
    if math.isinf(df):
        return np.ones(1), np.ones(1)
    spread = 12 * math.sqrt(2 / df)
    lo = math.log(df) - spread - 80 / df
    hi = math.log(df + 12 * math.sqrt(2 * df) + 60)
    v = np.linspace(lo, hi, 1201)
    log_density = df / 2 * v - np.exp(v) / 2
    w = np.exp(log_density - log_density.max())
    return np.sqrt(np.exp(v) / df), w / w.sum()


_erf = np.frompyfunc(math.erf, 1, 1)


def _smallest_ratio(power_at, power: float) -> float:
    """The smallest lambda >= 0 with power_at(lambda) >= power (increasing; bisection)."""
    lo, hi = 0.0, 4.0
    while power_at(hi) < power:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_at(mid) < power else (lo, mid)
    return hi


def mde(se: float, df: float, alpha: float = ALPHA, power: float = 0.8, family: int = 1) -> float:
    """The minimum detectable effect: the smallest margin delta at which both (a) a true effect
    of delta is found by the two-sided t test at level a = alpha / family with the given power,
    and (b) a true effect of 0 is shown equivalent within +-delta by TOST at level a with that
    power (Bonferroni's a: conservative for Holm in a family of that size).

    Exact for a normal mean whose se estimate is se sqrt(chi2_df / df): with lambda = delta / se,
    power (a) = E[Phi(lambda - c S) + Phi(-lambda - c S)], c = t_{1-a/2, df}, and power (b) =
    E[max(0, 2 Phi(lambda - c' S) - 1)], c' = t_{1-a, df}, by quadrature over S. Close to
    max(t_{1-a/2} + t_{power}, t_{1-a} + t_{(1+power)/2}) se, which falls short at few df.

    Returns:
        delta (NaN when se is NaN; 0 when se is 0).

    Examples::

        >>> round(mde(1.0, math.inf), 3), round(mde(1.0, 9), 3), round(mde(1.0, 9, family=5), 3)
        (2.926, 3.177, 4.272)
    """
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if family < 1 or int(family) != family:
        raise ValueError(f"a family has a whole number >= 1 of claims, got {family}")
    if math.isnan(se):
        return math.nan
    if se < 0:
        raise ValueError(f"a standard error must be >= 0, got {se}")
    _check_df(df)
    a = alpha / family
    s, w = _se_ratio_nodes(float(df))
    c, c_eq = t_quantile(1 - a / 2, df), t_quantile(1 - a, df)

    def detect(lam: float) -> float:  # P(|mean| > c se_hat) at mean = lambda se
        z = _erf((lam - c * s) / math.sqrt(2)) - _erf((lam + c * s) / math.sqrt(2))
        return float(w @ (1 + 0.5 * z.astype(float)))

    def equivalent(lam: float) -> float:  # P(|mean| + c' se_hat < delta) at mean = 0
        return float(w @ np.maximum(0.0, _erf((lam - c_eq * s) / math.sqrt(2)).astype(float)))

    return se * max(_smallest_ratio(detect, power), _smallest_ratio(equivalent, power))


def seeds_for(margin: float, sd_seed: float, image_var: float = 0.0, alpha: float = ALPHA, power: float = 0.8,
              family: int = 1, n_max: int = 1000) -> int | None:
    """The fewest seeds n >= 2 with ``mde(se, df, alpha, power, family) <= margin``, where
    se^2 = sd_seed^2 / n + image_var (the images' share does not shrink with seeds) and df by
    Satterthwaite with the image term known: (n - 1) (1 + image_var n / sd_seed^2)^2 (inf if
    sd_seed = 0). mde falls as n grows, so a bisection finds the smallest n.

    Args:
        margin: the claim's margin delta (> 0).
        sd_seed: the standard deviation of one seed's difference.
        image_var: the evaluation images' variance of the mean (``image_se`` ** 2).
        n_max: the most seeds considered.

    Returns:
        n, or None when even ``n_max`` seeds do not reach the margin.

    Examples::

        >>> seeds_for(0.3, 0.5), seeds_for(0.3, 0.5, image_var=0.005), seeds_for(0.3, 0.5, image_var=0.02)
        (26, 47, None)
    """
    _check_margin(margin)
    if not (sd_seed >= 0 and image_var >= 0):
        raise ValueError(f"sd_seed and image_var must be >= 0, got {sd_seed} and {image_var}")
    if n_max < 2:
        raise ValueError(f"n_max must be >= 2, got {n_max}")

    def fits(n: int) -> bool:
        seed_var = sd_seed**2 / n
        df = math.inf if seed_var == 0 else (n - 1) * (1 + image_var / seed_var) ** 2
        return mde(math.sqrt(seed_var + image_var), df, alpha, power, family) <= margin

    if not fits(n_max):
        return None
    lo, hi = 1, n_max  # fits(hi); lo fails or is below 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi
