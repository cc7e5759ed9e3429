"""A point's seeds as a sample: its mean, spread and 95% interval, and its difference to the
baseline's.

The interval of a mean is Student's t with n - 1 degrees of freedom; the interval of a difference of
two means is Welch's (unequal variances), both from scipy.stats. With one seed there is a mean and
nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from scipy import stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Sample:
    n: int
    mean: float
    std: float | None  # sample standard deviation (n - 1); None for one seed
    low: float | None  # the 95% interval of the mean (Student t)
    high: float | None


@dataclasses.dataclass(frozen=True)
class Difference:
    delta: float  # mean of the point minus mean of the baseline
    low: float | None  # the 95% interval of delta (Welch); None unless both have two seeds or more
    high: float | None
    p_value: float | None  # Welch's two-sided t-test

    @property
    def significant(self) -> bool:
        """The interval excludes 0: the difference is outside what the seeds' spread explains."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def sample(values: Sequence[float]) -> Sample:
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return Sample(n, mean, None, None, None)
    std = statistics.stdev(values)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return Sample(n, mean, std, mean - half, mean + half)


def difference(values: Sequence[float], baseline: Sequence[float]) -> Difference:
    delta = statistics.fmean(values) - statistics.fmean(baseline)
    if len(values) < 2 or len(baseline) < 2:
        return Difference(delta, None, None, None)
    # Welch is undefined; nothing varies
    if statistics.stdev(values) == 0 and statistics.stdev(baseline) == 0:
        return Difference(delta, delta, delta, 0.0 if delta else 1.0)
    result = stats.ttest_ind(values, baseline, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(delta, float(interval.low), float(interval.high), float(result.pvalue))
