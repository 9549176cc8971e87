"""A search space written as Hydra's sweep overrides (hydra.sweeper.params, or on the command line):

    lr: tag(log, interval(1e-4, 1))   a float on a log scale (ints given: an int)
    dropout: interval(0, 0.5)         a float, uniform
    model.hidden: choice([64],[256])  one of these values
    batch_size: range(32, 257, 32)    32, 64, ..., 256 (Python's range: the stop is left out)
    epochs: 10                        fixed: every trial gets it

The grid sampler walks every point of a space of choices and ranges."""
import math
from dataclasses import dataclass, field

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from dlbench.errors import ConfigError
from dlbench.overrides import parse_or_explain


@dataclass
class Space:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> the override as written (+key=v, ~key kept)

    def overrides(self, params: dict) -> list[str]:
        """A trial's overrides: the fixed ones (the command line's among them), then its drawn values."""
        drawn = [f"{key}={value_text(params[key])}" for key in self.distributions]
        return [*self.fixed.values(), *drawn]

    def enqueued(self, points) -> list[dict]:
        """hydra.sweeper.enqueue: points of the space to try first, in order (Optuna's enqueue_trial),
        say the known-good defaults; a key it does not search is one line."""
        from omegaconf import OmegaConf

        points = OmegaConf.to_container(points, resolve=True) if OmegaConf.is_config(points) else points or []
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            raise ConfigError("hydra.sweeper.enqueue", points, "is a list of points to try first",
                              "write hydra.sweeper.enqueue='[{lr: 0.1}, {lr: 0.01}]'")
        for point in points:
            unknown = [k for k in point if k not in self.distributions]
            if unknown:
                raise ConfigError("hydra.sweeper.enqueue", point, f"sets {', '.join(unknown)}, which the search "
                                  "does not draw", f"give keys of its space: {', '.join(self.distributions)}")
        return points

    def grid(self) -> dict[str, list]:
        """Every value of each key, for the grid sampler; a continuous interval has none to list."""
        values = {}
        for key, d in self.distributions.items():
            if isinstance(d, CategoricalDistribution):
                values[key] = list(d.choices)
            elif d.step is not None and not getattr(d, "log", False):
                n = int(round((d.high - d.low) / d.step)) + 1
                values[key] = [d.low + i * d.step for i in range(n)]
            else:
                raise ConfigError(f"hydra.sweeper.params.{key}", _written(d), "is continuous, and the grid sampler "
                                  "walks a list of points", "write choice(...) or range(...), or use sampler.name=tpe")
        return values


def value_text(value) -> str:
    """A drawn value as an override's value: a float keeps every digit it has."""
    return repr(value) if isinstance(value, float) else str(value)


def _written(d: BaseDistribution) -> str:
    if isinstance(d, CategoricalDistribution):
        return f"choice({','.join(map(str, d.choices))})"
    return f"{'tag(log, ' if d.log else ''}interval({d.low}, {d.high}){')' if d.log else ''}"


def parse_space(params: list[str], command_line: list[str] = ()) -> Space:
    """The space of `key=value` overrides: `params` a file's hydra.sweeper.params, then the command
    line's, a later one of a key replacing an earlier one. A value Optuna cannot draw is one line
    naming the key as it was written (hydra.sweeper.params.lr, or lr)."""
    from hydra.core.override_parser.types import Transformer

    space = Space()
    written = [*(("hydra.sweeper.params.", o) for o in parse_or_explain(list(params))),
               *(("", o) for o in parse_or_explain(list(command_line)))]
    for prefix, o in written:
        key = o.get_key_element().lstrip("+~")
        name = prefix + key
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if not o.is_sweep_override():
            space.fixed[key] = o.input_line if not prefix else f"{key}={o.get_value_element_as_str()}"
        elif o.is_choice_sweep() or (o.is_range_sweep() and o.value().shuffle):
            choices = list(o.sweep_iterator(transformer=Transformer.encode))
            if not choices:
                raise ConfigError(name, o.get_value_element_as_str(), "has no value to draw", "give it one or more")
            space.distributions[key] = CategoricalDistribution(choices)
        elif o.is_range_sweep():
            space.distributions[key] = _range(name, o.value())
        elif o.is_interval_sweep():
            space.distributions[key] = _interval(name, o.value())
        else:  # a glob: the names it matches are Hydra's config groups, not Optuna's to draw
            raise ConfigError(name, o.get_value_element_as_str(), "is not a search space",
                              "write interval(a, b), tag(log, interval(a, b)), choice(...) or range(...)")
    return space


def _range(name: str, r) -> BaseDistribution:
    start, stop, step = r.start, r.stop, r.step
    values = [start + i * step for i in range(max(0, math.ceil((stop - start) / step)))] if step else []
    if not values:
        raise ConfigError(name, f"range({r.start},{r.stop},{r.step})", "has no value", "give a stop past the start")
    low, high = min(values), max(values)
    if all(isinstance(v, int) for v in (r.start, r.stop, r.step)):
        return IntDistribution(low, high, step=abs(step))
    return FloatDistribution(low, high, step=abs(step))


def _interval(name: str, iv) -> BaseDistribution:
    log = "log" in iv.tags
    low, high = iv.start, iv.end
    written = f"{'tag(log, ' if log else ''}interval({low}, {high}){')' if log else ''}"
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))) or not low < high:
        raise ConfigError(name, written, "needs a low end below its high end", "write interval(low, high)")
    if log and low <= 0:
        raise ConfigError(name, written, "is on a log scale, which needs a positive low end",
                          "start above 0, or drop tag(log, ...)")
    if not all(map(math.isfinite, (low, high))):
        raise ConfigError(name, written, "needs finite ends", "write interval(low, high) with numbers")
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)
