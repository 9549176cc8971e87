"""Everything a run holds while it trains; callbacks read it, the checkpoint saves it."""
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlbench.artifacts import epochs_to_target
from dlbench.metrics import improves
from dlbench.models.registry import count_params
from dlbench.optim import Schedule
from dlbench.precision import FP32, Precision
from dlbench.run.recorder import Recorder
from dlbench.status import Status
from dlbench.tasks import Task


@dataclass
class RunState:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: object                 # a dlbench.data Dataset or TextDataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module           # evaluation's loss; training may add penalties (train_loss)
    train_loss: nn.Module
    train_batches: object        # a new order each pass, drawn from `generator`
    generator: torch.Generator
    recorder: Recorder
    clip_grad: float | None = None
    precision: Precision = FP32  # number format, grad scaler, channels-last inputs
    overrides: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)     # the keys the run's sweep varies
    hparams: dict = field(default_factory=dict)        # what TensorBoard's HParams tab shows of the run
    provenance: dict = field(default_factory=dict)     # the code, software, machine and command (run.provenance)
    epoch: int = 0              # epochs completed
    global_step: int = 0
    history: list[dict] = field(default_factory=list)  # one metrics dict per completed epoch
    best: dict = field(default_factory=dict)           # {"<monitor>": value, "epoch": e}
    train_seconds: float = 0.0  # time inside train_one_epoch, for throughput
    train_examples: int = 0
    wall_before: float = 0.0    # wall seconds spent by earlier processes of a resumed run
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None  # set when the run stops, so every summary of it agrees
    elsewhere: float = 0.0      # seconds between started and ended spent on other runs (the fused launcher's)
    status: Status = Status.RUNNING
    error: str | None = None
    diverged: dict | None = None  # why, when the run diverged
    should_stop: bool = False     # asked by a callback (early stopping, divergence at an epoch's end)
    _config: dict | None = field(default=None, repr=False)

    def config(self) -> dict:
        """The run's config resolved to plain values, as checkpoints keep it: converted once (it
        does not change while the run trains; converting costs milliseconds, every epoch)."""
        if self._config is None:
            self._config = OmegaConf.to_container(self.cfg, resolve=True)
        return self._config

    @property
    def task(self) -> Task:
        return self.data.task

    @property
    def monitor(self) -> str:
        return self.task.monitor(self.data)

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + (self.ended or time.perf_counter()) - self.started - self.elsewhere

    def end_epoch(self, metrics: dict, train_seconds: float, train_examples: int) -> None:
        self.epoch = metrics["epoch"]
        self.history.append(metrics)
        self.train_seconds += train_seconds
        self.train_examples += train_examples
        value = metrics.get(self.monitor)
        if value is not None and improves(self.monitor, value, self.best.get(self.monitor)):
            self.best = {self.monitor: value, "epoch": self.epoch}

    def summary(self) -> dict:
        """summary.json: the run as it stands now."""
        cfg, task, last = self.cfg, self.task, (self.history[-1] if self.history else {})
        epoch_hit, seconds_hit = (epochs_to_target(self.history, self.monitor, cfg.target_acc) if task.has_target
                                  else (None, None))
        return {
            "status": self.status,
            "task": task.name,
            "dataset": cfg.dataset.name,
            "normalize": getattr(self.data, "normalize", None),  # images: how pixels were scaled; None for other data
            "model": cfg.model.name,
            "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1],
            "loss": cfg.loss._target_.rsplit(".", 1)[-1],
            "epochs": cfg.epochs,
            "epochs_completed": self.epoch,
            **{k: v for k, v in last.items() if k != "epoch"},  # the last epoch's metrics
            f"best/{self.monitor}": self.best.get(self.monitor),
            "best/epoch": self.best.get("epoch"),
            "target_acc": cfg.target_acc if task.has_target else None,
            "target_metric": self.monitor,
            "epochs_to_target": epoch_hit,
            "seconds_to_target": seconds_hit,
            "params": count_params(self.model),
            "wall_seconds": round(self.wall_seconds, 3),
            "train_examples_per_second": (round(self.train_examples / self.train_seconds, 1)
                                          if self.train_seconds else None),
            "device": str(self.device),
            **self.precision.summary(),
            "compile": bool(cfg.trainer.get("compile", False)),
            "threads": torch.get_num_threads(),  # throughput depends on it; parallel sweeps split the cores
            "flush_denormal": bool(cfg.trainer.get("flush_denormal", True)),
            "seed": cfg.seed,
            "overrides": self.overrides,
            "report_columns": task.report_columns(self.monitor),  # what `dlbench report` shows by default
            "provenance": self.provenance,
            **self.recorder.summary,
            "diverged": self.diverged,
            "error": self.error,
        }
