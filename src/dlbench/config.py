"""Where the configs live, the resolvers they use, composing them outside the CLI, and `dlbench list`
of what they can name."""
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

from dlbench.errors import DataNotFoundError

# A wheel carries conf/ inside the package; an editable install reads the repository's conf/.
_PACKAGED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("dataset", "model", "optimizer", "scheduler", "regularizer", "loss", "trainer", "logger", "probe",
          "experiment")


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
    # a leading underscore marks a base that options extend (model/_base.yaml), not a choice
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


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


def list_main(args: list[str]) -> int:
    for group in GROUPS:
        options = group_options(group)
        print(f"{group + ':':<13}{' '.join(options) if options else '(none yet)'}")
    unconfigured = sorted(registered_models() - set(group_options("model")))
    if unconfigured:
        print(f"{'':<13}(registered without a config: {' '.join(unconfigured)})")
    return 0


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
        if isinstance(err.__cause__, (DataNotFoundError, ValueError)):
            raise err.__cause__ from None
        raise
