"""The event files a run writes, read back with TensorBoard's own reader."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dlbench.train import run
from tests.conftest import digits_cfg


def read_events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def hparams_content(acc, tag):
    raw = acc.PluginTagToContent("hparams")[tag]
    return plugin_data_pb2.HParamsPluginData.FromString(raw)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb") / "run"
    summary = run(digits_cfg("epochs=3", "trainer.log_every=5", "lr=0.05"), run_dir=folder)
    return read_events(folder), summary


def test_epoch_scalars_are_logged_per_epoch(events):
    acc, summary = events
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "lr"} <= tags
    test_acc = acc.Scalars("test/acc")
    assert [e.step for e in test_acc] == [1, 2, 3]
    assert test_acc[-1].value == pytest.approx(summary["test/acc"])
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([0.05] * 3)


def test_step_loss_is_logged_every_log_every_steps(events):
    acc, _ = events
    steps = [e.step for e in acc.Scalars("train/step_loss")]
    assert steps and all(s % 5 == 0 for s in steps) and steps == sorted(steps)


def test_hparams_record_the_config_and_the_outcome(events):
    acc, _ = events
    start = hparams_content(acc, "_hparams_/session_start_info").session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.05)
    assert start.hparams["model"].string_value == "create_model"  # the _target_'s name
    assert start.hparams["model.name"].string_value == "mlp"
    assert start.hparams["optimizer"].string_value == "SGD"
    experiment = hparams_content(acc, "_hparams_/experiment").experiment
    assert "test/acc" in {m.name.tag for m in experiment.metric_infos}
    end = hparams_content(acc, "_hparams_/session_end_info").session_end_info
    assert end.status == 1  # STATUS_SUCCESS


def test_sample_images_are_logged(events):
    acc, _ = events
    assert "samples" in acc.Tags()["images"]
