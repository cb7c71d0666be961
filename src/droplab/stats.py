"""Summaries over seeds: mean, standard deviation, paired differences with t intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["mean_std", "t_quantile_975", "Interval", "mean_interval", "paired_interval", "verdict"]

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """t_{0.975} with ``df`` degrees of freedom (normal 1.960 beyond 30, within 2%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


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
    """A mean with its 95% confidence interval over ``n`` values (NaN bounds when n = 1)."""

    mean: float
    low: float
    high: float
    n: int


def mean_interval(values: Sequence[float]) -> Interval:
    """95% t interval of the mean of ``values`` (NaN bounds for a single value)."""
    mean, std = mean_std(values)
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, len(values))
    half = t_quantile_975(len(values) - 1) * std / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def paired_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """95% t interval of the mean of ``a[i] - b[i]`` (paired, e.g. by seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    return mean_interval([x - y for x, y in zip(a, b)])


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
