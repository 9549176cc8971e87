"""hydra/launcher=fused: a sweep's runs trained as one vectorised model give each run the folder
and the numbers it gets trained alone (to float rounding), whatever its optimizer, schedule,
dropout, divergence or early stop; a killed group resumes; runs that cannot be fused train alone."""
import json
from pathlib import Path

import pytest
import torch

from dlbench import cli
from tests.conftest import StopAfter, runs_in

BASE = ["dataset=digits", "model.hidden=[32,16]", "epochs=3", "trainer.progress=false", "logger=none",
        "trainer.threads=1"]
COMPARED = ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "lr")


def sweep(folder: Path, *args: str, fused: bool = True) -> int:
    launcher = ["hydra/launcher=fused"] if fused else []
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "-m", *BASE, *args, *launcher, "--into", str(folder)])
    return exit_.value.code


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def assert_same_runs(fused: Path, alone: Path, rel: float = 1e-5) -> None:
    """Every run folder of `alone` is in `fused`, with the same status, epochs and numbers."""
    names = [r.name for r in runs_in(alone)]
    assert names and names == [r.name for r in runs_in(fused)]
    for name in names:
        a, b = summary(alone / name), summary(fused / name)
        assert (b["status"], b["epochs_completed"]) == (a["status"], a["epochs_completed"]), name
        assert (b["diverged"] or {}).get("step") == (a["diverged"] or {}).get("step"), name
        tolerance = rel if a["status"] == "completed" else 1e-3  # a diverging run magnifies rounding
        for x, y in zip(metrics(alone / name), metrics(fused / name), strict=True):
            for key in COMPARED:
                assert y[key] == pytest.approx(x[key], rel=tolerance, abs=1e-7, nan_ok=True), (name, x["epoch"], key)


CASES = {
    "sgd-momentum-nesterov-weight-decay": ["lr=0.1,0.03", "optimizer.momentum=0.9", "optimizer.nesterov=true",
                                           "optimizer.weight_decay=1e-3"],
    "sgd-plain-seeds": ["lr=0.1", "optimizer.momentum=0.0", "seed=0,1,2"],
    "adam": ["optimizer=adam", "lr=0.003,0.001", "optimizer.weight_decay=1e-4"],
    "adamw": ["optimizer=adamw", "lr=0.003,0.001", "optimizer.weight_decay=0.1"],
    "schedule-warmup": ["lr=0.1,0.05", "scheduler=cosine", "warmup_steps=30"],
    "dropout": ["lr=0.1,0.05", "regularizer=dropout", "regularizer.dropout.rate=0.3,0.5"],
    "grad-clip": ["lr=0.5,0.1", "regularizer=grad_clip", "regularizer.grad_clip.max_norm=0.5"],
    "cnn-through-vmap": ["model=cnn", "model.channels=[4,8]", "lr=0.1,0.05", "optimizer.momentum=0.9"],
    "mse-mean-and-sum": ["loss=mse", "loss.reduction=mean,sum", "lr=0.5"],  # one group, each member its own loss
}


@pytest.mark.slow
def test_a_fused_sweep_has_the_numbers_of_the_same_runs_alone(tmp_path):
    """The fast one: momentum, a schedule with warm-up and dropout at once, two rates."""
    args = ["lr=0.1,0.05", "epochs=2", "optimizer.momentum=0.9", "scheduler=cosine", "warmup_steps=20",
            "regularizer=dropout", "regularizer.dropout.rate=0.3"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_fused_run_has_the_numbers_it_has_alone(tmp_path, case):
    assert sweep(tmp_path / "alone", *CASES[case], fused=False) == 0
    assert sweep(tmp_path / "fused", *CASES[case]) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    assert all((run / "checkpoints" / "last.pt").is_file() for run in runs_in(tmp_path / "fused"))


@pytest.mark.slow
def test_the_per_parameter_layout_of_large_models_has_the_numbers_alone_too(tmp_path, monkeypatch):
    """Small models train from one flat buffer, large ones from a tensor per parameter: here the
    small test models are made to take the large models' layout."""
    from dlbench.launchers.fused import vectorised

    monkeypatch.setattr(vectorised, "FLAT_ELEMENTS_PER_TENSOR", 0)
    args = ["lr=0.1,0.03", "optimizer.momentum=0.9", "optimizer.nesterov=true", "optimizer.weight_decay=1e-3",
            "regularizer=grad_clip", "regularizer.grad_clip.max_norm=0.5", "epochs=2", "probe=[grad_norm]"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    for run in runs_in(tmp_path / "alone"):  # the probe reads each member's slice of the stacked gradients
        for x, y in zip(metrics(run), metrics(tmp_path / "fused" / run.name), strict=True):
            for key in ("grad/mean_abs", "update/ratio"):
                assert y[key] == pytest.approx(x[key], rel=1e-4) and y[key] > 0, (run.name, key)
    adam = ["optimizer=adam", "lr=0.003,0.001", "optimizer.weight_decay=1e-4", "epochs=2"]
    assert sweep(tmp_path / "adam-alone", *adam, fused=False) == 0
    assert sweep(tmp_path / "adam-fused", *adam) == 0
    assert_same_runs(tmp_path / "adam-fused", tmp_path / "adam-alone")


@pytest.mark.slow
def test_a_diverging_member_stops_alone_and_the_others_go_on(tmp_path):
    args = ["lr=20,0.1", "optimizer.momentum=0.9", "epochs=4"]
    sweep(tmp_path / "alone", *args, fused=False)
    sweep(tmp_path / "fused", *args)
    statuses = {r.name.split("lr=")[1].split(",")[0]: summary(r)["status"] for r in runs_in(tmp_path / "fused")}
    assert statuses == {"20": "diverged", "0.1": "completed"}
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    # seeds: each member has its own data, stacked for one gather a step; a leaving member's row goes too
    args = ["lr=20,0.1", "seed=0,1", "optimizer.momentum=0.9", "epochs=2", "regularizer=dropout"]
    sweep(tmp_path / "seeds-alone", *args, fused=False)
    sweep(tmp_path / "seeds-fused", *args)
    assert sorted(summary(r)["status"] for r in runs_in(tmp_path / "seeds-fused")) == ["completed"] * 2 + ["diverged"] * 2
    assert_same_runs(tmp_path / "seeds-fused", tmp_path / "seeds-alone")


@pytest.mark.slow
def test_members_with_data_of_their_own_gather_their_own_batches(tmp_path, monkeypatch, capsys):
    """Seeds give each member its own split: too large to stack, each member's batches are gathered
    apart and stacked a step at a time. Training sets of 540 and 560 examples are 9 batches of 64
    each, but their last batches differ (28, 48): they cannot share a step and train alone."""
    from dlbench.launchers.fused import epoch as fused

    monkeypatch.setattr(fused, "STACK_BYTES", 0)
    args = ["lr=0.1", "seed=0,1,2", "optimizer.momentum=0.9", "epochs=2"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert "fused group 1/1: 3 runs as one model" in capsys.readouterr().err
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    args = ["lr=0.1", "dataset.limit=540,560", "epochs=2"]
    assert sweep(tmp_path / "sizes-alone", *args, fused=False) == 0
    assert sweep(tmp_path / "sizes-fused", *args) == 0
    assert "fused group" not in capsys.readouterr().err
    assert_same_runs(tmp_path / "sizes-fused", tmp_path / "sizes-alone")


@pytest.mark.slow
def test_runs_whose_models_compute_another_function_of_the_same_shapes_train_apart(tmp_path, monkeypatch, capsys):
    """tanh and sigmoid MLPs have the same parameter shapes: each trains as itself. Were they put in
    one group (a model whose difference the launcher cannot see), the group fails, loudly."""
    from dlbench.launchers.fused import grouping as fused

    args = ["lr=0.1", "model.activation=tanh,sigmoid", "epochs=2"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert "fused group" not in capsys.readouterr().err
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    monkeypatch.setattr(fused, "structure", lambda model: ())
    assert sweep(tmp_path / "blind", *args) != 0
    err = capsys.readouterr().err
    assert "fused group 1/1: 2 runs as one model" in err and "Traceback" not in err
    assert err.count("(in a fused group of 2) failed: RuntimeError: ") == 2 and "/train.log" in err
    runs = runs_in(tmp_path / "blind")
    assert [summary(r)["status"] for r in runs] == ["failed", "failed"]
    assert "computes another function than" in (runs[0] / "train.log").read_text()


@pytest.mark.slow
def test_members_stop_early_each_at_its_own_epoch(tmp_path):
    args = ["lr=0.3,0.01", "epochs=12", "regularizer=early_stopping", "regularizer.early_stopping.patience=2"]
    sweep(tmp_path / "alone", *args, fused=False)
    sweep(tmp_path / "fused", *args)
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    assert len({summary(r)["epochs_completed"] for r in runs_in(tmp_path / "fused")}) == 2


@pytest.mark.slow
def test_probes_see_in_a_group_what_they_see_alone(tmp_path):
    """The gradient-norm probe reads each member's own gradients (after clipping) and weight updates
    every step; trajectory, weight statistics and sharpness read its own weights at an epoch's end."""
    args = ["lr=0.1,0.05", "epochs=2", "optimizer.momentum=0.9", "regularizer=grad_clip",
            "regularizer.grad_clip.max_norm=1.0", "probe=[grad_norm,trajectory,weight_norm,sharpness]",
            "probe.grad_norm.first_steps=30", "probe.sharpness.examples=200", "probe.sharpness.iterations=5"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    for name in [r.name for r in runs_in(tmp_path / "alone")]:
        a, b = tmp_path / "alone" / name, tmp_path / "fused" / name
        steps = [[json.loads(line) for line in (run / "probes" / "grad_norm.jsonl").read_text().splitlines()]
                 for run in (a, b)]
        assert len(steps[0]) == len(steps[1]) == 30  # every one of the first 30 steps
        for x, y in zip(*steps):
            assert x["step"] == y["step"]
            for key in ("grad/norm", "grad/mean_abs", "update/ratio"):
                assert y[key] == pytest.approx(x[key], rel=1e-4), (name, x["step"], key)
            assert y["grad/norm"] > 0
        for epoch in ("epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt"):
            torch.testing.assert_close(torch.load(b / "trajectory" / epoch), torch.load(a / "trajectory" / epoch),
                                       rtol=1e-4, atol=1e-6)
        last = [metrics(run)[-1] for run in (a, b)]
        for key in [k for k in last[0] if k.startswith(("sharpness/", "weights/norm/", "relu/dead/", "grad/"))]:
            assert last[1][key] == pytest.approx(last[0][key], rel=1e-3), (name, key)
        assert "sharpness/hessian_top" in last[1] and "grad/mean_abs" in last[1]


@pytest.mark.slow
def test_a_killed_group_resumes_to_the_numbers_of_an_unbroken_one(tmp_path, extra_callback):
    args = ["lr=0.1,0.05", "optimizer=adam", "regularizer=dropout", "epochs=4"]
    sweep(tmp_path / "alone", *args, fused=False)
    extra_callback(StopAfter(2, KeyboardInterrupt()))
    assert sweep(tmp_path / "fused", *args) == 130
    assert {summary(r)["status"] for r in runs_in(tmp_path / "fused")} == {"interrupted"}
    extra_callback(None)
    assert sweep(tmp_path / "fused", *args) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone")
    log = (runs_in(tmp_path / "fused")[0] / "train.log").read_text()
    assert "resuming" in log and "epoch 3/4" in log


@pytest.mark.slow
def test_runs_that_cannot_be_fused_train_alone_and_say_why(tmp_path, capsys):
    assert sweep(tmp_path / "fused", "lr=0.1,0.05", "regularizer=batchnorm") == 0
    assert "trains alone: the model keeps running statistics (batch norm)" in capsys.readouterr().err
    assert {summary(r)["status"] for r in runs_in(tmp_path / "fused")} == {"completed"}


@pytest.mark.slow
def test_each_member_logs_to_its_own_folder(tmp_path):
    sweep(tmp_path / "fused", "lr=0.1,0.05")
    for run in runs_in(tmp_path / "fused"):
        log = (run / "train.log").read_text()
        assert log.count("epoch 3/3") == 1 and run.name in log
        assert summary(run)["train_examples_per_second"] > 0


@pytest.mark.parametrize("own_layout", [False, "per member", "bmm"])
@pytest.mark.parametrize("shared", [False, True])
def test_the_batched_matmul_forward_of_stacked_mlps_is_vmaps(shared, own_layout, monkeypatch):
    """The fast path for plain MLPs (K weight matrices side by side, or baddbmm; or StackedLinear,
    whose backward is its own: a matmul per member as on a CPU, or bmm as on a GPU) gives what
    functional_call under vmap gives, dropout masks included, forward and gradients; a model it
    cannot read gets no plan."""
    from torch import nn
    from torch.func import functional_call, vmap

    from dlbench.launchers.fused import model as fused
    from dlbench.launchers.fused.model import MaskedDropout, mlp_forward, mlp_plan
    from dlbench.models.mlp import mlp

    monkeypatch.setattr(fused, "MATMUL_PER_MEMBER", set() if own_layout == "bmm" else {"cpu"})

    torch.manual_seed(0)
    models = [mlp((1, 4, 4), 3, hidden=[8, 5], activation="leaky_relu", dropout=0.5) for _ in range(3)]
    plan = mlp_plan(models[0])
    assert [kind for kind, _ in plan] == ["flatten", "linear", "elementwise", "dropout", "linear", "elementwise",
                                          "dropout", "linear"]
    names = [n for n, _ in models[0].named_parameters()]

    def stacked():
        return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                for n in names}

    masks = {"3.mask": torch.rand(3, 6, 8).round() * 2, "6.mask": torch.rand(3, 6, 5).round() * 2}
    x = torch.randn(6, 1, 4, 4) if shared else torch.randn(3, 6, 1, 4, 4)
    base = nn.Sequential(*[MaskedDropout() if isinstance(m, nn.Dropout) else m for m in models[0]])
    params_want, params_got = stacked(), stacked()
    want = vmap(lambda p, x: functional_call(base, p, (x,)))({**params_want, **masks},
                                                              x.expand(3, *x.shape) if shared else x)
    got = mlp_forward(plan, params_got, masks, x, shared, own_layout=bool(own_layout))
    assert got.shape == (3, 6, 3)
    torch.testing.assert_close(got, want)
    weights = torch.randn(3, 6, 3)  # a loss that tells the members and their outputs apart
    (want * weights).sum().backward()
    (got * weights).sum().backward()
    for n in names:
        torch.testing.assert_close(params_got[n].grad, params_want[n].grad)
        if own_layout:  # backward hands the gradient over in the parameter's layout: nothing to copy
            assert params_got[n].grad.is_contiguous(), n
    assert mlp_plan(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))) is None
    assert mlp_plan(nn.Sequential(nn.Conv2d(1, 2, 3))) is None


@pytest.mark.slow
def test_the_fused_launcher_composes_each_run_once_where_the_basic_one_composes_it_twice(tmp_path, monkeypatch):
    """Hydra's sweeper composes every run to check it, then the basic launcher composes it again;
    the fused launcher takes the sweeper's (and the run still gets its own overrides)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    composed = []
    original = ConfigLoaderImpl.load_configuration

    def counting(self, config_name, overrides, run_mode, *args, **kwargs):
        composed.append(tuple(overrides))
        return original(self, config_name, overrides, run_mode, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counting)
    counts = {}
    for fused in (False, True):
        composed.clear()
        assert sweep(tmp_path / str(fused), "lr=0.1,0.05,0.02", "epochs=1", fused=fused) == 0
        counts[fused] = sum(1 for o in composed if "lr=0.05" in o)
    assert counts == {False: 3, True: 2}  # dlbench's check before the sweep, the sweeper's, (the launcher's)
    assert [summary(r)["lr"] for r in runs_in(tmp_path / "True")] == [0.02, 0.05, 0.1]


@pytest.mark.slow
def test_a_runs_clock_leaves_out_the_work_done_for_other_runs_of_the_sweep(tmp_path, monkeypatch):
    """The fused launcher works for one run after another: it evaluates and records each member of
    a group in turn, trains a group while the other runs wait, then the runs that train alone. A
    run's epoch_seconds (and so its seconds_to_target) and wall_seconds count its own work and its
    group's, not the others' (else they would grow with a run's place in the sweep). A clock that
    jumps 10 s whenever a run evaluates an epoch tells a run's own evaluations from the others'."""
    import time
    import types

    from dlbench.run import lifecycle as train_module
    from dlbench.launchers.fused import members as fused
    from dlbench.tasks.base import Task

    jumps = [0.0]
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + jumps[0])
    original = Task.after_training

    def slow_after_training(self, state, train, seconds):
        jumps[0] += 10.0
        return original(self, state, train, seconds)

    monkeypatch.setattr(fused, "time", clock)
    monkeypatch.setattr(train_module, "time", clock)
    monkeypatch.setattr(Task, "after_training", slow_after_training)
    # lr 0.1 and 0.05 as one group of two; with an L2 penalty, each alone after the group
    assert sweep(tmp_path, "lr=0.1,0.05", "regularizer=none,l2", "epochs=2") == 0
    runs = runs_in(tmp_path)
    assert len(runs) == 4
    for run in runs:
        epochs = [m["epoch_seconds"] for m in metrics(run)]
        assert len(epochs) == 2 and all(10.0 <= s < 15.0 for s in epochs), (run.name, epochs)
        assert 20.0 <= summary(run)["wall_seconds"] < 30.0, (run.name, summary(run)["wall_seconds"])
