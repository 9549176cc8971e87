"""What `regularizer=[...]` switches on. Each node names its class with `_target_` and is built
like an optimizer; each acts where it belongs:

- dropout, batchnorm, label_smoothing: the model and loss configs read their value (interpolation),
  and the object checks that the built model or loss has somewhere to apply it;
- l2: a penalty added to the training loss (its gradient added in place by the loop);
- augmentation: a transform of the training batches;
- grad_clip: a clipping norm for the loop;
- early_stopping: a callback.

A regularizer that would change nothing is an error, never a silent no-op.
"""
from dataclasses import dataclass, field

import torch
import yaml
from torch import nn

from dlbench import choices as C
from dlbench.callbacks import Callback
from dlbench.callbacks.early_stopping import EarlyStopping
from dlbench.config import CONF_DIR, build, group_options
from dlbench.errors import ConfigError
from dlbench.data.augment import Augment


class Regularizer:
    name = ""
    transform = None           # applied to training batches
    clip_grad: float | None = None

    def check(self, cfg, model: nn.Module, loss_fn: nn.Module, data) -> None:
        """Raise when the run has nowhere to apply this regularizer."""

    def train_loss(self, loss_fn: nn.Module, model: nn.Module) -> nn.Module:
        return loss_fn

    def callbacks(self) -> list[Callback]:
        return []

    def _refuse(self, why: str, fix: str) -> None:
        raise ConfigError("regularizer", self.name, f"{why}, so it would change nothing", fix)


class Dropout(Regularizer):
    name = "dropout"

    def __init__(self, rate: float):
        self.rate = rate

    def check(self, cfg, model, loss_fn, data) -> None:
        sites = [m for m in model.modules() if isinstance(m, nn.Dropout)
                 or (isinstance(m, nn.RNNBase) and m.num_layers > 1)]
        if not sites:
            self._refuse(f"model={cfg.model.name} as configured has no dropout site",
                         f"models with dropout sites: {', '.join(models_with('dropout'))} "
                         "(recurrent ones between stacked layers: model.layers > 1)")


class BatchNorm(Regularizer):
    name = "batchnorm"

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def check(self, cfg, model, loss_fn, data) -> None:
        if self.enabled and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            self._refuse(f"model={cfg.model.name} has no batch norm layers",
                         f"models with them: {', '.join(models_with('batchnorm'))}")


class LabelSmoothing(Regularizer):
    name = "label_smoothing"

    def __init__(self, eps: float):
        self.eps = eps

    def check(self, cfg, model, loss_fn, data) -> None:
        if getattr(loss_fn, "label_smoothing", None) is None:
            self._refuse(f"loss={type(loss_fn).__name__} has no label smoothing",
                         "use loss=cross_entropy or loss=weighted_cross_entropy")


class L2(Regularizer):
    name = "l2"

    def __init__(self, coef: float, weights_only: bool = True, layers: str = "all"):
        self.coef, self.weights_only, self.layers = coef, weights_only, layers

    def check(self, cfg, model, loss_fn, data) -> None:
        if not L2Penalty(loss_fn, model, self.coef, self.weights_only, self.layers).params:
            self._refuse(f"model={cfg.model.name} has no weight matrix or kernel in "
                         f"regularizer.l2.layers={self.layers}", "use regularizer.l2.layers=all or a model with hidden layers")

    def train_loss(self, loss_fn, model):
        return L2Penalty(loss_fn, model, self.coef, self.weights_only, self.layers)


class Augmentation(Regularizer):
    name = "augmentation"

    def __init__(self, **kwargs):
        self.transform = Augment(**kwargs)

    def check(self, cfg, model, loss_fn, data) -> None:
        if not data.images:
            self._refuse(f"dataset={cfg.dataset.name} has no images to augment", "use it with an image dataset")


class GradClip(Regularizer):
    name = "grad_clip"

    def __init__(self, max_norm: float):
        self.clip_grad = max_norm


class EarlyStop(Regularizer):
    name = "early_stopping"

    def __init__(self, **kwargs):
        self.stopper = EarlyStopping(**kwargs)

    def callbacks(self) -> list[Callback]:
        return [self.stopper]


def output_layer(model: nn.Module) -> nn.Module:
    """The layer that gives the model's outputs: the one owning its last weight matrix or kernel
    (in registration order, which dlbench's models follow from input to output)."""
    name = [n for n, p in model.named_parameters() if p.dim() >= 2][-1]
    return model.get_submodule(name.rpartition(".")[0])


def _hidden(model: nn.Module) -> list[nn.Parameter]:
    out = {id(p) for p in output_layer(model).parameters()}
    return [p for p in model.parameters() if id(p) not in out]


# regularizer.l2.layers: all (every layer), hidden (all but the output layer, as Keras' exercise
# puts kernel_regularizer on its hidden Dense layers only)
PENALISED = C.implement(C.L2_LAYERS, {"all": lambda model: list(model.parameters()), "hidden": _hidden})


def penalised(model: nn.Module, layers: str) -> list[nn.Parameter]:
    return PENALISED[layers](model)


class L2Penalty(nn.Module):
    """loss + coef * sum of squared weights. Unlike the optimizer's weight_decay, the penalty is part
    of the objective: the training loss reports it, and its gradient 2 * coef * w joins the data
    loss's before clipping and the optimizer (Adam scales it). That gradient is not taken through
    autograd, whose graph over every weight cost a quarter of a large MLP's step: the value returned
    carries the data loss's gradient only, and the loop adds the penalty's in place (`add_grad`),
    which train_one_epoch does for any training loss that has one."""

    def __init__(self, loss_fn: nn.Module, model: nn.Module, coef: float, weights_only: bool = True,
                 layers: str = "all"):
        super().__init__()
        self.loss_fn, self.coef = loss_fn, coef
        self.params = [p for p in penalised(model, layers) if p.dim() >= 2 or not weights_only]  # not registered

    @torch.no_grad()
    def penalty(self) -> torch.Tensor:
        return self.coef * torch.stack(torch._foreach_norm(self.params)).square().sum()

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, y) + self.penalty()

    @torch.no_grad()
    def add_grad(self) -> None:
        """Each penalised weight's gradient += 2 * coef * w, in place: after backward (and the
        gradients' unscaling), before clipping and the optimizer's step."""
        for p in self.params:
            if p.grad is None:  # a weight the data loss did not reach
                p.grad = torch.zeros_like(p)
        torch._foreach_add_([p.grad for p in self.params], self.params, alpha=2 * self.coef)


@dataclass
class Regularizers:
    train_loss: nn.Module            # the loss the optimizer minimises (evaluation uses the plain loss)
    transform: object | None = None  # applied to training batches
    clip_grad: float | None = None
    callbacks: list[Callback] = field(default_factory=list)


def build_regularizers(cfg, model: nn.Module, loss_fn: nn.Module, data) -> Regularizers:
    """The run's `regularizer` nodes built (each has a `_target_`; regularizer=none has none), checked
    against the model, loss and data, and combined."""
    nodes = (cfg.get("regularizer") or {}).values()
    regs = [build(node) for node in nodes if node and "_target_" in node]
    out = Regularizers(train_loss=loss_fn)
    for reg in regs:
        reg.check(cfg, model, loss_fn, data)
        out.train_loss = reg.train_loss(out.train_loss, model)
        out.transform = reg.transform or out.transform
        out.clip_grad = reg.clip_grad if reg.clip_grad is not None else out.clip_grad
        out.callbacks += reg.callbacks()
    return out


def models_with(key: str) -> list[str]:
    """The model configs that take `key` (dropout, batchnorm), for an error's list of choices."""
    return [name for name in group_options("model")
            if key in (yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text()) or {})]
