"""Intervals and Welch's test (dlbench.stats) against scipy.stats, an implementation of its own."""
import statistics

import pytest
from scipy import stats as scipy_stats

from dlbench.stats import half_width, welch

SAMPLES = [([0.86, 0.85, 0.80], [0.90, 0.88, 0.91]), ([0.70, 0.72, 0.75], [0.80, 0.84, 0.83]),
           ([1.0, 2.0], [1.5, 2.5, 3.0, 10.0]), ([0.5, 0.51, 0.49, 0.5, 0.52], [0.4, 0.6])]


@pytest.mark.parametrize("values", [a for a, _ in SAMPLES] + [b for _, b in SAMPLES])
def test_half_width_is_students_t_interval_of_the_mean(values):
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                       scale=scipy_stats.sem(values))
    assert half_width(values) == pytest.approx((high - low) / 2, rel=1e-9)


def test_one_value_has_no_interval_and_no_test():
    assert half_width([0.9]) is None and half_width([]) is None
    assert welch([0.9], [0.8, 0.85]) is None and welch([0.8, 0.85], [0.9]) is None


@pytest.mark.parametrize("a,b", SAMPLES)
def test_welch_matches_scipy_ttest_with_unequal_variances(a, b):
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = expected.confidence_interval(0.95)
    d = welch(a, b)
    assert d.p == pytest.approx(expected.pvalue, rel=1e-9)
    assert d.diff == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert (d.diff - d.half, d.diff + d.half) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert d.beyond_noise == (expected.pvalue < 0.05)


def test_sets_without_spread_differ_exactly_when_their_means_do():
    assert welch([3, 3, 3], [3, 3]).p == 1.0 and not welch([3, 3, 3], [3, 3]).beyond_noise
    assert welch([3, 3, 3], [4, 4]).p == 0.0 and welch([3, 3, 3], [4, 4]).beyond_noise
