"""How far a report's numbers can be trusted: a cell's runs are repeats of one setup with different
seeds, so its mean has a 95% confidence interval (Student's t), and two cells differ by more than the
noise when Welch's t-test (unequal variances) says so. Torch-free: `dlbench report` reads files only."""
import math
import statistics
from dataclasses import dataclass

from scipy.special import stdtr, stdtrit

LEVEL = 0.95  # the intervals' confidence; a difference is beyond the noise at p < 1 - LEVEL
ALPHA = 1 - LEVEL


def half_width(values: list[float]) -> float | None:
    """Half the width of the 95% confidence interval of the mean of `values` (Student's t with
    n - 1 degrees of freedom, sample standard deviation); None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    return float(stdtrit(n - 1, 1 - ALPHA / 2)) * statistics.stdev(values) / math.sqrt(n)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b), the half-width of its 95% interval and the two-sided p-value of Welch's
    t-test (Welch-Satterthwaite degrees of freedom)."""
    diff: float
    half: float
    p: float

    @property
    def beyond_noise(self) -> bool:
        return self.p < ALPHA


def welch(a: list[float], b: list[float]) -> Difference | None:
    """Welch's t-test of a against b; None unless each has two values or more. Two sets without
    spread (counts that every seed agrees on) differ exactly when their means do."""
    if len(a) < 2 or len(b) < 2:
        return None
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    var_a, var_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff, se2 = mean_a - mean_b, var_a + var_b
    if se2 == 0:
        return Difference(diff, 0.0, 1.0 if diff == 0 else 0.0)
    df = se2 ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    t = diff / math.sqrt(se2)
    return Difference(diff, float(stdtrit(df, 1 - ALPHA / 2)) * math.sqrt(se2), float(2 * stdtr(df, -abs(t))))
