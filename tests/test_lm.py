"""The Time Machine as characters, and language-model training on it (an excerpt kept under tests/data: no download)."""
import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlbench.config import build, compose
from dlbench.data.text import VOCAB, TokenSplit, clean, decode, encode
from dlbench.data.text import generate
from dlbench.tasks import LM
from dlbench.train import run
from tests.conftest import dlbench as dlbench_cli
from tests.conftest import straight_and_resumed


@pytest.fixture(scope="module")
def corpus():
    return build(compose(["dataset=timemachine"]).dataset, seed=0)


def lm_cfg(*overrides):
    """A seconds-long language-model run: a small GRU, Adam, 30,000 training characters, one thread
    (a (32, 64) recurrent step is too small to share: on a busy 2-core machine two threads were 30x slower)."""
    return compose(["dataset=timemachine", "model=gru", "model.hidden=64", "optimizer=adam", "lr=0.01",
                    "batch_size=32", "dataset.limit=30000", "epochs=2", "trainer.progress=false", "trainer.threads=1",
                    *overrides])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)  # the setting is process-wide: later tests keep their default


def test_vocabulary_is_letters_space_and_unknown(corpus):
    assert corpus.num_classes == len(VOCAB) == 28 and corpus.in_shape == (35,)
    assert clean("The Time-Traveller, 1895!") == "the time traveller "
    assert decode(encode("time traveller")) == "time traveller" and decode(encode("é")) == "<unk>"
    n_val = len(corpus.val.tokens)
    assert n_val == round(0.1 * (len(corpus.train.tokens) + n_val))  # the tail is held out
    assert decode(corpus.train.tokens[:17]) == "the time machine "


def test_sequential_batches_continue_row_by_row(corpus):
    split = TokenSplit(torch.arange(1000), seq_len=7)
    (x1, y1), (x2, _) = list(corpus.__class__.batches(corpus, split, 4))[:2]  # evaluation: offset 0
    assert x1.shape == (4, 7) and torch.equal(y1, x1 + 1)
    assert torch.equal(x2[:, 0], x1[:, -1] + 1)  # row b of batch 2 starts where row b of batch 1 ended
    train = corpus.batches(split, 4, generator=torch.Generator().manual_seed(0))
    assert train.carries_state and [len(list(train)) for _ in range(20)] == [len(train)] * 20


@pytest.mark.parametrize("partition", ["sequential", "random"])
def test_every_training_epoch_has_the_batches_len_promises_whatever_its_offset(partition):
    """A schedule counts len(batches) steps an epoch, and a text of one batch at offset 0 may hold none
    at a later epoch's offset: each epoch gives exactly len, and len is what the worst offset leaves."""
    data = build(compose(["dataset=timemachine", f"dataset.partition={partition}"]).dataset)
    for n in (71, 72, 100, 141, 1000):  # around one and two batches of 4 x 7 (sequential) or windows (random)
        split = TokenSplit(torch.arange(n), seq_len=7)
        batches = data.batches(split, 4 if partition == "sequential" else 1, generator=torch.Generator().manual_seed(n))
        assert [len(list(batches)) for _ in range(30)] == [len(batches)] * 30, n


def test_random_batches_are_shuffled_windows_with_fresh_state():
    data = build(compose(["dataset=timemachine", "dataset.partition=random"]).dataset)
    split = TokenSplit(torch.arange(1000), seq_len=7)
    batches = data.batches(split, 4, generator=torch.Generator().manual_seed(0))
    assert not batches.carries_state
    xs = [x for x, y in batches if torch.equal(y, x + 1)]
    assert len(xs) == len(batches)
    starts = torch.cat([x[:, 0] for x in xs])
    assert len(set(starts.tolist())) == len(starts) and not torch.equal(starts, starts.sort().values)
    assert all(torch.equal(x, x[:, :1] + torch.arange(7)) for x in xs)  # each row a contiguous window


def test_an_untrained_model_is_about_as_unsure_as_the_vocabulary_is_large(corpus):
    torch.manual_seed(0)
    model = build(compose(["model=lstm"]).model, in_shape=corpus.in_shape, num_classes=corpus.num_classes)
    cfg = compose(["dataset=timemachine", "batch_size=32"])
    ppl = LM.evaluate(model, corpus, {"val": corpus.val}, torch.nn.CrossEntropyLoss(), cfg)["val/ppl"]
    assert 0.8 * 28 < ppl < 1.2 * 28  # uniform guessing over 28 characters is perplexity 28


def test_a_short_run_learns_the_text(in_tmp):
    summary = run(lm_cfg(), run_dir=in_tmp / "run")
    assert summary["status"] == "completed"
    assert summary["val/ppl"] < 14 < 28  # half the vocabulary's uniform perplexity, after 2 short epochs
    assert summary["val/ppl"] == pytest.approx(math.exp(summary["val/loss"]))
    assert summary["tokens_per_second"] > 0 and summary["train_examples_per_second"] > 0
    assert summary["generated"].startswith("time traveller") and len(summary["generated"]) == 14 + 50
    lines = [json.loads(line) for line in (in_tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["val/ppl"] < lines[0]["val/ppl"]
    assert {"train/ppl", "val/ppl", "tokens_per_second"} <= lines[0].keys()
    assert "generated from 'time traveller'" in (in_tmp / "run" / "train.log").read_text()
    events = EventAccumulator(str(in_tmp / "run"))
    events.Reload()
    assert "generated/text_summary" in events.Tags()["tensors"] and "epoch/val/ppl" in events.Tags()["scalars"]


def test_generation_starts_from_the_prefix_and_is_greedy(corpus):
    torch.manual_seed(0)
    model = build(compose(["model=rnn", "model.hidden=8"]).model, in_shape=corpus.in_shape, num_classes=28)
    text = generate(model, "time", 5)
    assert text.startswith("time") and len(text) == 9 and text == generate(model, "time", 5)


def test_an_interrupted_language_model_run_resumes_to_the_same_numbers(in_tmp, extra_callback):
    straight, resumed = straight_and_resumed(lm_cfg("epochs=2", "dataset.limit=8000"), in_tmp, 1, extra_callback)
    assert resumed["status"] == "completed"
    assert (resumed["val/ppl"], resumed["generated"]) == (straight["val/ppl"], straight["generated"])


@pytest.mark.slow
def test_lstm_on_the_time_machine_through_the_command_line(in_tmp):
    dlbench_cli("train", "model=lstm", "dataset=timemachine", "model.hidden=64", "optimizer=adam", "lr=0.01",
            "dataset.limit=20000", "epochs=2", "trainer.threads=1", "hydra.run.dir=run", cwd=in_tmp)
    summary = json.loads((in_tmp / "run" / "summary.json").read_text())
    assert (summary["status"], summary["model"], summary["dataset"]) == ("completed", "lstm", "timemachine")
    assert summary["val/ppl"] < 20 and summary["tokens_per_second"] > 0
    assert summary["generated"].startswith("time traveller")


def test_best_checkpoint_follows_validation_perplexity(in_tmp):
    from dlbench.artifacts import read_metrics

    summary = run(lm_cfg("epochs=3", "dataset.limit=8000", "logger=none"), run_dir=in_tmp / "r")
    history = read_metrics(in_tmp / "r")
    lowest = min(history, key=lambda m: m["val/ppl"])
    assert summary["target_metric"] == "val/ppl" and summary["epochs_to_target"] is None
    assert (summary["best/val/ppl"], summary["best/epoch"]) == (lowest["val/ppl"], lowest["epoch"])
    best = torch.load(in_tmp / "r" / "checkpoints" / "best.pt", weights_only=False)
    assert best["epoch"] == lowest["epoch"]
