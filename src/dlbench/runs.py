"""The runs of sweeps read back from their folders (summary.json, .hydra/overrides.yaml,
metrics.jsonl), with the runs of a partial sweep's grid that have no folder yet: what a report
and a study's analyses are made of."""
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dlbench.artifacts import epochs_to_target, read_metrics
from dlbench.errors import CorruptFileError, UserError, first_line
from dlbench.metrics import goal
from dlbench.overrides import grid, read_multirun
from dlbench.run.runfolder import read_overrides, read_summary
from dlbench.status import Status


class ReportError(UserError):
    """Folders, keys or metrics given to a report that name no run or number."""


@dataclass
class Run:
    path: Path
    overrides: dict[str, str]   # key -> value as typed on the command line
    summary: dict
    history: list[dict] = field(default_factory=list)  # metrics.jsonl, one dict per epoch

    @property
    def status(self) -> str:
        return self.summary.get("status", Status.RUNNING)

    def value(self, metric: str):
        """A summary field, or `best/<curve metric>` computed from the stored curve."""
        if metric in self.summary:
            return self.summary[metric]
        if metric.startswith("best/"):
            name = metric[len("best/"):]
            values = [m[name] for m in self.history if m.get(name) is not None]
            return goal(name, default=max)(values) if values else None
        return None


def is_run(path: Path) -> bool:
    return (path / "summary.json").is_file() or (path / ".hydra" / "overrides.yaml").is_file()


def find_runs(paths: list[Path]) -> list[Path]:
    """Each path is a run folder or a folder holding runs at any depth (a sweep, outputs/)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ReportError(f"{path}: no such folder; give sweep or run folders (outputs/sweeps/...)")
        if is_run(path):
            found.append(path)
            continue
        marks = [p.parent for p in path.rglob("summary.json")]
        marks += [p.parent.parent for p in path.rglob("overrides.yaml") if p.parent.name == ".hydra"]
        found += sorted(set(marks))
    return list(dict.fromkeys(found))


def parse_override(text: str) -> tuple[str, str]:
    key, _, value = text.lstrip("+~").partition("=")
    return key, canonical(value)


def canonical(value: str) -> str:
    """One spelling per number, so lr=1e-3 and lr=0.001 are the same row: ints stay ints, other
    numbers take Python's shortest round-tripping form; anything else is kept as typed."""
    for kind in (int, float):
        try:
            return repr(kind(value))
        except ValueError:
            continue
    return value


def load_run(path: Path, target: float | None = None) -> Run | None:
    """The run in `path`; None, with a note, when one of its files cannot be read: the report
    shows the other runs."""
    try:
        # a folder with no summary yet: the run was started and stopped before writing one
        summary = read_summary(path) or {"status": Status.RUNNING}
        overrides = read_overrides(path)
        history = read_metrics(path)
    except CorruptFileError as err:
        print(f"dlbench report: skipped {path}: {err}", file=sys.stderr)
        return None
    run = Run(path, dict(map(parse_override, overrides or summary.get("overrides") or [])), summary, history)
    if target is not None and summary.get("target_metric"):  # the metric its task judges it by
        epoch, seconds = epochs_to_target(run.history, summary["target_metric"], target)
        run.summary = {**summary, "target_acc": target, "epochs_to_target": epoch, "seconds_to_target": seconds}
    return run


def planned_runs(sweep_dir: Path) -> list[dict[str, str]]:
    """The runs of the grid that sweep_dir/multirun.yaml records, for Hydra's basic sweeper (an
    Optuna search decides its runs as it goes: nothing is planned ahead)."""
    try:
        record = read_multirun(sweep_dir) or {}
    except CorruptFileError as err:  # the runs found are still reported
        print(f"dlbench report: {err.path} cannot be read ({first_line(err.__cause__ or err)}): runs not started "
              "are not shown", file=sys.stderr)
        return []
    return [dict(map(parse_override, job)) for job in grid(record.get("hydra", {}))]


def not_started(sweep_dir: Path, runs: list[Run]) -> list[Run]:
    """Runs of the recorded grid with no folder yet: a report of a partial sweep shows them."""
    from dlbench.config import run_name

    found = [r.overrides for r in runs]
    return [Run(sweep_dir / run_name(f"{k}={v}" for k, v in o.items()), o, {"status": "not started"})
            for o in planned_runs(sweep_dir) if o not in found]


def load_runs(paths: list[Path], target: float | None = None) -> list[Run]:
    runs = [run for p in find_runs(paths) if (run := load_run(p, target)) is not None]
    runs += [r for p in paths for r in not_started(p, runs)]
    if not runs:
        raise ReportError(f"{', '.join(map(str, paths))}: no runs there; give the folder a sweep or run was trained into")
    return runs
