"""harness.plugin.tables: one text per value, Wilson intervals against SciPy's, bootstrap means."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.plugin.tables import (
    Interval,
    Table,
    bracket_text,
    format_value,
    fraction,
    mean_interval,
    plus_minus,
    wilson_interval,
)


def test_format_value():
    assert [format_value(v) for v in (None, True, False, 7, np.int64(3), 0.1234567, 1.23456e-5, 1e300)] == \
        ["-", "yes", "no", "7", "3", "0.1235", "1.235e-05", "1e+300"]
    assert [format_value(v) for v in (math.nan, math.inf, -math.inf, "text")] == ["nan", "inf", "-inf", "text"]
    assert format_value(Interval(1.5, 1.25, 1.75)) == "1.5 [1.25, 1.75]"
    assert format_value(Interval(1.5, None, 2.0)) == "1.5"  # no interval without both ends
    assert format_value(Interval(1.5, math.nan, 2.0)) == "1.5"
    table = Table("t", ["a", "b"], [[1, 0.5], [None, Interval(2.0, 1.0, 3.0)]])
    assert table.cells() == [["1", "0.5"], ["-", "2 [1, 3]"]]


def test_bracket_text():
    assert bracket_text(376, 410.5) == "376 - 410.5"
    assert bracket_text(2.5, None) == "above 2.5" and bracket_text(None, 7) == "below 7"
    assert bracket_text(None, None) is None


def test_plus_minus():
    assert plus_minus(1.23456, 0.0012345) == "1.235 ± 0.001234"
    assert plus_minus(2.5) == plus_minus(2.5, None) == "2.5"
    assert plus_minus(3, np.float64(0.5)) == "3 ± 0.5"


@pytest.mark.parametrize("k,n", [(0, 1), (0, 5), (1, 5), (3, 5), (5, 5), (17, 40), (999, 1000)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_interval_is_scipys(k, n, level):
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    low, high = wilson_interval(k, n, level)
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)
    assert (low == 0.0) == (k == 0) and (high == 1.0) == (k == n)  # exact ends
    assert fraction(k, n, level).text() == f"{format_value(k / n)} [{format_value(low)}, {format_value(high)}]"


def test_wilson_interval_edges():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_mean_interval_is_a_seeded_percentile_bootstrap():
    values = [1.0, 2.0, 4.0, 8.0, None, math.nan]
    got = mean_interval(values)
    x = np.array([1.0, 2.0, 4.0, 8.0])
    idx = np.random.default_rng(0).integers(0, 4, size=(2000, 4))
    low, high = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    assert (got.value, got.low, got.high) == (3.75, pytest.approx(low), pytest.approx(high))
    assert mean_interval([1.0, 2.0]).low is None and mean_interval([]).value is None
