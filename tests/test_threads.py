"""trainer.threads=auto: a run takes every core alone and its share when other runs train."""
import os
import subprocess
import sys

import pytest
import torch

from dlbench.threads import DEFAULT_THREADS, ShareThreads, share, training_processes
from dlbench.train import run
from tests.conftest import digits_cfg


@pytest.fixture
def other_process():
    """A live process that is not this one (a stand-in for another training run)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_share_is_the_cores_split_evenly_and_never_zero():
    assert share(2, 1) == 2 and share(2, 2) == 1 and share(2, 3) == 1
    assert share(16, 3) == 5 and share(8, 0) == 8


def test_dead_processes_are_dropped_from_the_count(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / done.stdout.strip()).touch()  # a run that died without unregistering
    (tmp_path / "not-a-pid").touch()
    assert training_processes(tmp_path) == 0
    assert list(tmp_path.iterdir()) == []


def test_a_run_shares_the_cores_while_another_trains_and_takes_them_back(tmp_path, other_process, keep_threads):
    share_threads = ShareThreads(cores=4, folder=tmp_path)
    share_threads.on_run_start(None)
    assert torch.get_num_threads() == 4  # alone
    (tmp_path / str(other_process)).touch()  # a second run starts
    share_threads.next_look = 0.0
    share_threads.on_step(None, {})
    assert torch.get_num_threads() == 2
    (tmp_path / str(other_process)).unlink()  # it ends
    share_threads.on_epoch_start(None)
    assert torch.get_num_threads() == 4
    share_threads.on_run_end(None)
    assert not any(tmp_path.iterdir())  # unregistered


def test_a_run_with_threads_auto_registers_while_it_trains(tmp_path, monkeypatch, keep_threads):
    monkeypatch.setenv("DLBENCH_CPU_DIR", str(tmp_path / "cpu"))
    registered = []

    def two_runs(folder):  # this one, and another that trains beside it
        registered.extend(p.name for p in folder.iterdir())
        return 2
    monkeypatch.setattr("dlbench.threads.training_processes", two_runs)
    summary = run(digits_cfg("trainer.threads=auto"), run_dir=tmp_path / "run")
    assert set(registered) == {str(os.getpid())}
    assert summary["threads"] == share(DEFAULT_THREADS, 2)
    assert not any((tmp_path / "cpu").rglob("[0-9]*"))  # it unregistered at its end


@pytest.mark.parametrize("value", ["auto", "2", "null"])
def test_trainer_threads_takes_auto_a_number_or_null(value):
    from dlbench import schema
    from dlbench.config import compose

    schema.check(compose([f"trainer.threads={value}"]))  # raises on a value the schema refuses
