"""Sweeps: the objective a sweeper reads, cores per parallel job, failed runs, resuming a sweep;
then real sweeps on the digits through the command line (slow: seconds each), read back by
`dlbench report`, TensorBoard, and compared across launchers."""
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

from dlbench import schema
from dlbench.config import CONF_DIR, compose
from dlbench.report_cli import main as report_main
from dlbench.run.outcome import objective_value
from dlbench.sweep import available_cpus, failed_runs, recorded_sweep, threads_per_job
from tests.conftest import dlbench, wait_for

# two learning rates x two seeds, plus a rate that diverges (its two seeds too)
SWEEP = ["-m", "lr=0.05,0.2,10", "seed=0,1", "dataset=digits", "model.hidden=[32]", "epochs=2",
         "logger.sample_images=0"]
TABLE = ["--metric", "test/acc,best/val/acc,epochs_to_target,params"]  # wall seconds differ run to run


def summaries(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


# ---------------------------------------------------------------- fast: the pieces

def test_objective_is_the_metric_and_a_diverged_run_the_worst_value():
    done = {"status": "completed", "best/val/acc": 0.9}
    assert objective_value(done, "best/val/acc", "maximize") == 0.9
    assert objective_value({**done, "status": "diverged"}, "best/val/acc", "maximize") == -math.inf
    assert objective_value({**done, "status": "diverged"}, "best/val/acc", "minimize") == math.inf
    assert objective_value({**done, "status": "diverged"}, "best/val/acc", "Direction.maximize") == -math.inf
    assert objective_value({"status": "completed", "best/val/acc": None}, "best/val/acc", "maximize") == -math.inf
    assert objective_value({"status": "completed"}, "val/loss", "minimize") == math.inf
    assert objective_value({"status": "failed"}, "best/val/acc", "maximize") is None  # a failed trial, not a value
    assert objective_value(None, "best/val/acc", "maximize") is None


def test_parallel_jobs_split_the_cores():
    conf = OmegaConf.create
    assert threads_per_job(conf({"n_jobs": 2}), cpus=16) == 8
    assert threads_per_job(conf({"n_jobs": 3}), cpus=2) == 1
    assert threads_per_job(conf({"n_jobs": -1}), cpus=8) == 1   # joblib: one worker per core
    assert threads_per_job(conf({"n_jobs": -2}), cpus=8) == 1   # all cores but one: 7 workers
    assert threads_per_job(conf({"n_jobs": 1}), cpus=8) == 8
    assert threads_per_job(conf({"cpus_per_task": 4, "timeout_min": 60}), cpus=64) == 4  # submitit
    assert threads_per_job(conf({}), cpus=8) is None  # the basic launcher: one job at a time


def test_failed_runs_are_read_from_the_run_folders(tmp_path):
    for name, status in (("a", "completed"), ("b", "failed"), ("c", "diverged"), ("d", "failed")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": status}))
    old = time.time() - 3600
    os.utime(tmp_path / "d" / "summary.json", (old, old))  # an earlier sweep's failure, not re-run now
    assert failed_runs(tmp_path, since=time.time() - 60) == [tmp_path / "b"]


def test_a_recorded_sweep_is_re_run_into_its_folder(tmp_path):
    hydra = {"overrides": {"hydra": ["hydra.sweep.dir='outputs/sweeps/x'", "hydra.mode=MULTIRUN",
                                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                           "task": ["lr=0.1,0.01", "model=cnn"]}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "lr": 0.1}))
    assert recorded_sweep(tmp_path) == ["-m", "lr=0.1,0.01", "model=cnn", "hydra/launcher=joblib",
                                        "hydra.launcher.n_jobs=2", f"hydra.sweep.dir='{tmp_path}'"]


def test_the_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 120)
    assert launcher.max_num_timeout > 0  # a timed-out run is requeued and resumes


# ---------------------------------------------------------------- slow: real sweeps

@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    """The reference sweep, with Hydra's basic launcher (one run after the other)."""
    cwd = tmp_path_factory.mktemp("sweeps")
    proc = dlbench("train", *SWEEP, "--into", "basic", cwd=cwd)
    return cwd, cwd / "basic", proc


@pytest.mark.slow
def test_a_sweep_report_fills_in_the_table(basic):
    cwd, sweep, proc = basic
    assert proc.returncode == 0
    runs = summaries(sweep)
    assert len(runs) == 6 and sorted(s["status"] for s in runs.values()).count("diverged") == 2
    printed = dlbench("report", "basic", "--metric", "test/acc", cwd=cwd).stdout
    assert "6 runs: 4 completed, 2 diverged" in printed and "| 10 | 2 diverged |" in printed
    assert "largest lr that did not diverge: 0.2 (diverged: 10)" in printed
    for lr in ("0.05", "0.2"):
        accs = [s["test/acc"] for s in runs.values() if s["lr"] == float(lr)]
        mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / math.sqrt(2)  # sample std of two values
        half = 12.7062047 * std / math.sqrt(2)  # the 95% interval: Student's t at 1 degree of freedom
        assert f"| {lr} | " in printed
        cell = next(line for line in printed.splitlines() if line.startswith(f"| {lr} |")).split("|")[2].strip()
        assert cell.strip("*").removesuffix(" ≈") == f"{mean:.4f} ± {half:.4f} (2)"  # ≈: within the best's noise
    for name in ("report.md", "report.csv", "runs.csv", "plots/loss.png", "plots/acc.png", "plots/test_acc_vs_lr.png"):
        assert (sweep / name).stat().st_size > 0, name


def hparams_session_groups(logdir):
    """What TensorBoard's HParams tab lists for logdir, asked of the plugin's own backend."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    events = EventMultiplexer()
    events.AddRunsFromDirectory(str(logdir))
    events.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=events,
                               data_provider=data_provider.MultiplexerDataProvider(events, str(logdir)))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    for name in ("lr", "seed"):
        request.col_params.add(hparam=name)
    request.col_params.add(metric=api_pb2.MetricName(tag="epoch/test/acc"))
    handler = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb), "", request)
    return handler.run().session_groups


@pytest.mark.slow
def test_tensorboard_hparams_lists_every_run_with_its_values_and_final_metrics(basic):
    _, sweep, _ = basic
    groups = {g.name: g for g in hparams_session_groups(sweep)}
    runs = summaries(sweep)
    assert set(groups) == set(runs)
    for name, s in runs.items():
        hparams, metrics = groups[name].hparams, {m.name.tag: m.value for m in groups[name].metric_values}
        assert (hparams["lr"].number_value, hparams["seed"].number_value) == (s["lr"], s["seed"])
        assert metrics["epoch/test/acc"] == pytest.approx(s["test/acc"]) and "epoch/val/loss" in metrics


@pytest.mark.slow
def test_a_killed_sweep_re_run_gives_the_same_table(basic):
    cwd, reference, _ = basic
    killed = cwd / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "dlbench", "train", *SWEEP, "--into", "killed"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(list(killed.glob("*/summary.json"))) >= 2, proc)  # the second run has started
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    statuses = [s["status"] for s in summaries(killed).values()]
    assert "completed" in statuses and len(statuses) < 6
    partial = dlbench("report", "killed", *TABLE, cwd=cwd).stdout
    assert "running" in partial and "not started" in partial  # the cut run and the rest are shown, not dropped
    resumed = dlbench("resume", "killed", cwd=cwd)  # re-runs the recorded sweep into its folder
    assert "already holds a completed run; not running it again" in resumed.stdout + resumed.stderr
    assert sorted(summaries(killed)) == sorted(summaries(reference))
    for sweep in (killed, reference):
        report_main([str(sweep), *TABLE])
    assert (killed / "report.csv").read_text() == (reference / "report.csv").read_text()


def same_runs(sweep, reference, rel=1e-4, extra=""):
    """The same run folders, statuses and numbers as the reference sweep (numbers to `rel`: a
    parallel job may use fewer threads, which may reorder a float sum). `extra`: an override the
    sweep had beyond the reference's, which its folder names show."""
    got, want = summaries(sweep), summaries(reference)
    got = {name.replace(extra, "") if extra else name: s for name, s in got.items()}
    assert set(got) <= set(want) and got
    for name, s in got.items():
        assert s["status"] == want[name]["status"], name
        assert s["test/acc"] == pytest.approx(want[name]["test/acc"], rel=rel), name
        assert s["epochs_completed"] == want[name]["epochs_completed"], name
    return got


@pytest.mark.slow
def test_a_joblib_sweep_gives_the_same_runs_on_shared_cores(basic):
    cwd, reference, _ = basic
    args = ["-m", "lr=0.05,10", "seed=0,1", *SWEEP[3:]]
    # threads=null: the launcher's fixed split (auto would share the cores as the jobs come and go)
    dlbench("train", *args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.threads=null",
            "--into", "joblib", cwd=cwd)
    got = same_runs(cwd / "joblib", reference, extra=",trainer.threads=null")
    assert sorted(s["status"] for s in got.values()) == ["completed", "completed", "diverged", "diverged"]
    assert {s["threads"] for s in got.values()} == {max(1, available_cpus() // 2)}


@pytest.mark.slow
def test_a_submitit_local_sweep_gives_the_same_runs(basic):
    cwd, reference, _ = basic
    args = ["-m", "lr=0.05,10", "seed=0", *SWEEP[3:]]
    dlbench("train", *args, "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", "--into", "submitit",
            cwd=cwd)
    got = same_runs(cwd / "submitit", reference)
    assert sorted(s["status"] for s in got.values()) == ["completed", "diverged"]
    assert {s["threads"] for s in got.values()} == {1}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=fused"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]],
                         ids=["basic", "joblib", "fused", "submitit"])
def test_a_run_that_raises_is_failed_and_the_sweep_goes_on(in_tmp, launcher):
    """The same failure through every launcher: recorded `failed` with its cause, said in one line, and
    the sweep exits non-zero after training the other run."""
    # a valid config whose run raises at run time: a text too short for one batch, which only its run reads
    (in_tmp / "short.txt").write_text("the time machine, in brief\n")
    texts = f"{in_tmp / 'short.txt'},{os.environ['DLBENCH_TIMEMACHINE']}"
    proc = dlbench("train", "-m", "dataset=timemachine", f"dataset.path={texts}", "model=rnn", "model.hidden=16",
                   "epochs=1", "logger=none", "trainer.progress=false", *launcher, "--into", "sweep", cwd=in_tmp,
                   check=False)
    assert proc.returncode == 1
    assert "1 run(s) failed" in proc.stderr and "short.txt" in proc.stderr and "Traceback" not in proc.stderr
    runs = {("short" if "short.txt" in name else "long"): s for name, s in summaries(in_tmp / "sweep").items()}
    assert (runs["short"]["status"], runs["long"]["status"]) == ("failed", "completed")
    assert "gives no training batch" in runs["short"]["error"]
    log = next(p for p in (in_tmp / "sweep").glob("*/train.log") if "short.txt" in p.parent.name).read_text()
    assert "run failed" in log and "gives no training batch" in log


def test_a_bug_in_a_sweeps_run_is_one_line_on_the_terminal_and_its_traceback_is_in_train_log(tmp_path, capfd):
    import logging

    from dlbench.run.outcome import say_failure

    root, log_file = logging.getLogger(), logging.FileHandler(tmp_path / "train.log")
    console = logging.StreamHandler()  # Hydra's console handler: stderr
    root.addHandler(log_file), root.addHandler(console)
    try:
        try:
            {}["missing"]
        except KeyError as err:
            say_failure(err, tmp_path, "run 3")
    finally:
        root.removeHandler(log_file), root.removeHandler(console), log_file.close()
    err = capfd.readouterr().err
    assert err == f"dlbench: run 3 failed: KeyError: 'missing'; traceback in {tmp_path / 'train.log'}\n"
    log = (tmp_path / "train.log").read_text()
    assert f"run failed: {tmp_path}" in log and "Traceback" in log and '{}["missing"]' in log


def test_a_package_a_choice_needs_is_checked_before_anything_runs():
    from dlbench.errors import ConfigError

    assert importlib.util.find_spec("umap") is None  # umap-learn is not a dependency
    with pytest.raises(ConfigError, match=r"probe.embeddings.method=umap: needs the umap package.*pip install "
                                          r"umap-learn, or choose another: valid pca, tsne, umap"):
        schema.check(compose(["probe=embeddings", "probe.embeddings.method=umap"]))


@pytest.mark.slow
def test_a_search_counts_a_diverged_trial_as_a_bad_value(in_tmp):
    import optuna

    from dlbench.search.study import storage

    proc = dlbench("train", "-m", "experiment=lr_search", "dataset=digits", "model.hidden=[32]", "epochs=2",
                   "logger=none", "hydra.sweeper.n_trials=2", "hydra.sweeper.params.model=mlp",
                   "hydra.sweeper.pruner.name=none", "hydra.sweeper.enqueue=[{lr: 10},{lr: 0.1}]", "--into", "search",
                   cwd=in_tmp)
    assert proc.returncode == 0
    runs = {s["lr"]: s for s in summaries(in_tmp / "search").values()}
    assert runs[10]["status"] == "diverged"  # the search met it, and went on
    study = optuna.load_study(study_name="lr_search", storage=storage(in_tmp / "search"))
    assert [(t.state.name, t.value) for t in study.trials][0] == ("COMPLETE", -math.inf)  # the worst value
    assert study.best_params == {"lr": 0.1} and study.best_value == pytest.approx(runs[0.1]["best/val/acc"])


@pytest.mark.slow
def test_two_sweeps_into_one_folder_train_each_run_once_and_neither_calls_the_others_runs_failed(in_tmp):
    args = [sys.executable, "-m", "dlbench", "train", "-m", "dataset=digits", "model.hidden=[16]", "epochs=3",
            "logger=none", "trainer.progress=false", "lr=0.3,0.1,0.03,0.01", "--into", "shared"]
    procs = [subprocess.Popen(args, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    runs = summaries(in_tmp / "shared")
    assert len(runs) == 4 and all(s["status"] == "completed" for s in runs.values())
    for name in runs:  # trained once: one record per epoch, none twice
        epochs = [json.loads(line)["epoch"] for line in (in_tmp / "shared" / name / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2, 3], (name, epochs)
    assert not any("failed" in err for err in errs), errs
