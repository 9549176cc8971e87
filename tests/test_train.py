import json
import platform
import socket
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch

import dlbench

from dlbench.artifacts import read_metrics
from dlbench.callbacks import Callback
from dlbench.errors import RunFolderError
from dlbench.models import MODELS
from dlbench.train import run
from tests.conftest import StopAfter, digits_cfg

SUMMARY_FIELDS = {"status", "epochs_completed", "train/loss", "train/acc", "val/loss", "val/acc", "test/loss",
                  "test/acc", "lr", "best/val/acc", "best/epoch", "epochs_to_target", "seconds_to_target",
                  "params", "wall_seconds", "train_examples_per_second", "device", "seed", "overrides"}


def test_a_run_writes_its_whole_folder(in_tmp):
    summary = run(digits_cfg("epochs=3"), run_dir=in_tmp / "run")
    folder = in_tmp / "run"
    for name in ("metrics.jsonl", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt", "plots/curves.png",
                 "train.log"):
        assert (folder / name).is_file(), name
    assert list(folder.glob("events.out.tfevents.*"))
    assert json.loads((folder / "summary.json").read_text()) == summary
    assert SUMMARY_FIELDS <= summary.keys()
    lines = read_metrics(folder)
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert summary["test/acc"] == lines[-1]["test/acc"] > 0.5  # 10 classes: chance is 0.1
    best = max(lines, key=lambda m: m["val/acc"])
    assert (summary["best/val/acc"], summary["best/epoch"]) == (best["val/acc"], best["epoch"])
    model = MODELS["mlp"](in_shape=(1, 8, 8), num_classes=10, hidden=[64])
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    assert summary["train_examples_per_second"] > 0 and summary["wall_seconds"] > 0
    assert (summary["device"], summary["seed"]) == ("cpu", 0)


def test_epochs_to_target_is_the_first_epoch_reaching_it(in_tmp):
    summary = run(digits_cfg("epochs=4", "target_acc=0.8"), run_dir=in_tmp / "run")
    lines = read_metrics(in_tmp / "run")
    first = next(m for m in lines if m["val/acc"] >= 0.8)
    assert summary["epochs_to_target"] == first["epoch"]
    expected = sum(m["epoch_seconds"] for m in lines if m["epoch"] <= first["epoch"])
    assert summary["seconds_to_target"] == pytest.approx(expected, abs=1e-3)
    never = run(digits_cfg("epochs=1", "target_acc=1.0"), run_dir=in_tmp / "never")
    assert never["epochs_to_target"] is None and never["seconds_to_target"] is None


@pytest.mark.slow  # seconds of training: run by make test
def test_same_seed_same_losses_other_seed_other_losses(in_tmp):
    losses = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run(digits_cfg(f"seed={seed}", "model.dropout=0.2"), run_dir=in_tmp / name)
        losses[name] = [(m["train/loss"], m["val/loss"]) for m in read_metrics(in_tmp / name)]
    assert losses["a"] == losses["b"]
    assert losses["a"] != losses["c"]


def test_a_diverging_run_stops_and_says_so(in_tmp):
    summary = run(digits_cfg("lr=10", "epochs=5"), run_dir=in_tmp / "run")
    assert summary["status"] == "diverged"
    assert summary["epochs_completed"] < 5
    assert "train loss" in summary["diverged"]["reason"]
    assert json.loads((in_tmp / "run" / "summary.json").read_text())["status"] == "diverged"
    assert (in_tmp / "run" / "plots" / "curves.png").exists() == bool(read_metrics(in_tmp / "run"))


def test_an_exploding_but_finite_loss_counts_as_diverged(in_tmp):
    summary = run(digits_cfg("trainer.diverge_factor=1.0", "trainer.log_every=1", "lr=2"), run_dir=in_tmp / "r")
    assert summary["status"] == "diverged" and "x first loss" in summary["diverged"]["reason"]


def test_an_interrupted_run_resumes_to_the_same_result(in_tmp, extra_callback):
    cfg = digits_cfg("epochs=4", "model.dropout=0.3")  # dropout: the global RNG must be restored too
    straight = run(cfg, run_dir=in_tmp / "straight")
    extra_callback(StopAfter(2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir=in_tmp / "resumed")
    interrupted = json.loads((in_tmp / "resumed" / "summary.json").read_text())
    assert (interrupted["status"], interrupted["epochs_completed"]) == ("interrupted", 2)
    extra_callback(Callback())
    resumed = run(cfg, run_dir=in_tmp / "resumed")
    assert resumed["status"] == "completed"
    strip = lambda ms: [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(in_tmp / "resumed")) == strip(read_metrics(in_tmp / "straight"))
    for key in ("test/acc", "best/val/acc", "best/epoch", "epochs_to_target"):
        assert resumed[key] == straight[key]
    a = torch.load(in_tmp / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(in_tmp / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_exited_mid_training_stays_running_and_resumes(in_tmp, extra_callback):
    """A SystemExit inside the loop (submitit exits a job so when SLURM requeues it at its time
    limit) is no end of the run: it is left `running`, not `completed`, and the next attempt trains
    it on to all its epochs."""
    cfg = digits_cfg("epochs=4")
    extra_callback(StopAfter(2, SystemExit(-1)))
    with pytest.raises(SystemExit):
        run(cfg, run_dir=in_tmp / "run")
    exited = json.loads((in_tmp / "run" / "summary.json").read_text())
    assert (exited["status"], exited["epochs_completed"]) == ("running", 2)
    extra_callback(Callback())
    resumed = run(cfg, run_dir=in_tmp / "run")
    assert (resumed["status"], resumed["epochs_completed"]) == ("completed", 4)


def test_a_run_records_where_its_numbers_came_from(in_tmp):
    """summary.json's provenance: the code (dlbench's version, the project's commit and whether a
    tracked file differs from it, and the commit of the user's own repository when the command runs
    in one), the software, the machine and the start."""
    def git(*args, cwd=in_tmp):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                              capture_output=True, text=True, check=True).stdout.strip()
    git("init", "-q")
    (in_tmp / "notes.txt").write_text("my experiment\n")
    git("add", "notes.txt"), git("commit", "-q", "-m", "mine")
    summary = run(digits_cfg(), run_dir=in_tmp / "run")
    record = summary["provenance"]
    assert record["cwd_git"] == {"root": str(in_tmp.resolve()), "commit": git("rev-parse", "HEAD"), "dirty": False}
    project = Path(dlbench.__file__).resolve().parents[2]
    if (project / ".git").exists():  # an editable install, as the tests run: the project's own commit
        assert record["git"]["commit"] == git("rev-parse", "HEAD", cwd=project)
        assert record["git"]["dirty"] == bool(git("status", "--porcelain", "--untracked-files=no", cwd=project))
    assert record["dlbench"] == dlbench.__version__ and record["torch"] == torch.__version__
    assert record["python"] == platform.python_version() and record["host"] == socket.gethostname()
    assert record["device_name"] and record["command"]
    started = datetime.fromisoformat(record["started"])
    assert abs((datetime.now(started.tzinfo) - started).total_seconds()) < 600
    assert json.loads((in_tmp / "run" / "summary.json").read_text())["provenance"] == record


def test_a_finished_run_is_not_run_again(in_tmp):
    first = run(digits_cfg(), run_dir=in_tmp / "run")
    again = run(digits_cfg(), run_dir=in_tmp / "run")
    assert again == first and len(read_metrics(in_tmp / "run")) == 2


def test_resuming_with_another_config_is_refused(in_tmp, extra_callback):
    extra_callback(StopAfter(1, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(digits_cfg(), run_dir=in_tmp / "run")
    with pytest.raises(RunFolderError, match="another config.*lr: 0.1 there, 0.5 now"):
        run(digits_cfg("lr=0.5"), run_dir=in_tmp / "run")


def test_a_crashing_run_is_recorded_as_failed(in_tmp, extra_callback):
    extra_callback(StopAfter(1, RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        run(digits_cfg(), run_dir=in_tmp / "run")
    summary = json.loads((in_tmp / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "RuntimeError: boom" in summary["error"]


def test_metrics_past_the_checkpoint_are_redone_not_duplicated(in_tmp):
    cfg = digits_cfg("epochs=3")
    straight = run(cfg, run_dir=in_tmp / "straight")
    # a process killed after writing epoch 1's line but before its checkpoint: a line, no last.pt
    (in_tmp / "cut").mkdir()
    (in_tmp / "cut" / "metrics.jsonl").write_text((in_tmp / "straight" / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    resumed = run(cfg, run_dir=in_tmp / "cut")
    assert [m["epoch"] for m in read_metrics(in_tmp / "cut")] == [1, 2, 3]
    assert resumed["test/acc"] == straight["test/acc"]


def test_rng_state_round_trips_even_from_another_device_mapping():
    from dlbench.runtime import rng_state, set_rng_state

    torch.manual_seed(3)
    saved = rng_state()
    expected = torch.rand(3)
    torch.rand(10)  # move on
    as_loaded = {**saved, "torch": saved["torch"].clone()}  # what torch.load(map_location=...) hands back
    set_rng_state(as_loaded)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow  # three in-process `dlbench` commands
def test_a_run_killed_while_it_builds_is_resumable_to_the_same_numbers(tmp_path, monkeypatch):
    """A process that dies before the run's first epoch (SIGKILL: no summary, nothing recorded)
    leaves a folder `dlbench resume` knows: its overrides are written as soon as it is claimed. Its
    resumed metrics equal an uninterrupted run's. A folder that trained nothing is anyone's: a run
    with other overrides may take it."""
    from dlbench import cli
    from dlbench.run import lifecycle

    monkeypatch.chdir(tmp_path)
    args = ["train", "dataset=digits", "model.hidden=[16]", "epochs=2", "trainer.progress=false"]

    def dlbench(*argv):
        with pytest.raises(SystemExit) as ended:
            cli.main(list(argv))
        return ended.value.code

    def killed(cfg):
        raise SystemExit(137)  # the process ends here, as a SIGKILL ends it: no except clause runs
    with monkeypatch.context() as patch:
        patch.setattr(lifecycle, "check_fit", killed)
        assert dlbench(*args, "--into", "run") == 137
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").is_file()
    assert not (tmp_path / "run" / "summary.json").exists()
    assert dlbench("resume", "run") == 0
    assert dlbench(*args, "--into", "straight") == 0
    strip = lambda ms: [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(tmp_path / "run")) == strip(read_metrics(tmp_path / "straight"))
    with monkeypatch.context() as patch:
        patch.setattr(lifecycle, "check_fit", killed)
        assert dlbench(*args, "--into", "taken") == 137
    assert dlbench(*args, "lr=0.05", "--into", "taken") == 0  # nothing was trained there: it is free
    assert json.loads((tmp_path / "taken" / "summary.json").read_text())["overrides"][-1] == "lr=0.05"
