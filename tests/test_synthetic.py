"""The generated tasks: each makes what it claims, and trains to the textbook result."""
import math

import pytest
import torch

from dlbench.artifacts import read_metrics
from dlbench.config import build, compose
from dlbench.data import Batches, Split
from dlbench.data.synthetic import (FEATURES, build_boolean, build_function, build_modular, build_playground,
                                    function_values, modular_pairs)
from dlbench.models import count_params, create_model
from dlbench.models.mlp import mlp_params, width_for
from dlbench.tasks import REGRESS
from dlbench.train import run

QUIET = ["trainer.progress=false", "trainer.threads=1"]


# ---------------------------------------------------------------- function

def test_function_data_is_the_named_function_with_noise_on_train_and_val_only():
    data = build_function(function="sinc", n_train=5000, n_val=300, n_test=101, noise=0.1, seed=3)
    grid = data.test.x[:, 0]
    assert data.train.x.shape == (5000, 1) and data.val.y.shape == (300, 1) and data.test.y.shape == (101, 1)
    assert torch.equal(grid, torch.linspace(0, 1, 101))  # an even grid, sorted
    x = grid[1:].double()  # sinc's definition away from 0, and its limit 1 at 0
    assert torch.allclose(data.test.y[1:, 0].double(), torch.sin(5 * math.pi * x) / (5 * math.pi * x), atol=1e-6)
    assert data.test.y[0, 0] == 1.0
    residual = data.train.y - torch.sinc(5 * data.train.x)
    assert abs(residual.std().item() - 0.1) < 0.005 and abs(residual.mean().item()) < 0.005
    assert ((data.train.x >= 0) & (data.train.x <= 1)).all()
    assert data.num_classes == 1 and data.task is REGRESS and data.task.metric == "loss"
    again = build_function(function="sinc", n_train=5000, n_val=300, n_test=101, noise=0.1, seed=3)
    assert torch.equal(again.train.y, data.train.y)  # the seed fixes the sample


def test_function_takes_sign_sine_and_expressions_and_says_what_went_wrong():
    x = torch.linspace(0.01, 0.99, 50).unsqueeze(1)
    assert torch.equal(function_values("sign_sine", x), torch.sign(torch.sin(5 * math.pi * x)))
    assert torch.allclose(function_values("x**2 + sin(3*x)", x), x ** 2 + torch.sin(3 * x))
    assert torch.equal(function_values("2", x), torch.full_like(x, 2.0))  # a constant, broadcast
    with pytest.raises(ValueError, match="could not be evaluated.*sinc, sign_sine.*sin, cos"):
        function_values("sine(x)", x)
    with pytest.raises(ValueError, match="not finite at x=0"):
        build_function(function="sin(5*pi*x)/(5*pi*x)", n_test=11)


def test_sized_mlp_has_the_parameter_count_nearest_the_target():
    for depth in (1, 2, 4, 8):
        width = width_for(1000, depth, 1, 1)
        model = create_model("sized_mlp", in_shape=(1,), num_classes=1, params=1000, depth=depth)
        assert count_params(model) == mlp_params(width, depth, 1, 1)
        assert all(abs(count_params(model) - 1000) <= abs(mlp_params(w, depth, 1, 1) - 1000)
                   for w in (width - 1, width + 1))
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        assert len(linears) == depth + 1 and {m.out_features for m in linears[:-1]} == {width}
    assert count_params(create_model("sized_mlp", in_shape=(1,), num_classes=1, params=1000, depth=1)) == 1000
    with pytest.raises(ValueError, match="below the smallest sized_mlp of depth 8"):
        create_model("sized_mlp", in_shape=(1,), num_classes=1, params=10, depth=8)


@pytest.mark.slow  # seconds of training: an end-to-end check, run by make test
def test_function_fit_learns_sinc_and_draws_it(in_tmp):
    cfg = compose(["experiment=function_fit", "epochs=6", "probe=[grad_norm,sharpness]", *QUIET])
    summary = run(cfg, run_dir=in_tmp / "fit")
    history = read_metrics(in_tmp / "fit")
    assert summary["status"] == "completed" and summary["loss"] == "MeanSquaredError"
    variance = torch.sinc(5 * torch.linspace(0, 1, 1000)).var().item()  # the mse of predicting the mean
    assert summary["test/loss"] < 0.2 * variance
    assert "train/acc" not in summary and "test/acc" not in summary  # a regression has no accuracy
    assert summary["target_metric"] == "val/loss" and summary["epochs_to_target"] is None
    assert summary["best/val/loss"] == min(m["val/loss"] for m in history)  # best is the lowest loss
    assert summary["best/epoch"] == min(history, key=lambda m: m["val/loss"])["epoch"]
    assert history[-1]["sharpness/hessian_top"] > 0  # probes serve any run
    assert (in_tmp / "fit" / "plots" / "function.png").stat().st_size > 10_000


def test_regression_with_a_classification_loss_names_the_fix(in_tmp):
    with pytest.raises(ValueError, match="regression.*use loss=mse"):
        run(compose(["dataset=function", "model=sized_mlp", *QUIET]), run_dir=in_tmp / "r")


# ---------------------------------------------------------------- modular arithmetic

def test_modular_enumerates_every_pair_once_and_splits_without_replacement():
    p = 23
    data = build_modular(p=p, operation="add", train_fraction=0.3, seed=0)
    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    assert len(data.train) == round(0.3 * p * p) == 159 and len(data.val) == p * p - 159
    assert sorted((a * p + b) for a, b in x.tolist()) == list(range(p * p))  # every pair exactly once
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % p)
    assert data.num_classes == p and data.test is None and data.in_shape == (2,)
    other = build_modular(p=p, train_fraction=0.3, seed=1)
    assert not torch.equal(other.train.x, data.train.x)  # the split follows the seed


@pytest.mark.parametrize("operation", ["sub", "mul", "div"])
def test_modular_operations_are_right_for_every_pair(operation):
    p = 13
    x, y = modular_pairs(p, operation)
    a, b = x[:, 0], x[:, 1]
    assert len(x) == (p * (p - 1) if operation == "div" else p * p)
    check = {"sub": (y + b) % p == a, "mul": y == (a * b) % p, "div": (y * b) % p == a}[operation]
    assert check.all()
    with pytest.raises(ValueError, match="prime"):
        modular_pairs(12, "div")
    with pytest.raises(ValueError, match="valid: add, sub, mul, div"):
        modular_pairs(p, "pow")


def grok(*overrides: str):
    # a CI-sized grokking run: p = 23, 80% of the 529 pairs, an embedding MLP, AdamW, 1,500 steps
    return compose(["experiment=grokking", "dataset.p=23", "dataset.train_fraction=0.8", "model=token_mlp",
                    "model.embed=64", "model.hidden=[256]", "lr=0.003", "epochs=30", "dataset.steps_per_epoch=50",
                    "logger=none", "trainer.checkpoint=false", *QUIET, *overrides])


@pytest.mark.slow  # seconds of training: an end-to-end check, run by make test
def test_grokking_validation_follows_training_long_after_and_only_with_weight_decay(in_tmp):
    summary = run(grok(), run_dir=in_tmp / "decay")
    history = read_metrics(in_tmp / "decay")
    train_step, val_step = summary["grokking/train_step"], summary["grokking/val_step"]
    assert train_step is not None and val_step is not None
    assert summary["grokking/gap"] == val_step - train_step >= 500  # memorised first, generalised later
    assert summary["val/acc"] >= 0.95
    at_memorisation = next(m for m in history if m["epoch"] * 50 == train_step)
    assert at_memorisation["train/acc"] >= 0.99 and at_memorisation["val/acc"] < 0.5
    assert (in_tmp / "decay" / "plots" / "grokking.png").exists()

    no_decay = run(grok("optimizer.weight_decay=0"), run_dir=in_tmp / "none")
    assert no_decay["grokking/train_step"] is not None and no_decay["grokking/val_step"] is None
    assert no_decay["val/acc"] < 0.5


@pytest.mark.slow  # seconds of training: an end-to-end check, run by make test
def test_the_transformer_learns_modular_addition(in_tmp):
    # its training set in 300 steps; generalising takes the long run measured in docs/studies/grokking/README.md
    cfg = compose(["experiment=grokking", "model=transformer", "dataset.p=23", "model.dim=32", "model.heads=2", "epochs=3",
                   "logger=none", "trainer.checkpoint=false", *QUIET])
    summary = run(cfg, run_dir=in_tmp / "t")
    assert summary["model"] == "transformer" and summary["train/acc"] == 1.0
    assert summary["grokking/train_step"] <= 300


# ---------------------------------------------------------------- playground and boolean

@pytest.mark.parametrize("kind", ["circle", "xor", "gauss", "spiral"])
def test_playground_sets_have_their_shape_labels_and_split(kind):
    data = build_playground(kind=kind, n=400, noise=0.0, train_fraction=0.7, seed=0)
    x = torch.cat([data.train.x, data.test.x])
    y = torch.cat([data.train.y, data.test.y])
    assert len(data.train) == 280 and len(data.test) == 120 and x.shape == (400, 2)
    assert set(y.tolist()) == {0, 1} and abs(y.float().mean().item() - 0.5) < 0.1
    if kind == "circle":  # without noise the label is the radius test itself
        assert torch.equal(y, (x.norm(dim=1) < 2.5).long())
        assert (x.norm(dim=1) <= 5 + 1e-5).all()
    if kind == "xor":
        assert torch.equal(y, (x[:, 0] * x[:, 1] >= 0).long()) and (x.abs() >= 0.3).all()
    if kind == "spiral":
        assert (x.norm(dim=1) <= 5 + 1e-5).all()
    noisy = build_playground(kind=kind, n=400, noise=0.5, seed=0)
    noisy_x, noisy_y = torch.cat([noisy.train.x, noisy.test.x]), torch.cat([noisy.train.y, noisy.test.y])
    if kind in ("circle", "xor"):  # noise moves the point that decides the label: labels near the border flip
        assert 0 < (noisy_y != (noisy_x.norm(dim=1) < 2.5).long() if kind == "circle"
                    else noisy_y != (noisy_x[:, 0] * noisy_x[:, 1] >= 0).long()).float().mean() < 0.4
    else:  # the points themselves spread
        assert (noisy_x - x.mean(0)).std() > (x - x.mean(0)).std() if kind == "gauss" else not torch.equal(noisy_x, x)


def test_playground_features_are_computed_per_batch_from_the_points():
    data = build_playground(kind="circle", features=["x1sq", "x2sq", "x1x2", "sin_x1"], seed=0)
    assert data.in_shape == (4,) and data.train.x.shape[1] == 2  # points stored, features made on the way in
    points = data.train.x[:5]
    features = next(iter(Batches(data.train, 5, shuffle=False)))[0]
    assert torch.allclose(features, torch.stack([points[:, 0] ** 2, points[:, 1] ** 2, points[:, 0] * points[:, 1],
                                                 torch.sin(points[:, 0])], dim=1))
    with pytest.raises(ValueError, match=f"valid: {', '.join(FEATURES)}"):
        build_playground(features=["x3"])


def test_boolean_tables():
    expected = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0], "nand": [1, 1, 1, 0],
                "nor": [1, 0, 0, 0], "xnor": [1, 0, 0, 1]}
    for function, column in expected.items():
        data = build_boolean(function=function)
        assert data.train.x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and data.train.y.tolist() == column


def train_boolean(tmp, function: str, hidden: str, **_) -> dict:
    cfg = compose(["dataset=boolean", f"dataset.function={function}", "model=mlp", f"model.hidden={hidden}",
                   "model.activation=tanh", "optimizer=adam", "lr=0.1", "epochs=10", "logger=none",
                   "trainer.checkpoint=false", *QUIET])
    return run(cfg, run_dir=tmp / f"{function}{hidden}")


@pytest.mark.slow  # seconds of training: an end-to-end check, run by make test
def test_a_logistic_unit_cannot_learn_xor_and_one_hidden_layer_can(in_tmp):
    logistic_xor = train_boolean(in_tmp, "xor", "[]")
    assert logistic_xor["train/acc"] <= 0.75 and logistic_xor["test/acc"] <= 0.75  # 3 of 4 rows at most
    assert logistic_xor["test/loss"] > 0.6  # stuck near log 2: no line separates the classes
    assert train_boolean(in_tmp, "and", "[]")["test/acc"] == 1.0  # it is not the optimiser: AND is linear
    hidden = train_boolean(in_tmp, "xor", "[4]")
    assert hidden["test/acc"] == 1.0 and hidden["test/loss"] < 0.01
    assert (in_tmp / "xor[4]" / "plots" / "decision_boundary.png").exists()


def test_a_playground_run_draws_its_decision_boundary(in_tmp):
    cfg = compose(["dataset=playground", "dataset.kind=circle", "model.hidden=[8]", "optimizer=adam", "lr=0.03",
                   "epochs=20", "batch_size=10", "logger=none", "trainer.checkpoint=false", *QUIET])
    summary = run(cfg, run_dir=in_tmp / "p")
    assert summary["test/acc"] >= 0.95 and summary["test/per_class_acc"].keys() == {"negative", "positive"}
    assert (in_tmp / "p" / "plots" / "decision_boundary.png").stat().st_size > 10_000


# ---------------------------------------------------------------- epochs of a fixed number of steps

def test_an_epoch_of_n_steps_draws_full_batches_from_successive_permutations():
    split = Split(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    batches = Batches(split, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0), steps=7)
    epoch = [y for _, y in batches]
    assert len(batches) == 7 == len(epoch) and all(len(y) == 4 for y in epoch)
    assert batches.num_examples == 28
    for start in range(0, 6, 2):  # two batches of each permutation of 10 (its last 2 are dropped)
        pair = torch.cat(epoch[start:start + 2])
        assert len(set(pair.tolist())) == 8
    tiny = Batches(Split(torch.zeros(4, 2), torch.arange(4)), 64, shuffle=True, generator=torch.Generator(), steps=3)
    assert [sorted(y.tolist()) for _, y in tiny] == [[0, 1, 2, 3]] * 3  # a batch larger than the set: the set
    data = build(compose(["dataset=modular", "dataset.p=11"]).dataset, seed=0)
    assert len(data.train_batches(16, torch.Generator())) == 100  # the config's steps_per_epoch


@pytest.mark.slow  # real processes: the sweep, then the report
def test_shallow_vs_deep_at_equal_size_is_one_sweep_and_its_report_shows_losses(in_tmp):
    from tests.conftest import dlbench

    dlbench("train", "experiment=function_fit", "model.depth=1,3", "dataset.function=sinc", "epochs=2",
            "dataset.steps_per_epoch=20", "trainer.progress=false", "--into", "sweep", cwd=in_tmp)
    report = dlbench("report", "sweep", cwd=in_tmp).stdout
    header = next(line for line in report.splitlines() if line.startswith("| model.depth"))
    assert header.split(" | ")[1:3] == ["dataset.function=sinc test/loss", "dataset.function=sinc params |"]
    assert "acc" not in header
    rows = [line for line in report.splitlines() if line.startswith(("| 1 ", "| 3 "))]
    params = [int(row.split(" | ")[2].split()[0].replace(",", "")) for row in rows]
    assert len(rows) == 2 and all(abs(n - 570) <= 30 for n in params)  # one size, two depths


@pytest.mark.slow
def test_an_interrupted_grokking_run_resumes_to_the_same_curve(in_tmp, extra_callback):
    from tests.conftest import straight_and_resumed

    straight, resumed = straight_and_resumed(grok("epochs=6", "trainer.checkpoint=true"), in_tmp, 3, extra_callback)
    strip = lambda ms: [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(in_tmp / "resumed")) == strip(read_metrics(in_tmp / "straight"))
    assert resumed["grokking/train_step"] == straight["grokking/train_step"] is not None


@pytest.mark.parametrize("task", [
    ["experiment=function_fit", "model.params=300"],
    ["experiment=grokking", "model=transformer", "dataset.p=11", "model.dim=16", "model.heads=2"],  # attention, differentiated twice
    ["experiment=grokking", "dataset.p=11", "model=token_mlp", "model.embed=8", "model.hidden=[16]"],
    ["dataset=playground", "model.hidden=[8]"],
    ["dataset=boolean", "model.hidden=[2]"],
], ids=["function", "transformer", "token_mlp", "playground", "boolean"])
def test_every_probe_serves_every_generated_task(in_tmp, task):
    probes = "probe=[grad_norm,weight_norm,sharpness,trajectory,embeddings]"
    summary = run(compose([*task, probes, "epochs=2", "dataset.steps_per_epoch=5", "logger=none", *QUIET]),
                  run_dir=in_tmp / "r")
    assert summary["status"] == "completed"
    assert summary["sharpness/hessian_top"] is not None and summary["grad/norm"] > 0
    assert ("sharpness/input_grad" in summary) == ("grokking" not in task[0])  # token ids have no input gradient
    assert list((in_tmp / "r" / "plots" / "embeddings").glob("*.png"))


def test_label_noise_reaches_the_generated_classification_sets_training_labels_only():
    clean, noisy = build_modular(p=23, seed=0), build_modular(p=23, label_noise=0.5, seed=0)
    assert torch.equal(clean.train.x, noisy.train.x) and torch.equal(clean.val.y, noisy.val.y)
    changed = int((clean.train.y != noisy.train.y).sum())
    chosen = round(0.5 * len(clean.train))  # exactly this many are redrawn; 1 in 23 redraws the true answer
    assert 0.85 * chosen <= changed <= chosen
    clean, noisy = build_playground(kind="xor", seed=0), build_playground(kind="xor", label_noise=1.0, seed=0)
    assert torch.equal(clean.test.y, noisy.test.y) and torch.equal(clean.train.x, noisy.train.x)
    assert 0.35 < (clean.train.y != noisy.train.y).float().mean() < 0.65  # random labels: half agree by chance


def test_interpolating_two_regression_runs_uses_their_loss(in_tmp):
    from dlbench.analysis import interpolate

    fit = ["experiment=function_fit", "model.params=300", "epochs=2", "dataset.steps_per_epoch=20", "logger=none", *QUIET]
    a = run(compose(fit), run_dir=in_tmp / "a")
    b = run(compose([*fit, "lr=0.01"]), run_dir=in_tmp / "b")
    rows = interpolate(in_tmp / "a", in_tmp / "b", [0.0, 0.5, 1.0], out=in_tmp / "i", device="cpu")
    assert rows[0]["test/loss"] == pytest.approx(a["test/loss"], rel=1e-5)  # the mean squared error, as the run's
    assert rows[2]["test/loss"] == pytest.approx(b["test/loss"], rel=1e-5)
    assert "test/acc" not in rows[0] and (in_tmp / "i" / "interpolation.png").is_file()
