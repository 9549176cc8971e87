"""Views of a run that only TensorBoard shows: the training loss, learning rate and gradient norm
every `log_every` steps (step = global step), and a grid of sample training images."""
import math

from dlbench.callbacks import Callback
from dlbench.figures import pyplot, save_figure


class StepScalars(Callback):
    def __init__(self, log_every: int):
        self.log_every = log_every

    def on_step(self, state, step: dict) -> None:
        if state.global_step % self.log_every == 0:
            state.recorder.scalar("train/step_loss", step["loss"].item(), state.global_step)
            state.recorder.scalar("train/step_lr", state.optimizer.param_groups[0]["lr"], state.global_step)
            if "grad/norm" in step:
                state.recorder.scalar("grad/step_norm", step["grad/norm"].item(), state.global_step)


class SampleImages(Callback):
    """The first n training images, un-normalised, titled with their class names."""

    def __init__(self, n: int):
        self.n = n

    def on_run_start(self, state) -> None:
        if state.epoch == 0 and state.data.images:  # a resumed run already has them
            state.recorder.image("samples", save_figure(sample_grid(state.data, self.n), None, pixels=True), 0)


def sample_grid(data, n: int):
    plt = pyplot()
    n = min(n, len(data.train))
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    mean = data.train.x.new_tensor(data.mean).view(-1, 1, 1)
    std = data.train.x.new_tensor(data.std).view(-1, 1, 1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = (data.train.x[i] * std + mean).clamp(0, 1).cpu()  # (C, H, W)
            ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
            ax.set_title(data.classes[int(data.train.y[i])], fontsize=7)
    fig.tight_layout()
    return fig
