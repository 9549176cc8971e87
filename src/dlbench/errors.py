"""The exceptions that cross module boundaries, in a leaf module every other one may import."""


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places looked in; the message says where and how to get them."""


class Diverged(Exception):
    """The training loss became NaN/inf or exploded: the run stops and is recorded as diverged."""

    def __init__(self, info: dict):
        super().__init__(info["reason"])
        self.info = info
