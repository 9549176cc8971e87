"""Copy a study's report into docs/studies/<study>/ beside its write-up (docs/studies/<study>/README.md).

    python scripts/study_docs.py outputs/sweeps/<sweep> [...]

Each sweep folder's report.md, its figures (plots/, analysis/ PNGs) and report.csv go to
docs/studies/<study>/, where <study> is the sweep's experiment. Nothing is recomputed: the
files are the ones `dlbench train experiment=<study>` wrote, so every number in the catalogue
comes from a command anyone can run again.
"""
import shutil
import sys
from pathlib import Path

from dlbench.overrides import read_multirun

DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies"


def study_name(sweep: Path) -> str:
    overrides = (read_multirun(sweep) or {})["hydra"]["overrides"]["task"]
    return next(o.split("=", 1)[1] for o in overrides if o.split("=")[0] == "experiment")


def copy(sweep: Path) -> Path:
    target = DOCS / study_name(sweep)
    for old in (target / "plots", target / "analysis"):  # the last report's figures; the write-up stays
        shutil.rmtree(old, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.csv"):
        shutil.copy2(sweep / name, target / name)
    for png in [*sweep.glob("plots/*.png"), *sweep.glob("analysis/**/*.png")]:
        (target / png.relative_to(sweep)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, target / png.relative_to(sweep))
    return target


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print(f"{arg} -> {copy(Path(arg))}")
