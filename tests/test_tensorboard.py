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


def test_the_recorder_reaches_tensorboard_with_every_kind_of_record(tmp_path):
    """Figures drawn by callbacks at start and end, histograms from a probe, and the sample grid,
    whichever callback wrote them and whenever: all in the one event file."""
    folder = tmp_path / "run"
    run(digits_cfg("epochs=2", "probe=weight_norm", "logger.sample_images=10"), run_dir=folder)
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    assert {"samples", "class_distribution", "confusion"} <= set(acc.Tags()["images"])
    samples = acc.Images("samples")[0]
    assert samples.step == 0 and samples.width > samples.height  # 10 images: a row of 8 and a row of 2
    assert [e.step for e in acc.Histograms("weights/1")] == [1, 2]
    assert acc.Histograms("weights/1")[0].histogram_value.num == 64 * 64  # digits' 64 pixels into 64 units
    assert (folder / "plots" / "confusion.png").stat().st_size > 1000
