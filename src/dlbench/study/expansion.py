"""A study's sweep before it runs: the command line it expands into (with `seeds=N`, each cell N
times), the sweep its file adds (to check each value first), and the experiment files that are
studies."""
import functools

import yaml

from dlbench.errors import ConfigError
from dlbench.overrides import is_grid, override_key, parse_or_explain, sweeper_params

EXPANDED = ("experiment", "quick", "seeds")  # the keys that make a command line more than it says


def study_config(args: list[str]):
    """The composed config (with Hydra's node) of a `dlbench train` command line, at every sweep
    override's first value."""
    return _composed(tuple(args))


@functools.lru_cache(maxsize=4)  # expand and the check before the sweep ask for the same command line
def _composed(args: tuple[str, ...]):
    from hydra import compose, initialize_config_dir

    from dlbench.config import CONF_DIR, compose_or_explain, sweep_points

    if "--into" in args:  # its folder is not an override
        at = args.index("--into")
        args = (*args[:at], *args[at + 2:])
    first = sweep_points([*args, "-m"])[0]
    compose_or_explain(first)  # a bad override is answered in one line before Hydra's own compose
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=first, return_hydra_config=True)


def expand(args: list[str]) -> list[str]:
    """The command line a study runs: -m (the file sets hydra.mode=MULTIRUN for Hydra; dlbench
    makes the sweep folder before Hydra starts, so it needs to know too), with quick=true the
    study's quick overrides before the user's, so that the user's own win, and with seeds=N (on
    the command line or in the study's file) the seed sweep that repeats every cell."""
    if not any(override_key(a) in EXPANDED for a in args):
        return args
    cfg = study_config(args)
    layout, quick = cfg.get("study"), cfg.get("quick") is True  # another value is the schema's to refuse
    if quick and layout is None:
        raise ConfigError("quick", True, "shortens a study, and the experiment chosen (if any) has none",
                          f"add experiment=NAME; studies: {', '.join(studies())}")
    one_run = "hydra.mode=RUN" in args  # the study's setup, trained once
    shorter = [str(o) for o in (layout or {}).get("quick") or []] if quick else []
    seeds = repeats(study_config([*shorter, *args]) if shorter else cfg, args, one_run)  # quick may set seeds
    if layout is None and not seeds:
        return args
    multirun = [] if ("-m" in args or "--multirun" in args or one_run) else ["-m"]
    kept = [a for a in args if not (seeds and override_key(a) in ("seed", "seeds"))]
    return [*multirun, *shorter, *kept, *seeds]


def repeats(cfg, args: list[str], one_run: bool) -> list[str]:
    """The overrides that run each cell of the sweep `seeds` times: seeds seed, seed+1, ...,
    seed+N-1, trained by the fused launcher (N runs of one architecture as one vectorised model,
    each with its own numbers) unless a launcher was chosen. [] for seeds=1, or when the sweep
    already is that seed range (a sweep resumed from its record)."""
    n, base = cfg.get("seeds"), cfg.get("seed")
    if not (isinstance(n, int) and not isinstance(n, bool) and n > 1 and isinstance(base, int)):
        return []  # one run a cell, or a value the schema refuses before anything runs
    if one_run and not any(override_key(a) == "seeds" for a in args):
        return []  # a study's setup trained once: the study's own seeds are for its sweep
    wanted = [str(s) for s in range(base, base + n)]
    swept = [list(o.sweep_string_iterator()) for o in parse_or_explain(
        [a for a in [*sweeper_params(cfg.hydra.sweeper), *args] if override_key(a) == "seed"])
        if o.is_sweep_override()]
    if swept and swept[-1] == wanted:
        return []
    clash = (("the sweep sets seed too", "drop seeds=N or the seed sweep") if swept
             else ("hydra.mode=RUN trains one run", "drop one of them") if one_run
             else ("an Optuna search draws its own points", "use a grid sweep") if not is_grid(cfg.hydra.sweeper)
             else None)
    if clash:
        raise ConfigError("seeds", n, f"repeats every cell with seeds {base} to {base + n - 1}, and {clash[0]}",
                          clash[1])
    basic = str(cfg.hydra.launcher.get("_target_", "")).endswith("BasicLauncher")
    chosen = any(a.startswith(("hydra/launcher=", "hydra.launcher.")) for a in args) or study_launcher(cfg)
    return [f"seed=range({base},{base + n})", *(["hydra/launcher=fused"] if basic and not chosen else [])]


def study_launcher(cfg) -> bool:
    """Whether the experiment file chose a launcher (`override /hydra/launcher: basic` keeps a study's
    runs apart, so that each run's seconds are its own)."""
    from dlbench.config import CONF_DIR

    name = cfg.hydra.runtime.choices.get("experiment")
    path = CONF_DIR / "experiment" / f"{name}.yaml"
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", []) if name and path.is_file() else []
    return any(isinstance(d, dict) and "override /hydra/launcher" in d for d in defaults)


def sweep_params(args: list[str]) -> list[str]:
    """The sweep a study's file adds to the command line (hydra.sweeper.params), as overrides, for
    checking each value before anything runs; the command line's own value of a key wins."""
    if not any(override_key(a) == "experiment" for a in args):
        return []
    cfg = study_config(args)
    given = {override_key(a) for a in args if "=" in a}
    if not is_grid(cfg.hydra.sweeper):
        return []  # Optuna's search spaces (interval, tag) are its own to check
    return [o for o in sweeper_params(cfg.hydra.sweeper) if override_key(o) not in given]


def studies() -> dict[str, str]:
    """Each experiment file that is a study, with its one line."""
    from dlbench.config import CONF_DIR, group_options

    found = {}
    for name in group_options("experiment"):
        node = (yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text()) or {}).get("study")
        if node:
            found[name] = str(node.get("about", ""))
    return found
