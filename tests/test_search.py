"""dlbench's search (hydra/sweeper=search): its space, its checks, and real searches on the digits
through the command line: a hopeless trial pruned at its first report, a killed search resumed with no
trial run twice, two workers sharing one journal."""
import json
import signal
import subprocess
import sys

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dlbench.config import CONF_DIR
from dlbench.errors import ConfigError
from dlbench.search.pruning import intermediate
from dlbench.search.space import parse_space
from dlbench.search.study import check, storage
from tests.conftest import dlbench, wait_for

SEARCH = ["train", "-m", "experiment=lr_search", "dataset=digits", "model.hidden=[32]", "logger=none",
          "hydra.sweeper.params.model=mlp", "trainer.progress=false"]


def test_the_space_is_read_from_hydras_sweep_syntax():
    space = parse_space(["lr=tag(log, interval(1e-4, 1))", "dropout=interval(0, 0.5)", "model=choice(mlp, cnn)",
                         "epochs=3"], ["batch_size=range(32, 257, 32)", "epochs=4", "+extra=1"])
    assert space.distributions == {"lr": FloatDistribution(1e-4, 1.0, log=True),
                                   "dropout": FloatDistribution(0.0, 0.5),
                                   "model": CategoricalDistribution(["mlp", "cnn"]),
                                   "batch_size": IntDistribution(32, 256, step=32)}
    assert space.fixed == {"epochs": "epochs=4", "extra": "+extra=1"}  # the later override wins; + is kept
    assert space.overrides({"lr": 0.001, "dropout": 0.25, "model": "cnn", "batch_size": 64}) == [
        "epochs=4", "+extra=1", "lr=0.001", "dropout=0.25", "model=cnn", "batch_size=64"]
    assert parse_space(["batch_size=range(32, 257, 32)", "model=choice(a,b)"]).grid() == {
        "batch_size": [32, 64, 96, 128, 160, 192, 224, 256], "model": ["a", "b"]}


def sweeper(**changes):
    node = OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "search.yaml")
    node.params = {"lr": "tag(log, interval(1e-4, 1))"}
    for key, value in changes.items():
        OmegaConf.update(node, key, value, force_add=True)
    return node


@pytest.mark.parametrize("changes, named", [
    ({"sampler.name": "nosuch"}, r"hydra.sweeper.sampler.name=nosuch: is not a sampler; valid: tpe, random, grid"),
    ({"pruner.patience": 3}, r"hydra.sweeper.pruner.patience=3: is not an option of the successive_halving pruner; "
                             r"valid: "),
    ({"pruner.name": "none", "pruner.n_warmup_stepz": 1}, r"pruner.n_warmup_stepz=1: is not an option of the none"),
    ({"n_trials": "abc"}, r"hydra.sweeper.n_trials=abc: is a count"),
    ({"n_jobs": 0}, r"hydra.sweeper.n_jobs=0: is a count"),
    ({"direction": "up"}, r"hydra.sweeper.direction=up: is not a direction; valid: maximize, minimize"),
    ({"params": {"lr": "interval(1, 0.1)"}}, r"hydra.sweeper.params.lr=interval\(1.0, 0.1\): needs a low end below"),
    ({"params": {"lr": "tag(log, interval(0, 1))"}}, r"hydra.sweeper.params.lr=.*log scale, which needs a positive"),
    ({"params": {"lr": 0.1}}, r"hydra.sweeper.params=.*has nothing to search"),
    ({"sampler.name": "grid"}, r"hydra.sweeper.params.lr=.*is continuous, and the grid sampler"),
    ({"enqueue": [{"wd": 0.1}]}, r"hydra.sweeper.enqueue=.*sets wd, which the search does not draw; give keys of its "
                                 r"space: lr"),
])
def test_a_bad_search_is_one_line_naming_its_key(changes, named):
    with pytest.raises(ConfigError, match=named):
        check(sweeper(**changes), [])


def test_several_trials_at_once_need_a_launcher_that_trains_out_of_this_process():
    with pytest.raises(ConfigError, match=r"hydra.sweeper.n_jobs=2: .*BasicLauncher trains in this process.*joblib"):
        check(sweeper(n_jobs=2), [], {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    check(sweeper(n_jobs=2), [], {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"})


def test_the_default_pruner_is_asha_with_its_first_rung_at_epoch_one_and_a_third_going_on():
    from dlbench.search.study import build_pruner

    pruner = build_pruner(sweeper().pruner)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert (pruner._min_resource, pruner._reduction_factor) == (1, 3)  # as scripts/bench_search.py measured it
    mine = build_pruner(OmegaConf.create({"name": "successive_halving", "reduction_factor": 4}))
    assert (mine._min_resource, mine._reduction_factor) == (1, 4)  # a key given wins
    assert isinstance(build_pruner(OmegaConf.create({"name": "median"})), optuna.pruners.MedianPruner)


def test_a_trial_reports_its_objective_as_it_stands_after_each_epoch():
    history = [{"val/acc": 0.5, "val/loss": 1.0}, {"val/acc": 0.7, "val/loss": 1.2}, {"val/acc": 0.6, "val/loss": 0.9}]
    assert intermediate("best/val/acc", history, "maximize") == 0.7   # the best so far, as the run would return
    assert intermediate("best/val/loss", history, "minimize") == 0.9
    assert intermediate("val/acc", history, "maximize") == 0.6        # the epoch's own value
    assert intermediate("params", history, "maximize") is None         # not a curve: nothing to report
    assert intermediate("best/val/acc", [{"val/acc": float("nan")}], "maximize") is None


def trials(sweep_dir):
    study = optuna.load_study(study_name="lr_search", storage=storage(sweep_dir))
    return study.get_trials(deepcopy=False)


def run_summaries(sweep_dir):
    """Each run folder's summary, with its trial number read from the folder's overrides."""
    found = {}
    for d in (sweep_dir.iterdir() if sweep_dir.is_dir() else []):
        if (d / "summary.json").is_file():
            summary = json.loads((d / "summary.json").read_text())
            trial = [o for o in summary.get("overrides", []) if o.startswith("trial=")]
            found[d] = {**summary, "trial": int(trial[0].split("=")[1]) if trial else None}
    return found


@pytest.mark.slow
def test_a_hopeless_trial_is_pruned_at_its_first_report_and_kept_as_a_result(in_tmp):
    # ASHA, the default: at the first rung (epoch 1) only the best of two goes on
    proc = dlbench(*SEARCH, "epochs=3", "hydra.sweeper.n_trials=2", "hydra.sweeper.enqueue=[{lr: 0.5},{lr: 1e-6}]",
                   "--into", "search", cwd=in_tmp)
    by_trial = {s["trial"]: s for s in run_summaries(in_tmp / "search").values()}
    assert (by_trial[0]["status"], by_trial[0]["epochs_completed"]) == ("completed", 3)
    assert (by_trial[1]["status"], by_trial[1]["epochs_completed"]) == ("pruned", 1)
    pruned_dir = next(d for d, s in run_summaries(in_tmp / "search").items() if s["trial"] == 1)
    assert len((pruned_dir / "metrics.jsonl").read_text().splitlines()) == 1  # its curve so far is kept
    assert [t.state.name for t in trials(in_tmp / "search")] == ["COMPLETE", "PRUNED"]
    assert "1 completed, 1 pruned" in proc.stdout  # a result, not a failure: the sweep exits 0
    report = (in_tmp / "search" / "report.md").read_text()
    assert "| 1 | pruned | 1.00e-06 |" in report and "| 0 | complete | 0.5000 |" in report
    assert "Best: trial 0" in report and "lr=0.5" in report.split("To train it again")[1]
    assert (in_tmp / "search" / "search" / "lr_search_optimization_history.png").is_file()


@pytest.mark.slow
def test_a_killed_search_resumes_its_study_and_runs_no_trial_twice(in_tmp):
    args = [*SEARCH, "epochs=4", "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.name=none",
            "hydra.sweeper.sampler.seed=1", "--into", "search"]
    proc = subprocess.Popen([sys.executable, "-m", "dlbench", *args], cwd=in_tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    done = lambda: [s for s in run_summaries(in_tmp / "search").values() if s["status"] == "completed"]  # noqa: E731
    second = lambda: [s for s in run_summaries(in_tmp / "search").values() if s.get("trial") == 1 and s["epochs_completed"]]  # noqa: E731
    wait_for(lambda: len(done()) >= 1 and second(), proc)  # trial 1 is part-way through
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert [t.state.name for t in trials(in_tmp / "search")][:2] == ["COMPLETE", "RUNNING"]
    resumed = dlbench("resume", "search", cwd=in_tmp)
    assert "trial 1 was left running; it resumes" in resumed.stderr
    states = [(t.number, t.state.name) for t in trials(in_tmp / "search")]
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]  # n_trials counts what was done
    by_trial = {s["trial"]: s for s in run_summaries(in_tmp / "search").values()}
    assert sorted(by_trial) == [0, 1, 2] and all(s["epochs_completed"] == 4 for s in by_trial.values())
    trial_1 = next(d for d, s in run_summaries(in_tmp / "search").items() if s["trial"] == 1)
    epochs = [json.loads(line)["epoch"] for line in (trial_1 / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]  # resumed from its checkpoint, not trained again from the start


@pytest.mark.slow
def test_two_workers_on_one_journal_finish_n_trials_exactly(in_tmp):
    args = [*SEARCH, "epochs=2", "hydra.sweeper.n_trials=5", "hydra.sweeper.pruner.name=none",
            "model.hidden=choice([16],[32])", "--into", "search"]  # a list of widths drawn, as the report shows it
    procs = [subprocess.Popen([sys.executable, "-m", "dlbench", *args], cwd=in_tmp, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(t.number for t in trials(in_tmp / "search")) == [0, 1, 2, 3, 4]
    assert all(t.state.name == "COMPLETE" for t in trials(in_tmp / "search"))
    by_trial = [s["trial"] for s in run_summaries(in_tmp / "search").values()]
    assert sorted(by_trial) == [0, 1, 2, 3, 4]  # one run folder each: no trial trained twice
    report = (in_tmp / "search" / "report.md").read_text()
    assert "| trial | state | lr | model.hidden | value | epochs trained |" in report
    assert "| complete | " in report and ("| [16] |" in report or "| [32] |" in report)
    launched = [out.count("dlbench: sweep run ") for out in outputs]
    assert sum(launched) == 5 and min(launched) >= 1, outputs  # both took trials; neither ran one twice


@pytest.mark.slow
def test_n_jobs_keeps_trials_in_flight_through_the_joblib_launcher(in_tmp):
    dlbench(*SEARCH, "epochs=2", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2", "--into", "search", cwd=in_tmp)
    done = sorted((t.number, t.state.name) for t in trials(in_tmp / "search"))  # ASHA may prune: both are results
    assert [n for n, _ in done] == [0, 1, 2, 3] and {state for _, state in done} <= {"COMPLETE", "PRUNED"}
    assert sorted(s["trial"] for s in run_summaries(in_tmp / "search").values()) == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_bad_search_on_the_command_line_is_refused_before_anything_runs(in_tmp):
    proc = dlbench(*SEARCH, "lr=interval(1, 0.1)", "--into", "search", cwd=in_tmp, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "dlbench: lr=interval(1.0, 0.1): needs a low end below its high end; write interval(low, high)"]
    assert not (in_tmp / "search").exists()
