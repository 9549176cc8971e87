"""Losses that torch does not ship as such. Each takes (logits (B, K), labels (B,)), and
MeanSquaredError also regression's (outputs (B, K), targets (B, K))."""
import functools

import torch
from torch import nn
from torch.nn import functional as F

from dlbench import choices as C
from dlbench.config import build
from dlbench.errors import ConfigError


class MeanSquaredError(nn.Module):
    """loss=mse. For regression (float targets): the squared error of the outputs. For
    classification (class ids): the squared error between the softmax probabilities and one-hot
    targets. reduction=mean averages it over the batch and the outputs (torch's nn.MSELoss, Keras'
    mean_squared_error); reduction=sum sums it over the outputs (classes) and averages over the
    batch, a gradient K times as large for K classes."""

    REDUCE = C.implement(C.MSE_REDUCTIONS, {"mean": lambda err: err.mean(),
                                            "sum": lambda err: err.flatten(1).sum(1).mean()})

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.is_floating_point():
            err = (logits - y.view_as(logits)).pow(2)
        else:
            err = (logits.softmax(dim=1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2)
        return self.REDUCE[self.reduction](err)


class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy for labels in {0, 1}; with two logits, class 1's logit minus class
    0's is the log-odds (the same model then also serves argmax accuracy)."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_odds = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
        return F.binary_cross_entropy_with_logits(log_odds, y.to(logits.dtype))


def inverse_frequency_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """w_k = N / (K * n_k): mean weight 1 over the examples' classes of a balanced set, larger for
    rarer classes (sklearn's class_weight='balanced')."""
    counts = class_counts.double().clamp(min=1)
    return (counts.sum() / (len(counts) * counts)).float()


def weighted_cross_entropy(class_counts: torch.Tensor, weight: list[float] | None = None,
                           label_smoothing: float = 0.0) -> nn.Module:
    weights = torch.tensor(weight, dtype=torch.float32) if weight is not None else inverse_frequency_weights(class_counts)
    return nn.CrossEntropyLoss(weight=weights.to(class_counts.device), label_smoothing=label_smoothing)


REGRESSION_LOSSES = (MeanSquaredError, nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss)


def check_loss(loss, dataset: str, task, num_classes: int) -> None:
    """Raise a ConfigError when the built loss (or its partial) cannot judge this data's targets."""
    name = loss.func.__name__ if isinstance(loss, functools.partial) else type(loss).__name__
    if task.regression and not isinstance(loss, REGRESSION_LOSSES):
        raise ConfigError("loss", name, f"needs class labels and dataset={dataset} is a regression",
                          f"use loss={task.default_loss} (experiment=function_fit sets it)")
    if isinstance(loss, BinaryCrossEntropy) and num_classes != 2:
        raise ConfigError("loss", "bce", f"needs two classes and dataset={dataset} has {num_classes}",
                          "use loss=cross_entropy (or loss=mse)")
    weight = loss.keywords.get("weight") if isinstance(loss, functools.partial) else None
    if weight is not None and len(weight) != num_classes:
        raise ConfigError("loss.weight", list(weight), f"has {len(weight)} entries for {num_classes} classes",
                          f"give one weight per class ({num_classes}), or null for inverse class frequency")


def build_loss(cfg, data) -> nn.Module:
    """A loss config with `_partial_: true` is completed with the training split's class counts."""
    loss = build(cfg)
    check_loss(loss, data.name, data.task, data.num_classes)
    return loss(class_counts=data.class_counts) if isinstance(loss, functools.partial) else loss
