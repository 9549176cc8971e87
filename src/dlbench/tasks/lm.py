"""Character language models: a forward that carries the recurrent state, perplexity and
characters per second, and text generated at the end of a run from a prefix."""
import logging
import math

import torch
from torch import nn

from dlbench.callbacks import Callback
from dlbench.status import FINISHED
from dlbench.tasks.base import Task

log = logging.getLogger("dlbench")


def recurrent_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, carry=None):
    """x, y: (B, T) token ids, y one character later. The rows the loss compares are the B*T characters."""
    logits, carry = model(x, carry)  # (B, T, vocab)
    return logits.flatten(0, 1), y.flatten(), carry


class LanguageModelTask(Task):
    """Characters: the loss is per character, so perplexity (exp of it) is reported too, and the
    rows the loss averages over are characters, counted per second."""

    def score(self, split: str, result: dict) -> dict:
        return {f"{split}/loss": result["loss"], f"{split}/ppl": math.exp(result["loss"]), f"{split}/acc": result["acc"]}

    def example_target(self, x: torch.Tensor, num_classes: int) -> torch.Tensor:
        return torch.zeros_like(x)  # (B, T): the next character at every position

    def eval_batch_size(self, cfg) -> int:
        return cfg.batch_size  # evaluation's rows are streams read side by side, as many as training's

    def throughput(self, train: dict, seconds: float) -> dict:
        return {"tokens_per_second": round(train["rows"] / seconds, 1)}


class GeneratedText(Callback):
    """At the end of training: text from the configured prefix, into the log, TensorBoard's text
    tab and summary.json."""

    def on_run_end(self, state) -> None:
        if state.status not in FINISHED:
            return
        data = state.data
        text = data.generate(state.model, state.device)
        state.recorder.summary["generated"] = text
        state.recorder.text("generated", text, state.epoch)
        log.info("generated from %r: %r", data.prefix, text)
