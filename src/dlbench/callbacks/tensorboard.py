"""TensorBoard event files in the run folder: per-epoch scalars (step = epoch), the training loss
every `log_every` steps (step = global step), HParams for comparing a sweep, and sample images."""
import math

from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from dlbench.callbacks import Callback

HPARAM_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc")
# the HParams plugin's session status for each run status (it has no "aborted")
HPARAM_STATUS = {"completed": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN"}


def flat_hparams(cfg) -> dict:
    """The knobs a person compares runs by: top-level values and the model/optimizer/... groups,
    flattened to scalars (lists as text, `_target_` as the class name)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out = {k: v for k, v in resolved.items() if not isinstance(v, (dict, list))}
    for group in ("dataset", "model", "optimizer", "scheduler", "loss", "regularizer"):
        for key, value in (resolved.get(group) or {}).items():
            if key in ("_partial_", "root", "mirror", "download"):
                continue
            name = group if key == "_target_" else f"{group}.{key}"
            value = value.rsplit(".", 1)[-1] if key == "_target_" else value
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


class TensorBoard(Callback):
    def __init__(self, log_every: int, sample_images: int):
        self.log_every = log_every
        self.sample_images = sample_images
        self.writer = None
        self.logged: set[str] = set()

    def on_run_start(self, state) -> None:
        self.writer = state.tb = SummaryWriter(log_dir=str(state.run_dir))  # probes write through it too
        if state.epoch == 0:  # a resumed run already has these
            exp, ssi, _ = hparams(flat_hparams(state.cfg), {m: 0.0 for m in HPARAM_METRICS})
            for summary in (exp, ssi):
                self.writer.file_writer.add_summary(summary)
            if self.sample_images and state.data.images:  # a grid needs images
                self.writer.add_figure("samples", sample_grid(state, self.sample_images), global_step=0)
        self.log_images(state)

    def on_step(self, state, step: dict) -> None:
        if state.global_step % self.log_every == 0:
            self.writer.add_scalar("train/step_loss", step["loss"].item(), state.global_step)
            self.writer.add_scalar("train/step_lr", state.optimizer.param_groups[0]["lr"], state.global_step)
            if "grad/norm" in step:
                self.writer.add_scalar("grad/step_norm", step["grad/norm"].item(), state.global_step)

    def on_epoch_end(self, state, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "epoch" and value is not None:
                self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def log_images(self, state) -> None:
        for name, image in state.images.items():
            if name not in self.logged:
                self.writer.add_image(name, image, global_step=state.epoch, dataformats="HWC")
                self.logged.add(name)

    def on_run_end(self, state) -> None:
        if self.writer is None:
            return
        self.log_images(state)
        _, _, sei = hparams({}, {})
        status = HPARAM_STATUS.get(state.status, "STATUS_FAILURE")
        sei.value[0].metadata.plugin_data.content = _session_end_content(status)
        self.writer.file_writer.add_summary(sei)
        self.writer.close()


def _session_end_content(status: str) -> bytes:
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata  # noqa: F401  (proto registry)
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboard.plugins.hparams.api_pb2 import Status

    return HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)),
                             version=0).SerializeToString()


def sample_grid(state, n: int):
    """The first n training images, un-normalised, titled with their class names."""
    from dlbench.artifacts import pyplot

    plt = pyplot()

    data = state.data
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
