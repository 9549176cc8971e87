"""Views of a run that only TensorBoard shows: the training loss, learning rate and gradient norm
every `log_every` steps (step = global step), and a grid of sample training images."""
import math
import weakref

import torch

from dlbench.callbacks import Callback
from dlbench.figures import pyplot, save_figure


class StepScalars(Callback):
    def __init__(self, log_every: int):
        self.log_every = log_every
        self.lr = None

    def on_epoch_start(self, state) -> None:
        self.lr = state.optimizer.param_groups[0]["lr"]

    def on_step(self, state, step: dict) -> None:
        # by now the schedule has moved the optimizer on to the next step's rate: the rate this step
        # used is the one it held after the step before (as an epoch's `lr` is the one it starts with)
        lr, self.lr = self.lr, state.optimizer.param_groups[0]["lr"]
        if state.global_step % self.log_every == 0:
            state.recorder.scalar("train/step_loss", step["loss"].item(), state.global_step)
            state.recorder.scalar("train/step_lr", lr, state.global_step)
            if "grad/norm" in step:
                state.recorder.scalar("grad/step_norm", step["grad/norm"].item(), state.global_step)


class SampleImages(Callback):
    """The first n training images, un-normalised, titled with their class names."""

    def __init__(self, n: int):
        self.n = n

    def on_run_start(self, state) -> None:
        if state.epoch == 0 and state.data.images:  # a resumed run already has them
            state.recorder.image("samples", sample_pixels(state.data, self.n), 0)


_last_grid: tuple | None = None  # (a weak reference to the data, n, the pixels)


def sample_pixels(data, n: int):
    """sample_grid rendered, once for runs that share one data object (a fused sweep's members)."""
    global _last_grid
    if _last_grid is None or _last_grid[0]() is not data or _last_grid[1] != n:
        _last_grid = (weakref.ref(data), n, save_figure(sample_grid(data, n), None, pixels=True))
    return _last_grid[2]


def sample_grid(data, n: int):
    """One picture of the images tiled in rows of 8, each with its class name: one axes, so it
    draws in a tenth of the time of a subplot per image."""
    n = min(n, len(data.train))
    cols = min(8, n)
    rows = math.ceil(n / cols)
    mean = data.train.x.new_tensor(data.mean).view(1, -1, 1, 1)
    std = data.train.x.new_tensor(data.std).view(1, -1, 1, 1)
    images = (data.train.x[:n] * std + mean).clamp(0, 1).cpu()  # (n, C, H, W)
    c, h, w = images.shape[1:]
    top = max(2, h // 5)  # white space above each image for its name, a pixel on the other sides
    tiles = torch.ones(rows * cols, c, h + top + 1, w + 2)
    tiles[:n, :, top:-1, 1:-1] = images
    th, tw = h + top + 1, w + 2
    grid = tiles.view(rows, cols, c, th, tw).permute(0, 3, 1, 4, 2).reshape(rows * th, cols * tw, c)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(cols * 1.2, rows * 1.4))
    ax.imshow(grid.squeeze(-1).numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    for i in range(n):
        ax.text((i % cols + 0.5) * tw, (i // cols) * th + top - 0.5, data.classes[int(data.train.y[i])],
                ha="center", va="bottom", fontsize=7)
    ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    return fig
