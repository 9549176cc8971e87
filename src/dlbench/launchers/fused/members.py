"""A member of a fused group (one run, its state and callbacks), the log handler that sends each
member's lines to its own train.log, the ledger that keeps each run's clock its own, and each
member's own random state."""
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from hydra.core.utils import JobReturn
from omegaconf import DictConfig

from dlbench.callbacks import Callbacks
from dlbench.run.lifecycle import Run
from dlbench.run.state import RunState


@dataclass(eq=False)  # members are told apart by identity (sets of them)
class Member:
    """One run of a group: the run, opened in its folder as `dlbench train` opens it (its folder
    held until the run ends), the random state its dropout draws from (torch's global one,
    alone), its train.log, and its job (which its Hydra config is the sweep's of)."""
    run: Run
    rng: torch.Generator
    logs: logging.Handler
    hydra: DictConfig
    job: JobReturn | None = None

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def callbacks(self) -> Callbacks:
        return self.run.callbacks

    @property
    def name(self) -> str:
        return self.state.run_dir.name


class MemberLogs(logging.Handler):
    """The run log of whichever member is speaking: each member's lines go to its own train.log."""

    def __init__(self):
        super().__init__()
        self.current: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.current is not None:
            self.current.handle(record)


class Ledger:
    """Whose work the launcher is doing. The runs of a sweep are prepared one after another, trained
    in groups (their shared steps) or alone, and evaluated, recorded and drawn one after another;
    each run's clock (wall_seconds, epoch_seconds and so seconds_to_target) counts what is done for
    it, its own work and its group's, and leaves out what is done only for other runs while it
    waits, as it would be timed alone."""

    def __init__(self) -> None:
        self.scope: list[list[Member]] = [[]]  # the outermost: every member prepared so far

    def add(self, member: Member) -> None:
        self.scope[0].append(member)

    @contextmanager
    def only(self, members: list[Member]):
        """Work done for these members alone: the others of the enclosing work, while their runs
        last, are credited its time."""
        outer, began = self.scope[-1], time.perf_counter()
        self.scope.append(members)
        try:
            yield
        finally:
            self.scope.pop()
            spent, inside = time.perf_counter() - began, set(map(id, members))
            for m in outer:
                if id(m) not in inside and m.state.ended is None:
                    m.state.elsewhere += spent


@contextmanager
def member_rng(member: Member):
    """torch's global random state set to the member's while its epoch ends (a checkpoint saves
    it; a probe that samples draws from it), and the member's taken back after."""
    cuda = member.rng.device.type == "cuda"
    saved = torch.cuda.get_rng_state() if cuda else torch.get_rng_state()
    (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(member.rng.get_state())
    try:
        yield
    finally:
        member.rng.set_state(torch.cuda.get_rng_state() if cuda else torch.get_rng_state())
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(saved)


def own_rng(device: torch.device) -> torch.Generator:
    """A generator holding torch's global random state now: what this run's dropout would draw from alone."""
    rng = torch.Generator(device=device)
    rng.set_state(torch.cuda.get_rng_state() if device.type == "cuda" else torch.get_rng_state())
    return rng

