"""One epoch of training and one pass of evaluation, for every task. Metrics accumulate on the
device, so the loop never waits for the accelerator except where a callback asks for a number.

A task differs only in its `forward`: how a batch goes through the model. It returns the outputs
and targets as rows the loss compares ((N, K) and (N,) or (N, K)), and the state a recurrent model
carries to the next batch. The plain one has no state; a language model's carries its hidden
state, detached between batches when the batches continue each other (`batches.carries_state`).
"""
from collections.abc import Callable, Iterable

import torch
from torch import nn

from dlbench.precision import FP32, Precision

Forward = Callable[[nn.Module, torch.Tensor, torch.Tensor, object], tuple[torch.Tensor, torch.Tensor, object]]


def plain_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, carry=None):
    return model(x), y, None  # (B, K) outputs; (B,) labels or (B, K) targets


def detach_state(state):
    """A recurrent state (a tensor, a tuple of them, or None) cut from the graph of past batches."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def train_one_epoch(model: nn.Module, batches: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    on_step: Callable[[dict], None] | None = None, clip_grad: float | None = None,
                    accuracy: bool = True, forward: Forward = plain_forward,
                    precision: Precision = FP32) -> dict[str, float]:
    """The mean loss (and accuracy) over the epoch's rows, "grad/norm" (the mean norm before
    clipping) when clip_grad is set, and the counts: "examples" (batch rows: images, sequences)
    and "rows" (what the loss averages over: examples, or a language model's characters).
    on_step gets {"loss": 0-d tensor, maybe "grad/norm"} after every optimizer step: one dict,
    updated in place, so keep values, not it. A loss with a gradient of its own to add (an L2
    penalty's, `add_grad`) adds it after backward, before clipping."""
    model.train()
    losses, corrects, sizes, norms = [], [], [], []  # 0-d device tensors, reduced once at the end
    step: dict[str, torch.Tensor] = {}
    carry, examples, carries = None, 0, getattr(batches, "carries_state", False)
    add_grad = getattr(loss_fn, "add_grad", None)
    for x, y in batches:
        with precision.autocast():
            out, target, carry = forward(model, precision.inputs(x), y, carry)
            loss = loss_fn(out, target).float()
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        if add_grad is not None or clip_grad is not None:
            precision.unscale(optimizer)
        if add_grad is not None:
            add_grad()
        if clip_grad is not None:
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), clip_grad))
            step["grad/norm"] = norms[-1]
        precision.step(optimizer)
        carry = detach_state(carry) if carries else None
        step["loss"] = loss = loss.detach()
        losses.append(loss)
        if accuracy:
            corrects.append((out.argmax(1) == target).sum())
        sizes.append(len(target))
        examples += len(x)
        if on_step is not None:
            on_step(step)
    return _epoch_means(losses, corrects, sizes, norms, examples)


def _epoch_means(losses, corrects, sizes, norms, examples) -> dict[str, float]:
    weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
    result = {"loss": float((torch.stack(losses) * weights).sum() / weights.sum())}
    if corrects:
        result["acc"] = float(torch.stack(corrects).sum() / weights.sum())
    if norms:
        result["grad/norm"] = float(torch.stack(norms).mean())
    return {**result, "examples": examples, "rows": sum(sizes)}


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """All predicted and true labels of an evaluation pass, (N,) each."""
    model.eval()
    preds, labels = zip(*[(model(x).argmax(1), y) for x, y in batches])
    return torch.cat(preds), torch.cat(labels)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, loss_fn: nn.Module, accuracy: bool = True,
             forward: Forward = plain_forward, precision: Precision = FP32) -> dict[str, float]:
    """The loss (and accuracy) over every row of the batches; a recurrent state runs through them all."""
    model.eval()
    loss_sum = correct = n = 0
    carry = None
    for x, y in batches:
        with precision.autocast():
            out, target, carry = forward(model, precision.inputs(x), y, carry)
            loss_sum += loss_fn(out, target).float() * len(target)
        if accuracy:
            correct += (out.argmax(1) == target).sum()
        n += len(target)
    result = {"loss": float(loss_sum / n)}
    if accuracy:
        result["acc"] = float(correct / n)
    return result
