"""The command line as a user types it, in fresh processes, on real data. Slow: seconds each."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlbench import launch
from dlbench.overrides import parse
from tests.conftest import dlbench, runs_in

pytestmark = pytest.mark.slow


def summary(folder):
    return json.loads((folder / "summary.json").read_text())


def losses(folder):
    return [(m["train/loss"], m["val/loss"], m["test/acc"])
            for m in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]


def only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def test_fashion_mnist_run_end_to_end(in_tmp):
    dlbench("train", "dataset.limit=5000", "epochs=2", cwd=in_tmp)
    run = only((in_tmp / "outputs" / "runs").iterdir())
    assert run.name.endswith("_dataset.limit=5000,epochs=2")
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.jsonl", "summary.json", "train.log",
                 "checkpoints/last.pt", "checkpoints/best.pt", "plots/curves.png"):
        assert (run / name).is_file(), name
    s = summary(run)
    assert (s["status"], s["dataset"], s["model"], s["epochs_completed"]) == ("completed", "fashion_mnist", "mlp", 2)
    assert s["test/acc"] > 0.7 and s["best/val/acc"] > 0.7  # chance is 0.1
    assert s["params"] == 669_706 and s["overrides"] == ["dataset.limit=5000", "epochs=2"]
    assert 0 < s["wall_seconds"] < 600 and s["train_examples_per_second"] > 100
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"epoch/train/loss", "epoch/val/acc", "epoch/test/acc", "lr", "train/step_loss"} <= set(events.Tags()["scalars"])
    assert "epoch 2/2" in (run / "train.log").read_text()


def test_model_cnn_lr_001_is_the_whole_spelling(in_tmp):
    dlbench("train", "model=cnn", "lr=0.01", "dataset.limit=500", "dataset.eval_limit=500", "epochs=1", cwd=in_tmp)
    run = only((in_tmp / "outputs" / "runs").iterdir())
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["model"]["name"] == "cnn" and config["optimizer"]["lr"] == "${lr}" and config["lr"] == 0.01
    s = summary(run)
    assert (s["status"], s["model"], s["lr"]) == ("completed", "cnn", 0.01)


def test_sweep_with_a_diverging_rate_finishes(in_tmp):
    proc = dlbench("train", "-m", "lr=10,0.1", "dataset=digits", "epochs=3", cwd=in_tmp)
    assert proc.returncode == 0
    sweep = only((in_tmp / "outputs" / "sweeps").iterdir())
    statuses = {run.name: summary(run)["status"] for run in runs_in(sweep)}
    assert statuses == {"dataset=digits,epochs=3,lr=10": "diverged", "dataset=digits,epochs=3,lr=0.1": "completed"}
    assert (sweep / "multirun.yaml").is_file()
    # each run records the command the user typed (not a launcher worker's argv); the report says it once
    command = "dlbench train -m lr=10,0.1 dataset=digits epochs=3"
    assert {summary(run)["provenance"]["command"] for run in runs_in(sweep)} == {command}
    assert (sweep / "report.md").read_text().count(f"- command: `{command}`") == 1


def test_two_sweeps_started_together_get_their_own_folders(in_tmp):
    args = [sys.executable, "-m", "dlbench", "train", "-m", "dataset=digits", "epochs=1", "model.hidden=[16]"]
    procs = [subprocess.Popen([*args, f"seed={i}"], cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    sweeps = sorted((in_tmp / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 2
    seeds = sorted(summary(only(runs_in(s)))["seed"] for s in sweeps)
    assert seeds == [0, 1]


def start_and_kill_after_first_epoch(cmd, run_dir, cwd, sig):
    """Start cmd and send it `sig` once its first checkpoint exists (renamed into place whole)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not checkpoint.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


def test_a_killed_run_resumes_to_the_same_numbers(in_tmp):
    args = ["train", "dataset.limit=20000", "dataset.eval_limit=2000", "epochs=4", "model.hidden=[256]"]
    dlbench(*args, "hydra.run.dir=straight", cwd=in_tmp)
    cmd = [sys.executable, "-m", "dlbench", *args, "hydra.run.dir=killed"]
    start_and_kill_after_first_epoch(cmd, in_tmp / "killed", in_tmp, signal.SIGKILL)
    cut = summary(in_tmp / "killed")
    assert cut["status"] == "running" and 1 <= cut["epochs_completed"] < 4  # killed mid-run, nothing closed it
    saved = torch.load(in_tmp / "killed" / "checkpoints" / "last.pt", weights_only=False)["epoch"]
    dlbench("resume", "killed", cwd=in_tmp)
    assert summary(in_tmp / "killed")["status"] == "completed"
    # it continued from the checkpoint, not from scratch
    assert f"from its checkpoint after epoch {saved}" in (in_tmp / "killed" / "train.log").read_text()
    assert losses(in_tmp / "killed") == losses(in_tmp / "straight")


def test_sigterm_marks_the_run_interrupted(in_tmp):
    cmd = [sys.executable, "-m", "dlbench", "train", "dataset.limit=20000", "epochs=50", "hydra.run.dir=run"]
    proc = start_and_kill_after_first_epoch(cmd, in_tmp / "run", in_tmp, signal.SIGTERM)
    assert proc.returncode != 0
    s = summary(in_tmp / "run")
    assert s["status"] == "interrupted" and 1 <= s["epochs_completed"] < 50


def test_unknown_model_lists_the_valid_ones_and_leaves_no_folder(in_tmp):
    proc = dlbench("train", "model=nosuch", cwd=in_tmp, check=False)
    assert proc.returncode != 0
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model=nosuch: no model config named 'nosuch'; valid:" in proc.stderr and "cnn" in proc.stderr
    assert not list((in_tmp / "outputs" / "runs").iterdir())


def test_missing_data_says_where_it_looked(in_tmp):
    proc = dlbench("train", f"dataset.root={in_tmp}/none", f"dataset.mirror={in_tmp}/none", "dataset.download=false",
                   cwd=in_tmp, check=False)
    assert proc.returncode != 0
    assert "FashionMNIST data not found. Looked in:" in proc.stderr
    assert "apt-get install dataset-fashion-mnist" in proc.stderr and "Traceback" not in proc.stderr


def test_list_names_every_group_option(in_tmp):
    out = dlbench("list", cwd=in_tmp).stdout
    lines = {line.split(":")[0]: line.split(":")[1].split() for line in out.splitlines() if ":" in line}
    assert {"mlp", "cnn"} <= set(lines["model"]) and {"fashion_mnist", "mnist", "digits"} <= set(lines["dataset"])
    assert {"sgd", "adam"} <= set(lines["optimizer"]) and {"none", "step"} <= set(lines["scheduler"])


def test_list_and_report_start_without_torch(in_tmp):
    # dispatch imports only the command's module: a listing or a table need not wait for torch
    code = ("import sys\nfrom dlbench.cli import main\nfor argv in (['list'], ['report', '.']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=in_tmp, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-1] == "False", proc.stderr


def test_version_names_dlbench_and_what_its_numbers_depend_on_without_importing_torch(in_tmp):
    from importlib.metadata import version

    import dlbench

    code = "import sys\nfrom dlbench.cli import main\nmain(['--version'])\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=in_tmp, capture_output=True, text=True, timeout=120)
    line, imported = proc.stdout.splitlines()
    assert line.startswith(f"dlbench {dlbench.__version__} (Python {sys.version.split()[0]}, ")
    assert f"torch {version('torch')}" in line and f"hydra-core {version('hydra-core')}" in line
    assert imported == "False"


def test_data_prints_the_splits_of_generated_and_bundled_datasets(capsys):
    from dlbench.cli import main

    with pytest.raises(SystemExit) as done:
        main(["data", "function", "modular", "digits"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "function: 1,000 train, 200 val, 1,000 test examples of shape (1,), 1 regression target"
    assert lines[1] == "modular: 4,704 train, 4,705 val examples of shape (2,), 97 classes"
    assert lines[2].startswith("digits: ") and lines[2].endswith("examples of shape (1, 8, 8), 10 classes")
    with pytest.raises(SystemExit, match="unknown dataset 'nosuch'; valid: .*boolean.*playground"):
        main(["data", "nosuch"])


def test_data_applies_overrides_to_each_dataset_named(capsys):
    """`dlbench data NAME KEY=VALUE`: the same overrides as `dlbench train` (a root, a split) take effect."""
    from dlbench.cli import main

    with pytest.raises(SystemExit) as done:
        main(["data", "function", "dataset.n_train=300", "dataset.n_val=150"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("function: 300 train, 150 val, ")
    with pytest.raises(SystemExit) as done:
        main(["data", "--help"])
    assert done.value.code == 0 and "dataset.root=" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["data", "function", "dataset.n_train=-3"])
    assert done.value.code == 2 and "dataset.n_train=-3: must be >= 1" in capsys.readouterr().err


def test_a_quoted_value_gives_a_run_folder_hydra_can_read(in_tmp):
    """The folder `dlbench train` names after the overrides goes to Hydra as hydra.run.dir='...':
    a value the user quoted (dataset.function='x > 0') must not end that quote early."""
    args, folder, made = launch._with_run_dir(["dataset=function", "dataset.function='x > 0'"])
    (override,) = parse([args[-1]])
    assert made and folder.is_dir() and override.value() == str(folder)
    assert "'" not in folder.name and "x_>_0" in folder.name


@pytest.mark.slow
def test_a_folder_may_hold_any_character_a_file_system_allows(in_tmp):
    """Spaces, =, commas, quotes and non-ASCII in --into: dlbench hands Hydra the folder quoted."""
    odd = in_tmp / "we i'rd=,\"dir\" ü"
    dlbench("train", "dataset=digits", "epochs=1", "logger=none", "trainer.progress=false", "--into", str(odd / "run"),
            cwd=in_tmp)
    dlbench("resume", str(odd / "run"), "epochs=2", cwd=in_tmp)
    summary = json.loads((odd / "run" / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("completed", 2)
    dlbench("train", "-m", "dataset=digits", "epochs=1", "logger=none", "trainer.progress=false", "lr=0.1,0.2",
            "--into", str(odd / "sweep"), cwd=in_tmp)
    resumed = dlbench("resume", str(odd / "sweep"), cwd=in_tmp)
    assert resumed.stderr.count("already holds a completed run") == 2
    assert (odd / "sweep" / "report.md").is_file() and not (in_tmp / "outputs").exists()
