"""How a step's arithmetic runs: the number format (`trainer.precision`), torch.compile and the
channels-last layout. One object, built once per run, that the loop asks; each choice is recorded
in the summary, and fp32 with neither option is the loop exactly as it was.

- `bf16` autocasts matmuls and convolutions to bfloat16; its range is fp32's, so no scaling.
- `16` autocasts to float16 and scales the loss (a GradScaler) so that small gradients do not
  flush to zero; the scaler skips a step whose gradients overflowed and lowers its scale. It reads
  one flag per step from the device (torch's GradScaler.step), the one per-step sync it costs.
- The loss itself is computed in float32 in every mode (autocast's own rule for losses).
"""
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from dlbench import choices

DTYPES = choices.implement(choices.PRECISIONS, {"32": None, "bf16": torch.bfloat16, "16": torch.float16})


@dataclass(frozen=True)
class Precision:
    mode: str = "32"                      # "32", "bf16" or "16"
    device_type: str = "cpu"
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def build(cls, trainer, device: torch.device) -> "Precision":
        mode = str(trainer.get("precision", "32"))
        scaler = torch.amp.GradScaler(device.type) if mode == "16" else None
        return cls(mode, device.type, bool(trainer.get("channels_last", False)), scaler)

    def autocast(self) -> AbstractContextManager:
        if DTYPES[self.mode] is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.mode])

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the layout the model's convolutions run fastest with: (B, C, H, W) stored as NHWC."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """The gradients at their true size, before anything reads them (clipping, norms)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def summary(self) -> dict:
        return {"precision": self.mode, "channels_last": self.channels_last}


FP32 = Precision()


def prepare(model: nn.Module, trainer, precision: Precision) -> nn.Module:
    """The model in channels-last layout and compiled, as the trainer config asks. Compiling is in
    place (nn.Module.compile), so state_dict keys, checkpoints and probes see the same module."""
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if trainer.get("compile", False):
        model.compile()
    return model
