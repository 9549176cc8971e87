"""Training a character language model: the epoch, its evaluation, and text generated from a prefix.

A run on a dataset whose `task` is "lm" trains with `lm_epoch` (dlbench.train.TASKS) inside the
same epoch bookkeeping as classification (train.run_epoch). The differences: the model takes
and returns a recurrent state, carried across batches (detached) when the partitioning is sequential;
gradients are clipped by norm; the metrics add perplexity (exp of the mean per-character loss) and
tokens per second.
"""
import logging
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from dlbench.callbacks import USABLE_MODEL, Callback
from dlbench.data.text import decode, encode
from dlbench.models.rnn import detach_state

log = logging.getLogger("dlbench")


def train_lm_epoch(model: nn.Module, batches, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                   clip_grad_norm: float | None, on_step: Callable[[dict], None] | None = None) -> dict:
    """on_step gets {"loss", and "grad/norm" (before clipping) when clipping} as loop.train_one_epoch's does."""
    model.train()
    state, losses, corrects, norms, tokens = None, [], [], [], 0
    step: dict[str, torch.Tensor] = {}
    for x, y in batches:  # (B, T) token ids; y is x one character later
        logits, state = model(x, state)  # (B, T, vocab)
        loss = loss_fn(logits.flatten(0, 1), y.flatten())  # mean over the B*T characters
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm:
            step["grad/norm"] = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            norms.append(step["grad/norm"])
        optimizer.step()
        state = detach_state(state) if batches.carries_state else None
        step["loss"] = loss = loss.detach()
        losses.append(loss * y.numel())
        corrects.append((logits.argmax(-1) == y).sum())
        tokens += y.numel()
        if on_step is not None:
            on_step(step)
    loss = float(torch.stack(losses).sum()) / tokens  # per character (random's last batch may be short)
    result = {"loss": loss, "ppl": math.exp(loss), "acc": float(torch.stack(corrects).sum()) / tokens,
              "tokens": tokens, "sequences": tokens // batches.split.seq_len}
    if norms:
        result["grad_norm"] = float(torch.stack(norms).mean())
    return result


@torch.no_grad()
def evaluate_lm(model: nn.Module, batches, loss_fn: nn.Module) -> dict:
    model.eval()
    state, loss_sum, correct, tokens = None, 0.0, 0, 0
    for x, y in batches:  # sequential: the state runs through the whole split
        logits, state = model(x, state)
        loss_sum += loss_fn(logits.flatten(0, 1), y.flatten()) * y.numel()
        correct += (logits.argmax(-1) == y).sum()
        tokens += y.numel()
    loss = float(loss_sum / tokens)
    return {"loss": loss, "ppl": math.exp(loss), "acc": float(correct / tokens)}


@torch.no_grad()
def generate(model: nn.Module, prefix: str, n: int, device: torch.device | str = "cpu") -> str:
    """The prefix, then n characters, each the most likely one after the text so far (greedy)."""
    model.eval()
    ids = encode(prefix).to(device)
    logits, state = model(ids[None], None)  # warm the state up on the whole prefix
    out = []
    for _ in range(n):
        nxt = logits[0, -1].argmax()
        out.append(int(nxt))
        logits, state = model(nxt.view(1, 1), state)
    return prefix + decode(out)


def lm_epoch(state, on_step) -> tuple[dict, float, int]:
    """Train one epoch and evaluate on the held-out tail: (metrics, training seconds, sequences)."""
    cfg, data = state.cfg, state.data
    # regularizer=grad_clip's norm wins over the dataset's default clipping norm
    clip = state.clip_grad if state.clip_grad is not None else data.clip_grad_norm
    start = time.perf_counter()
    train = train_lm_epoch(state.model, state.train_batches, state.train_loss, state.optimizer, clip, on_step)
    seconds = time.perf_counter() - start
    metrics = {f"train/{k}": train[k] for k in ("loss", "ppl", "acc")}
    if "grad_norm" in train:
        metrics["grad/norm"] = train["grad_norm"]  # mean norm before clipping
    for name, split in data.eval_splits().items():
        result = evaluate_lm(state.model, data.batches(split, cfg.batch_size), state.loss_fn)
        metrics.update({f"{name}/{k}": v for k, v in result.items()})
    metrics["tokens_per_second"] = round(train["tokens"] / seconds, 1)
    return metrics, seconds, train["sequences"]  # an example is one seq_len window


class GeneratedText(Callback):
    """At the end of training: text from the configured prefix, into the log, TensorBoard's text tab
    and summary.json. It runs before the callbacks that write the summary (see train.TASKS)."""

    def on_run_end(self, state) -> None:
        if state.status not in USABLE_MODEL:
            return
        data = state.data
        text = generate(state.model, data.prefix, data.generate_chars, state.device)
        state.extras["generated"] = text
        log.info("generated from %r: %r", data.prefix, text)
        if state.tb is not None:  # still open: task callbacks end before TensorBoard's
            state.tb.add_text("generated", text, state.epoch)


def lm_callbacks(cfg) -> list[Callback]:
    return [GeneratedText()]
