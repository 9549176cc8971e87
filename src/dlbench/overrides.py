"""Override strings and a sweep's record, without torch: Hydra's parse of `key=value` overrides,
the grid and the count of a sweep, the keys it varies, and sweep_dir/multirun.yaml (the record
Hydra writes of a sweep before its first job) read in one place."""
import math
from pathlib import Path

import yaml

from dlbench.errors import CorruptFileError, UserError, first_line

MULTIRUN = "multirun.yaml"


# ---------------------------------------------------------------- parsing

def override_key(text: str) -> str:
    """The key an override line sets: `+seed=1`, `~seed` and `seed=0,1` all set `seed`."""
    return text.lstrip("+~").split("=")[0]


def parse(lines: list[str]) -> list:
    """Hydra's Override objects of override strings; raises Hydra's OverrideParseException for a
    line that cannot be parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(lines))


def parse_or_explain(lines: list[str]) -> list:
    """parse(), with a line that cannot be parsed named in a one-line UserError."""
    from hydra.errors import OverrideParseException

    try:
        return parse(lines)
    except OverrideParseException as err:
        bad = next((a for a in lines if _unparsable(a)), " ".join(lines))
        raise UserError(f"{bad}: cannot be parsed as an override ({first_line(err)}); write key=value, and "
                        f"quote a value with spaces, commas or brackets: key='a value'") from None


def _unparsable(override: str) -> bool:
    from hydra.errors import OverrideParseException

    try:
        parse([override])
        return False
    except OverrideParseException:
        return True


# ---------------------------------------------------------------- a sweep's grid

def sweeper_params(sweeper) -> list[str]:
    """The sweep a sweeper node carries itself (hydra.sweeper.params, as an experiment file sets
    it), as overrides."""
    return [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]


def is_grid(sweeper) -> bool:
    """Whether the sweeper is Hydra's basic one, whose runs are the grid of its overrides (an
    Optuna search decides its runs as it goes)."""
    return str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def grid(hydra_cfg: dict) -> list[list[str]]:
    """The runs of the grid a recorded sweep's hydra node describes, each as its overrides; [] for
    a sweeper that is not a grid, or a grid that cannot be rebuilt without the configs (a glob)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    sweeper = hydra_cfg.get("sweeper", {})
    if not is_grid(sweeper):
        return []
    params = sweeper_params(sweeper)
    try:
        return BasicSweeper.split_arguments(parse([*params, *hydra_cfg["overrides"]["task"]]), None)[0]
    except HydraException:
        return []


def planned_total(config) -> tuple[int | None, list[str]]:
    """How many runs the sweep of a config with Hydra's node has (None when the sweeper decides as
    it goes and sets no count), and the keys that vary."""
    from hydra.errors import HydraException

    sweeper = config.hydra.sweeper
    try:
        parsed = parse([*sweeper_params(sweeper), *config.hydra.overrides.task])
    except HydraException:
        return None, []
    counts: dict[str, int | None] = {}
    for o in parsed:  # a later override of a key replaces an earlier one, as in Hydra's sweeper
        sweep = o.is_discrete_sweep() and o.value_type.name != "GLOB_CHOICE_SWEEP"
        counts[o.get_key_element()] = len(list(o.sweep_string_iterator())) if sweep else (
            None if o.is_sweep_override() else 1)
    keys = [k for k, n in counts.items() if n != 1]
    if is_grid(sweeper):
        return (None if None in counts.values() else math.prod(counts.values())), keys
    return (int(sweeper.n_trials) if sweeper.get("n_trials") else None), keys


def swept_keys() -> list[str]:
    """Inside a sweep's job, the keys its sweep varies (from the sweep folder's multirun.yaml, which
    Hydra writes before any job starts, else the sweeper's own params); [] outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hydra_cfg = HydraConfig.get()
    try:
        record = read_multirun(Path(str(hydra_cfg.sweep.dir)))
        config = None if record is None else OmegaConf.create(record)
    except Exception:  # unreadable: the job trains on, its keys read from the sweeper
        config = None
    if config is None:  # not written (a sweeper that saves it last) or unreadable
        config = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})
        config.hydra.overrides.task = []  # the job's own values, not the sweep's
    return [key.lstrip("+~") for key in planned_total(config)[1]]


# ---------------------------------------------------------------- the record of a sweep

def read_multirun(sweep_dir: Path) -> dict | None:
    """sweep_dir/multirun.yaml as a dict (an empty file as {}), or None where there is none.
    Raises CorruptFileError when it is not YAML of a mapping."""
    path = Path(sweep_dir) / MULTIRUN
    if not path.is_file():
        return None
    try:
        record = yaml.safe_load(path.read_text()) or {}
        if not isinstance(record, dict):
            raise TypeError(f"a YAML {type(record).__name__} where a mapping belongs")
    except (yaml.YAMLError, UnicodeDecodeError, TypeError) as err:
        raise not_a_record(path, err) from err
    return record


def not_a_record(path: Path, err: Exception) -> CorruptFileError:
    """The error for a multirun.yaml that does not say what its sweep ran."""
    return CorruptFileError(path, f"is not the record of a sweep ({type(err).__name__}: {first_line(err)})",
                            f"restore it, or run the sweep again with its overrides and --into {path.parent}")
