import os
import subprocess
import sys
import time
from pathlib import Path

# `make test` runs the suite in two pytest-xdist workers, one per core of a 2-core machine. Each
# worker, and every `dlbench` process it starts, keeps one torch thread: OpenMP threads spin while
# they wait, so two processes with a thread per core each would slow each other down instead of
# sharing the cores. Set before torch is imported (below), so the workers' own runs have it too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from dlbench.run import build as train_module  # noqa: E402  (`dlbench` below is the command-line helper)
from dlbench.callbacks import Callback  # noqa: E402
from dlbench.config import compose  # noqa: E402

# The tests train language models on an excerpt of the Time Machine kept beside them (the first
# chapters of the public-domain text, about 48,000 characters), never on a file outside the
# repository nor a download. It is set for every test, and inherited by the `dlbench` processes
# they start; a test of the lookup itself (tests/test_text_data.py) clears the variable.
TEXT_EXCERPT = Path(__file__).resolve().parent / "data" / "timemachine.txt"
os.environ["DLBENCH_TIMEMACHINE"] = str(TEXT_EXCERPT)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the temp folder as the working directory, so outputs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def digits_cfg(*overrides: str):
    """A seconds-long run: the bundled 8x8 digits, a small MLP, no progress bar."""
    return compose(["dataset=digits", "model.hidden=[64]", "epochs=2", "trainer.progress=false", *overrides])


def dlbench(*args: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command line, in a fresh process (as a user types it)."""
    env = {**os.environ, "CI": "1"}
    proc = subprocess.run([sys.executable, "-m", "dlbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"dlbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Poll until condition() holds while `proc` (a dlbench started with Popen) still runs."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)


def runs_in(sweep: Path) -> list[Path]:
    """The run folders of a sweep folder (which also holds its report, plots/ and analysis/)."""
    return sorted(d for d in sweep.iterdir() if (d / ".hydra").is_dir())


class StopAfter(Callback):
    """Raise `error` once epoch `epoch` is recorded and checkpointed (as the next one starts), as a
    Ctrl-C or a crash would."""

    def __init__(self, epoch, error):
        self.epoch, self.error = epoch, error

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            raise self.error


@pytest.fixture
def extra_callback(monkeypatch):
    """extra_callback(cb): the runs that follow also get cb after the default callbacks;
    extra_callback(None): they run as usual again."""
    original = train_module.default_callbacks

    def add(callback):
        extra = [] if callback is None else [callback]
        monkeypatch.setattr(train_module, "default_callbacks", lambda cfg: [*original(cfg), *extra])
    return add


def straight_and_resumed(cfg, folder: Path, stop_after: int, extra_callback) -> tuple[dict, dict]:
    """cfg run straight into folder/straight, and into folder/resumed interrupted (Ctrl-C) after
    epoch `stop_after`, then resumed: the two summaries."""
    from dlbench.train import run

    straight = run(cfg, run_dir=folder / "straight")
    extra_callback(StopAfter(stop_after, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir=folder / "resumed")
    extra_callback(None)
    return straight, run(cfg, run_dir=folder / "resumed")
