"""One epoch of training and one pass of evaluation. Metrics accumulate on the device, so the
loop never waits for the accelerator except where a callback asks for a number."""
from collections.abc import Callable, Iterable

import torch
from torch import nn


def train_one_epoch(model: nn.Module, batches: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    on_step: Callable[[dict], None] | None = None, clip_grad: float | None = None,
                    accuracy: bool = True) -> dict[str, float]:
    """on_step gets {"loss": 0-d tensor} after every optimizer step, plus "grad/norm" (the norm
    before clipping) when clip_grad is set: one dict, updated in place, so keep values, not it.
    accuracy=False for regression: the result is the loss alone."""
    model.train()
    losses, corrects, sizes, norms = [], [], [], []  # 0-d device tensors, reduced once at the end
    step: dict[str, torch.Tensor] = {}
    for x, y in batches:
        logits = model(x)  # (B, classes)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), clip_grad))
            step["grad/norm"] = norms[-1]
        optimizer.step()
        step["loss"] = loss = loss.detach()
        losses.append(loss)
        if accuracy:
            corrects.append((logits.argmax(1) == y).sum())
        sizes.append(len(y))
        if on_step is not None:
            on_step(step)
    weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
    result = {"loss": float((torch.stack(losses) * weights).sum() / weights.sum())}
    if accuracy:
        result["acc"] = float(torch.stack(corrects).sum() / weights.sum())
    if norms:
        result["grad_norm"] = float(torch.stack(norms).mean())
    return result


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """All predicted and true labels of an evaluation pass, (N,) each."""
    model.eval()
    preds, labels = zip(*[(model(x).argmax(1), y) for x, y in batches])
    return torch.cat(preds), torch.cat(labels)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, loss_fn: nn.Module, accuracy: bool = True) -> dict[str, float]:
    model.eval()
    loss_sum = correct = n = 0
    for x, y in batches:
        logits = model(x)
        loss_sum += loss_fn(logits, y) * len(y)
        if accuracy:
            correct += (logits.argmax(1) == y).sum()
        n += len(y)
    result = {"loss": float(loss_sum / n)}
    if accuracy:
        result["acc"] = float(correct / n)
    return result
