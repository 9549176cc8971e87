"""Run studies in full, one after another, and copy each report into docs/studies/<study>/, beside its write-up.

    python scripts/run_studies.py first_mlp gradients ...   [-- OVERRIDE ...]

Each study runs as `dlbench train experiment=NAME` into outputs/studies/NAME (a finished run there
is kept, an unfinished one resumes), then scripts/study_docs.py copies its report. One at a time:
two trainings on a 2-core machine slow each other down by far more than half.
"""
import subprocess
import sys
import time
from pathlib import Path

from study_docs import copy

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    names, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    if not names:
        sys.exit(__doc__)
    for name in names:
        folder = ROOT / "outputs" / "studies" / name
        start = time.perf_counter()
        try:
            status = subprocess.call([sys.executable, "-m", "dlbench", "train", f"experiment={name}",
                                      "trainer.progress=false", *extra, "--into", str(folder)], cwd=ROOT)
        except KeyboardInterrupt:  # dlbench, interrupted too, has recorded its runs: the same command resumes
            print(f"{name}: interrupted; the same command resumes it from {folder}", flush=True)
            return 130
        minutes = (time.perf_counter() - start) / 60
        print(f"{name}: exit {status}, {minutes:.1f} min -> {copy(folder) if status == 0 else folder}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
