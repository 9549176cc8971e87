"""Optimizer and learning-rate schedule from their config nodes (`_target_` + `_partial_`).

The runner, not the user, decides when a scheduler steps: schedulers that think in batches
(PER_STEP) step after every optimizer step, the rest after every epoch, and ReduceLROnPlateau
with the monitored metric. A linear warm-up (`warmup_steps`) composes with any of them: both are
chainable (each multiplies the current rate), so their effects multiply.
"""
from collections.abc import Iterable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.optim.lr_scheduler import CyclicLR, LinearLR, LRScheduler, OneCycleLR, ReduceLROnPlateau


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return instantiate(cfg, _convert_="all")(params)  # lists such as betas arrive as plain lists


class ExponentialDecay(LRScheduler):
    """Keras' ExponentialDecay, stepped per batch: lr_t = lr_0 * decay_rate ** (t / decay_steps),
    with t // decay_steps in the exponent when `staircase`."""

    def __init__(self, optimizer, decay_steps: int, decay_rate: float, staircase: bool = False,
                 last_epoch: int = -1):
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # chainable: the factor from step t-1 to step t
        t = self.last_epoch
        if t == 0:
            factor = 1.0
        elif self.staircase:
            factor = self.decay_rate if t % self.decay_steps == 0 else 1.0
        else:
            factor = self.decay_rate ** (1 / self.decay_steps)
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        t = self.last_epoch // self.decay_steps if self.staircase else self.last_epoch / self.decay_steps
        return [base * self.decay_rate ** t for base in self.base_lrs]


PER_STEP = (OneCycleLR, CyclicLR, ExponentialDecay)


class Schedule:
    """The run's learning-rate schedule: an optional scheduler and an optional linear warm-up."""

    def __init__(self, main=None, warmup: LinearLR | None = None, monitor: str = "val/loss"):
        self.main, self.warmup, self.monitor = main, warmup, monitor
        self.per_step = isinstance(main, PER_STEP)

    def step_batch(self) -> None:
        if self.warmup is not None and self.warmup.last_epoch < self.warmup.total_iters:
            self.warmup.step()
        if self.per_step:
            self.main.step()

    def step_epoch(self, metrics: dict) -> None:
        if self.main is None or self.per_step:
            return
        if isinstance(self.main, ReduceLROnPlateau):
            self.main.step(metrics[self.monitor])
        else:
            self.main.step()

    def state_dict(self) -> dict:
        return {k: s.state_dict() for k, s in (("main", self.main), ("warmup", self.warmup)) if s is not None}

    def load_state_dict(self, state: dict) -> None:
        for key, sched in (("main", self.main), ("warmup", self.warmup)):
            if sched is not None:
                sched.load_state_dict(state[key])


def build_schedule(cfg: DictConfig | None, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                   warmup_steps: int = 0, monitor: str = "val/loss") -> Schedule:
    main = None
    if cfg and "_target_" in cfg:  # scheduler=none has no target: a constant rate
        factory = instantiate(cfg, _convert_="all")
        extra = {"total_steps": epochs * steps_per_epoch} if factory.func is OneCycleLR else {}
        main = factory(optimizer, **extra)
    warmup = LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps) if warmup_steps else None
    return Schedule(main, warmup, monitor)
