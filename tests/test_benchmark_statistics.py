"""The statistics the benchmark tables are judged by."""

from __future__ import annotations

import random
import statistics

import pytest

from benchmarks.common import median_interval, paired_ratios


@pytest.mark.parametrize(
    ("n", "k"),
    # The k-th smallest and k-th largest of n values: the distribution-free 95% interval of the
    # median found in statistics tables (for n = 20, the 6th and the 15th value).
    [(6, 1), (10, 2), (20, 6), (30, 10), (60, 22), (100, 40)],
)
def test_interval_is_the_tabled_order_statistics(n: int, k: int) -> None:
    values = random.Random(n).sample(range(1000), n)
    ordered = sorted(values)

    assert median_interval(values) == (ordered[k - 1], ordered[n - k])


def test_too_few_values_give_no_interval() -> None:
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert median_interval([]) is None


def test_interval_holds_the_median_as_often_as_it_says() -> None:
    rng = random.Random(7)
    held = 0
    for _ in range(2000):
        sample = [rng.lognormvariate(0, 1) for _ in range(20)]  # skewed: the median is 1
        low, high = median_interval(sample) or (0.0, 0.0)
        held += low <= 1 <= high
    assert 0.94 <= held / 2000 <= 0.98  # 95.9% for n = 20


def test_paired_ratios_skip_rounds_without_a_measure() -> None:
    assert paired_ratios([9.0, None, 4.0], [10.0, 5.0, 0.0]) == [0.9]
    assert statistics.median(paired_ratios([90.0, 80.0], [100.0, 100.0])) == pytest.approx(0.85)
