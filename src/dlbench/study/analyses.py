"""The analyses a study's `analyses:` names, shared by every study: each takes the sweep's runs
and a folder for its figures and returns its section of report.md (markdown lines). Only those
that load weights or data import torch, and only when they run."""
import json
import math
from collections.abc import Callable
from pathlib import Path

from dlbench import choices
from dlbench.choices import ANALYSIS_KINDS
from dlbench.errors import UserError
from dlbench.figures import pyplot, save_figure
from dlbench.report import REPLICATE_KEYS, label, markdown, value_order, varying_keys
from dlbench.report import fmt as _fmt
from dlbench.runs import Run, canonical
from dlbench.stats import half_width
from dlbench.status import Status

ANALYSES: dict[str, Callable] = {}


def analysis(fn: Callable) -> Callable:
    ANALYSES[fn.__name__] = fn
    return fn


def _completed(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status == Status.COMPLETED]


def _name(run: Run, keys: list[str]) -> str:
    return label(keys, tuple(run.overrides.get(k) for k in keys)) or run.path.name


def _order(run: Run, keys: list[str]) -> list:
    return [value_order(run.overrides.get(k)) for k in keys]


def _cells(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    """The completed runs by cell, named and ordered as the report's table has them: runs that
    differ only in their seed are repeats of one setup. A sweep over seeds alone (trajectory,
    gradient_norm) has nothing to repeat: each run is its own cell."""
    keys = varying_keys(runs)
    setup = [k for k in keys if k not in REPLICATE_KEYS]
    done = sorted(_completed(runs), key=lambda r: _order(r, keys))
    if not setup:
        return [(_name(r, keys), [r]) for r in done]
    cells: dict[tuple, list[Run]] = {}
    for r in done:
        cells.setdefault(tuple(r.overrides.get(k) for k in setup), []).append(r)
    return [(label(setup, values), members) for values, members in cells.items()]


def _spread(values: list[float]) -> str:
    """A cell's mean, with the half-width of its 95% interval and the count when it has repeats."""
    if not values:
        return _fmt(None)
    mean = sum(values) / len(values)
    return _fmt(mean) if len(values) < 2 else f"{_fmt(mean, half_width(values))} ({len(values)})"


def _pick(runs: list[Run], where: dict) -> Run:
    """The completed run with these values; of a cell's repeats, the one of the lowest seed."""
    wanted = {k: canonical(str(v)) for k, v in where.items()}
    found = [r for r in _completed(runs) if all(r.overrides.get(k) == v for k, v in wanted.items())]
    if not found:
        raise UserError(f"no completed run with {label(list(wanted), tuple(wanted.values()))}")
    return min(found, key=lambda r: _order(r, list(REPLICATE_KEYS)))


def _figure(fig, path: Path, out: Path) -> str:
    fig.tight_layout()
    save_figure(fig, path)
    return f"![{path.stem}]({path.relative_to(out.parent)})"


@analysis
def interpolate(runs: list[Run], out: Path, a: dict, b: dict, alphas: str = "-1:2:31") -> list[str]:
    """Loss and accuracy along (1 - alpha) theta_a + alpha theta_b (dlbench interpolate)."""
    from dlbench.analysis import interpolate as along_line

    run_a, run_b = _pick(runs, a), _pick(runs, b)
    seeds = [k for k in REPLICATE_KEYS if k in varying_keys(runs) and k not in a and k not in b]
    lo, hi, n = alphas.split(":")
    points = [float(lo) + (float(hi) - float(lo)) * i / (int(n) - 1) for i in range(int(n))]
    rows = along_line(run_a.path, run_b.path, points, out / "interpolate")
    shown = [r for r in rows if abs(r["alpha"] * 2 - round(r["alpha"] * 2)) < 1e-9]  # every half step
    keys = [k for k in rows[0] if k != "alpha"]
    grid = [["alpha", *keys], *[[f"{r['alpha']:g}", *[f"{r[k]:.4f}" for k in keys]] for r in shown]]
    return [f"## Along the line from {_name(run_a, [*a, *seeds])} (alpha 0) to {_name(run_b, [*b, *seeds])} (alpha 1)", "",
            markdown(grid), "", f"![interpolation]({(out / 'interpolate' / 'interpolation.png').relative_to(out.parent)})"]


@analysis
def trajectory(runs: list[Run], out: Path, color: str = "val/loss", layer: str | None = None) -> list[str]:
    """The runs' saved weights (probe=trajectory) on their first two principal components, the
    whole model's and, given `layer`, that layer's."""
    from dlbench.analysis import trajectory as project

    keys = varying_keys(runs)
    names = {r.path: _name(r, keys) for r in _completed(runs)}
    done = list(names)
    if not done:
        raise UserError("no completed run to draw")
    lines = ["## Weight trajectories (PCA)", ""]
    for which in [None, *([layer] if layer else [])]:
        rows = project(done, color, out / "trajectory", layer=which, names=names)
        stem = f"trajectory_{which}" if which else "trajectory"
        lines += [f"{'Layer ' + which if which else 'Whole model'}: {len(rows)} snapshots of {len(done)} runs.", "",
                  f"![{stem}]({(out / 'trajectory' / f'{stem}.png').relative_to(out.parent)})", ""]
    return lines


@analysis
def gallery(runs: list[Run], out: Path, plot: str, title: str | None = None, columns: int = 4) -> list[str]:
    """One figure of every run's `plot` (a path or glob inside the run folder), labelled by its overrides."""
    keys = varying_keys(runs)

    def caption(run: Run, path: Path) -> str:  # a single run needs no name: the file says what it is
        name = _name(run, keys) if keys else ""
        return "\n".join(part for part in (name, path.stem if "*" in plot else "") if part) or path.stem

    tiles = [(caption(r, p), p)
             for r in sorted(_completed(runs), key=lambda r: _order(r, keys))
             for p in sorted(r.path.glob(plot))]
    if not tiles:
        raise UserError(f"no run has {plot}")
    plt = pyplot()
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, tiles):
        ax.imshow(plt.imread(path))
        ax.set_title(name, fontsize=7)
    stem = title or Path(plot).stem.replace("*", "all")
    return [f"## {stem.replace('_', ' ')}", "", _figure(fig, out / f"{stem}.png", out)]


@analysis
def overlay(runs: list[Run], out: Path, file: str = "plots/function.csv", by: str | None = None,
            x: str = "x", y: str = "model", reference: str = "target") -> list[str]:
    """The curves in every run's CSV `file` on shared axes, one panel per value of `by` (the
    reference column drawn once per panel): say, every network's fit of each function."""
    import csv

    panels: dict[str, list[Run]] = {}
    for r in _completed(runs):
        if (r.path / file).is_file():
            panels.setdefault(r.overrides.get(by, "") if by else "", []).append(r)
    if not panels:
        raise UserError(f"no completed run has {file}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (value, members) in zip(axes[0], sorted(panels.items())):
        for i, (name, cell) in enumerate(_cells(members)):  # a cell's repeats share its colour and label
            for j, r in enumerate(cell):
                with open(r.path / file) as f:
                    table = list(csv.DictReader(f))
                xs = [float(row[x]) for row in table]
                if i == j == 0:
                    ax.plot(xs, [float(row[reference]) for row in table], color="black", lw=2, label=reference)
                ax.plot(xs, [float(row[y]) for row in table], lw=1.2, color=f"C{i}",
                        label=(f"{name} ({len(cell)} runs)" if len(cell) > 1 else name) if j == 0 else None)
        ax.set(title=f"{by}={value}" if by else "", xlabel=x)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return [f"## {Path(file).stem} of every run", "", _figure(fig, out / f"{Path(file).stem}_overlay.png", out)]


@analysis
def scatter(runs: list[Run], out: Path, x: str, y: list[str], log_x: bool = False) -> list[str]:
    """Summary numbers `y` against the summary number `x` (say, losses against the parameter
    count), every completed run a point, and the table sorted by x."""
    def values(cell: list[Run], metric: str) -> list[float]:
        return [v for r in cell if (v := r.value(metric)) is not None]

    cells = sorted(((sum(xs) / len(xs), name, cell) for name, cell in _cells(runs) if (xs := values(cell, x))),
                   key=lambda c: c[0])
    if not cells:
        raise UserError(f"no completed run has {x}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(y), figsize=(4.8 * len(y), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], y):  # a cell's mean and 95% interval, its runs' own points faint
        shown = [(v, values(cell, metric)) for v, _, cell in cells if values(cell, metric)]
        if shown:
            ax.errorbar([v for v, _ in shown], [sum(ys) / len(ys) for _, ys in shown], marker="o", capsize=3,
                        yerr=[half_width(ys) or 0.0 for _, ys in shown])
            ax.scatter([v for v, ys in shown for _ in ys], [w for _, ys in shown for w in ys], s=8, alpha=0.4)
        ax.set(xlabel=x, ylabel=metric, xscale="log" if log_x else "linear")
        ax.grid(alpha=0.3)
    grid = [["run", x, *y], *[[name, _fmt(v), *[_spread(values(cell, m)) for m in y]] for v, name, cell in cells]]
    stem = f"{'_'.join(m.replace('/', '_') for m in y)}_vs_{x.replace('/', '_')}"
    return [f"## {', '.join(y)} against {x}", "", markdown(grid), "", _figure(fig, out / f"{stem}.png", out)]


@analysis
def per_class(runs: list[Run], out: Path, field: str = "test/per_class_acc", counts: str = "train/class_counts") -> list[str]:
    """A table of a per-class summary field (test accuracy per class) for every run, with each
    run's training examples per class below it."""
    cells = [(name, kept) for name, cell in _cells(runs)
             if (kept := [r for r in cell if isinstance(r.summary.get(field), dict)])]
    if not cells:
        raise UserError(f"no completed run has {field}")
    classes = list(cells[0][1][0].summary[field])
    repeated = any(len(cell) > 1 for _, cell in cells)
    grid = [["run", *classes, "mean"]]
    for name, cell in cells:  # each class's mean over the cell's runs; the last column with its interval
        per_run = [[r.summary[field].get(c) for c in classes] for r in cell]
        grid.append([name, *[_fmt(sum(col) / len(col)) for col in zip(*per_run)],
                     _spread([sum(row) / len(row) for row in per_run])])
    note = " (each class's mean over a cell's runs; the mean's 95% interval and run count last)" if repeated else ""
    lines = [f"## {field} by class{note}", "", markdown(grid), ""]
    if all(isinstance(r.summary.get(counts), list) for _, cell in cells for r in cell):
        grid = [["run", *classes]]
        for name, cell in cells:  # a split drawn by seed may count differently: then its mean
            same = all(r.summary[counts] == cell[0].summary[counts] for r in cell)
            grid.append([name, *(map(str, cell[0].summary[counts]) if same else
                                 [_fmt(sum(col) / len(col)) for col in zip(*(r.summary[counts] for r in cell))])])
        lines += [f"{counts}:", "", markdown(grid), ""]
    return lines


@analysis
def steps(runs: list[Run], out: Path, file: str = "probes/grad_norm.jsonl", key: str = "grad/norm",
          first: int = 100) -> list[str]:
    """The mean of a per-step probe record (`key` in every run's `file`) over the first `first`
    steps, and its curve."""
    def points(run: Run) -> list[tuple[int, float]]:
        records = [json.loads(line) for line in (run.path / file).read_text().splitlines() if line.strip()]
        return [(rec["step"], rec[key]) for rec in records if key in rec and rec["step"] <= first]

    series = [(name, [points(r) for r in kept]) for name, cell in _cells(runs)
              if (kept := [r for r in cell if (r.path / file).is_file()])]
    if not series:
        raise UserError(f"no completed run has {file}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    grid = [["run", f"mean {key} over steps 1-{first}", "steps"]]
    for name, runs_points in series:  # a cell's curve is its runs' mean at each step
        by_step: dict[int, list[float]] = {}
        for run_points in runs_points:
            for step, v in run_points:
                by_step.setdefault(step, []).append(v)
        if by_step:
            ax.plot(sorted(by_step), [sum(by_step[s]) / len(by_step[s]) for s in sorted(by_step)], lw=1,
                    label=f"{name} (mean of {len(runs_points)})" if len(runs_points) > 1 else name)
        means = [sum(v for _, v in p) / len(p) for p in runs_points if p]
        grid.append([name, _spread(means), "/".join(sorted({str(len(p)) for p in runs_points}))])
    ax.set(xlabel="step", ylabel=key, yscale="log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    stem = f"{key.replace('/', '_')}_first_{first}_steps"
    return [f"## {key} over the first {first} steps", "", markdown(grid), "", _figure(fig, out / f"{stem}.png", out)]


@analysis
def text(runs: list[Run], out: Path, field: str = "generated") -> list[str]:
    """A text field of every run's summary (the characters a language model generated)."""
    keys = varying_keys(runs)
    lines = [f"## {field}", ""]
    for r in _completed(runs):
        if r.summary.get(field):
            lines += [f"**{_name(r, keys)}**", "", "```", str(r.summary[field]).strip(), "```", ""]
    return lines


@analysis
def examples(runs: list[Run], out: Path, per_class: int = 5) -> list[str]:
    """`per_class` training images of every class with its name, the size of every split and the
    shapes of its tensors: the data as the first run saw it (its split and normalisation)."""
    from omegaconf import OmegaConf

    from dlbench.config import build

    run = (_completed(runs) or runs)[0]
    cfg = OmegaConf.load(run.path / ".hydra" / "config.yaml")
    data = build(cfg.dataset, seed=cfg.seed, device="cpu")
    splits = {"train": data.train, **data.eval_splits()}
    grid = [["split", "examples", "x (one batch of all)", "x range", "y", "classes present"]]
    for name, split in splits.items():
        x = split.x
        grid.append([name, f"{len(split):,}", f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}",
                     f"{x.min().item():.3g} to {x.max().item():.3g}", f"{tuple(split.y.shape)} "
                     f"{str(split.y.dtype).replace('torch.', '')}", str(len(set(split.y.tolist())))])
    plt = pyplot()
    k = data.num_classes
    fig, axes = plt.subplots(k, per_class, figsize=(1.3 * per_class + 1.2, 1.3 * k), squeeze=False)
    mean, std = (data.mean or [0.0])[0], (data.std or [1.0])[0]
    for c in range(k):
        chosen = (data.train.y == c).nonzero().flatten()[:per_class]
        for j in range(per_class):
            ax = axes[c][j]
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(chosen):
                image = data.train.x[chosen[j]] * std + mean  # back to [0, 1] pixels: (C, H, W)
                ax.imshow(image.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray")
        axes[c][0].set_ylabel(data.classes[c], rotation=0, ha="right", va="center", fontsize=8)
    return [f"## The data: {cfg.dataset.name} (normalize={data.normalize})", "", markdown(grid), "",
            _figure(fig, out / "examples.png", out)]


@analysis
def info(runs: list[Run], out: Path, configs: dict, batch_sizes: list[int] = (1, 32, 128, 256)) -> list[str]:
    """`dlbench info` of each named config (a list of overrides): every layer's output shape,
    parameters, FLOPs, activation memory and receptive field, and the memory against the batch size."""
    from dlbench import info as model_info
    from dlbench.config import compose_or_explain

    lines = []
    memory = [["config", "parameters (MiB)", *[f"batch {b} activations (MiB)" for b in batch_sizes]]]
    for name, overrides in configs.items():
        described = model_info.info(compose_or_explain([*overrides, "batch_size=1"]))
        grid = [["layer", "kind", "output", "params", "FLOPs/example", "activations/example (KiB)", "RF", "stride"]]
        for layer in described["layers"]:
            grid.append([layer["name"], layer["kind"], "x".join(map(str, layer["shape"][1:])), f"{layer['params']:,}",
                         model_info._si(layer["flops"]), f"{layer['activation_bytes'] / 1024:,.1f}",
                         str(layer["receptive_field"] or ""), str(layer["stride"] or "")])
        per_example = described["activation_bytes"]
        memory.append([name, f"{described['param_bytes'] / 2**20:,.1f}",
                       *[f"{per_example * b / 2**20:,.1f}" for b in batch_sizes]])
        lines += [f"## {name}: {' '.join(overrides)}", "",
                  f"{described['params']:,} parameters, {model_info._si(described['flops_per_example'], 'FLOP')} "
                  f"per example (forward), {per_example / 2**20:,.2f} MiB of activations per example.", "",
                  markdown(grid), ""]
    return [*lines, "## Memory against the batch size (activations kept for the backward pass, estimated)", "",
            markdown(memory), ""]


# the schema checks a study's kinds against dlbench.choices without importing this module
choices.implement(ANALYSIS_KINDS, ANALYSES)
