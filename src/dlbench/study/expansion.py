"""A study's sweep before it runs: the command line it expands into, the sweep its file adds (to
check each value first), and the experiment files that are studies."""
import functools

import yaml

from dlbench.errors import ConfigError
from dlbench.overrides import is_grid, sweeper_params


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
    makes the sweep folder before Hydra starts, so it needs to know too), and with quick=true the
    study's quick overrides before the user's, so that the user's own win."""
    if not any(a.lstrip("+").split("=")[0] in ("experiment", "quick") for a in args):
        return args
    cfg = study_config(args)
    layout, quick = cfg.get("study"), cfg.get("quick") is True  # another value is the schema's to refuse
    if quick and layout is None:
        raise ConfigError("quick", True, "shortens a study, and the experiment chosen (if any) has none",
                          f"add experiment=NAME; studies: {', '.join(studies())}")
    if layout is None:
        return args
    one_run = "hydra.mode=RUN" in args  # the study's setup, trained once
    multirun = [] if ("-m" in args or "--multirun" in args or one_run) else ["-m"]
    shorter = [str(o) for o in layout.get("quick") or []] if quick else []
    return [*multirun, *shorter, *args]


def sweep_params(args: list[str]) -> list[str]:
    """The sweep a study's file adds to the command line (hydra.sweeper.params), as overrides, for
    checking each value before anything runs; the command line's own value of a key wins."""
    if not any(a.lstrip("+").split("=")[0] == "experiment" for a in args):
        return []
    cfg = study_config(args)
    given = {a.lstrip("+~").split("=")[0] for a in args if "=" in a}
    if not is_grid(cfg.hydra.sweeper):
        return []  # Optuna's search spaces (interval, tag) are its own to check
    return [o for o in sweeper_params(cfg.hydra.sweeper) if o.split("=")[0] not in given]


def studies() -> dict[str, str]:
    """Each experiment file that is a study, with its one line."""
    from dlbench.config import CONF_DIR, group_options

    found = {}
    for name in group_options("experiment"):
        node = (yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text()) or {}).get("study")
        if node:
            found[name] = str(node.get("about", ""))
    return found
