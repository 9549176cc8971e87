"""Everything a run holds while it trains; callbacks read it, the checkpoint saves it."""
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from dlbench.data import Batches, Dataset
from dlbench.optim import Schedule


LOWER_IS_BETTER = ("loss", "ppl")  # a dataset's metric; accuracy is the other way


@dataclass
class RunState:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: Dataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module           # evaluation's loss; training may add penalties (train_loss)
    train_loss: nn.Module
    train_batches: Batches       # a new order each pass, drawn from `generator`
    generator: torch.Generator
    clip_grad: float | None = None
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
    extras: dict = field(default_factory=dict)   # callbacks' additions to summary.json
    images: dict = field(default_factory=dict)   # name -> (H, W, 3) uint8, for TensorBoard
    tb: object | None = None                     # the TensorBoard writer, when logger.enabled

    @property
    def monitor(self) -> str:
        """The metric for best/ and the target: the dataset's metric (acc; loss for a regression,
        ppl for a language model) on the validation split, or on the test split when there is none."""
        return f"{'val' if self.data.val is not None else 'test'}/{self.data.metric}"

    def improves(self, value: float) -> bool:
        best = self.best.get(self.monitor)
        return best is None or (value < best if self.data.metric in LOWER_IS_BETTER else value > best)

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + (self.ended or time.perf_counter()) - self.started

    def end_epoch(self, metrics: dict, train_seconds: float, train_examples: int) -> None:
        self.epoch = metrics["epoch"]
        self.history.append(metrics)
        self.train_seconds += train_seconds
        self.train_examples += train_examples
        value = metrics.get(self.monitor)
        if value is not None and self.improves(value):
            self.best = {self.monitor: value, "epoch": self.epoch}
