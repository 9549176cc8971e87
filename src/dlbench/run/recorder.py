"""Where a run's numbers, pictures and text go. The recorder is built before any callback and
closed after all of them, so every callback can write at any hook, in any order:

- an epoch's metrics: a line of metrics.jsonl, a line of the log, and a metric per sink; the
  first epoch's also name the charts (one per metric, its train/val/test on one chart);
- scalar / image / figure / text / histogram / embedding: to every sink (TensorBoard is one;
  figures also to plots/<name>.png);
- summary[...]: additions to summary.json, which the run writes from them.
"""
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dlbench.artifacts import append_metrics, atomic_path
from dlbench.figures import save_figure

log = logging.getLogger("dlbench")

# in the order the HParams tab lists them; it shows the first five
HPARAM_METRICS = ("test/acc", "val/acc", "train/acc", "test/loss", "val/loss", "train/loss")
# the keys that identify a run in TensorBoard's HParams tab, after those its sweep varies
IDENTITY = ("model", "dataset", "optimizer", "lr", "batch_size", "epochs", "seed")
# TensorBoard's Time Series tab groups tags by their first segment, sorts the groups and the cards in
# them by name, and opens the first two groups: the per-split curves (epoch/train/loss, ...) come
# first, then the run's other numbers by their names (epoch_seconds, lr, ...), the pictures under
# figures/
EPOCH, FIGURES = "epoch/", "figures/"
# the HParams plugin's session status for each run status (it has no "aborted")
HPARAM_STATUS = {"completed": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN"}
SPLITS = ("train", "val", "test")
CHARTS_CATEGORY = "train / val / test"  # the custom-scalars section; one title, so a sweep's runs share it
PROJECTOR_CONFIG = "projector_config.pbtxt"  # where TensorBoard's projector looks, beside the event files


class Recorder:
    def __init__(self, run_dir: Path, epochs: int, sinks: list | None = None):
        self.run_dir, self.epochs, self.sinks = run_dir, epochs, list(sinks or [])
        self.summary: dict = {}

    def epoch(self, metrics: dict) -> None:
        append_metrics(self.run_dir, metrics)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                          if k not in ("epoch", "epoch_seconds", "lr") and v is not None)
        log.info("epoch %d/%d  %s  lr %.3g  %.1fs", metrics["epoch"], self.epochs, shown, metrics["lr"],
                 metrics["epoch_seconds"])
        for key, value in metrics.items():
            if key != "epoch" and value is not None:
                self._each("metric", key, value, metrics["epoch"])
        if metrics["epoch"] == 1:  # names every per-split metric the run writes; a resumed run has its charts
            self.charts(split_charts(metrics))
        self._each("flush")

    def _each(self, method: str, *args) -> None:
        for sink in self.sinks:
            getattr(sink, method)(*args)

    def scalar(self, name: str, value: float, step: int) -> None:
        self._each("scalar", name, value, step)

    def image(self, name: str, image, step: int) -> None:
        """image: (H, W, 3) uint8."""
        self._each("image", name, image, step)

    def figure(self, name: str, fig, step: int) -> None:
        """plots/<name>.png, and the picture to the sinks."""
        image = save_figure(fig, self.run_dir / "plots" / f"{name}.png", pixels=bool(self.sinks))
        if image is not None:
            self.image(name, image, step)

    def text(self, name: str, text: str, step: int) -> None:
        self._each("text", name, text, step)

    def histogram(self, name: str, values, step: int) -> None:
        self._each("histogram", name, values, step)

    def embedding(self, name: str, features, labels: list[str], step: int) -> None:
        """features: (N, D), one label per row."""
        self._each("embedding", name, features, labels, step)

    def charts(self, charts: dict[str, list[str]]) -> None:
        """{title: [scalar names]}: scalars drawn together on one chart."""
        self._each("charts", charts)

    def close(self, status: str) -> None:
        self._each("close", status)


def split_charts(metrics) -> dict[str, list[str]]:
    """{"loss": ["train/loss", "val/loss", "test/loss"], "acc": [...]}: each per-split metric
    among these names, with the splits that have it."""
    charts: dict[str, list[str]] = {}
    for split in SPLITS:
        for key in metrics:
            scope, _, name = key.partition("/")
            if scope == split and name:
                charts.setdefault(name, []).append(key)
    return charts


class TensorBoardSink:
    """TensorBoard event files in the run folder, with HParams for comparing a sweep's runs, a
    custom-scalars layout and the projector's files (projector_config.pbtxt, projector/)."""

    def __init__(self, run_dir: Path, hparams: dict, swept: Sequence[str], fresh: bool):
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.projector = ProjectorConfig()
        if (run_dir / PROJECTOR_CONFIG).is_file():  # a resumed run's embeddings from before it stopped
            text_format.Parse((run_dir / PROJECTOR_CONFIG).read_text(), self.projector)
        if fresh:  # a resumed run already has its HParams
            for summary in hparams_summaries(hparams, swept):
                self.writer.file_writer.add_summary(summary)

    def metric(self, name, value, epoch):
        self.writer.add_scalar(EPOCH + name if name.split("/")[0] in SPLITS else name, value, epoch)

    def scalar(self, name, value, step):
        self.writer.add_scalar(name, value, step)

    def image(self, name, image, step):
        self.writer.add_image(FIGURES + name, image, global_step=step, dataformats="HWC")

    def text(self, name, text, step):
        # the text tab renders Markdown, which collapses runs of spaces and trims the end (what a
        # language model's sample is often made of): a fenced block shows the characters as they are
        self.writer.add_text(name, f"```\n{text}\n```", step)

    def histogram(self, name, values, step):
        self.writer.add_histogram(name, values, step)

    def embedding(self, name, features, labels, step):
        # not SummaryWriter.add_embedding: it keeps the list of embeddings in the writer, so a resumed
        # run's new writer rewrote projector_config.pbtxt without those from before the resume
        import numpy as np
        import torch
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import EmbeddingInfo

        folder = f"projector/{step:05d}/{name}"  # relative to the config: the run folder can move
        with atomic_path(self.run_dir / folder / "tensors.tsv") as tmp:
            np.savetxt(tmp, torch.as_tensor(features).float().numpy(), fmt="%.7g", delimiter="\t")  # (N, D)
        with atomic_path(self.run_dir / folder / "metadata.tsv") as tmp:
            tmp.write_text("".join(f"{label}\n" for label in labels))  # one column: no header row
        info = EmbeddingInfo(tensor_name=f"{name}:{step:05d}", tensor_path=f"{folder}/tensors.tsv",
                             metadata_path=f"{folder}/metadata.tsv")
        kept = [e for e in self.projector.embeddings if e.tensor_name != info.tensor_name]  # a step redone
        del self.projector.embeddings[:]
        self.projector.embeddings.extend([*kept, info])
        with atomic_path(self.run_dir / PROJECTOR_CONFIG) as tmp:
            tmp.write_text(text_format.MessageToString(self.projector))

    def charts(self, charts):
        # a chart's tags are regular expressions (searched, not matched): anchored, so `train/loss`
        # does not also draw a `train/loss_ema`
        layout = {CHARTS_CATEGORY: {title: ["Multiline", [f"^{re.escape(EPOCH + tag)}$" for tag in tags]]
                                    for title, tags in charts.items()}}
        self.writer.add_custom_scalars(layout)

    def flush(self):
        self.writer.flush()

    def close(self, status: str) -> None:
        from torch.utils.tensorboard.summary import hparams

        _, _, sei = hparams({}, {})
        sei.value[0].metadata.plugin_data.content = _session_end_content(HPARAM_STATUS.get(status, "STATUS_FAILURE"))
        self.writer.file_writer.add_summary(sei)
        self.writer.close()


def run_hparams(cfg, swept: Sequence[str] = (), choices: dict | None = None) -> dict:
    """What TensorBoard's HParams tab compares runs by: the keys the run's sweep varies, then the
    handful that identify a run, each with the value a person chose (`mlp`, `fashion_mnist`, `sgd`;
    a config group's choice, not its builder's name); lists as text."""
    choices = choices or {}
    out: dict = {}
    for key in [*swept, *(k for k in IDENTITY if k not in swept)]:
        if key in ("model", "dataset"):
            value = cfg[key].name
        elif key == "optimizer":
            value = choices.get(key) or str(cfg.optimizer._target_).rsplit(".", 1)[-1].lower()
        elif key in choices:
            value = choices[key]  # a config group (variant, scheduler, loss, ...): the option's name
        else:
            value = OmegaConf.select(cfg, key, default=None)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
        if value is not None:
            out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def hparams_summaries(hparams: dict, swept: Iterable[str] = ()) -> list:
    """The HParams plugin's experiment (these hparams, the keys the sweep varies marked as differing,
    so the tab shows them first; the split metrics by their names) and this run's start."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams as torch_hparams

    exp, ssi, _ = torch_hparams(hparams, {EPOCH + m: 0.0 for m in HPARAM_METRICS})
    content = HParamsPluginData.FromString(exp.value[0].metadata.plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in swept
    for info in content.experiment.metric_infos:
        info.display_name = info.name.tag.removeprefix(EPOCH)
    exp.value[0].metadata.plugin_data.content = content.SerializeToString()
    return [exp, ssi]


def _session_end_content(status: str) -> bytes:
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata  # noqa: F401  (proto registry)
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    return HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)),
                             version=0).SerializeToString()
