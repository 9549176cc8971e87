"""Per-class views of a classification run: the training class distribution at the start, and
per-class accuracy and the confusion matrix of the test set at the end (summary.json, plots/,
TensorBoard images)."""
import torch

from dlbench.callbacks import Callback
from dlbench.figures import pyplot
from dlbench.loop import predict
from dlbench.status import FINISHED


def confusion_matrix(pred: torch.Tensor, true: torch.Tensor, k: int) -> torch.Tensor:
    """(k, k) counts: row = true class, column = predicted class."""
    return torch.bincount(true * k + pred, minlength=k * k).view(k, k)


class ClassReport(Callback):
    def on_run_start(self, state) -> None:
        counts = state.data.class_counts.cpu()
        state.recorder.summary["train/class_counts"] = counts.tolist()
        if state.epoch == 0:
            state.recorder.figure("class_distribution",
                                  bar_chart(state.data.classes, counts.tolist(), "training examples per class"), 0)

    def on_run_end(self, state) -> None:
        if state.status not in FINISHED or not state.history:  # see FINISHED: an interrupted run's resume does it
            return
        data = state.data
        pred, true = predict(state.model, data.eval_batches(data.test, state.cfg.trainer.eval_batch_size))
        matrix = confusion_matrix(pred, true, data.num_classes).cpu()
        per_class = (matrix.diag() / matrix.sum(1).clamp(min=1)).tolist()
        state.recorder.summary["test/per_class_acc"] = dict(zip(data.classes, per_class))
        state.recorder.summary["test/confusion"] = matrix.tolist()
        state.recorder.figure("confusion", confusion_figure(data.classes, matrix), state.epoch)


def bar_chart(classes: list[str], counts: list[int], title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(classes)), 3))
    ax.bar(range(len(classes)), counts)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_figure(classes: list[str], matrix: torch.Tensor):
    plt = pyplot()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1 + 0.55 * k, 1 + 0.5 * k))
    ax.imshow(matrix.numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix", fontsize=9)
    fig.tight_layout()
    return fig
