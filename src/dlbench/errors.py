"""The exceptions that cross module boundaries, in a leaf module every other one may import.

A UserError is a mistake the user can fix (a bad value, missing data, a folder in use, a corrupt
file): the terminal gets its one-line message and exit status 2; the traceback goes to the run's
train.log and summary.json only. Any other exception is a program bug and keeps its traceback.
"""

USER_ERROR_STATUS = 2  # the exit status of `dlbench` for a user error, as argparse uses it


class UserError(Exception):
    """Its message is the whole story: what is wrong and how to fix it, on one line."""


class ConfigError(UserError, ValueError):
    """A config value that is out of its type or range, or that does not fit another group."""

    def __init__(self, key: str, value, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={_show(value)}: {problem}; {fix}")


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset's files are in none of the places looked in; the message says where and how to get them."""


class CorruptFileError(UserError):
    """A file dlbench wrote or reads cannot be parsed; the message names it and what to do."""

    def __init__(self, path, problem: str, fix: str):
        self.path = path
        super().__init__(f"{path}: {problem}; {fix}")


class RunFolderError(UserError):
    """The run folder belongs to another process or to a different run."""


class Diverged(Exception):
    """The training loss became NaN/inf or exploded: the run stops and is recorded as diverged."""

    def __init__(self, info: dict):
        super().__init__(info["reason"])
        self.info = info


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def first_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one line, for a message that quotes it."""
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
