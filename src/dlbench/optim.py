"""Optimizer and scheduler from their config nodes (`_target_` + `_partial_`), completed here."""
from collections.abc import Iterable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return instantiate(cfg, _convert_="all")(params)  # lists such as betas arrive as plain lists


def build_scheduler(cfg: DictConfig | None, optimizer: torch.optim.Optimizer):
    if not cfg or "_target_" not in cfg:
        return None  # scheduler=none: the learning rate stays constant
    return instantiate(cfg, _convert_="all")(optimizer)
