"""One epoch of training and one pass of evaluation. Metrics accumulate on the device, so the
loop never waits for the accelerator except where a callback asks for a number."""
from collections.abc import Callable, Iterable

import torch
from torch import nn


def train_one_epoch(model: nn.Module, batches: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    on_step: Callable[[torch.Tensor], None] | None = None) -> dict[str, float]:
    model.train()
    losses, corrects, sizes = [], [], []  # 0-d device tensors, reduced once at the end
    for x, y in batches:
        logits = model(x)  # (B, classes)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        losses.append(loss)
        corrects.append((logits.argmax(1) == y).sum())
        sizes.append(len(y))
        if on_step is not None:
            on_step(loss)
    weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
    return {"loss": float((torch.stack(losses) * weights).sum() / weights.sum()),
            "acc": float(torch.stack(corrects).sum() / weights.sum())}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, loss_fn: nn.Module) -> dict[str, float]:
    model.eval()
    loss_sum = correct = n = 0
    for x, y in batches:
        logits = model(x)
        loss_sum += loss_fn(logits, y) * len(y)
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    return {"loss": float(loss_sum / n), "acc": float(correct / n)}
