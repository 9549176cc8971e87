"""The event files a run writes, read back with TensorBoard's own readers: what each dashboard
(scalars, images, text, histograms, projector, custom scalars, HParams) would show."""
import html
import io
import json
import re

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import DEFAULT_SIZE_GUIDANCE, EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.projector import projector_plugin
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from tensorboard.plugins.text import text_plugin
from tensorboard.util import tensor_util

from dlbench.artifacts import read_metrics
from dlbench.config import compose
from dlbench.train import run
from tests.conftest import StopAfter, digits_cfg

SPLITS = ("train", "val", "test")
LAYOUT_TAG = "custom_scalars__config__"  # where the custom-scalars plugin reads its layout


def read_events(folder):
    acc = EventAccumulator(str(folder), size_guidance={kind: 0 for kind in DEFAULT_SIZE_GUIDANCE})  # 0: keep all
    acc.Reload()
    return acc


def hparams_content(acc, tag):
    raw = acc.PluginTagToContent("hparams")[tag]
    return plugin_data_pb2.HParamsPluginData.FromString(raw)


def steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def values(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def last_checkpoint(folder):
    return torch.load(folder / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)


def layouts(acc):
    return [layout_pb2.Layout.FromString(tensor_util.make_ndarray(e.tensor_proto).item())
            for e in acc.Tensors(LAYOUT_TAG)]


def pixels(png: bytes | str):
    return np.asarray(Image.open(io.BytesIO(png) if isinstance(png, bytes) else png).convert("RGB"))


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb") / "run"
    summary = run(digits_cfg("epochs=3", "trainer.log_every=5", "lr=0.05"), run_dir=folder)
    return read_events(folder), summary, folder


# One run that writes every kind of record: a warm-up and a per-epoch schedule (train/step_lr),
# clipping (grad/step_norm), the cheap probes (histograms, per-step scalars, the projector) and the
# class pictures. 2 epochs of 21 steps (1,294 training digits in batches of 64).
PROBED = ("epochs=2", "trainer.log_every=3", "warmup_steps=10", "scheduler=exponential", "scheduler.gamma=0.5",
          "regularizer=[grad_clip]", "probe=[weight_norm,grad_norm,embeddings]", "probe.grad_norm.first_steps=3",
          "probe.grad_norm.every=5", "probe.embeddings.examples=50", "logger.sample_images=10")


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb") / "run"
    summary = run(digits_cfg(*PROBED), run_dir=folder)
    return folder, read_events(folder), summary


def test_epoch_scalars_are_logged_per_epoch(events):
    acc, summary, _ = events
    tags = set(acc.Tags()["scalars"])
    assert {f"epoch/{m}" for m in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc")} <= tags
    assert {"lr", "epoch_seconds"} <= tags  # not per split: by their own names
    test_acc = acc.Scalars("epoch/test/acc")
    assert [e.step for e in test_acc] == [1, 2, 3]
    assert test_acc[-1].value == pytest.approx(summary["test/acc"])
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([0.05] * 3)
    assert "grad/step_norm" not in tags  # no clipping, no per-step norm


def test_step_loss_is_logged_every_log_every_steps(events):
    acc, _, _ = events
    logged = steps(acc, "train/step_loss")
    assert logged and all(s % 5 == 0 for s in logged) and logged == sorted(logged)
    assert steps(acc, "train/step_lr") == logged
    assert list(values(acc, "train/step_lr").values()) == pytest.approx([0.05] * len(logged))


def test_hparams_record_the_config_and_the_outcome(events):
    acc, _, _ = events
    start = hparams_content(acc, "_hparams_/session_start_info").session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.05)
    assert start.hparams["model"].string_value == "mlp"  # the choice, not the builder's name
    assert start.hparams["dataset"].string_value == "digits"
    assert start.hparams["optimizer"].string_value == "sgd"
    assert set(start.hparams) == {"model", "dataset", "optimizer", "lr", "batch_size", "epochs", "seed"}
    experiment = hparams_content(acc, "_hparams_/experiment").experiment
    assert not any(h.differs for h in experiment.hparam_infos)  # one run: nothing swept
    metrics = {m.name.tag: m.display_name for m in experiment.metric_infos}
    assert metrics["epoch/test/acc"] == "test/acc" and set(metrics) <= set(acc.Tags()["scalars"])
    end = hparams_content(acc, "_hparams_/session_end_info").session_end_info
    assert end.status == 1  # STATUS_SUCCESS


def check_layout(acc, folder):
    """One layout; in it one chart per metric that draws that metric's splits, each of its tags
    naming exactly one scalar the run wrote; every per-split metric of metrics.jsonl on a chart."""
    [layout] = layouts(acc)
    [category] = layout.category
    written = set(acc.Tags()["scalars"])
    charted = {}
    for chart in category.chart:
        found = [[tag for tag in written if re.search(regex, tag)] for regex in chart.multiline.tag]
        assert all(len(tags) == 1 for tags in found), (chart.title, found)
        charted[chart.title] = [tags[0].removeprefix("epoch/") for tags in found]
    per_split = {key for key in read_metrics(folder)[0] if key.split("/")[0] in SPLITS}
    assert {tag for tags in charted.values() for tag in tags} == per_split
    return charted


def test_a_chart_per_metric_draws_train_val_and_test(events):
    acc, _, folder = events
    charted = check_layout(acc, folder)
    assert charted == {m: [f"{s}/{m}" for s in SPLITS] for m in ("loss", "acc")}


def test_images_hold_the_pictures_in_plots(probed):
    """Each picture once, at its step, the size its figure was drawn at, and the same pixels as
    the PNG in plots/ (one render serves both)."""
    import matplotlib

    folder, acc, summary = probed
    dpi = matplotlib.rcParams["figure.dpi"]
    k = len(summary["test/per_class_acc"])
    expected = {"samples": (0, 8 * 1.2, 2 * 1.4),  # 10 images: a row of 8 and a row of 2
                "class_distribution": (0, max(4, 0.6 * k), 3),
                "confusion": (2, 1 + 0.55 * k, 1 + 0.5 * k),  # drawn at the end: step = last epoch
                "grad_norm": (2, 13, 3.5)}  # the grad_norm probe's curves, at the end
    assert set(acc.Tags()["images"]) == {f"figures/{name}" for name in expected}
    for tag, (step, inches_w, inches_h) in expected.items():
        [event] = acc.Images(f"figures/{tag}")
        picture = pixels(event.encoded_image_string)
        assert event.step == step
        assert picture.shape == (event.height, event.width, 3) == (round(inches_h * dpi), round(inches_w * dpi), 3)
        if tag != "samples":
            assert np.array_equal(picture, pixels(str(folder / "plots" / f"{tag}.png")))
    assert pixels(acc.Images("figures/samples")[0].encoded_image_string).std() > 10  # not a blank canvas


def test_histograms_hold_each_layers_weights(probed):
    """weights/<layer> for every Linear layer at every epoch: as many values as the layer has
    weights, and at the last epoch exactly the final weights' range and sum."""
    folder, acc, _ = probed
    weights = {k.removesuffix(".weight"): v for k, v in last_checkpoint(folder)["model"].items()
               if k.endswith(".weight")}
    assert set(acc.Tags()["histograms"]) == {f"weights/{name}" for name in weights}
    for name, w in weights.items():
        events = acc.Histograms(f"weights/{name}")
        assert [e.step for e in events] == [1, 2]
        for e in events:
            assert e.histogram_value.num == w.numel() == sum(e.histogram_value.bucket)
        last = events[-1].histogram_value
        assert (last.min, last.max) == pytest.approx((w.min().item(), w.max().item()))
        assert last.sum == pytest.approx(w.sum().item(), abs=1e-3)
    assert {e.histogram_value.num for e in acc.Histograms("weights/1")} == {64 * 64}  # 64 pixels into 64 units


def test_step_lr_is_the_rate_each_step_used(probed):
    """A 10-step linear warm-up from lr/10, then x0.5 per epoch: step s trains with
    0.1 * min(1, 0.1 + 0.9 (s-1)/10) * 0.5^epoch, logged every 3 steps, for every step of the run."""
    folder, acc, _ = probed
    total = last_checkpoint(folder)["global_step"]
    per_epoch = total // 2

    def rate(s):
        return 0.1 * min(1.0, 0.1 + 0.9 * (s - 1) / 10) * 0.5 ** ((s - 1) // per_epoch)

    assert steps(acc, "train/step_lr") == list(range(3, total + 1, 3))
    assert values(acc, "train/step_lr") == pytest.approx({s: rate(s) for s in range(3, total + 1, 3)})
    # an epoch's `lr` is the rate its first step used
    assert values(acc, "lr") == pytest.approx({1: rate(1), 2: rate(per_epoch + 1)})
    assert values(acc, "lr") == pytest.approx({1: 0.01, 2: 0.05})


def test_grad_step_norm_is_the_norm_before_clipping(probed):
    """With clipping at 1, the per-step norm is the one before clipping: where the grad_norm probe
    (which sees the clipped gradient) logs the same step, it sees min(norm, 1)."""
    _, acc, _ = probed
    logged = values(acc, "grad/step_norm")
    assert list(logged) == steps(acc, "train/step_loss") and all(v > 0 for v in logged.values())
    assert any(v > 1 for v in logged.values())  # else clipping was never tested
    clipped = values(acc, "probe/grad/norm")
    both = sorted(set(logged) & set(clipped))
    assert both == [3, 15, 30]  # logged every 3 steps; probed at 1-3 and every 5
    assert [clipped[s] for s in both] == pytest.approx([min(logged[s], 1.0) for s in both], rel=1e-4)


def test_probe_scalars_are_logged_at_their_steps(probed):
    folder, acc, _ = probed
    total = last_checkpoint(folder)["global_step"]
    wanted = [s for s in range(1, total + 1) if s <= 3 or s % 5 == 0]
    records = [json.loads(line) for line in (folder / "probes" / "grad_norm.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == wanted
    for key in ("grad/norm", "grad/mean_abs", "update/ratio"):
        assert steps(acc, f"probe/{key}") == wanted
        assert list(values(acc, f"probe/{key}").values()) == pytest.approx([r[key] for r in records])
    layers = [f"probe/grad/norm/{name}" for name in ("1.weight", "1.bias", "3.weight", "3.bias")]
    assert {t for t in acc.Tags()["scalars"] if t.startswith("probe/grad/norm/")} == set(layers)
    by_layer = np.array([[values(acc, tag)[s] for tag in layers] for s in wanted])
    assert np.linalg.norm(by_layer, axis=1) == pytest.approx(list(values(acc, "probe/grad/norm").values()), rel=1e-5)
    # the per-epoch numbers of weight_norm: the last is the final weights' norm
    weights = last_checkpoint(folder)["model"]
    for name in ("1", "3"):
        assert steps(acc, f"weights/norm/{name}") == [1, 2]
        assert values(acc, f"weights/norm/{name}")[2] == pytest.approx(weights[f"{name}.weight"].norm().item())
    assert steps(acc, "relu/dead/2") == [1, 2] and all(0 <= v <= 1 for v in values(acc, "relu/dead/2").values())


def read_projector(folder):
    """{tensor name: (tensors, metadata rows)} as TensorBoard's projector reads them."""
    config_path = str(folder / "projector_config.pbtxt")
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    out = {}
    for e in config.embeddings:
        tensors = projector_plugin._read_tensor_tsv_file(projector_plugin._rel_to_abs_asset_path(e.tensor_path,
                                                                                                  config_path))
        with open(projector_plugin._rel_to_abs_asset_path(e.metadata_path, config_path)) as f:
            out[e.tensor_name] = tensors, f.read().splitlines()
    return out


def test_the_projector_holds_each_layer_at_each_chosen_epoch(probed):
    """The hidden ReLU's 64 outputs and the 10 logits of 50 test digits at epochs 0, 1 and 2, one
    class name per row; by the end the logits mostly pick the row's own class."""
    folder, _, summary = probed
    embeddings = read_projector(folder)
    assert set(embeddings) == {f"{name}:{step:05d}" for name in ("act2", "logits") for step in (0, 1, 2)}
    classes = set(summary["test/per_class_acc"])
    for tensor_name, (tensors, labels) in embeddings.items():
        assert tensors.shape == (50, 64 if tensor_name.startswith("act2") else 10)
        assert len(labels) == 50 and set(labels) <= classes
    assert (embeddings["act2:00002"][0] >= 0).all()  # a ReLU's outputs
    logits, labels = embeddings["logits:00002"]
    assert np.mean(logits.argmax(1) == np.array([int(label) for label in labels])) > 0.5


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb") / "run"
    cfg = compose(["dataset=timemachine", "model=gru", "model.hidden=16", "dataset.limit=3000", "epochs=1",
                   "trainer.progress=false"])
    summary = run(cfg, run_dir=folder)
    return folder, read_events(folder), summary


def test_the_generated_text_is_in_the_text_tab_as_written(text_run):
    """The prefix and 50 generated characters, once, at the last epoch; TensorBoard's own renderer
    shows every character (runs of spaces included) in a preformatted block."""
    _, acc, summary = text_run
    generated = summary["generated"]
    assert generated.startswith("time traveller") and len(generated) == len("time traveller") + 50
    [event] = acc.Tensors("generated/text_summary")
    assert event.step == 1
    stored = tensor_util.make_ndarray(event.tensor_proto)
    assert generated in stored.item().decode()
    rendered = text_plugin.text_array_to_html(stored, enable_markdown=True)
    assert f"<pre><code>{html.escape(generated)}\n</code></pre>" in rendered


def test_a_language_model_charts_only_the_splits_it_has(text_run):
    folder, acc, _ = text_run
    charted = check_layout(acc, folder)  # the text has no test split
    assert charted == {m: ["train/" + m, "val/" + m] for m in ("loss", "ppl", "acc")}


@pytest.mark.slow
def test_a_resumed_run_keeps_its_projector_layout_and_pictures(tmp_path, extra_callback):
    """Interrupted after epoch 1 and resumed: the projector still lists the embeddings from before
    the resume, the layout and the start-of-run pictures are not written twice, and train/step_lr
    follows a warm-up that spans the resume."""
    folder = tmp_path / "run"
    cfg = digits_cfg("epochs=2", "trainer.log_every=2", "warmup_steps=30", "probe=[embeddings]",
                     "probe.embeddings.examples=20", "logger.sample_images=4")
    extra_callback(StopAfter(1, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir=folder)
    extra_callback(None)
    run(cfg, run_dir=folder)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    acc = read_events(folder)
    embeddings = read_projector(folder)
    assert set(embeddings) == {f"{name}:{step:05d}" for name in ("act2", "logits") for step in (0, 1, 2)}
    assert all(tensors.shape[0] == len(labels) == 20 for tensors, labels in embeddings.values())
    assert len(layouts(acc)) == 1
    assert [[e.step for e in acc.Images(f"figures/{tag}")] for tag in ("samples", "class_distribution")] == [[0], [0]]
    assert [e.step for e in acc.Images("figures/confusion")] == [2]  # the finished run's: an interrupted one runs no model
    total = last_checkpoint(folder)["global_step"]

    def rate(s):
        return 0.1 * min(1.0, 1 / 30 + (1 - 1 / 30) * (s - 1) / 30)

    assert steps(acc, "train/step_lr") == list(range(2, total + 1, 2))
    assert values(acc, "train/step_lr") == pytest.approx({s: rate(s) for s in range(2, total + 1, 2)})
    assert values(acc, "lr")[2] == pytest.approx(rate(total // 2 + 1))  # the resumed epoch's first step


def test_a_sweeps_hparams_list_its_swept_keys_first_with_the_names_a_person_chose():
    from dlbench.run.recorder import hparams_summaries, run_hparams

    swept = ["model.hidden", "variant"]
    hparams = run_hparams(digits_cfg("model.hidden=[32]", "optimizer=adam"), swept, {"variant": "first_mlp/mse"})
    assert list(hparams) == [*swept, "model", "dataset", "optimizer", "lr", "batch_size", "epochs", "seed"]
    assert (hparams["model.hidden"], hparams["variant"]) == ("[32]", "first_mlp/mse")  # a list as text; a group's option
    assert (hparams["model"], hparams["dataset"], hparams["optimizer"]) == ("mlp", "digits", "adam")
    experiment, _ = hparams_summaries(hparams, swept)
    content = plugin_data_pb2.HParamsPluginData.FromString(experiment.value[0].metadata.plugin_data.content)
    assert [h.name for h in content.experiment.hparam_infos if h.differs] == swept
