"""Where the configs live, the resolvers they use, the options each group offers, and composing
them outside the CLI."""
import ast
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dlbench.errors import UserError, first_line

# A wheel carries conf/ inside the package; an editable install reads the repository's conf/.
_PACKAGED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("dataset", "model", "optimizer", "scheduler", "regularizer", "loss", "trainer", "logger", "probe",
          "experiment", "variant")


def path_safe(text: str, max_len: int = 120) -> str:
    """An override string as one readable folder name: no '/', no leading dot, bounded length.
    A name cut short ends in a hash of the whole, so two sweep runs that differ only past the cut
    (a long list of features) still get folders of their own."""
    safe = re.sub(r"[/\\\s]+", "_", str(text)).lstrip(".")
    if len(safe) <= max_len:
        return safe or "defaults"
    digest = hashlib.sha1(str(text).encode()).hexdigest()[:10]
    return f"{safe[:max_len - 11]}~{digest}"


def run_name(overrides: Iterable[str]) -> str:
    """The folder name of a run: its overrides, sorted, as one path-safe string. The run folders
    `dlbench train` makes, the sweep subfolders conf/train.yaml names and the runs `dlbench
    report` expects but cannot find all come from here, so they never disagree."""
    return path_safe(",".join(sorted(overrides)))


OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)  # older runs' saved hydra.yaml name it
OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def group_options(group: str) -> list[str]:
    # a leading underscore marks a base that options extend (model/_base.yaml), not a choice;
    # a subfolder's options are named with it (variant=first_mlp/mse)
    folder = CONF_DIR / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")
                  if not p.stem.startswith("_"))


def registered_models() -> set[str]:
    """The names `@register_model` gives in dlbench/models/, read from the source: importing the
    registry imports torch, which would make `dlbench list` take seconds instead of a moment."""
    names = set()
    for path in (Path(__file__).resolve().parent / "models").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "register_model" for d in node.decorator_list):
                names.add(node.name)
    return names


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The same config `dlbench train <overrides>` would run, for Python users and tests."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def build(node: DictConfig, **kwargs):
    """hydra's instantiate, but our own errors (unknown names, missing data) reach the user as
    themselves rather than wrapped in an InstantiationException's repr."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (UserError, ValueError)):
            raise err.__cause__ from None
        raise


def sweep_points(args: list[str]) -> list[list[str]]:
    """The override lists to check for a `dlbench train` command line: every override at its first
    value, then each other value of each sweep override in turn (a sum, not the product, of the
    sweep's values). Hydra's own keys (hydra.*, hydra/...) are Hydra's to check."""
    from dlbench.overrides import parse_or_explain

    multirun = "-m" in args or "--multirun" in args
    lines = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    parsed = parse_or_explain(lines)
    last = {o.get_key_element().lstrip("+~"): o for o in parsed}  # a later override of a key replaces an
    parsed = [o for o in parsed if last[o.get_key_element().lstrip("+~")] is o]  # earlier one, as in the sweep
    sweeps = [o for o in parsed if o.is_sweep_override() and not o.is_interval_sweep()]
    if sweeps and not multirun:
        raise UserError(f"{sweeps[0].input_line}: several values for one run; add -m to sweep over them "
                        f"(dlbench train -m {sweeps[0].input_line}), or write a list: "
                        f"{sweeps[0].get_key_element()}=[{','.join(sweeps[0].sweep_string_iterator())}]")
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    values = {o.get_key_element(): list(o.sweep_string_iterator()) for o in sweeps}
    empty = next((o for o in sweeps if not values[o.get_key_element()]), None)
    if empty is not None:  # range(0,0), choice() : a sweep of no runs
        raise UserError(f"{empty.input_line}: a sweep of no value, so no run; give it one or more "
                        f"(e.g. {empty.get_key_element()}=range(0,3))")
    first = {key: f"{key}={vals[0]}" for key, vals in values.items()}
    points = [[*fixed, *first.values()]]
    for key, vals in values.items():
        points += [[*fixed, *{**first, key: f"{key}={v}"}.values()] for v in vals[1:]]
    return points


def compose_or_explain(overrides: list[str]) -> DictConfig:
    """compose(), with Hydra's composition errors turned into one line that names the override
    and the fix."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    try:
        return compose(overrides)
    except MissingConfigException as err:
        # Hydra says "Could not find 'model/nosuch'" for a choice, "Could not load" for one in a list
        missing = re.search(r"Could not (?:find|load) '([^']+)'", str(err))
        if missing is None:  # another wording: Hydra's own first line, never placeholders
            raise UserError(f"{' '.join(overrides)}: {first_line(err)}; check the group and option "
                            "(dlbench list)") from None
        group, _, option = missing.group(1).rpartition("/")
        given = next((o for o in reversed(overrides) if o.lstrip("+~").split("=")[0] == group), f"{group}={option}")
        valid = group_options(group) if group in GROUPS else []
        raise UserError(f"{given}: no {group} config named {option!r}; "
                        f"valid: {', '.join(valid) if valid else '(see dlbench list)'}") from None
    except ConfigCompositionException as err:
        raise UserError(_composition_message(str(err), overrides)) from None


def _composition_message(text: str, overrides: list[str]) -> str:
    import difflib

    if (absent := re.search(r"Could not override '([^']+)'", text)):
        key = absent.group(1)
        given = next((o for o in overrides if o.split("=")[0] == key), key)
        group = key.split(".")[0]
        if key in known_keys():  # a key of the default option, not of the one chosen
            chosen = next((o.split("=", 1)[1] for o in overrides if o.split("=")[0] == group), "?")
            return f"{given}: {group}={chosen} has no key {key.split('.', 1)[-1]}; drop it, or choose a {group} that has it"
        close = difflib.get_close_matches(key, known_keys(), n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"{given}: no such key; {hint}(a key the config lacks is added with a +: +{given})"
    if (present := re.search(r"An item is already at '([^']+)'", text)):
        given = next((o for o in overrides if o.lstrip("+").split("=")[0] == present.group(1)), present.group(1))
        return f"{given}: {present.group(1)} is already in the config; drop the + to set it"
    line = next((ln for ln in text.splitlines() if ln.strip()), text)
    return f"{' '.join(overrides)}: {line.strip()}; check the key and the value (dlbench list, dlbench train --help)"


def known_keys() -> list[str]:
    """Every key of the default config, dotted: the candidates for a mistyped one."""
    def walk(node, prefix=""):
        for key, value in node.items():
            yield f"{prefix}{key}"
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
    return list(walk(OmegaConf.to_container(compose([]), resolve=False)))
