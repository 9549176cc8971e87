"""Analyses over finished runs: `dlbench interpolate` and `dlbench trajectory`."""
import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dlbench.artifacts import read_metrics
from dlbench.run.checkpoint import load as load_checkpoint
from dlbench.config import build
from dlbench.errors import CorruptFileError, UserError, first_line
from dlbench.paths import user_folder
from dlbench.figures import pyplot, save_figure
from dlbench.losses import build_loss
from dlbench.probing import pca
from dlbench.runtime import resolve_device


def _load_run(run_dir: Path) -> dict:
    path = run_dir / "checkpoints" / "last.pt"
    if not path.exists():
        raise UserError(f"{run_dir}: no checkpoints/last.pt; give a run folder trained with trainer.checkpoint=true")
    ckpt = load_checkpoint(path, "cpu")
    bad = next((k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # a diverged run: every point of a path through it would be NaN
        raise UserError(f"{run_dir}: its weights are not finite ({bad} holds NaN or inf: the run diverged); "
                        "give runs whose weights are numbers")
    return ckpt


def blend(a: dict, b: dict, alpha: float) -> dict:
    """(1 - alpha) a + alpha b for every floating tensor (weights and batch-norm statistics);
    integer buffers (batch counts) come from a. alpha outside [0, 1] extrapolates."""
    return {k: (1 - alpha) * a[k] + alpha * b[k] if a[k].is_floating_point() else a[k] for k in a}


def interpolate(run_a: Path, run_b: Path, alphas: list[float], out: Path | None = None,
                device: str = "auto") -> list[dict]:
    """The loss (and accuracy) on every split of the weights (1 - alpha) theta_a + alpha theta_b:
    the 1-D picture of the loss landscape between two solutions (e.g. small- and large-batch).
    Both are evaluated on run A's data (its split and normalisation), the same as B's when the two
    runs share dataset and seed, in the way their task evaluates (a language model's state runs
    through each split)."""
    ckpt_a, ckpt_b = _load_run(run_a), _load_run(run_b)
    cfg = OmegaConf.create(ckpt_a["config"])
    if ckpt_a["config"]["model"] != ckpt_b["config"]["model"]:
        raise UserError(f"{run_a} and {run_b} have different models; give two runs of the same architecture")
    shapes = {k: (tuple(v.shape), tuple(ckpt_b["model"][k].shape) if k in ckpt_b["model"] else None)
              for k, v in ckpt_a["model"].items()}
    differ = next(((k, a, b) for k, (a, b) in shapes.items() if a != b), None)
    if differ is not None or set(ckpt_b["model"]) - set(ckpt_a["model"]):  # one model config, two datasets' shapes
        k, a, b = differ or (next(iter(set(ckpt_b["model"]) - set(ckpt_a["model"]))), None, "present")
        raise UserError(f"{run_a} and {run_b} have weights of different shapes ({k}: {a} and {b}), their data "
                        f"differ (dataset={ckpt_a['config']['dataset'].get('name')} and "
                        f"{ckpt_b['config']['dataset'].get('name')}); give two runs of the same model on the same data")
    dev = resolve_device(device)
    data = build(cfg.dataset, seed=cfg.seed, device=dev)  # run A's split: its training set is 'train'
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(dev)
    loss_fn = build_loss(cfg.loss, data)  # the run's own: its evaluation loss, mse for a regression
    splits = {"train": data.train, **data.eval_splits()}
    rows = []
    for alpha in alphas:
        model.load_state_dict(blend(ckpt_a["model"], ckpt_b["model"], alpha))
        rows.append({"alpha": round(alpha, 6), **data.task.evaluate(model, data, splits, loss_fn, cfg)})
    out = out or run_a.parent / f"interpolate_{run_a.name}__{run_b.name}"
    _write_rows(rows, out / "interpolation")
    _plot_interpolation(rows, out / "interpolation.png", f"{run_a.name}  ->  {run_b.name}")
    return rows


def _write_rows(rows: list[dict], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot_interpolation(rows: list[dict], path: Path, title: str) -> None:
    plt = pyplot()
    kinds = [k for k in ("loss", "acc") if f"train/{k}" in rows[0]]  # a regression has no accuracy
    splits = list(dict.fromkeys(key.split("/")[0] for key in rows[0] if "/" in key))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    alphas = [r["alpha"] for r in rows]
    for ax, kind in zip(axes[0], kinds):
        for split in splits:
            ax.plot(alphas, [r[f"{split}/{kind}"] for r in rows], marker="o", ms=3, label=split)
        ax.axvline(0, color="grey", lw=0.5)
        ax.axvline(1, color="grey", lw=0.5)
        ax.set_xlabel("alpha  (0: first run, 1: second run)")
        ax.set_ylabel({"loss": "loss", "acc": "accuracy"}[kind])
        ax.legend()
    losses = [r[f"{split}/loss"] for r in rows for split in splits if f"{split}/loss" in r]
    if any(v > 0 for v in losses if v == v):  # log scale needs a positive loss (an overflow gives inf or NaN)
        axes[0][0].set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pca(points, 2)


def trajectory(runs: list[Path], color: str = "val/loss", out: Path | None = None,
               layer: str | None = None, names: dict[Path, str] | None = None) -> list[dict]:
    """Project the saved weights of one or several runs (probe=trajectory) onto their first two
    principal components, one line per run, coloured by `color` at that epoch. `layer` (a
    parameter's name, or the start of several: `net.0`) keeps only those weights. `names` labels
    the runs (default: their folder names)."""
    snapshots, rows, left_out = [], [], []
    for run in runs:
        files = sorted((run / "trajectory").glob("epoch_*.pt"))
        if not files:
            raise UserError(f"{run}: no trajectory/ snapshots; train it with probe=trajectory")
        keep = _layer_slices(run, layer) if layer else None
        by_epoch = {m["epoch"]: m for m in read_metrics(run)}
        if by_epoch and not any(color in m for m in by_epoch.values()):
            valid = sorted({k for m in by_epoch.values() for k in m if k != "epoch"})
            raise UserError(f"--color {color}: {run} has no such metric; valid: {', '.join(valid)}")
        for f in files:
            epoch = int(f.stem.split("_")[1])
            flat = _snapshot(f)
            if not torch.isfinite(flat).all():  # a diverged run's last snapshots: no point on the plane
                left_out.append(f)
                continue
            snapshots.append(torch.cat([flat[a:b] for a, b in keep]) if keep else flat)
            rows.append({"run": (names or {}).get(run, run.name), "epoch": epoch,
                         color: by_epoch.get(epoch, {}).get(color)})
    if len(snapshots) < 2:
        raise UserError(f"{', '.join(map(str, runs))}: {len(snapshots)} snapshot(s) with finite weights; a plane "
                        "needs two or more (train longer, or give more runs)")
    for f in left_out:
        print(f"dlbench: {f}: weights not finite (the run diverged); left out", file=sys.stderr)
    if len({s.numel() for s in snapshots}) > 1:
        raise UserError(f"{', '.join(map(str, runs))}: the runs' models differ in size; give runs of one architecture")
    coords, explained = pca_2d(torch.stack(snapshots))
    for row, (x, y) in zip(rows, coords.tolist()):
        row["pc1"], row["pc2"] = x, y
    out = out or runs[0].parent / "trajectory"
    stem = f"trajectory_{layer}" if layer else "trajectory"
    _write_rows(rows, out / stem)
    _plot_trajectory(rows, color, explained[:2].tolist(), out / f"{stem}.png", layer)
    return rows


def _layer_slices(run: Path, layer: str) -> list[tuple[int, int]]:
    """The [start, end) slices of the flattened weights that belong to parameters named `layer`
    or starting with `layer.`."""
    path = run / "trajectory" / "params.json"
    try:
        layout = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{run}: no readable trajectory/params.json to find layer {layer!r} in; "
                        "train it again with probe=trajectory") from None
    slices, start = [], 0
    for name, size in layout:
        if name == layer or name.startswith(layer + "."):
            slices.append((start, start + size))
        start += size
    if not slices:
        raise UserError(f"layer {layer!r}: no such parameter in {run}; valid: {', '.join(n for n, _ in layout)}")
    return slices


def _snapshot(path: Path) -> torch.Tensor:
    try:
        return torch.load(path).double()
    except Exception as err:
        raise CorruptFileError(path, f"is not a weight snapshot ({first_line(err)})",
                               "delete it; the trajectory is drawn from the others") from None


def _plot_trajectory(rows: list[dict], color: str, explained: list[float], path: Path,
                     layer: str | None = None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    values = [r[color] for r in rows if r[color] is not None]
    vmin, vmax = (min(values), max(values)) if values else (0, 1)
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        ax.plot([r["pc1"] for r in mine], [r["pc2"] for r in mine], color="grey", lw=0.8, zorder=1)
        ax.annotate(run, (mine[-1]["pc1"], mine[-1]["pc2"]), fontsize=6)
    shown = [r for r in rows if r[color] is not None]
    points = ax.scatter([r["pc1"] for r in shown], [r["pc2"] for r in shown], c=[r[color] for r in shown],
                        cmap="viridis", vmin=vmin, vmax=vmax, s=18, zorder=2)
    start = [r for r in rows if r[color] is None]
    ax.scatter([r["pc1"] for r in start], [r["pc2"] for r in start], marker="x", color="black", s=18, zorder=2)
    fig.colorbar(points, label=color)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2")
    ax.set_title(f"{'weights of ' + layer if layer else 'weight'} trajectories (x: before training)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def interpolate_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlbench interpolate")
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--alphas", default="-0.5:1.5:21", help="FROM:TO:N, evenly spaced (default -0.5:1.5:21)")
    parser.add_argument("--out", type=Path)
    if "--alphas" in args[:-1]:  # argparse takes "-0.5:1.5:21" for an option; the = form it reads as a value
        i = args.index("--alphas")
        args = [*args[:i], f"--alphas={args[i + 1]}", *args[i + 2:]]
    ns = parser.parse_args(args)
    if ns.out is not None:
        ns.out = user_folder(ns.out, "--out")
    try:
        lo, hi, n = ns.alphas.split(":")
        alphas = [float(lo) + (float(hi) - float(lo)) * i / (int(n) - 1) for i in range(int(n))]
        if int(n) < 2:
            raise ValueError
    except ValueError:
        raise UserError(f"--alphas {ns.alphas}: not FROM:TO:N; give two numbers and a count >= 2, "
                        "e.g. --alphas -0.5:1.5:21") from None
    for row in interpolate(ns.run_a, ns.run_b, alphas, ns.out):
        print("  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    return 0


def trajectory_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlbench trajectory")
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--color", default="val/loss", help="the metric that colours the points")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(args)
    rows = trajectory(ns.runs, ns.color, ns.out)
    print(f"{len(rows)} snapshots of {len(ns.runs)} run(s) -> {(ns.out or ns.runs[0].parent / 'trajectory')}")
    return 0
