"""The report of sweeps' runs (read by dlbench.runs): a table whose rows and columns are the
overrides that vary and whose cells are the mean over seeds with its 95% interval, marked where a
difference from the column's best is within the noise (Welch's t-test, dlbench.stats), notes (the
largest learning rate that did not diverge), every run with its status, and overlaid curves;
report.md, report.csv, runs.csv and plots/."""
import csv
import io
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dlbench.figures import pyplot, save_figure
from dlbench.metrics import goal
from dlbench.runs import ReportError, Run, load_runs
from dlbench.search import TRIAL_KEY
from dlbench.stats import Difference, half_width, welch
from dlbench.status import Status

REPLICATE_KEYS = ("seed",)  # runs that differ only in these are repeats of one cell
# the columns of runs whose summary does not name its own (report_columns, written by the run's task)
FALLBACK_COLUMNS = ("test/acc", "best/{monitor}", "epochs_to_target", "params", "wall_seconds")
LR_KEYS = ("lr", "optimizer.lr")
# None there means the target (or grokking's threshold) was never reached
NOT_REACHED = ("epochs_to_target", "seconds_to_target", "grokking/train_step", "grokking/val_step", "grokking/gap")


# ---------------------------------------------------------------- the table

def value_order(value):
    """Numbers in numeric order (lr 0.001 < 0.01 < 0.1), then lists of numbers in numeric order
    (model.hidden [4] < [16] < [512] < [512,512]), everything else after, as text."""
    if value is None:
        return (0, (), "")
    try:
        return (1, (float(value),), "")
    except ValueError:
        pass
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            return (2, tuple(float(v) for v in text[1:-1].split(",") if v.strip()), "")
        except ValueError:
            pass
    return (3, (), text)


def varying_keys(runs: list[Run]) -> list[str]:
    keys = sorted({k for r in runs for k in r.overrides})
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


def choose_layout(runs: list[Run], rows: list[str] | None, cols: list[str] | None) -> tuple[list[str], list[str]]:
    """Rows and columns of the table: the keys given, and every other key that varies (seeds
    aside) as rows, so no difference between runs is silently averaged over. By default the key
    with the fewest values, names before numbers (say `model`), is the columns, the rest (say
    `lr`, read down in order) the rows."""
    chosen = set(rows or []) | set(cols or [])
    free = [k for k in varying_keys(runs) if k not in REPLICATE_KEYS and k not in chosen]
    if cols is None:
        def narrowness(key):
            values = {r.overrides.get(key) for r in runs}
            return len(values), all(value_order(v)[0] == 1 for v in values)

        # one free key alone is the rows, unless the rows were chosen
        cols = [min(free, key=narrowness)] if free and (rows is not None or len(free) >= 2) else []
        free = [k for k in free if k not in cols]
    return [*(rows or []), *free], list(cols)


@dataclass
class Cell:
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if r.status == Status.COMPLETED and (v := r.value(metric)) is not None]

    def mean(self, metric: str) -> float | int | None:
        """The mean; a count (parameters, epochs) stays a whole number when every run agrees on it."""
        values = self.values(metric)
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) and len(set(values)) == 1:
            return values[0]
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        """The sample standard deviation over seeds (n-1 in the denominator); None for one value."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) >= 2 else None

    def interval(self, metric: str) -> float | None:
        """Half the width of the mean's 95% interval over seeds; None for one value."""
        return half_width(self.values(metric))

    def unfinished(self) -> list[str]:
        """The runs that did not complete, by status: `1 diverged`, `2 not started`."""
        counts = Counter(r.status for r in self.runs if r.status != Status.COMPLETED)
        return [f"{n} {status}" for status, n in counts.items()]

    def notes(self, metric: str) -> list[str]:
        """What the mean leaves out: runs that did not complete, completed runs without the value."""
        missing = sum(r.status == Status.COMPLETED and r.value(metric) is None for r in self.runs)
        word = "never" if metric in NOT_REACHED else "n/a"  # "never (1 run)": a count never reads as the value
        return [*self.unfinished(), *([f"{word} ({missing} run{'s' if missing > 1 else ''})"] if missing else [])]


@dataclass
class Table:
    row_keys: list[str]
    col_keys: list[str]
    metrics: list[str]
    rows: list[tuple]
    cols: list[tuple]
    cells: dict[tuple, Cell]  # (row values, col values) -> the runs there

    def cell(self, row: tuple, col: tuple) -> Cell:
        return self.cells.get((row, col), Cell([]))

    def best(self, col: tuple, metric: str) -> set[tuple]:
        """The rows whose mean is best in this column (ties share it; all tied is no best), if
        the metric has a better direction."""
        pick = goal(metric)
        means = {row: m for row in self.rows if (m := self.cell(row, col).mean(metric)) is not None}
        if pick is None or len(set(means.values())) < 2:
            return set()
        top = pick(means.values())
        return {row for row, m in means.items() if m == top}

    def best_row(self, col: tuple, metric: str) -> tuple | None:
        """The best row of this column (the first in order, if tied); None without a best."""
        return min(self.best(col, metric), key=lambda r: [value_order(v) for v in r], default=None)

    def versus_best(self, row: tuple, col: tuple, metric: str) -> Difference | None:
        """Welch's test of this cell against its column's best row; None for the best itself, a
        metric without a better direction, or cells of one run."""
        best = self.best_row(col, metric)
        if best is None or row == best:
            return None
        return welch(self.cell(row, col).values(metric), self.cell(best, col).values(metric))

    def repeated(self) -> bool:
        """Whether any cell has two completed runs or more of a metric (an interval to show)."""
        return any(len(cell.values(m)) >= 2 for cell in self.cells.values() for m in self.metrics)


def build_table(runs: list[Run], metrics: list[str], rows: list[str] | None = None,
                cols: list[str] | None = None) -> Table:
    row_keys, col_keys = choose_layout(runs, rows, cols)
    cells: dict[tuple, Cell] = {}
    for r in runs:
        key = (tuple(r.overrides.get(k) for k in row_keys), tuple(r.overrides.get(k) for k in col_keys))
        cells.setdefault(key, Cell([])).runs.append(r)

    def ordered(index):
        keys = {k[index] for k in cells}
        return sorted(keys, key=lambda values: [value_order(v) for v in values])

    return Table(row_keys, col_keys, metrics, ordered(0), ordered(1), cells)


def default_metrics(runs: list[Run]) -> list[str]:
    """The columns the runs' task chose (summary.json's report_columns), read from the first run
    that names them."""
    named = next((r.summary["report_columns"] for r in runs if r.summary.get("report_columns")), None)
    if named:
        return list(named)
    monitor = next((r.summary["target_metric"] for r in runs if r.summary.get("target_metric")), "val/acc")
    return [m.format(monitor=monitor) for m in FALLBACK_COLUMNS]


# ---------------------------------------------------------------- text

def fmt(value, std: float | None = None) -> str:
    """Digits by size: accuracies to 4 places, seconds to 2, counts whole; std to the same."""
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and std is None:
        return f"{value:,}"
    if value and abs(value) < 1e-3:  # a small loss keeps its digits: 2.7e-05, not 0.0000
        return f"{value:.2e}" if std is None else f"{value:.2e} ± {std:.1e}"
    places = 0 if abs(value) >= 100 else 4 if abs(value) < 1 else 2
    text = f"{value:,.{places}f}"
    return text if std is None else f"{text} ± {std:,.{places}f}"


WITHIN_NOISE = "≈"  # after a cell whose difference from its column's best Welch's test cannot tell from noise


def cell_text(cell: Cell, metric: str, versus_best: Difference | None = None) -> str:
    """`mean ± half-width of the 95% interval (n)` over the completed runs, ≈ if it is within the
    noise of the column's best, then what it leaves out: `0.8512 ± 0.0040 (3) ≈; 1 diverged`."""
    values, notes = cell.values(metric), cell.notes(metric)
    if not values:
        return "; ".join(notes) or "—"
    tied = f" {WITHIN_NOISE}" if versus_best is not None and not versus_best.beyond_noise else ""
    mean, half = cell.mean(metric), cell.interval(metric)
    half = None if isinstance(mean, int) and half == 0 else half  # a count every run agrees on: 571 (3)
    return "; ".join([f"{fmt(mean, half)} ({len(values)}){tied}", *notes])


def label(keys: list[str], values: tuple) -> str:
    return " ".join(f"{k}={v}" for k, v in zip(keys, values))


class Best(str):
    """A cell's text that is the best of its column: each format marks it its own way."""


def table_grid(table: Table) -> list[list[str]]:
    """The table as rows of text, header first; the best cell of each column a `Best`."""
    header = [*table.row_keys] or [""]
    columns = [(col, m) for col in table.cols for m in table.metrics]
    header += [f"{label(table.col_keys, col)} {m}".strip() for col, m in columns]
    best = {(col, m): table.best(col, m) for col, m in columns}
    grid = [header]
    for row in table.rows:
        line = [str(v) for v in row] or ["all runs"]
        for col, m in columns:
            text = cell_text(table.cell(row, col), m, table.versus_best(row, col, m))
            line.append(Best(text) if row in best[(col, m)] else text)
        grid.append(line)
    return grid


def markdown(grid: list[list[str]]) -> str:
    def line(cells):
        marked = (f"**{c}**" if isinstance(c, Best) else c for c in cells)
        return "| " + " | ".join(c.replace("|", "\\|") for c in marked) + " |"

    return "\n".join([line(grid[0]), line(["---"] * len(grid[0])), *map(line, grid[1:])])


def latex(grid: list[list[str]]) -> str:
    def esc(text):
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
                     ("±", r"$\pm$"), ("—", "--")):
            text = text.replace(a, b)
        return text

    body = [" & ".join(rf"\textbf{{{esc(c)}}}" if isinstance(c, Best) else esc(c) for c in row) + r" \\"
            for row in grid]
    return "\n".join([r"\begin{tabular}{" + "l" * len(grid[0]) + "}", r"\toprule", body[0], r"\midrule",
                      *body[1:], r"\bottomrule", r"\end{tabular}"])


def table_csv(table: Table) -> str:
    """One line per cell, numbers unformatted, of each metric: mean, sample std, half-width of the
    95% interval, count, and Welch's p-value against the column's best."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*table.row_keys, *table.col_keys, "runs", "statuses",
                     *[f"{stat}({m})" for m in table.metrics for stat in ("mean", "std", "ci95", "n", "p_vs_best")]])
    for row in table.rows:
        for col in table.cols:
            cell = table.cell(row, col)
            if not cell.runs:
                continue
            statuses = "; ".join(f"{s}:{sum(r.status == s for r in cell.runs)}"
                                for s in sorted({r.status for r in cell.runs}))
            stats = [x for m in table.metrics for x in (cell.mean(m), cell.std(m), cell.interval(m), len(cell.values(m)),
                                                        getattr(table.versus_best(row, col, m), "p", None))]
            writer.writerow([*row, *col, len(cell.runs), statuses, *("" if x is None else x for x in stats)])
    return out.getvalue()


def runs_grid(runs: list[Run], metrics: list[str], show=fmt) -> list[list]:
    """Every run, whatever became of it, with why it stopped if it did not complete."""
    keys = varying_keys(runs)
    grid = [["run", "status", *keys, *metrics, "note"]]
    for r in sorted(runs, key=lambda r: [value_order(r.overrides.get(k)) for k in keys] + [str(r.path)]):
        note = (r.summary.get("diverged") or {}).get("reason") or last_line(r.summary.get("error"))
        grid.append([r.path.name, r.status, *[str(r.overrides.get(k, "")) for k in keys],
                     *[show(r.value(m)) for m in metrics], note or ""])
    return grid


def last_line(text: str | None) -> str:
    return text.strip().splitlines()[-1] if text and text.strip() else ""


def lr_notes(runs: list[Run]) -> list[str]:
    """Per model (each combination of the other varying keys): the largest learning rate at which
    no run diverged."""
    keys = varying_keys(runs)
    lr_key = next((k for k in LR_KEYS if k in keys), None)
    if lr_key is None:
        return []
    group_keys = [k for k in keys if k != lr_key and k not in (*REPLICATE_KEYS, TRIAL_KEY)]  # a search: one group
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.overrides.get(k) for k in group_keys), []).append(r)
    notes = []
    for group in sorted(groups, key=lambda g: [value_order(v) for v in g]):
        by_lr: dict[str, set[str]] = {}
        for r in groups[group]:
            by_lr.setdefault(r.overrides.get(lr_key), set()).add(r.status)
        stable = [lr for lr, s in by_lr.items() if Status.DIVERGED not in s and s & {Status.COMPLETED, Status.PRUNED}]
        diverged = sorted((lr for lr, s in by_lr.items() if Status.DIVERGED in s), key=value_order)
        best = max(stable, key=value_order) if stable else "none (every rate diverged or did not finish)"
        where = label(group_keys, group) or "all runs"
        notes.append(f"{where}: largest {lr_key} that did not diverge: {best}"
                     + (f" (diverged: {', '.join(diverged)})" if diverged else ""))
    return notes


def legend(table: Table) -> str:
    """How to read the table's cells."""
    if not table.repeated():
        return ("Cells: the one completed run of each cell (count in brackets); best per column in bold. One run per "
                "cell has no interval and no test: read small differences as noise (`seeds=3` repeats every cell).")
    return ("Cells: mean ± half-width of its 95% confidence interval over seeds (Student's t; completed runs, count "
            f"in brackets); best per column in bold; {WITHIN_NOISE}: within the noise of that best (Welch's t-test, "
            "two-sided p ≥ 0.05, each cell tested alone, not corrected for the number of comparisons).")


def differences(table: Table) -> list[str]:
    """A section: for each metric with a better direction, each cell against its column's best, the
    difference of the means with its 95% interval and Welch's p-value."""
    lines = []
    for metric in (m for m in table.metrics if goal(m) is not None):
        for col in table.cols:
            best = table.best_row(col, metric)
            for row in table.rows:
                if (d := table.versus_best(row, col, metric)) is not None:
                    lines.append(f"| {metric} | {label(table.row_keys, row) or 'all runs'} "
                                 f"| {label(table.col_keys, col) or '—'} | {label(table.row_keys, best)} "
                                 f"| {fmt(d.diff)} | {fmt(d.diff - d.half)} to {fmt(d.diff + d.half)} "
                                 f"| {d.p:.3g} | {'yes' if d.beyond_noise else 'no'} |")
    if not lines:
        return []
    return ["## Differences from the best", "",
            "Each cell's mean minus its column's best, with the 95% interval of that difference and the two-sided "
            "p-value of Welch's t-test (unequal variances); beyond the noise at p < 0.05.", "",
            "| metric | cell | column | best | difference | 95% interval | p | beyond noise |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |", *lines, ""]


def status_line(runs: list[Run]) -> str:
    counts = {s: sum(r.status == s for r in runs) for s in sorted({r.status for r in runs})}
    return f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())


# ---------------------------------------------------------------- plots

def cell_label(table: Table, key: tuple, cell: Cell) -> str:
    text = label([*table.row_keys, *table.col_keys], (*key[0], *key[1])) or "all runs"
    others = cell.unfinished()
    return text + (f" ×{len(cell.runs)}" if len(cell.runs) > 1 else "") + (f" [{', '.join(others)}]" if others else "")


def plot_curves(table: Table, kind: str, path: Path) -> bool:
    """`kind` (loss, acc, ppl, grad/norm, ...) per epoch of every run, one panel per split (or one
    panel for a metric of no split), one colour per cell (its seeds share it); runs that did not
    complete are dashed."""
    runs = [r for cell in table.cells.values() for r in cell.runs]
    splits = [s for s in ("train", "val", "test") if any(f"{s}/{kind}" in m for r in runs for m in r.history)]
    names = [f"{s}/{kind}" for s in splits] or ([kind] if any(kind in m for r in runs for m in r.history) else [])
    if not names:
        return False
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names) + 2.5, 4), squeeze=False)
    colours = plt.get_cmap("tab10" if len(table.cells) <= 10 else "tab20")
    keys = sorted(table.cells, key=lambda k: [value_order(v) for v in (*k[0], *k[1])])
    for ax, name in zip(axes[0], names):
        seen = [v for r in runs for m in r.history if isinstance(v := m.get(name), (int, float)) and math.isfinite(v)]
        for i, key in enumerate(keys):
            cell = table.cells[key]
            for j, r in enumerate(cell.runs):
                ys = [math.nan if m.get(name) is None else m[name] for m in r.history]
                ax.plot([m["epoch"] for m in r.history], ys, color=colours(i % colours.N), marker="o", ms=2,
                        ls="-" if r.status == Status.COMPLETED else "--",
                        label=cell_label(table, key, cell) if j == 0 else None)  # one entry per cell
        wide = seen and min(seen) > 0 and max(seen) > 20 * min(seen)  # losses, perplexities: a log scale
        ax.set(title=name, xlabel="epoch", yscale="log" if wide else "linear")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    _save(fig, path)
    return True


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def plot_metric_vs(table: Table, metric: str, path: Path) -> bool:
    """The metric (mean and 95% interval over seeds) against the first row key, one line per column and
    combination of the other row keys."""
    if not table.row_keys:
        return False
    x_key = table.row_keys[0]
    xs = sorted({row[0] for row in table.rows}, key=value_order)
    numeric = all(value_order(x)[0] == 1 for x in xs)
    position = {x: float(x) if numeric else i for i, x in enumerate(xs)}
    series: dict[tuple, list] = {}
    for (row, col), cell in table.cells.items():
        if (mean := cell.mean(metric)) is not None:
            series.setdefault((row[1:], col), []).append((position[row[0]], mean, cell.interval(metric) or 0.0))
    if not series:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (rest, col), points in sorted(series.items(), key=lambda kv: str(kv[0])):
        points.sort()
        name = label([*table.row_keys[1:], *table.col_keys], (*rest, *col)) or metric
        ax.errorbar(*zip(*points), marker="o", capsize=3, label=name)
    if numeric and min(map(float, xs)) > 0 and max(map(float, xs)) >= 100 * min(map(float, xs)):
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(xs)), xs)
    ax.set(xlabel=x_key, ylabel=metric, title=f"{metric} against {x_key} (completed runs; bars: 95% interval over seeds)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


# ---------------------------------------------------------------- the files

def write_report(table: Table, runs: list[Run], out: Path, fmt_name: str, title: str | None = None,
                 curves: tuple[str, ...] = ("loss", "acc"), sections: list[str] = ()) -> str:
    """report.md, report.csv (one line per cell), runs.csv (one per run), plots/; returns the
    text for the terminal in the chosen format. A study gives its title, the metrics whose
    curves it draws, and the sections its analyses wrote (markdown, figures under out/)."""
    grid = table_grid(table)
    notes = lr_notes(runs)
    plots = {name: f"plots/{name.replace('/', '_')}.png" for name in curves}
    made = {name: plot_curves(table, name, out / rel) for name, rel in plots.items()}
    metric_plot = f"plots/{table.metrics[0].replace('/', '_')}_vs_{(table.row_keys or ['x'])[0]}.png"
    made["vs"] = plot_metric_vs(table, table.metrics[0], out / metric_plot)
    plots["vs"] = metric_plot
    text = {"md": markdown(grid), "csv": table_csv(table), "latex": latex(grid)}
    heading = title or f"Report: {', '.join(sorted({str(r.path.parent) for r in runs}))}"
    md = [f"# {heading}", "", status_line(runs), "",
          legend(table), "", text["md"], "", *[f"- {n}" for n in notes], "", *differences(table),
          *[f"![{name}]({rel})" for name, rel in plots.items() if made[name]], "",
          *sections, "## Every run", "", markdown(runs_grid(runs, table.metrics)), "", *provenance_lines(runs)]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.csv").write_text(text["csv"])
    with open(out / "runs.csv", "w", newline="") as f:
        csv.writer(f).writerows(runs_grid(runs, table.metrics, show=lambda v: "" if v is None else v))
    if fmt_name == "latex":
        (out / "report.tex").write_text(text["latex"] + "\n")
    return "\n".join([status_line(runs), "", text[fmt_name].rstrip(), "", *notes, *unfinished(runs)])


PROVENANCE = ("command", "dlbench", "git", "cwd_git", "python", "torch", "cuda", "cudnn", "device_name", "host")


def provenance_lines(runs: list[Run]) -> list[str]:
    """The runs' provenance (summary.json's, dlbench.run.provenance) once for the report: each
    field's value where the runs agree, else each value with its count; when they started."""
    records = [r.summary["provenance"] for r in runs if isinstance(r.summary.get("provenance"), dict)]
    if not records:
        return []
    lines = ["## Provenance", "", f"As each run recorded it in its summary.json ({len(records)} of {len(runs)} runs).", ""]
    for key in PROVENANCE:
        counts = Counter(provenance_text(key, record.get(key)) for record in records)
        shown = next(iter(counts)) if len(counts) == 1 else "; ".join(
            f"{value} ({n} run{'s' if n > 1 else ''})" for value, n in counts.most_common())
        lines.append(f"- {key}: {shown}")
    started = sorted(str(record["started"]) for record in records if record.get("started"))
    if started:
        lines.append(f"- started: {started[0]}" + (f" to {started[-1]}" if started[-1] != started[0] else ""))
    return [*lines, ""]


def provenance_text(key: str, value) -> str:
    if key in ("git", "cwd_git"):
        if not isinstance(value, dict):
            return "not a git repository" if key == "git" else "the project's, or none"
        return f"{str(value.get('commit'))[:12]}{' with uncommitted changes' if value.get('dirty') else ''} ({value.get('root')})"
    if key == "command" and value:
        return f"`{value}`"
    return "none" if value is None else str(value)


def unfinished(runs: list[Run]) -> list[str]:
    return [f"{r.status}: {r.path}" for r in runs if r.status != Status.COMPLETED]


def report(folders: list[Path], metrics: list[str] | None = None, rows: list[str] | None = None,
           cols: list[str] | None = None, target: float | None = None, fmt_name: str = "md", out: Path | None = None,
           **study) -> str:
    """Read the runs under `folders`, lay out the table and write the report into `out` (default:
    the first folder). `study` passes write_report's title, curves and sections."""
    runs = load_runs(folders, target)
    unknown = [k for k in (rows or []) + (cols or []) if not any(k in r.overrides for r in runs)]
    if unknown:
        raise ReportError(f"--rows/--cols {','.join(unknown)}: no run has that override; "
                          f"those that vary: {', '.join(varying_keys(runs)) or 'none'}")
    known = sorted({k for r in runs for k, v in r.summary.items()
                    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
                   | {k for r in runs for m in r.history for k in m})
    absent = [m for m in metrics or [] if m not in known and m not in ("overrides", "status")]
    if absent and not study:  # a study's table shows — where its runs lack a number (say, all failed)
        raise ReportError(f"--metric {','.join(absent)}: no run has that number; valid: {', '.join(known)}")
    out = out or folders[0]
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(runs, metrics or default_metrics(runs), rows, cols)
    return write_report(table, runs, out, fmt_name, **study)
