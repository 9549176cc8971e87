"""Studies: an experiment file with a `study:` node is one command that trains, analyses and reports.

`dlbench train experiment=NAME` runs the file's sweep (its `hydra.sweeper.params`; the file sets
`hydra.mode: MULTIRUN`), then writes the sweep's report.md laid out as the study says, with the
sections its analyses add. `quick=true` puts the study's `quick` overrides before the user's: the
same study, small enough for a first look and for the tests. Every other multirun gets the
default report. The code here serves every study; a study itself is data:

    study:
      about: one line for `dlbench list`
      quick: [epochs=2, dataset.limit=2000]   # overrides for quick=true (the user's own still win)
      rows: [lr]                              # the table: override keys down and across,
      cols: [model.hidden]                    # and the summary numbers in each cell
      metrics: [test/acc, epochs_to_target]
      curves: [loss, acc]                     # per-epoch metrics drawn for every run
      analyses:                               # each one {kind: <a function below>, its arguments}
        - {kind: interpolate, a: {batch_size: 64}, b: {batch_size: 1024}}

Reading a study needs no torch: only the analyses that load weights import it.
"""
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from dlbench.errors import ConfigError, UserError
from dlbench.figures import pyplot, save_figure
from dlbench.report import Run, canonical, label, load_runs, markdown, report, value_order, varying_keys
from dlbench.report import fmt as _fmt
from dlbench.status import Status

LAYOUT_KEYS = ("about", "quick", "rows", "cols", "metrics", "curves", "target", "analyses")
ANALYSES: dict[str, Callable] = {}


def analysis(fn: Callable) -> Callable:
    ANALYSES[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- the command line of a study

def study_config(args: list[str]):
    """The composed config (with Hydra's node) of a `dlbench train` command line, at every sweep
    override's first value."""
    return _composed(tuple(args))


@functools.lru_cache(maxsize=4)  # expand and the check before the sweep ask for the same command line
def _composed(args: tuple[str, ...]):
    from hydra import compose, initialize_config_dir

    from dlbench.config import CONF_DIR, compose_or_explain, sweep_points

    if "--into" in args:  # its folder is not an override
        at = args.index("--into")
        args = (*args[:at], *args[at + 2:])
    first = sweep_points([*args, "-m"])[0]
    compose_or_explain(first)  # a bad override is answered in one line before Hydra's own compose
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=first, return_hydra_config=True)


def expand(args: list[str]) -> list[str]:
    """The command line a study runs: -m (the file sets hydra.mode=MULTIRUN for Hydra; dlbench
    makes the sweep folder before Hydra starts, so it needs to know too), and with quick=true the
    study's quick overrides before the user's, so that the user's own win."""
    if not any(a.lstrip("+").split("=")[0] in ("experiment", "quick") for a in args):
        return args
    cfg = study_config(args)
    layout, quick = cfg.get("study"), cfg.get("quick") is True  # another value is the schema's to refuse
    if quick and layout is None:
        raise ConfigError("quick", True, "shortens a study, and the experiment chosen (if any) has none",
                          f"add experiment=NAME; studies: {', '.join(studies())}")
    if layout is None:
        return args
    one_run = "hydra.mode=RUN" in args  # the study's setup, trained once
    multirun = [] if ("-m" in args or "--multirun" in args or one_run) else ["-m"]
    shorter = [str(o) for o in layout.get("quick") or []] if quick else []
    return [*multirun, *shorter, *args]


def sweep_params(args: list[str]) -> list[str]:
    """The sweep a study's file adds to the command line (hydra.sweeper.params), as overrides, for
    checking each value before anything runs; the command line's own value of a key wins."""
    if not any(a.lstrip("+").split("=")[0] == "experiment" for a in args):
        return []
    cfg = study_config(args)
    given = {a.lstrip("+~").split("=")[0] for a in args if "=" in a}
    params = cfg.hydra.sweeper.get("params") or {}
    if not str(cfg.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []  # Optuna's search spaces (interval, tag) are its own to check
    return [f"{k}={v}" for k, v in params.items() if k not in given]


def studies() -> dict[str, str]:
    """Each experiment file that is a study, with its one line."""
    from dlbench.config import CONF_DIR, group_options

    found = {}
    for name in group_options("experiment"):
        node = (yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text()) or {}).get("study")
        if node:
            found[name] = str(node.get("about", ""))
    return found


def check(layout: dict | None) -> None:
    """A study's layout: known keys, known analyses (the schema calls this before anything runs)."""
    if not layout:
        return
    for key in layout:
        if key not in LAYOUT_KEYS:
            raise ConfigError(f"study.{key}", layout[key], "is not a key of a study",
                              f"valid: {', '.join(LAYOUT_KEYS)}")
    for i, spec in enumerate(layout.get("analyses") or []):
        if not isinstance(spec, dict) or spec.get("kind") not in ANALYSES:
            raise ConfigError(f"study.analyses[{i}]", spec, "names no analysis",
                              f"write {{kind: NAME, ...}}; valid kinds: {', '.join(ANALYSES)}")


# ---------------------------------------------------------------- after the sweep

def read_study(sweep_dir: Path) -> dict | None:
    """The study recorded in a sweep folder's multirun.yaml, or None (not a study, not a sweep)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("study")
    except (yaml.YAMLError, AttributeError):
        return None  # report's own reading says what is wrong with the file


def finish(sweep_dir: Path, out: Path | None = None, fmt_name: str = "md") -> str:
    """The study's report of sweep_dir: its table and curves, then each analysis's section. An
    analysis that fails says so in its section and the report is still written."""
    layout = read_study(sweep_dir) or {}
    out = Path(out or sweep_dir)
    runs = load_runs([Path(sweep_dir)])
    sections = []
    for spec in layout.get("analyses") or []:
        kind, kwargs = spec["kind"], {k: v for k, v in spec.items() if k != "kind"}
        try:
            sections += ANALYSES[kind](runs, out / "analysis", **kwargs) + [""]
        except UserError as err:
            print(f"dlbench: study analysis {kind}: {err}", file=sys.stderr)
            sections += [f"## {kind}", "", f"Not drawn: {err}", ""]
    name = Path(sweep_dir).name
    title = f"{layout.get('about') or 'Study'} ({name})" if layout else None
    text = report([Path(sweep_dir)], layout.get("metrics"), layout.get("rows"), layout.get("cols"),
                  layout.get("target"), fmt_name, out, title=title,
                  curves=tuple(layout.get("curves") or ("loss", "acc")), sections=sections)
    return f"{text}\n\nreport: {out / 'report.md'}"


# ---------------------------------------------------------------- analyses: shared by every study

def _completed(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status == Status.COMPLETED]


def _name(run: Run, keys: list[str]) -> str:
    return label(keys, tuple(run.overrides.get(k) for k in keys)) or run.path.name


def _pick(runs: list[Run], where: dict) -> Run:
    wanted = {k: canonical(str(v)) for k, v in where.items()}
    for r in _completed(runs):
        if all(r.overrides.get(k) == v for k, v in wanted.items()):
            return r
    raise UserError(f"no completed run with {label(list(wanted), tuple(wanted.values()))}")


def _figure(fig, path: Path, out: Path) -> str:
    fig.tight_layout()
    save_figure(fig, path)
    return f"![{path.stem}]({path.relative_to(out.parent)})"


@analysis
def interpolate(runs: list[Run], out: Path, a: dict, b: dict, alphas: str = "-1:2:31") -> list[str]:
    """Loss and accuracy along (1 - alpha) theta_a + alpha theta_b (dlbench interpolate)."""
    from dlbench.analysis import interpolate as along_line

    run_a, run_b = _pick(runs, a), _pick(runs, b)
    lo, hi, n = alphas.split(":")
    points = [float(lo) + (float(hi) - float(lo)) * i / (int(n) - 1) for i in range(int(n))]
    rows = along_line(run_a.path, run_b.path, points, out / "interpolate")
    shown = [r for r in rows if abs(r["alpha"] * 2 - round(r["alpha"] * 2)) < 1e-9]  # every half step
    keys = [k for k in rows[0] if k != "alpha"]
    grid = [["alpha", *keys], *[[f"{r['alpha']:g}", *[f"{r[k]:.4f}" for k in keys]] for r in shown]]
    return [f"## Along the line from {_name(run_a, list(a))} (alpha 0) to {_name(run_b, list(b))} (alpha 1)", "",
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
             for r in sorted(_completed(runs), key=lambda r: [value_order(r.overrides.get(k)) for k in keys])
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

    keys = [k for k in varying_keys(runs) if k != by]
    panels: dict[str, list[Run]] = {}
    for r in _completed(runs):
        if (r.path / file).is_file():
            panels.setdefault(r.overrides.get(by, "") if by else "", []).append(r)
    if not panels:
        raise UserError(f"no completed run has {file}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (value, members) in zip(axes[0], sorted(panels.items())):
        for i, r in enumerate(sorted(members, key=lambda r: [value_order(r.overrides.get(k)) for k in keys])):
            with open(r.path / file) as f:
                table = list(csv.DictReader(f))
            xs = [float(row[x]) for row in table]
            if i == 0:
                ax.plot(xs, [float(row[reference]) for row in table], color="black", lw=2, label=reference)
            ax.plot(xs, [float(row[y]) for row in table], lw=1.2, label=_name(r, keys))
        ax.set(title=f"{by}={value}" if by else "", xlabel=x)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return [f"## {Path(file).stem} of every run", "", _figure(fig, out / f"{Path(file).stem}_overlay.png", out)]


@analysis
def scatter(runs: list[Run], out: Path, x: str, y: list[str], log_x: bool = False) -> list[str]:
    """Summary numbers `y` against the summary number `x` (say, losses against the parameter
    count), every completed run a point, and the table sorted by x."""
    keys = varying_keys(runs)
    points = sorted((r.value(x), r) for r in _completed(runs) if r.value(x) is not None)
    if not points:
        raise UserError(f"no completed run has {x}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(y), figsize=(4.8 * len(y), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], y):
        shown = [(v, r.value(metric)) for v, r in points if r.value(metric) is not None]
        ax.plot(*zip(*shown), marker="o") if shown else None
        ax.set(xlabel=x, ylabel=metric, xscale="log" if log_x else "linear")
        ax.grid(alpha=0.3)
    grid = [["run", x, *y], *[[_name(r, keys), _fmt(v), *[_fmt(r.value(m)) for m in y]] for v, r in points]]
    stem = f"{'_'.join(m.replace('/', '_') for m in y)}_vs_{x.replace('/', '_')}"
    return [f"## {', '.join(y)} against {x}", "", markdown(grid), "", _figure(fig, out / f"{stem}.png", out)]


@analysis
def per_class(runs: list[Run], out: Path, field: str = "test/per_class_acc", counts: str = "train/class_counts") -> list[str]:
    """A table of a per-class summary field (test accuracy per class) for every run, with each
    run's training examples per class below it."""
    keys = varying_keys(runs)
    done = [r for r in _completed(runs) if isinstance(r.summary.get(field), dict)]
    if not done:
        raise UserError(f"no completed run has {field}")
    classes = list(done[0].summary[field])
    grid = [["run", *classes, "mean"]]
    for r in done:
        values = [r.summary[field].get(c) for c in classes]
        grid.append([_name(r, keys), *[_fmt(v) for v in values], _fmt(sum(values) / len(values))])
    lines = [f"## {field} by class", "", markdown(grid), ""]
    if all(isinstance(r.summary.get(counts), list) for r in done):
        grid = [["run", *classes], *[[_name(r, keys), *map(str, r.summary[counts])] for r in done]]
        lines += [f"{counts}:", "", markdown(grid), ""]
    return lines


@analysis
def steps(runs: list[Run], out: Path, file: str = "probes/grad_norm.jsonl", key: str = "grad/norm",
          first: int = 100) -> list[str]:
    """The mean of a per-step probe record (`key` in every run's `file`) over the first `first`
    steps, and its curve."""
    keys = varying_keys(runs)
    series = []
    for r in _completed(runs):
        path = r.path / file
        if path.is_file():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            series.append((r, [(rec["step"], rec[key]) for rec in records if key in rec and rec["step"] <= first]))
    if not series:
        raise UserError(f"no completed run has {file}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    grid = [["run", f"mean {key} over steps 1-{first}", "steps"]]
    for r, points in sorted(series, key=lambda s: [value_order(s[0].overrides.get(k)) for k in keys]):
        if points:
            ax.plot(*zip(*points), lw=1, label=_name(r, keys))
        mean = sum(v for _, v in points) / len(points) if points else None
        grid.append([_name(r, keys), _fmt(mean), str(len(points))])
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
