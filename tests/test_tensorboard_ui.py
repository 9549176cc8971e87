"""TensorBoard as a user opens it on a sweep: a real `tensorboard` server on a local port, asked
through its HTTP API what the HParams and Time Series tabs show. The UI's own rules, taken from
TensorBoard's front end, decide what is on screen first: the HParams tab shows the first 5
hyperparameters of the experiment (the differing ones first) and the first 5 metrics; Time Series
groups tags by their first segment, sorts groups and cards by name and opens the first two groups."""
import json
import socket
import subprocess
import sys
import time
import urllib.request
from itertools import groupby

import pytest

from tests.conftest import dlbench, runs_in

pytestmark = pytest.mark.slow  # a sweep through the CLI and a TensorBoard server: about 20 s

SHOWN = 5  # hyperparameters and metrics the HParams tab ticks by default
LRS = ("0.3", "0.1", "0.03")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A 3-run `-m lr=...` sweep and a TensorBoard serving it: (ask, sweep folder)."""
    cwd = tmp_path_factory.mktemp("ui")
    dlbench("train", "-m", f"lr={','.join(LRS)}", "dataset=digits", "model.hidden=[32]", "epochs=2",
            "trainer.progress=false", "--into", "sweep", cwd=cwd)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(cwd / "sweep"),
                             "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ask(route, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/{route}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    deadline = time.time() + 120
    while True:  # up once it answers; loaded once every run's tags are listed
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        try:
            if len(ask("plugin/timeseries/tags")["scalars"]["runTagInfo"]) == len(LRS):
                break
        except OSError:
            pass
        time.sleep(0.3)
    yield ask, cwd / "sweep"
    proc.terminate()
    proc.wait(timeout=30)


def test_the_hparams_tab_shows_the_swept_lr_and_readable_choices(board):
    ask, sweep = board
    experiment = ask("plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000})
    infos = experiment["hparamInfos"]
    # the front end stable-sorts by `differs` and ticks the first five
    shown = [h["name"] for h in sorted(infos, key=lambda h: not h.get("differs"))][:SHOWN]
    assert shown[0] == "lr" and [h["name"] for h in infos if h.get("differs")] == ["lr"]
    assert {h["name"] for h in infos} == {"lr", "model", "dataset", "optimizer", "batch_size", "epochs", "seed"}
    metrics = [m["displayName"] or m["name"]["tag"] for m in experiment["metricInfos"]][:SHOWN]
    assert "test/acc" in metrics and "val/acc" in metrics

    groups = ask("plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": h["name"]} for h in infos] + [{"metric": m["name"]} for m in experiment["metricInfos"]],
    })["sessionGroups"]
    assert len(groups) == len(LRS)
    assert sorted(str(g["hparams"]["lr"]) for g in groups) == sorted(LRS)
    for g in groups:
        assert (g["hparams"]["model"], g["hparams"]["dataset"], g["hparams"]["optimizer"]) == ("mlp", "digits", "sgd")
        test_acc = next(m["value"] for m in g["metricValues"] if m["name"]["tag"] == "epoch/test/acc")
        summary = json.loads((sweep / g["name"] / "summary.json").read_text())
        assert test_acc == pytest.approx(summary["test/acc"])


def test_time_series_opens_on_the_loss_and_accuracy_curves(board):
    ask, sweep = board
    tags = ask("plugin/timeseries/tags")
    cards = {tag for run in tags["scalars"]["runTagInfo"].values() for tag in run}
    cards |= set(tags["images"]["tagRunSampledInfo"])
    assert len(runs_in(sweep)) == len(LRS)
    # Time Series' order: tags sorted (letters compare as characters), grouped by the part before
    # the first "/", the first two groups open
    groups = [(name, [t.partition("/")[2] for t in members])
              for name, members in groupby(sorted(cards), key=lambda t: t.split("/", 1)[0])]
    first, first_cards = groups[0]
    assert first == "epoch" and set(first_cards) == {f"{s}/{m}" for s in ("train", "val", "test") for m in ("loss", "acc")}
    assert dict(groups)["figures"] == ["class_distribution", "confusion", "samples"]
