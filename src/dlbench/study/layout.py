"""After a study's sweep: the study its folder records, and its report, laid out as the study
says, with a section from each of its analyses."""
import sys
from pathlib import Path

from dlbench.errors import CorruptFileError, UserError
from dlbench.overrides import read_multirun
from dlbench.report import report
from dlbench.runs import load_runs
from dlbench.search import TRIAL_KEY
from dlbench.search.report import is_search_folder
from dlbench.search.report import section as search_section
from dlbench.study.analyses import ANALYSES


def read_study(sweep_dir: Path) -> dict | None:
    """The study recorded in a sweep folder's multirun.yaml, or None (not a study, not a sweep)."""
    try:
        record = read_multirun(sweep_dir)
    except CorruptFileError:
        return None  # report's own reading says what is wrong with the file
    return (record or {}).get("study")


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
    rows, cols = layout.get("rows"), layout.get("cols")
    if is_search_folder(sweep_dir):  # each trial a row: the values it drew beside it
        sections += search_section(Path(sweep_dir), runs, out)
        rows, cols = rows or [TRIAL_KEY], [] if cols is None else cols
    name = Path(sweep_dir).name
    title = f"{layout.get('about') or 'Study'} ({name})" if layout else None
    text = report([Path(sweep_dir)], layout.get("metrics"), rows, cols,
                  layout.get("target"), fmt_name, out, title=title,
                  curves=tuple(layout.get("curves") or ("loss", "acc")), sections=sections)
    return f"{text}\n\nreport: {out / 'report.md'}"
