"""The paths a user types (--into, --out, dataset.root, dataset.mirror, dataset.path, $DLBENCH_DATA),
checked once, here, with one message style; and a path handed to Hydra as one quoted value, whatever
characters it holds (spaces, `=`, commas, quotes, non-ASCII)."""
from pathlib import Path

from dlbench.errors import UserError


class PathError(UserError):
    """A folder a user named that cannot be one: empty, or a file."""


def user_folder(text, what: str, exists: bool = False) -> Path:
    """The folder `text` names, `~` expanded: `what` is how the user gave it (--into, dataset.root)."""
    if text is None or not str(text).strip():
        raise PathError(f"{what} '': an empty folder name (an unset shell variable?); give a folder")
    path = Path(str(text)).expanduser()
    if path.exists() and not path.is_dir():
        raise PathError(f"{what} {text}: is a file, not a folder; give a folder"
                        f"{'' if exists else ' (it is made if missing)'}")
    if exists and not path.is_dir():
        raise PathError(f"{what} {text}: no such folder; give a folder that exists")
    return path


def hydra_quote(path) -> str:
    """`path` as one quoted value of a Hydra override: a quote or backslash in it escaped."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"
