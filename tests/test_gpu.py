"""Training on a CUDA GPU: the numbers of the CPU to a tolerance, 16-bit precision, compilation,
channels-last, the fused launcher, resume, and a loop that never waits for the device inside an
epoch. `pytest -m gpu` runs these on a machine with a GPU (scripts/gpu_session.sh does, with the
GPU benchmarks); without one each is skipped, saying why.

DLBENCH_GPU_TESTS_ON=cpu runs them on the CPU instead: a dry run of the tests' own logic on a
machine without a GPU (the tests of CUDA's own machinery still skip). The tolerances are a GPU's:
cuDNN convolutions run in TF32 by default (10-bit mantissa) and pick their algorithms per layout,
so convolutional runs agree to 1e-2, fp32 matmuls (torch's default: no TF32) to 1e-4."""
import os
import warnings

import pytest
import torch

from dlbench.train import run
from tests.conftest import digits_cfg, straight_and_resumed
from tests.test_fused import assert_same_runs, sweep
from tests.test_precision import SIXTEEN_BIT, CountAtEachStep, assert_follows_fp32, losses

ON = os.environ.get("DLBENCH_GPU_TESTS_ON", "cuda")
NO_CUDA = "needs a CUDA GPU and torch sees none: run `pytest -m gpu` on a machine with one (scripts/gpu_session.sh)"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(ON == "cuda" and not torch.cuda.is_available(), reason=NO_CUDA)]
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA + "; this one tests CUDA itself")

CNN = ["model=cnn", "model.channels=[8,16]", "model.hidden=[32]"]


def on_gpu(*overrides: str):
    return digits_cfg(f"device={ON}", *overrides)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    return run(digits_cfg("device=cpu"), run_dir=tmp_path_factory.mktemp("cpu"))


def test_a_run_on_the_gpu_has_the_numbers_it_has_on_the_cpu(tmp_path, cpu_run):
    gpu = run(on_gpu(), run_dir=tmp_path)
    assert gpu["status"] == "completed" and gpu["device"].startswith(ON)
    for ours, reference in zip(losses(gpu), losses(cpu_run)):
        assert ours == pytest.approx(reference, rel=1e-4)
    assert gpu["test/acc"] == pytest.approx(cpu_run["test/acc"], abs=0.01)


@cuda_only
def test_device_auto_trains_on_the_gpu(tmp_path):
    summary = run(digits_cfg("device=auto", "epochs=1"), run_dir=tmp_path)
    assert summary["device"].startswith("cuda")


@pytest.mark.parametrize("mode, tolerance", SIXTEEN_BIT)
def test_16_bit_training_on_the_gpu_follows_fp32(tmp_path, cpu_run, mode, tolerance):
    assert_follows_fp32(run(on_gpu(f"trainer.precision={mode}"), run_dir=tmp_path), cpu_run, mode, tolerance)


def test_fp16_on_the_gpu_resumes_with_its_loss_scale(tmp_path, extra_callback):
    straight, resumed = straight_and_resumed(on_gpu("trainer.precision=16", "epochs=3"), tmp_path, 1, extra_callback)
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6)
    scale = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["precision"]["scaler"]
    assert scale["scale"] > 0


def test_channels_last_on_the_gpu_gives_the_same_numbers(tmp_path):
    contiguous = run(on_gpu(*CNN), run_dir=tmp_path / "nchw")
    nhwc = run(on_gpu(*CNN, "trainer.channels_last=true"), run_dir=tmp_path / "nhwc")
    assert nhwc["channels_last"] is True
    for ours, reference in zip(losses(nhwc), losses(contiguous)):
        assert ours == pytest.approx(reference, rel=1e-2)


def test_a_compiled_model_on_the_gpu_trains_and_resumes_like_eager(tmp_path, extra_callback):
    eager = run(on_gpu(*CNN, "epochs=3"), run_dir=tmp_path / "eager")
    straight, resumed = straight_and_resumed(on_gpu(*CNN, "epochs=3", "trainer.compile=true"), tmp_path, 1,
                                             extra_callback)
    assert straight["compile"] is True
    for ours, reference in zip(losses(straight), losses(eager)):
        assert ours == pytest.approx(reference, rel=1e-2)
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-4)


@pytest.mark.parametrize("case", [["lr=0.1,0.03", "optimizer.momentum=0.9"],
                                  ["optimizer=adam", "lr=0.003,0.001", "seed=0,1"],
                                  ["lr=0.1,0.05", "regularizer=dropout", "regularizer.dropout.rate=0.3"]],
                         ids=["sgd-momentum", "adam-seeds", "dropout"])
def test_a_fused_sweep_on_the_gpu_has_the_numbers_of_its_runs_alone(tmp_path, case):
    args = [*case, f"device={ON}"]
    assert sweep(tmp_path / "alone", *args, fused=False) == 0
    assert sweep(tmp_path / "fused", *args) == 0
    assert_same_runs(tmp_path / "fused", tmp_path / "alone", rel=1e-4)


@cuda_only
@pytest.mark.parametrize("overrides", [[], ["trainer.precision=bf16"], CNN], ids=["mlp", "bf16", "cnn"])
def test_the_loop_waits_for_the_gpu_only_every_log_every_steps(tmp_path, extra_callback, overrides):
    """CUDA's own count of the calls that make the host wait for the GPU (torch.cuda's sync debug
    mode), from the first step of an epoch to its last: one or two per log_every steps (the
    divergence check, the step scalars), none per step. (float16's scaler waits every step, by
    design: docs/guide/training.md, Precision.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counter = CountAtEachStep(lambda: sum("synchronizing CUDA operation" in str(w.message) for w in caught))
        extra_callback(counter)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run(digits_cfg("device=cuda", "batch_size=8", "epochs=1", "trainer.log_every=20", "trainer.checkpoint=false",
                           *overrides), run_dir=tmp_path)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    steps = len(counter.at_step)
    in_loop = counter.at_step[-1] - counter.at_step[0]
    assert steps >= 100
    assert in_loop <= 3 * (steps // 20), f"{in_loop} synchronising calls in {steps} steps"
