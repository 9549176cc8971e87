"""`dlbench <command>`: dispatch only. Each command's module is imported when the command runs, so
`dlbench list` and `dlbench report` start without torch."""
import os
import sys
from collections.abc import Callable
from importlib import import_module

from dlbench.errors import USER_ERROR_STATUS, UserError

USAGE = """usage: dlbench <command> [arguments]

  train [OVERRIDE ...]      train one run:   dlbench train model=cnn lr=0.01
  train -m [OVERRIDE ...]   train a sweep:   dlbench train -m lr=1,0.1,0.01,0.001
  train ... --into DIR      run or sweep into DIR; finished runs there are kept, unfinished resume
  resume RUN_DIR|SWEEP_DIR  continue an interrupted run, or re-run a sweep into its folder
  report SWEEP_DIR ...      the results table (mean, 95% interval over seeds), notes and plots of sweeps
  list                      the datasets, models, optimizers, ... that configs can name
  data [DATASET ...] [K=V]  make sure a dataset is on disk (default: fashion_mnist)
  interpolate RUN_A RUN_B   loss and accuracy along (1-a) theta_A + a theta_B  [--alphas FROM:TO:N] [--out DIR]
  trajectory RUN [RUN ...]  weights saved by probe=trajectory, on their first 2 principal components
                            [--color METRIC] [--out DIR]
  info [--json] [OVERRIDE ...]  a model's layers, parameters, FLOPs, memory, receptive fields:
                            dlbench info model=alexnet dataset.resize=224 batch_size=128
  --version                 dlbench's version, with Python's, torch's, torchvision's and Hydra's

`dlbench train --help` shows the composed config and every group; `--cfg job` prints it.
A mistake is answered in one line (exit status 2); add --debug for the traceback.
"""


def _lazy(target: str) -> Callable[[list[str]], int]:
    """'module:function' as a command that imports its module only when it runs."""
    module, name = target.split(":")

    def command(args: list[str]) -> int:
        return getattr(import_module(module), name)(args)
    return command


COMMANDS = {
    "train": _lazy("dlbench.launch:train_main"),
    "resume": _lazy("dlbench.launch:resume_main"),
    "report": _lazy("dlbench.report_cli:main"),
    "list": _lazy("dlbench.listing:list_main"),
    "data": _lazy("dlbench.data.install:main"),
    "info": _lazy("dlbench.info:main"),
    "interpolate": _lazy("dlbench.analysis:interpolate_main"),
    "trajectory": _lazy("dlbench.analysis:trajectory_main"),
}


def version() -> str:
    """dlbench's version and those of what its numbers depend on, read without importing them
    (torch's import alone takes seconds)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from dlbench import __version__

    def of(package: str) -> str:
        try:
            return installed(package)
        except PackageNotFoundError:
            return "not installed"
    deps = ", ".join(f"{p} {of(p)}" for p in ("torch", "torchvision", "hydra-core"))
    return f"dlbench {__version__} (Python {sys.version.split()[0]}, {deps})"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if argv[0] in ("--version", "-V", "version"):
        print(version())
        return
    if argv[0] not in COMMANDS:
        print(f"dlbench: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} (dlbench --help)", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    try:
        status = COMMANDS[argv[0]](argv[1:])
    except UserError as err:  # a mistake the user can fix: one line; --debug or HYDRA_FULL_ERROR=1 shows where
        if "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dlbench: {err}", file=sys.stderr)
        status = USER_ERROR_STATUS
    except KeyboardInterrupt:
        print("dlbench: interrupted", file=sys.stderr)
        status = 130
    sys.exit(status)
