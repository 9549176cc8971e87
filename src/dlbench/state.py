"""Everything a run holds while it trains; callbacks read it, the checkpoint saves it."""
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from dlbench.data import Dataset


@dataclass
class RunState:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: Dataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    loss_fn: nn.Module
    generator: torch.Generator  # draws each epoch's batch order
    overrides: list[str] = field(default_factory=list)
    epoch: int = 0              # epochs completed
    global_step: int = 0
    history: list[dict] = field(default_factory=list)  # one metrics dict per completed epoch
    best: dict = field(default_factory=dict)           # {"<monitor>": value, "epoch": e}
    first_loss: float | None = None
    train_seconds: float = 0.0  # time inside train_one_epoch, for throughput
    train_examples: int = 0
    wall_before: float = 0.0    # wall seconds spent by earlier processes of a resumed run
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None  # set when the run stops, so every summary of it agrees
    status: str = "running"
    error: str | None = None
    diverged: dict | None = None
    should_stop: bool = False
    notes: dict = field(default_factory=dict)  # extra summary.json fields a task records (generated text)

    @property
    def monitor(self) -> str:
        """The metric for best/target: val/acc, or test/acc when there is no validation split."""
        return "val/acc" if self.data.val is not None else "test/acc"

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + (self.ended or time.perf_counter()) - self.started

    def end_epoch(self, metrics: dict, train_seconds: float, train_examples: int) -> None:
        self.epoch = metrics["epoch"]
        self.history.append(metrics)
        self.train_seconds += train_seconds
        self.train_examples += train_examples
        value = metrics.get(self.monitor)
        if value is not None and value > self.best.get(self.monitor, float("-inf")):
            self.best = {self.monitor: value, "epoch": self.epoch}
