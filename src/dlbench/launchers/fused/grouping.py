"""Which runs of a sweep train together: why a run cannot (it trains alone), and the key that
runs of one group share."""
from torch import nn

from dlbench.launchers.fused.vectorised import OPTIMIZERS
from dlbench.loop import plain_forward
from dlbench.run.state import RunState


def why_not_fused(state: RunState) -> str | None:
    """Why this run cannot train in a group (None: it can)."""
    cfg = state.cfg
    if str(cfg.trainer.get("precision", 32)) != "32" or cfg.trainer.get("compile"):
        return "16-bit precision and compile train alone"
    if state.task.forward is not plain_forward:
        return f"a {state.task.name} task carries state between batches"
    if any(True for _ in state.model.buffers()):
        return "the model keeps running statistics (batch norm)"
    if state.train_loss is not state.loss_fn:
        return "the loss has a penalty (l2) on this run's weights"
    if getattr(state.train_batches, "transform", None) is not None:
        return "augmentation draws from the global random state"
    if type(state.optimizer) not in OPTIMIZERS or len(state.optimizer.param_groups) != 1:
        return f"{type(state.optimizer).__name__} has no vectorised step (SGD, Adam, AdamW have)"
    return None


def group_key(state: RunState) -> tuple:
    """Runs with equal keys can share a step: the same modules computing the same function of their
    parameters (of the same shapes), optimizer kind, examples per epoch and batch size (so the same
    batch sizes step by step), data shape and device."""
    shapes = tuple((name, tuple(p.shape)) for name, p in state.model.named_parameters())
    return (shapes, structure(state.model), type(state.optimizer), state.train_batches.num_examples,
            state.train_batches.batch_size, tuple(state.data.in_shape), str(state.device), state.task.name,
            type(state.loss_fn))


def structure(model: nn.Module) -> tuple:
    """What each module computes besides its parameters: its type and settings (a tanh is not a
    sigmoid; 4 heads are not 8), all but a dropout's rate, which each member has its own of."""
    def settings(module: nn.Module) -> tuple:
        plain = (bool, int, float, str, tuple, type(None))
        own = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"
               and isinstance(v, plain) and not (isinstance(module, nn.Dropout) and k == "p")}
        return tuple(sorted(own.items()))
    return tuple((name, type(m).__name__, settings(m)) for name, m in model.named_modules())

