"""Per-class views of a classification run: the training class distribution at the start, and
per-class accuracy and the confusion matrix of the test set at the end (summary.json, plots/,
TensorBoard images)."""
import numpy as np
import torch

from dlbench.artifacts import pyplot
from dlbench.callbacks import Callback
from dlbench.data import Batches
from dlbench.loop import predict


def confusion_matrix(pred: torch.Tensor, true: torch.Tensor, k: int) -> torch.Tensor:
    """(k, k) counts: row = true class, column = predicted class."""
    return torch.bincount(true * k + pred, minlength=k * k).view(k, k)


def _figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8
    import matplotlib.pyplot as plt

    plt.close(fig)
    return image


def save_figure(state, fig, name: str) -> None:
    path = state.run_dir / "plots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    state.images[name] = _figure_to_array(fig)


class ClassReport(Callback):
    def on_run_start(self, state) -> None:
        counts = state.data.class_counts.cpu()
        state.extras["train/class_counts"] = counts.tolist()
        if state.epoch == 0:
            save_figure(state, bar_chart(state.data.classes, counts.tolist(), "training examples per class"),
                        "class_distribution")

    def on_run_end(self, state) -> None:
        if not state.history:
            return
        data = state.data
        pred, true = predict(state.model, Batches(data.test, state.cfg.trainer.eval_batch_size, shuffle=False))
        matrix = confusion_matrix(pred, true, data.num_classes).cpu()
        per_class = (matrix.diag() / matrix.sum(1).clamp(min=1)).tolist()
        state.extras["test/per_class_acc"] = dict(zip(data.classes, per_class))
        state.extras["test/confusion"] = matrix.tolist()
        save_figure(state, confusion_figure(data.classes, matrix), "confusion")


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
