"""What the generated tasks draw and record at the end of a run (see dlbench.tasks):
the fitted function, the decision boundary over 2-D points, and grokking's two steps."""
import math

import torch

from dlbench.callbacks import Callback
from dlbench.figures import pyplot
from dlbench.status import FINISHED


class ModelFigure(Callback):
    """A figure of the trained model, drawn when the run has finished (see FINISHED), into
    plots/<name>.png and TensorBoard."""
    name = ""

    @torch.no_grad()
    def on_run_end(self, state) -> None:
        if state.status in FINISHED and state.history:
            state.model.eval()
            state.recorder.figure(self.name, self.draw(state), state.epoch)

    def draw(self, state):
        raise NotImplementedError


class FunctionPlot(ModelFigure):
    """plots/function.png: the target on the test grid, the model's prediction, the training points;
    plots/function.csv: the target and the prediction on the grid."""
    name = "function"

    def draw(self, state):
        data, model = state.data, state.model
        grid, target = data.test.x, data.test.y  # (N, 1) each, the grid sorted
        prediction = model(data.test.prepare(grid))
        rows = torch.stack([grid[:, 0], target[:, 0], prediction[:, 0]], 1).cpu().tolist()
        state.run_dir.joinpath("plots").mkdir(exist_ok=True)  # the fit as numbers: a study overlays its runs'
        state.run_dir.joinpath("plots", "function.csv").write_text(
            "x,target,model\n" + "".join(f"{x:.6g},{t:.6g},{m:.6g}\n" for x, t, m in rows))
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(data.train.x[:, 0].cpu(), data.train.y[:, 0].cpu(), s=4, alpha=0.3, color="grey", label="train")
        ax.plot(grid[:, 0].cpu(), target[:, 0].cpu(), color="black", lw=1.5, label="target")
        ax.plot(grid[:, 0].cpu(), prediction[:, 0].cpu(), color="tab:red", lw=1.5, label="model")
        mse = state.history[-1].get("test/loss")
        depth = f" depth {state.cfg.model.depth}," if "depth" in state.cfg.model else ""
        ax.set_title(f"{state.cfg.dataset.function}: {state.cfg.model.name},{depth} "
                     f"{sum(p.numel() for p in model.parameters()):,} params, test mse {mse:.3g}", fontsize=9)
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig


class DecisionBoundary(ModelFigure):
    """plots/decision_boundary.png: the model's probability of the positive class over the plane,
    the training points filled and the test points hollow (as the Playground draws them)."""
    name = "decision_boundary"

    def __init__(self, resolution: int = 200):
        self.resolution = resolution

    def draw(self, state):
        data, model = state.data, state.model
        points = torch.cat([data.train.x, data.test.x])  # (N, 2) raw coordinates
        lo, hi = points.min(0).values, points.max(0).values
        pad = 0.1 * (hi - lo).clamp(min=1e-3)
        axes = [torch.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), self.resolution, device=points.device)
                for i in range(2)]
        g1, g2 = torch.meshgrid(*axes, indexing="xy")  # (R, R) each
        grid = torch.stack([g1.flatten(), g2.flatten()], dim=1)
        probability = model(data.train.prepare(grid)).softmax(1)[:, 1].view(self.resolution, self.resolution)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 4.5))
        image = ax.contourf(g1.cpu(), g2.cpu(), probability.cpu(), levels=20, cmap="RdBu", vmin=0, vmax=1, alpha=0.8)
        ax.contour(g1.cpu(), g2.cpu(), probability.cpu(), levels=[0.5], colors="black", linewidths=1)
        shown = [(data.train, True)] + ([(data.test, False)] if data.test.x is not data.train.x else [])
        for split, filled in shown:  # boolean's test split is its training table: drawn once
            colours = ["tab:red" if k == 0 else "tab:blue" for k in split.y.tolist()]
            ax.scatter(split.x[:, 0].cpu(), split.x[:, 1].cpu(), s=18, c=colours if filled else "none",
                       edgecolors="black" if filled else colours, linewidths=0.6 if filled else 1.2)
        fig.colorbar(image, ax=ax, label="p(positive)")
        last = state.history[-1]
        kind = state.cfg.dataset.get("kind") or state.cfg.dataset.get("function") or ""
        ax.set_title(f"{state.cfg.dataset.name} {kind}: train acc {last.get('train/acc', math.nan):.3f}, "
                     f"test acc {last.get('test/acc', math.nan):.3f}", fontsize=9)
        fig.tight_layout()
        return fig


def first_step(history: list[dict], metric: str, threshold: float, steps_per_epoch: int) -> int | None:
    """The step at the end of the first epoch whose `metric` reached `threshold`."""
    hit = next((m["epoch"] for m in history if (m.get(metric) or 0.0) >= threshold), None)
    return None if hit is None else hit * steps_per_epoch


class Grokking(Callback):
    """summary.json's grokking/train_step and grokking/val_step (the first step each accuracy
    reaches the threshold, at the resolution of an epoch) and grokking/gap (val_step - train_step),
    with plots/grokking.png: both accuracies against steps on a log axis."""

    def __init__(self, threshold: float = 0.99):
        self.threshold = threshold

    def on_run_end(self, state) -> None:
        if not state.history:
            return
        per_epoch = len(state.train_batches)
        train = first_step(state.history, "train/acc", self.threshold, per_epoch)
        val = first_step(state.history, "val/acc", self.threshold, per_epoch)
        state.recorder.summary.update({"grokking/threshold": self.threshold, "grokking/train_step": train,
                                       "grokking/val_step": val,
                                       "grokking/gap": None if train is None or val is None else val - train})
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        steps = [m["epoch"] * per_epoch for m in state.history]
        for split in ("train", "val"):
            ax.plot(steps, [m.get(f"{split}/acc") for m in state.history], label=split)
        for step, colour in ((train, "tab:blue"), (val, "tab:orange")):
            if step is not None:
                ax.axvline(step, color=colour, ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{state.cfg.dataset.operation} mod {state.cfg.dataset.p}, train fraction "
                     f"{state.cfg.dataset.train_fraction}: {self.threshold:.0%} at steps {train} (train), {val} (val)",
                     fontsize=9)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        state.recorder.figure("grokking", fig, state.epoch)
