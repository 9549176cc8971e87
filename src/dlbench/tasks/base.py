"""What differs between kinds of data, in one frozen object each: how an epoch trains and is
scored, the metric a run is judged by, the loss its targets need, what it draws at the end, and
what `info`, `interpolate` and `report` need to know. Nothing outside dlbench.tasks compares a
task's name: it asks the task."""
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dlbench.loop import Forward, evaluate, plain_forward, train_one_epoch
from dlbench.metrics import direction
from dlbench.precision import FP32, Precision


def _no_callbacks(cfg) -> list:
    return []


@dataclass(frozen=True)
class Task:
    name: str
    metric: str                # what best/, the target and early stopping's default follow: acc, loss or ppl
    final: str                 # the report's first column: the judging metric on the last split measured
    default_loss: str          # the loss config (conf/loss) its targets need
    regression: bool = False   # targets are values: no accuracy, a regression loss
    tokens: bool = False       # inputs are token ids: no input gradient; `info` feeds ids
    eval_train: bool = False   # train/loss and train/acc re-measured on every training example at the epoch's end
    report_extra: tuple[str, ...] = ()  # report columns after best/<monitor>
    end_callbacks: Callable = field(default=_no_callbacks, compare=False)  # cfg -> callbacks of its own
    forward: Forward = field(default=plain_forward, compare=False)

    @property
    def higher_is_better(self) -> bool:
        return direction(self.metric) == "max"

    @property
    def has_target(self) -> bool:
        """Whether target_acc applies: epochs and seconds to an accuracy."""
        return self.metric == "acc"

    def monitor(self, data) -> str:
        """The metric for best/ and the target: the task's metric on the validation split, or on
        the test split when there is none."""
        return f"{'val' if data.val is not None else 'test'}/{self.metric}"

    def report_columns(self, monitor: str) -> list[str]:
        return [self.final, f"best/{monitor}", *self.report_extra, "params", "wall_seconds"]

    def metric_names(self, splits: tuple[str, ...]) -> list[str]:
        """The per-epoch metrics a run on these splits writes, named as score() names them."""
        result = {"loss": 1.0} if self.regression else {"loss": 1.0, "acc": 0.0}
        return [key for split in splits for key in self.score(split, result)]

    def callbacks(self, cfg) -> list:
        return self.end_callbacks(cfg)

    def example_input(self, in_shape: tuple[int, ...], num_classes: int) -> torch.Tensor:
        """One input of the data's shape, for `dlbench info`'s measuring pass."""
        if self.tokens:
            return torch.randint(num_classes, (1, *in_shape))
        return torch.randn(1, *in_shape)

    def example_target(self, x: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Targets for example inputs x: class ids, or one value per output for a regression."""
        if self.regression:
            return torch.zeros(len(x), num_classes)
        return torch.zeros(len(x), dtype=torch.long)

    def eval_batch_size(self, cfg) -> int:
        return cfg.trainer.eval_batch_size

    def score(self, split: str, result: dict) -> dict:
        """A split's loss and accuracy under their slash-scoped names: the one place they are named."""
        return {f"{split}/{k}": result[k] for k in ("loss", "acc") if k in result}

    def evaluate(self, model: nn.Module, data, splits: dict, loss_fn: nn.Module, cfg,
                 precision: Precision = FP32) -> dict:
        """Every split's scores, {"val/loss": ..., "val/acc": ...}."""
        metrics = {}
        for name, split in splits.items():
            batches = data.eval_batches(split, self.eval_batch_size(cfg))
            metrics.update(self.score(name, evaluate(model, batches, loss_fn, not self.regression, self.forward,
                                                     precision)))
        return metrics

    def train_and_evaluate(self, state, on_step) -> tuple[dict, float, int]:
        """Train one epoch and evaluate every split: (metrics, training seconds, examples trained on)."""
        start = time.perf_counter()
        train = train_one_epoch(state.model, state.train_batches, state.train_loss, state.optimizer, on_step,
                                state.clip_grad, not self.regression, self.forward, state.precision)
        return self.after_training(state, train, time.perf_counter() - start)

    def after_training(self, state, train: dict, seconds: float) -> tuple[dict, float, int]:
        """The epoch's metrics from its training result (as train_one_epoch gives it) and every split's evaluation."""
        metrics = self.score("train", train)
        if "grad/norm" in train:
            metrics["grad/norm"] = train["grad/norm"]  # mean norm before clipping
        splits = state.data.eval_splits()
        if self.eval_train:
            splits = {"train": state.data.train, **splits}
        metrics.update(self.evaluate(state.model, state.data, splits, state.loss_fn, state.cfg, state.precision))
        metrics.update(self.throughput(train, seconds))
        return metrics, seconds, train["examples"]

    def throughput(self, train: dict, seconds: float) -> dict:
        return {}
