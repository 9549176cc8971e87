"""trainer.precision, trainer.compile and trainer.channels_last: the same numbers as fp32 eager
training to a tolerance, recorded in the summary, resumable; and a loop without per-step host syncs."""
import pytest
import torch

from dlbench.callbacks import Callback
from dlbench.train import run
from tests.conftest import digits_cfg, straight_and_resumed

CNN = ["model=cnn", "model.channels=[8,16]", "model.hidden=[32]"]


def losses(summary: dict) -> tuple[float, float]:
    return summary["train/loss"], summary["test/loss"]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return run(digits_cfg(), run_dir=tmp_path_factory.mktemp("fp32"))


SIXTEEN_BIT = [("bf16", 0.05), (16, 0.01)]  # (trainer.precision, how close its losses stay to fp32's)


def assert_follows_fp32(summary: dict, fp32: dict, mode, tolerance: float) -> None:
    assert summary["status"] == "completed" and summary["precision"] == str(mode)
    for ours, reference in zip(losses(summary), losses(fp32)):
        assert ours == pytest.approx(reference, rel=tolerance)
    assert losses(summary) != losses(fp32)  # it did run in 16 bits: the rounding shows


@pytest.mark.parametrize("mode, tolerance", SIXTEEN_BIT)
def test_16_bit_training_follows_fp32(tmp_path, fp32, mode, tolerance):
    assert_follows_fp32(run(digits_cfg(f"trainer.precision={mode}"), run_dir=tmp_path), fp32, mode, tolerance)


@pytest.mark.slow
def test_fp16_resumes_with_its_loss_scale(tmp_path, extra_callback):
    cfg = digits_cfg("trainer.precision=16", "epochs=3")
    straight, resumed = straight_and_resumed(cfg, tmp_path, 1, extra_callback)
    assert losses(resumed) == losses(straight)
    scale = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["precision"]["scaler"]
    assert scale["scale"] > 0 and "_growth_tracker" in scale


@pytest.mark.slow
def test_fp16_scaler_unscales_before_clipping(tmp_path):
    """A clipped norm is the true gradient's: with the scale (65536) left in, grad/norm would be 10^4 times larger."""
    plain = run(digits_cfg("regularizer=grad_clip", "epochs=1"), run_dir=tmp_path / "32")
    half = run(digits_cfg("regularizer=grad_clip", "epochs=1", "trainer.precision=16"), run_dir=tmp_path / "16")
    assert half["grad/norm"] == pytest.approx(plain["grad/norm"], rel=0.05)


@pytest.mark.slow
def test_channels_last_gives_the_same_numbers(tmp_path):
    contiguous = run(digits_cfg(*CNN), run_dir=tmp_path / "nchw")
    nhwc = run(digits_cfg(*CNN, "trainer.channels_last=true"), run_dir=tmp_path / "nhwc")
    assert nhwc["channels_last"] is True and contiguous["channels_last"] is False
    for ours, reference in zip(losses(nhwc), losses(contiguous)):
        assert ours == pytest.approx(reference, rel=1e-4)


@pytest.mark.slow
def test_compiled_model_trains_and_resumes_like_eager(tmp_path, extra_callback):
    eager = run(digits_cfg(*CNN, "epochs=3"), run_dir=tmp_path / "eager")
    straight, resumed = straight_and_resumed(digits_cfg(*CNN, "epochs=3", "trainer.compile=true"), tmp_path,
                                             1, extra_callback)
    assert straight["compile"] is True
    for ours, reference in zip(losses(straight), losses(eager)):
        assert ours == pytest.approx(reference, rel=1e-3)
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-5)
    keys = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert not any(k.startswith("_orig_mod") for k in keys)  # a checkpoint loads into an eager model


class CountAtEachStep(Callback):
    """count() after every step: what a test counts (device reads, CUDA syncs) as the epoch goes."""

    def __init__(self, count):
        self.count, self.at_step = count, []

    def on_step(self, state, step):
        self.at_step.append(self.count())


def test_the_loop_reads_the_device_only_every_log_every_steps(tmp_path, monkeypatch, extra_callback):
    """A host sync per step stalls a GPU's queue. Every read of a device number (.item(), float(),
    .tolist(), bool()) during training is counted: per epoch, a few at its end and one or two per
    log_every steps (divergence check, step scalars: loss, grad norm), never one per step."""
    reads = []
    for name in ("item", "__float__", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            reads.append(_name)
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, counted)
    counter = CountAtEachStep(lambda: len(reads))
    extra_callback(counter)
    run(digits_cfg("batch_size=8", "epochs=1", "trainer.log_every=20", "trainer.checkpoint=false"), run_dir=tmp_path)
    steps = len(counter.at_step)
    in_loop = counter.at_step[-1] - counter.at_step[0]  # the reads from the first step to the last
    assert steps >= 100
    assert in_loop <= 3 * (steps // 20), f"{in_loop} device reads in {steps} steps: {sorted(set(reads))}"
