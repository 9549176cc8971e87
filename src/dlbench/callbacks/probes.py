"""Probes: callbacks that measure a run without changing it (`probe=[grad_norm,sharpness,...]`).

Each is off unless chosen, so a run without probes pays nothing. Per-epoch numbers go into the
epoch's metrics (metrics.jsonl, summary.json, TensorBoard); per-step numbers into
probes/<name>.jsonl and TensorBoard; pictures into plots/.
"""
import json
import math

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from dlbench import choices
from dlbench.artifacts import truncate_jsonl
from dlbench.callbacks import Callback
from dlbench.figures import pyplot, save_figure
from dlbench.models.layers import ACTIVATIONS
from dlbench.probing import input_gradient_norm, pca, positive_eigenvalue_fraction, top_hessian_eigenvalue


def _eval_subset(data, n: int):
    split = data.val if data.val is not None else data.test
    return split.prepare(split.x[:n]), split.y[:n]


class GradNorm(Callback):
    """After an optimizer step: the global gradient norm (the gradient the step used, after any
    clipping), each parameter tensor's norm, the mean absolute gradient, and the update-to-weight
    ratio ||theta_t - theta_{t-1}|| / ||theta_{t-1}||. Every step for the first `first_steps`,
    then every `every` steps; one device sync per logged step. A resumed run cuts probes/grad_norm.jsonl
    back to its checkpoint's step and redoes the steps after it, as metrics.jsonl is cut to its epoch."""
    reads_grads = True

    def __init__(self, first_steps: int = 100, every: int = 50, per_layer: bool = True):
        self.first_steps, self.every, self.per_layer = first_steps, every, per_layer
        self.previous, self.kept = None, False
        self.epoch_records: list[dict] = []
        self.all_records: list[dict] = []

    def wanted(self, step: int) -> bool:
        return step <= self.first_steps or step % self.every == 0

    def state_dict(self) -> dict:
        return {"records": self.all_records}  # what the end-of-run plot draws

    def load_state_dict(self, state: dict) -> None:
        self.all_records = list(state["records"])

    def on_run_start(self, state) -> None:
        self.named = [(n, p) for n, p in state.model.named_parameters() if p.requires_grad]
        path = state.run_dir / "probes" / "grad_norm.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl(path, lambda record: record["step"] <= state.global_step)
        self.file = open(path, "a")  # one handle for the run: a logged step costs no open/close
        self.keep_weights(state.global_step + 1)

    def keep_weights(self, next_step: int) -> None:
        """The weights before a step that will be logged, copied into buffers kept for the run."""
        self.kept = self.wanted(next_step)
        if not self.kept:
            return
        weights = [p.detach() for _, p in self.named]  # read each time: a fused group swaps its members' tensors
        if self.previous is None:
            self.previous = [w.clone() for w in weights]
        else:
            torch._foreach_copy_(self.previous, weights)

    @torch.no_grad()
    def on_step(self, state, step: dict) -> None:
        if self.wanted(state.global_step):
            self.record(state)
        self.keep_weights(state.global_step + 1)

    @torch.no_grad()
    def record(self, state) -> None:
        """One step's numbers, each a fused (foreach) pass over the parameters, read in one sync."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in self.named]
        norms = torch.stack(torch._foreach_norm(grads))
        numel = sum(g.numel() for g in grads)
        values = {"grad/norm": norms.norm(), "grad/mean_abs": torch.stack(torch._foreach_norm(grads, 1)).sum() / numel}
        if self.kept:
            weight = torch.stack(torch._foreach_norm(self.previous)).norm()
            torch._foreach_sub_(self.previous, [p.detach() for _, p in self.named])  # theta_{t-1} - theta_t
            values["update/ratio"] = torch.stack(torch._foreach_norm(self.previous)).norm() / weight
        numbers = torch.cat([torch.stack(list(values.values())), norms]).tolist()
        values = dict(zip(values, numbers))
        rec = {"step": state.global_step, **values}
        if self.per_layer:
            rec["grad/norm_by_layer"] = dict(zip((n for n, _ in self.named), numbers[len(values):]))
        self.file.write(json.dumps(rec) + "\n")
        for key in ("grad/norm", "grad/mean_abs", "update/ratio"):
            if key in rec:
                state.recorder.scalar(f"probe/{key}", rec[key], state.global_step)
        for name, value in rec.get("grad/norm_by_layer", {}).items():
            state.recorder.scalar(f"probe/grad/norm/{name}", value, state.global_step)
        self.epoch_records.append(rec)
        self.all_records.append(rec)

    def on_epoch_end(self, state, metrics: dict) -> None:
        for key in ("grad/mean_abs", "update/ratio"):
            values = [r[key] for r in self.epoch_records if key in r]
            if values:
                metrics[key] = sum(values) / len(values)
        if self.epoch_records:  # grad_clip's pre-clip mean, when it is on, is the one kept
            metrics.setdefault("grad/norm", sum(r["grad/norm"] for r in self.epoch_records) / len(self.epoch_records))
        self.epoch_records = []
        self.file.flush()  # a killed run keeps every finished epoch's records

    def on_run_end(self, state) -> None:
        if getattr(self, "file", None) is not None:
            self.file.close()
        if not self.all_records:
            return
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        steps = [r["step"] for r in self.all_records]
        for ax, key in zip(axes, ("grad/norm", "grad/mean_abs", "update/ratio")):
            ax.plot(steps, [r.get(key, math.nan) for r in self.all_records], lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(key, fontsize=9)
        fig.tight_layout()
        state.recorder.figure("grad_norm", fig, state.epoch)


class WeightStats(Callback):
    """Every epoch, per layer: the weight norm (and the weights' histogram in TensorBoard) and the
    fraction of dead ReLUs, units whose output is zero for every example of a fixed evaluation
    subset (a conv unit is a channel)."""

    def __init__(self, examples: int = 1000):
        self.examples = examples

    @torch.no_grad()
    def on_epoch_end(self, state, metrics: dict) -> None:
        model = state.model
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                metrics[f"weights/norm/{name}"] = module.weight.norm().item()
                state.recorder.histogram(f"weights/{name}", module.weight.detach().cpu(), metrics["epoch"])
        metrics.update(dead_relu_fractions(model, _eval_subset(state.data, self.examples)[0]))


@torch.no_grad()
def dead_relu_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    alive: dict[str, torch.Tensor] = {}

    def watch(name):
        def hook(module, inputs, output):  # output (B, units) or (B, C, H, W): a unit is a channel
            active = output.transpose(0, 1).reshape(output.shape[1], -1) > 0
            alive[name] = active.any(dim=1)
        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {f"relu/dead/{name}": 1.0 - a.float().mean().item() for name, a in alive.items()}


class Sharpness(Callback):
    """How sharp the minimum is: the input-gradient norm ||dL/dx|| averaged over test examples,
    the top Hessian eigenvalue of the training loss on a fixed training subset, and (for models
    of at most exact_max_params parameters) the fraction of positive Hessian eigenvalues."""

    def __init__(self, every: int | None = None, examples: int = 1000, iterations: int = 20,
                 exact_max_params: int = 2000):
        self.every, self.examples, self.iterations, self.exact_max_params = every, examples, iterations, exact_max_params

    def on_epoch_end(self, state, metrics: dict) -> None:
        last = metrics["epoch"] == state.cfg.epochs
        if not (last or (self.every and metrics["epoch"] % self.every == 0)):
            return
        model = state.model
        was_training = model.training
        model.eval()  # dropout off, batch norm on its running statistics: a fixed function
        try:
            # Hessian-vector products differentiate twice: of the attention kernels
            # (model=transformer) only the plain math one has a second derivative on every device
            with sdpa_kernel([SDPBackend.MATH]):
                self.measure(state, metrics)
        finally:
            model.train(was_training)

    def measure(self, state, metrics: dict) -> None:
        model, loss_fn, data = state.model, state.loss_fn, state.data
        held_out = data.held_out
        x_test, y_test = held_out.prepare(held_out.x[:self.examples]), held_out.y[:self.examples]
        if x_test.is_floating_point():  # token ids (dataset=modular) have no gradient
            metrics["sharpness/input_grad"] = input_gradient_norm(model, loss_fn, x_test, y_test)
        x, y = data.train.prepare(data.train.x[:self.examples]), data.train.y[:self.examples]
        params = [p for p in model.parameters() if p.requires_grad]
        loss_of = lambda: loss_fn(model(x), y)  # noqa: E731
        metrics["sharpness/hessian_top"] = top_hessian_eigenvalue(loss_of, params, self.iterations)
        if sum(p.numel() for p in params) <= self.exact_max_params:
            metrics["sharpness/positive_fraction"] = positive_eigenvalue_fraction(model, loss_fn, x, y)


class Trajectory(Callback):
    """The flattened weights before training and every `every` epochs, in trajectory/, and which
    slice of them each parameter is (trajectory/params.json), so one layer's path can be drawn."""

    def __init__(self, every: int = 1):
        self.every = every

    def save(self, state, epoch: int) -> None:
        folder = state.run_dir / "trajectory"
        folder.mkdir(exist_ok=True)
        if not (folder / "params.json").exists():
            layout = [[name, p.numel()] for name, p in state.model.named_parameters()]
            (folder / "params.json").write_text(json.dumps(layout) + "\n")
        flat = torch.cat([p.detach().flatten() for p in state.model.parameters()]).cpu()
        torch.save(flat, folder / f"epoch_{epoch:04d}.pt")

    def on_run_start(self, state) -> None:
        if state.epoch == 0:
            self.save(state, 0)

    def on_epoch_end(self, state, metrics: dict) -> None:
        if metrics["epoch"] % self.every == 0:
            self.save(state, metrics["epoch"])


class Embeddings(Callback):
    """Each activation layer's (and the logits') output for a fixed test subset at chosen epochs,
    projected to 2-D (PCA, t-SNE or UMAP) and plotted by class; also to TensorBoard's projector."""

    def __init__(self, epochs: list[int] | None = None, examples: int = 1000, method: str = "pca"):
        if method not in PROJECTIONS:
            raise ValueError(f"unknown embeddings.method {method!r}; valid: {', '.join(PROJECTIONS)}")
        self.epochs, self.examples, self.method = epochs, examples, method

    def on_run_start(self, state) -> None:
        total = state.cfg.epochs
        self.at = set(self.epochs) if self.epochs is not None else {0, total // 2, total}
        if state.epoch == 0 and 0 in self.at:
            self.capture(state, 0)

    def on_epoch_end(self, state, metrics: dict) -> None:
        if metrics["epoch"] in self.at:
            self.capture(state, metrics["epoch"])

    @torch.no_grad()
    def capture(self, state, epoch: int) -> None:
        split = state.data.held_out
        x, y = split.prepare(split.x[:self.examples]), split.y[:self.examples]
        layers = layer_outputs(state.model, x)
        labels = (y[:, 0] if y.is_floating_point() else y).cpu().tolist()  # a regression: its first target
        folder = state.run_dir / "plots" / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        for name, act in layers.items():
            if act.flatten(1).shape[1] < 2:  # a regression's single output: nothing to project
                continue
            points = PROJECTIONS[self.method](act.flatten(1).float().cpu())
            plot_embedding(points, labels, state.data.classes, f"{name} at epoch {epoch} ({self.method})",
                           folder / f"epoch{epoch:03d}_{name}.png")
            metadata = [state.data.classes[k] for k in labels] if state.data.classes else [f"{v:.4g}" for v in labels]
            state.recorder.embedding(name, act.flatten(1).cpu(), metadata, epoch)


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every activation module, and the model's output as `logits`."""
    outputs: dict[str, torch.Tensor] = {}
    kinds = tuple(ACTIVATIONS.values())
    handles = [m.register_forward_hook(lambda mod, i, out, name=n: outputs.__setitem__(f"act{name}", out))
               for n, m in model.named_modules() if isinstance(m, kinds)]
    was_training = model.training
    model.eval()
    try:
        outputs["logits"] = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return outputs


def _tsne(features: torch.Tensor) -> torch.Tensor:
    from sklearn.manifold import TSNE

    reduced = pca(features, 50)[0]  # the usual step before t-SNE: it is quadratic in the dimension
    return torch.from_numpy(TSNE(2, init="pca", random_state=0).fit_transform(reduced.numpy()))


def _umap(features: torch.Tensor) -> torch.Tensor:
    try:
        import umap
    except ImportError as err:
        raise ImportError("embeddings.method=umap needs umap-learn: pip install umap-learn") from err
    return torch.from_numpy(umap.UMAP(random_state=0).fit_transform(pca(features, 50)[0].numpy()))


PROJECTIONS = choices.implement(choices.EMBEDDING_METHODS, {"pca": lambda f: pca(f, 2)[0], "tsne": _tsne, "umap": _umap})


def plot_embedding(points: torch.Tensor, labels: list[int], classes: list[str], title: str, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if classes and len(classes) <= 10:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=5)
        ax.legend(scatter.legend_elements()[0], classes, fontsize=6, loc="best", markerscale=0.8)
    else:  # a regression's target, or too many classes for a legend (97 residues): a colour scale
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="viridis", s=5)
        fig.colorbar(scatter, ax=ax, label="class" if classes else "target")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)

