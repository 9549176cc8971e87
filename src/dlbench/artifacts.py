"""The run folder: metrics.jsonl (one line per epoch), summary.json (atomic), checkpoints, plots."""
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from omegaconf import OmegaConf

from dlbench.errors import CorruptFileError
from dlbench.figures import pyplot, save_figure
from dlbench.status import Status



def jsonable(value):
    """NaN and inf are not JSON: they become null (the run's status says why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path in path's folder to write to; renamed over path when the block ends without an
    error, so a reader (or a killed run) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run's files are for everyone who reads it
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), indent=2) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """One record per line. A last line cut short (a process killed while appending it) is
    dropped: the epoch it began is redone on resume. A bad line before the last is named."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif i < len(lines):
            raise CorruptFileError(path, f"line {i} is not a JSON record",
                                   "delete that line (the curves lose one point) and run the command again")
    return records


def truncate_jsonl(path: Path, keep: Callable[[dict], bool]) -> list[dict]:
    """Keep the records a resumed run's checkpoint covers (keep(record) is true); return them.
    Records past the checkpoint are redone by the resumed run, so none is duplicated or missing."""
    kept = [r for r in read_jsonl(path) if keep(r)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_metrics(run_dir: Path, metrics: dict) -> None:
    append_jsonl(run_dir / "metrics.jsonl", metrics)


def read_metrics(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "metrics.jsonl")


def truncate_metrics(run_dir: Path, last_epoch: int) -> list[dict]:
    """Keep the lines of epochs <= last_epoch (those the checkpoint covers); return them."""
    return truncate_jsonl(run_dir / "metrics.jsonl", lambda m: m["epoch"] <= last_epoch)


def epochs_to_target(history: list[dict], metric: str, target: float) -> tuple[int | None, float | None]:
    """First epoch whose `metric` reaches `target`, and the wall seconds of the epochs up to it."""
    seconds = 0.0
    for m in history:
        seconds += m.get("epoch_seconds", 0.0)
        if m.get(metric) is not None and m[metric] >= target:
            return m["epoch"], round(seconds, 3)
    return None, None


def failed_at_start(cfg, overrides: list[str], error: str | None, previous: dict | None = None,
                    status: Status = Status.FAILED) -> dict:
    """The summary of a run that raised before training (a bad config value, missing data, a
    corrupt checkpoint): what is known of it, over whatever an earlier attempt recorded."""
    def known(key):
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    return {**(previous or {"epochs_completed": 0}), "status": status, "dataset": known("dataset.name"),
            "model": known("model.name"), "epochs": known("epochs"), "seed": known("seed"),
            "overrides": overrides, "error": error}


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
    save_figure(fig, path)
