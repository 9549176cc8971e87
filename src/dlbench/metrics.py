"""Which way a metric is better, read from its name's last part: the one place that knows it.
The run (best/, early stopping's default), the tasks and `dlbench report` all ask here; it loads no torch."""
from collections.abc import Callable

# what a metric's name ends with, and which way is better (val/ppl, wall_seconds, epochs_to_target)
LOWER_IS_BETTER = ("loss", "ppl", "seconds", "epochs_to_target")
HIGHER_IS_BETTER = ("acc",)


def direction(metric: str) -> str | None:
    """"min", "max", or None for numbers with no better side (params, lr)."""
    if metric.endswith(HIGHER_IS_BETTER):
        return "max"
    if metric.endswith(LOWER_IS_BETTER):
        return "min"
    return None


def goal(metric: str, default: Callable | None = None) -> Callable | None:
    """max or min, the function that picks the best of a list of the metric's values."""
    return {"max": max, "min": min}.get(direction(metric), default)


def improves(metric: str, value: float, best: float | None) -> bool:
    """Whether value beats best; a metric with no direction is taken as higher-is-better."""
    if best is None:
        return True
    return value < best if direction(metric) == "min" else value > best
