"""What `regularizer=[...]` switches on, each built where it acts:

- dropout, batchnorm, label_smoothing: read by the model and loss configs (interpolations), not here;
- l2: a penalty added to the training loss;
- augmentation: a transform of the training batches;
- grad_clip: a clipping norm for the loop;
- early_stopping: a callback.
"""
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch import nn

from dlbench.callbacks import Callback
from dlbench.config import build


class L2Penalty(nn.Module):
    """loss + coef * sum of squared weights. Unlike the optimizer's weight_decay, the penalty is
    part of the objective, so it goes through the gradient (and Adam's scaling of it)."""

    def __init__(self, loss_fn: nn.Module, model: nn.Module, coef: float, weights_only: bool = True):
        super().__init__()
        self.loss_fn, self.coef = loss_fn, coef
        self.params = [p for p in model.parameters() if p.dim() >= 2 or not weights_only]  # not registered

    def penalty(self) -> torch.Tensor:
        return self.coef * torch.stack([p.pow(2).sum() for p in self.params]).sum()

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, y) + self.penalty()


@dataclass
class Regularizers:
    train_loss: nn.Module           # the loss the optimizer minimises (evaluation uses the plain loss)
    transform: object | None = None  # applied to training batches
    clip_grad: float | None = None
    callbacks: list[Callback] = field(default_factory=list)


def build_regularizers(cfg: DictConfig | None, model: nn.Module, loss_fn: nn.Module) -> Regularizers:
    from dlbench.callbacks.early_stopping import EarlyStopping

    cfg = cfg or {}
    return Regularizers(
        train_loss=L2Penalty(loss_fn, model, **cfg["l2"]) if "l2" in cfg else loss_fn,
        transform=build(cfg["augmentation"]) if "augmentation" in cfg else None,
        clip_grad=cfg["grad_clip"]["max_norm"] if "grad_clip" in cfg else None,
        callbacks=[EarlyStopping(**cfg["early_stopping"])] if "early_stopping" in cfg else [],
    )
