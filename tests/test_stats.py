import math

import pytest

from droplab.stats import Interval, mean_std, paired_interval, t_quantile_975, verdict


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    m, s = mean_std([5.0])
    assert m == 5.0 and math.isnan(s)
    with pytest.raises(ValueError):
        mean_std([])


def test_t_quantiles():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(4) == 2.776 and t_quantile_975(1000) == 1.960
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_paired_interval_by_hand():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.5, 1.0]  # diffs 1, 1.5, 2: mean 1.5, sd 0.5
    iv = paired_interval(a, b)
    half = 4.303 * 0.5 / math.sqrt(3)
    assert iv.mean == 1.5 and iv.n == 3
    assert iv.low == pytest.approx(1.5 - half) and iv.high == pytest.approx(1.5 + half)
    assert verdict(iv) == "supported" and verdict(iv, expect_positive=False) == "not supported"
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0], [1.0, 2.0])


def test_verdicts():
    assert verdict(Interval(0.1, -0.2, 0.4, 5)) == "inconclusive"
    assert verdict(Interval(-1.0, -2.0, -0.5, 5)) == "not supported"
    assert verdict(paired_interval([1.0], [0.0])) == "inconclusive"
