"""The task objects, the run recorder and callbacks that own their state (issue 11): every task
trains, evaluates and interpolates through one loop; callback order does not change a run; a
resumed run's files hold each record once; a regularizer with nothing to act on is an error."""
import json

import pytest
import torch

from dlbench.analysis import interpolate
from dlbench.callbacks import Callbacks
from dlbench.config import compose
from dlbench.tasks import TASKS
from dlbench.train import run
from tests.conftest import StopAfter, digits_cfg

QUIET = ["trainer.progress=false", "trainer.threads=1"]
MODULAR = ["dataset=modular", "dataset.p=11", "model=token_mlp", "model.embed=16", "model.hidden=[32]",
           "optimizer=adamw", "lr=0.01", "epochs=2", "dataset.steps_per_epoch=5", "logger=none", *QUIET]
TEXT = ["dataset=timemachine", "model=gru", "model.hidden=16", "batch_size=8", "dataset.limit=3000", "epochs=1",
        "logger=none", *QUIET]


@pytest.mark.parametrize("overrides, splits", [(MODULAR, ("train", "val")), (TEXT, ("train", "val"))],
                         ids=["modular", "lm"])
def test_interpolate_serves_tasks_without_a_test_split_and_with_a_recurrent_state(in_tmp, overrides, splits):
    a = run(compose(overrides), run_dir=in_tmp / "a")
    b = run(compose([*overrides, "seed=1"]), run_dir=in_tmp / "b")
    rows = interpolate(in_tmp / "a", in_tmp / "b", [0.0, 0.5, 1.0], out=in_tmp / "i", device="cpu")
    assert [s for s in splits if f"{s}/loss" in rows[0]] == list(splits) and "test/loss" not in rows[0]
    # the end points are the runs themselves, evaluated as their task evaluates them
    # (a's data serves both: b's seed changed its init, not the lm split; modular's split follows the seed)
    assert rows[0]["val/loss"] == pytest.approx(a["val/loss"], rel=1e-5)
    if "ppl" in a["target_metric"]:
        assert rows[2]["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5)
    assert (in_tmp / "i" / "interpolation.png").is_file()


def test_every_task_names_its_metric_direction_and_report_columns():
    for task in TASKS.values():
        columns = task.report_columns(f"val/{task.metric}")
        assert columns[:2] == [task.final, f"best/val/{task.metric}"] and task.final.endswith(task.metric)
        assert task.higher_is_better == (task.metric == "acc")
    assert TASKS["lm"].example_input((5,), 28).dtype == torch.long  # token ids, for `dlbench info`
    assert TASKS["classify"].example_input((1, 4, 4), 10).is_floating_point()


def _strip(records):
    return [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in records]


@pytest.mark.slow  # seconds of training: run by make test
def test_callback_order_does_not_change_a_run(in_tmp, monkeypatch):
    cfg = digits_cfg("epochs=3", "probe=[grad_norm,weight_norm]", "regularizer=early_stopping",
                     "regularizer.early_stopping.patience=1", "regularizer.early_stopping.monitor=train/loss",
                     "regularizer.early_stopping.mode=max")
    forward = run(cfg, run_dir=in_tmp / "forward")
    original = Callbacks.__init__
    monkeypatch.setattr(Callbacks, "__init__", lambda self, cbs: original(self, list(reversed(cbs))))
    backward = run(cfg, run_dir=in_tmp / "backward")
    lines = [(in_tmp / name / "metrics.jsonl").read_text().splitlines() for name in ("forward", "backward")]
    assert _strip(map(json.loads, lines[0])) == _strip(map(json.loads, lines[1]))
    assert "grad/mean_abs" in json.loads(lines[1][0])  # the probe's epoch means reach the record either way
    for summary in (forward, backward):
        summary["early_stopping"]["metrics_at_best"].pop("epoch_seconds")
    for key in ("early_stopping", "test/per_class_acc", "test/confusion", "train/class_counts", "test/acc"):
        assert forward[key] == backward[key]
    assert forward["early_stopping"]["restored_best"] and forward["epochs_completed"] == 2


class StopMidEpoch(StopAfter):
    """Ctrl-C at a given global step, in the middle of an epoch."""

    def on_epoch_start(self, state):
        pass

    def on_step(self, state, step):
        if state.global_step == self.epoch:
            raise self.error


@pytest.mark.slow  # seconds of training: run by make test
def test_a_resumed_run_keeps_each_probe_record_once_and_the_guards_memory(in_tmp, extra_callback):
    cfg = digits_cfg("epochs=3", "probe=grad_norm", "probe.grad_norm.first_steps=5", "probe.grad_norm.every=7")
    straight = run(cfg, run_dir=in_tmp / "straight")
    extra_callback(StopMidEpoch(40, KeyboardInterrupt()))  # digits: 23 steps an epoch, so inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir=in_tmp / "resumed")
    steps = lambda name: [r["step"] for r in map(json.loads, (in_tmp / name / "probes" / "grad_norm.jsonl").open())]  # noqa: E731
    assert max(steps("resumed")) >= 35  # the interrupted epoch's records were written...
    ckpt = torch.load(in_tmp / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["callbacks"]["DivergenceGuard"]["first_loss"] == pytest.approx(
        json.loads((in_tmp / "straight" / "metrics.jsonl").open().readline())["train/loss"], rel=0.5)
    assert [r["step"] for r in ckpt["callbacks"]["GradNorm"]["records"]] == [s for s in steps("straight") if s <= 23]
    extra_callback(None)
    resumed = run(cfg, run_dir=in_tmp / "resumed")
    assert steps("resumed") == steps("straight")  # ...and cut back on resume: none twice, none missing
    assert resumed["test/acc"] == straight["test/acc"]


def test_an_interrupted_run_writes_its_files_without_running_its_model_again(in_tmp, extra_callback):
    """Stopped mid-epoch (SIGTERM, Ctrl-C), the weights are a part-finished epoch's and a scheduler's
    grace is short: no per-class test pass, no confusion matrix. The resumed run does them."""
    cfg = digits_cfg("epochs=2")
    extra_callback(StopMidEpoch(30, KeyboardInterrupt()))  # digits: 23 steps an epoch, so inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir=in_tmp / "r")
    summary = json.loads((in_tmp / "r" / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("interrupted", 1)
    assert "test/per_class_acc" not in summary and not (in_tmp / "r" / "plots" / "confusion.png").exists()
    extra_callback(None)
    resumed = run(cfg, run_dir=in_tmp / "r")
    assert resumed["status"] == "completed" and len(resumed["test/per_class_acc"]) == 10
    assert (in_tmp / "r" / "plots" / "confusion.png").exists()


@pytest.mark.parametrize("overrides, message", [
    (["model=lenet", "dataset.resize=28", "regularizer=dropout"],
     "regularizer=dropout: model=lenet as configured has no dropout site"),
    (["model.hidden=[]", "regularizer=dropout"], "regularizer=dropout: model=mlp as configured has no dropout site"),
    (["model=alexnet28", "dataset.resize=28", "regularizer=batchnorm"],
     "regularizer=batchnorm: model=alexnet28 has no batch norm"),
    (["model.hidden=[8]", "loss=mse", "regularizer=label_smoothing"],
     "regularizer=label_smoothing: loss=MeanSquaredError has no label"),
])
def test_a_regularizer_with_nowhere_to_act_is_an_error(in_tmp, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(compose(["dataset=digits", "epochs=1", *QUIET, *overrides]), run_dir=in_tmp / "r")
    assert json.loads((in_tmp / "r" / "summary.json").read_text())["status"] == "failed"


def test_augmentation_of_data_without_images_is_an_error(in_tmp):
    cfg = compose(["experiment=function_fit", "regularizer=augmentation", "epochs=1", *QUIET])
    with pytest.raises(ValueError, match="dataset=function has no images to augment"):
        run(cfg, run_dir=in_tmp / "r")
