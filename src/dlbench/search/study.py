"""The Optuna parts of a search, built from its sweeper's config (conf/hydra/sweeper/search.yaml), the
journal that holds the study, and the check of that config before anything runs: a bad sampler,
pruner, option or space is one line naming the key."""
import inspect
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbench import choices
from dlbench.errors import ConfigError
from dlbench.search import JOURNAL
from dlbench.search.space import Space, parse_space

TARGET = "hydra_plugins.dlbench_launchers.search_sweeper.SearchSweeper"
NOT_OPTIONS = {"search_space", "seed_"}  # what dlbench gives a sampler itself


def is_search(sweeper) -> bool:
    return str((sweeper or {}).get("_target_", "")) == TARGET


def _samplers() -> dict:
    from optuna import samplers

    return choices.implement(choices.SEARCH_SAMPLERS, {
        "tpe": samplers.TPESampler, "random": samplers.RandomSampler, "grid": samplers.GridSampler,
        "cmaes": samplers.CmaEsSampler, "qmc": samplers.QMCSampler, "gp": samplers.GPSampler})


def _pruners() -> dict:
    from optuna import pruners

    return choices.implement(choices.SEARCH_PRUNERS, {
        "median": pruners.MedianPruner, "percentile": pruners.PercentilePruner,
        "successive_halving": pruners.SuccessiveHalvingPruner, "hyperband": pruners.HyperbandPruner,
        "none": pruners.NopPruner})


NEEDS = {"cmaes": ("cmaes", "pip install cmaes")}  # a sampler's own package, checked before the search
# dlbench's defaults where they differ from Optuna's (each overridable as the pruner's own key): ASHA's
# first rung at epoch 1 and a third going on, as scripts/bench_search.py measured it
DEFAULTS = {"successive_halving": {"min_resource": 1, "reduction_factor": 3}}


def _part(kind: str, node, table: dict, default: str, say: bool = False, **given):
    """A sampler or pruner: `name` picks the class, every other key is an argument of it."""
    options = dict(OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node or {})
    name = options.pop("name", default)
    if name not in table:
        raise ConfigError(f"hydra.sweeper.{kind}.name", name, f"is not a {kind}", f"valid: {', '.join(table)}")
    if name in NEEDS:
        import importlib.util

        package, fix = NEEDS[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"hydra.sweeper.{kind}.name", name, f"needs the {package} package", fix)
    cls = table[name]
    valid = [p for p in inspect.signature(cls).parameters if p not in NOT_OPTIONS and p not in given]
    others = {p for other in table.values() for p in inspect.signature(other).parameters}
    for key, value in list(options.items()):
        if key in valid:
            continue
        if key not in others:  # a typo, not another pruner's option
            raise ConfigError(f"hydra.sweeper.{kind}.{key}", value, f"is not an option of the {name} {kind}",
                              f"valid: {', '.join(valid) or 'none'}")
        del options[key]  # the option of another (a file's median settings, with name=none on the command line)
        if say:
            print(f"dlbench: hydra.sweeper.{kind}.{key}={value}: not an option of the {name} {kind}; left out",
                  file=sys.stderr)
    try:
        return cls(**given, **{**DEFAULTS.get(name, {}), **options})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"hydra.sweeper.{kind}", {"name": name, **options}, f"the {name} {kind} refused it: {err}",
                          f"see optuna.{'samplers' if kind == 'sampler' else 'pruners'}.{cls.__name__}") from None


def build_sampler(node, space: Space, say: bool = False):
    name = (node or {}).get("name", "tpe")
    return _part("sampler", node, _samplers(), "tpe", say, **({"search_space": space.grid()} if name == "grid" else {}))


def build_pruner(node, say: bool = False):
    """say: print each option left out (once, before the search; not again in every run)."""
    return _part("pruner", node, _pruners(), "successive_halving", say)


def direction(sweeper) -> str:
    value = str(sweeper.get("direction", "maximize")).lower()
    if value not in choices.SEARCH_DIRECTIONS:
        raise ConfigError("hydra.sweeper.direction", value, "is not a direction",
                          f"valid: {', '.join(choices.SEARCH_DIRECTIONS)}")
    return value


def space_of(sweeper, arguments: list[str]) -> Space:
    """The space: the sweeper's params, then the command line's overrides (which win)."""
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    return parse_space(params, [a for a in arguments if not a.lstrip("+~").startswith("hydra")])


IN_PROCESS = ("BasicLauncher", "FusedLauncher")  # they train in this process: one trial at a time


def check(sweeper, arguments: list[str], launcher=None, say: bool = True) -> Space:
    """Everything a search needs, built once before any run: the space, sampler, pruner and counts."""
    for key in ("n_trials", "n_jobs"):
        value = sweeper.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(f"hydra.sweeper.{key}", value, "is a count", "give a whole number, 1 or more")
    target = str((launcher or {}).get("_target_", ""))
    if sweeper.get("n_jobs", 1) > 1 and target.endswith(IN_PROCESS):
        raise ConfigError("hydra.sweeper.n_jobs", sweeper.n_jobs, f"runs trials at once, and the "
                          f"{target.split('.')[-1]} trains in this process, one run at a time",
                          "add hydra/launcher=joblib hydra.launcher.n_jobs=N, or start more `dlbench train` "
                          "processes --into this folder")
    if not str(sweeper.get("study_name") or "").strip():
        raise ConfigError("hydra.sweeper.study_name", sweeper.get("study_name"), "names the study", "give a name")
    direction(sweeper)
    space = space_of(sweeper, arguments)
    if not space.distributions:
        raise ConfigError("hydra.sweeper.params", dict(sweeper.get("params") or {}), "has nothing to search",
                          "give a key a space, e.g. hydra.sweeper.params.lr='tag(log, interval(1e-4, 1))'")
    space.enqueued(sweeper.get("enqueue"))
    build_sampler(sweeper.get("sampler"), space, say)
    build_pruner(sweeper.get("pruner"), say)
    return space


def storage(sweep_dir: Path):
    """The journal file in the sweep folder: a study without a server, that several processes (on
    one machine, or on a cluster's shared file system) read and append to."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # dlbench says what a search does
    path = str(sweep_dir / JOURNAL)
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
