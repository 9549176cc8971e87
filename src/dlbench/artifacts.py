"""The run folder: metrics.jsonl (one line per epoch), summary.json (atomic), checkpoints, plots."""
import json
import math
import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

STATUSES = ("running", "completed", "diverged", "interrupted", "failed")


def jsonable(value):
    """NaN and inf are not JSON: they become null (the run's status says why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temp file in the same folder, then rename: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(jsonable(data), f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a summary is for everyone who reads the run
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def append_metrics(run_dir: Path, metrics: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(jsonable(metrics)) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, last_epoch: int) -> list[dict]:
    """Keep the lines of epochs <= last_epoch (those the checkpoint covers); return them."""
    kept = [m for m in read_metrics(run_dir) if m["epoch"] <= last_epoch]
    tmp = run_dir / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(m) + "\n" for m in kept))
    os.replace(tmp, run_dir / "metrics.jsonl")
    return kept


def epochs_to_target(history: list[dict], metric: str, target: float) -> tuple[int | None, float | None]:
    """First epoch whose `metric` reaches `target`, and the wall seconds of the epochs up to it."""
    seconds = 0.0
    for m in history:
        seconds += m.get("epoch_seconds", 0.0)
        if m.get(metric) is not None and m[metric] >= target:
            return m["epoch"], round(seconds, 3)
    return None, None


def build_summary(state) -> dict:
    import torch  # here, not at the top: `dlbench report` reads run folders without loading torch

    from dlbench.models import count_params

    cfg, last = state.cfg, (state.history[-1] if state.history else {})
    # the target is an accuracy: a regression run has none
    has_target = state.monitor.endswith("/acc")
    epoch_hit, seconds_hit = epochs_to_target(state.history, state.monitor, cfg.target_acc) if has_target else (None, None)
    return {
        "status": state.status,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1],
        "loss": cfg.loss._target_.rsplit(".", 1)[-1],
        "epochs": cfg.epochs,
        "epochs_completed": state.epoch,
        **{k: v for k, v in last.items() if k != "epoch"},  # the last epoch's metrics
        f"best/{state.monitor}": state.best.get(state.monitor),
        "best/epoch": state.best.get("epoch"),
        "target_acc": cfg.target_acc if has_target else None,
        "target_metric": state.monitor,
        "epochs_to_target": epoch_hit,
        "seconds_to_target": seconds_hit,
        "params": count_params(state.model),
        "wall_seconds": round(state.wall_seconds, 3),
        "train_examples_per_second": (round(state.train_examples / state.train_seconds, 1)
                                      if state.train_seconds else None),
        "device": str(state.device),
        "threads": torch.get_num_threads(),  # throughput depends on it; parallel sweeps split the cores
        "seed": cfg.seed,
        "overrides": state.overrides,
        **state.extras,
        "diverged": state.diverged,
        "error": state.error,
    }


def failed_at_start(cfg, overrides: list[str], error: str, previous: dict | None = None) -> dict:
    """The summary of a run that raised before its first epoch (a bad config value, missing data):
    what is known of it, over whatever an earlier attempt in the same folder recorded."""
    def known(key):
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    return {**(previous or {"epochs_completed": 0}), "status": "failed", "dataset": known("dataset.name"),
            "model": known("model.name"), "epochs": known("epochs"), "seed": known("seed"),
            "overrides": overrides, "error": error}


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display here, none needed), imported
    when a plot is made so that commands which draw nothing do not pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch for every split that was measured."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    kinds = [k for k in ("loss", "acc") if any(f"{s}/{k}" in m for m in history for s in ("train", "val", "test"))]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)  # a regression has no acc
    epochs = [m["epoch"] for m in history]
    for ax, kind in zip(axes[0], kinds):
        for split in ("train", "val", "test"):
            ys = [m.get(f"{split}/{kind}") for m in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [math.nan if y is None else y for y in ys], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
