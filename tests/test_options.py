"""Each training option does what it says (issue: optimizers, schedules, regularizers, losses,
initialisation, class imbalance)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dlbench.artifacts import read_metrics
from dlbench.callbacks import Callback
from dlbench.callbacks.classes import confusion_matrix
from dlbench.callbacks.early_stopping import EarlyStopping
from dlbench.config import build, compose
from dlbench.data import Batches, Oversample, Split, build_dataset
from dlbench.data.augment import Augment
from dlbench.losses import build_loss, inverse_frequency_weights
from dlbench.models import create_model
from dlbench.optim import build_schedule
from dlbench.regularizers import L2Penalty, output_layer
from dlbench.train import run
from tests.conftest import digits_cfg

# ---------------------------------------------------------------- schedules against closed forms

EPOCHS, STEPS, LR = 6, 4, 0.1


def lr_sequence(scheduler: str, *overrides: str, warmup: int = 0, val_losses=None) -> list[float]:
    """The learning rate used at every step of EPOCHS x STEPS, driven as the runner drives it."""
    cfg = compose([f"scheduler={scheduler}", f"epochs={EPOCHS}", f"lr={LR}", *overrides])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    schedule = build_schedule(cfg.scheduler, opt, EPOCHS, STEPS, warmup_steps=warmup)
    seen = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step_batch()
        schedule.step_epoch({"val/loss": val_losses[epoch] if val_losses else 0.0})
    return seen


def per_step(per_epoch_lr) -> list[float]:
    return [per_epoch_lr(step // STEPS) for step in range(EPOCHS * STEPS)]


@pytest.mark.parametrize("name, overrides, closed_form", [
    ("none", [], lambda e: LR),
    ("step", ["scheduler.step_size=2", "scheduler.gamma=0.5"], lambda e: LR * 0.5 ** (e // 2)),
    ("multistep", ["scheduler.milestones=[1,4]", "scheduler.gamma=0.1"], lambda e: LR * 0.1 ** ((e >= 1) + (e >= 4))),
    ("exponential", ["scheduler.gamma=0.8"], lambda e: LR * 0.8 ** e),
    ("cosine", [], lambda e: LR * (1 + math.cos(math.pi * e / EPOCHS)) / 2),
])
def test_per_epoch_schedules_follow_their_closed_form(name, overrides, closed_form):
    assert lr_sequence(name, *overrides) == pytest.approx(per_step(closed_form), rel=1e-6)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_is_keras_per_step_form(staircase):
    seq = lr_sequence("exponential_decay", "scheduler.decay_steps=5", "scheduler.decay_rate=0.5",
                      f"scheduler.staircase={staircase}")
    expected = [LR * 0.5 ** ((t // 5) if staircase else (t / 5)) for t in range(EPOCHS * STEPS)]
    assert seq == pytest.approx(expected, rel=1e-6)


def test_onecycle_rises_to_max_then_anneals_per_step():
    seq = lr_sequence("onecycle", "scheduler.pct_start=0.25")
    total = EPOCHS * STEPS
    up = 0.25 * total - 1  # torch's phase boundary, in steps
    start, low = LR / 25, LR / 25 / 1e4

    def cos_anneal(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)

    expected = [cos_anneal(start, LR, t / up) if t <= up else cos_anneal(LR, low, (t - up) / (total - 1 - up))
                for t in range(total)]
    assert seq == pytest.approx(expected, rel=1e-6)
    assert max(seq) == pytest.approx(LR)


def test_plateau_cuts_the_rate_when_val_loss_stalls():
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5]  # best at epoch 1 (0-based), then 3 worse epochs
    seq = lr_sequence("plateau", "scheduler.patience=2", "scheduler.factor=0.1", val_losses=losses)
    # torch cuts once the bad epochs exceed patience (3 > 2, after epoch 4), so epoch 5 runs at lr/10
    assert seq[::STEPS] == pytest.approx([LR] * 5 + [LR * 0.1])


def test_linear_warmup_multiplies_any_schedule():
    warm = 6
    seq = lr_sequence("step", "scheduler.step_size=2", "scheduler.gamma=0.5", warmup=warm)
    factor = [1 / warm + (1 - 1 / warm) * min(t, warm) / warm for t in range(EPOCHS * STEPS)]
    expected = [f * s for f, s in zip(factor, per_step(lambda e: LR * 0.5 ** (e // 2)))]
    assert seq == pytest.approx(expected, rel=1e-6)


def test_the_learning_rate_is_logged_every_epoch(in_tmp):
    run(digits_cfg("epochs=3", "scheduler=exponential", "scheduler.gamma=0.5"), run_dir=in_tmp / "r")
    assert [m["lr"] for m in read_metrics(in_tmp / "r")] == pytest.approx([0.1, 0.05, 0.025])


# ---------------------------------------------------------------- regularizers

def test_dropout_regularizer_reaches_the_model_and_acts_only_in_training():
    cfg = compose(["regularizer=dropout"])
    assert cfg.model.dropout == 0.5 and compose().model.dropout == 0.0
    assert compose(["regularizer=dropout", "model.dropout=0.2"]).model.dropout == 0.2
    model = build(cfg.model, in_shape=(1, 28, 28), num_classes=10)
    x = torch.randn(64, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))  # a new mask each pass
    model.eval()
    assert torch.equal(model(x), model(x))


def test_batchnorm_regularizer_switches_on_the_models_batch_norm():
    model = build(compose(["regularizer=[batchnorm,dropout]", "model=cnn"]).model, in_shape=(1, 28, 28), num_classes=10)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "BatchNorm1d", "Dropout"} <= kinds


def test_l2_penalty_is_coef_times_squared_weights_only():
    model = create_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden=[5])
    penalised = L2Penalty(nn.CrossEntropyLoss(), model, coef=0.01)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    expected = nn.functional.cross_entropy(model(x), y) + 0.01 * sum(w.pow(2).sum() for w in weights)
    assert penalised(model(x), y).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("name, kwargs", [("mlp", {"hidden": [5, 6]}), ("cnn", {}), ("lenet", {}),
                                          ("resnet18", {})])
def test_l2_on_hidden_layers_leaves_the_output_layer_free(name, kwargs):
    """regularizer.l2.layers=hidden: Keras' exercise puts l2 on its hidden layers, not the softmax layer."""
    model = create_model(name, in_shape=(1, 28, 28), num_classes=7, **kwargs)
    out = output_layer(model)
    assert out.weight.shape[0] == 7  # the layer that gives the 7 logits
    hidden = L2Penalty(nn.CrossEntropyLoss(), model, coef=0.01, layers="hidden")
    every = L2Penalty(nn.CrossEntropyLoss(), model, coef=0.01)
    assert every.penalty().item() == pytest.approx(hidden.penalty().item() + 0.01 * out.weight.pow(2).sum().item(),
                                                   rel=1e-5)
    hidden.add_grad()
    assert out.weight.grad is None  # no pull on the output layer's weights
    assert all(torch.equal(p.grad, 0.02 * p) for p in hidden.params)


@pytest.mark.parametrize("optimizer, clip, mode", [("sgd", None, "32"), ("adam", 0.5, "32"), ("adam", None, "16")])
def test_l2_step_is_the_step_on_loss_plus_penalty(optimizer, clip, mode):
    """The penalty's gradient, added in place by the loop, gives the step (and the reported loss) that
    autograd through loss + coef * sum w^2 gives: before clipping, after a float16 loss's unscaling."""
    from dlbench.loop import train_one_epoch
    from dlbench.precision import Precision

    def built():
        torch.manual_seed(0)
        model = create_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden=[6, 5])
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](model.parameters(), lr=0.1)
        return model, opt, Precision.build({"precision": mode}, torch.device("cpu"))

    batches = [(torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    model, opt, precision = built()
    losses = []
    for x, y in batches:  # the reference: the penalty through autograd
        with precision.autocast():
            weights = [p for p in model.parameters() if p.dim() >= 2]
            loss = nn.functional.cross_entropy(model(x), y).float() + 0.05 * sum(w.pow(2).sum() for w in weights)
        opt.zero_grad()
        precision.backward(loss)
        precision.unscale(opt)
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        precision.step(opt)
        losses.append(loss.item())
    ours, opt, precision = built()
    result = train_one_epoch(ours, batches, L2Penalty(nn.CrossEntropyLoss(), ours, coef=0.05), opt,
                             clip_grad=clip, precision=precision)
    for theirs, mine in zip(model.parameters(), ours.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert result["loss"] == pytest.approx(sum(losses) / 3, rel=1e-5)


def test_l2_with_no_weight_to_penalise_is_refused():
    """regularizer.l2.layers=hidden on a model without hidden layers would change nothing."""
    from dlbench.errors import ConfigError
    from dlbench.regularizers import L2

    model = create_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden=[])
    with pytest.raises(ConfigError, match="no weight matrix"):
        L2(0.01, layers="hidden").check(SimpleNamespace(model=SimpleNamespace(name="mlp")), model, None, None)


def weight_norm(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
    return sum(v.pow(2).sum() for k, v in state.items() if k.endswith("weight")).sqrt().item()


@pytest.mark.slow  # seconds of training: run by make test
def test_l2_and_weight_decay_both_shrink_weights_and_differ(in_tmp):
    base = ("optimizer=adamw", "lr=3e-3", "epochs=3")
    run(digits_cfg(*base, "optimizer.weight_decay=0"), run_dir=in_tmp / "none")
    run(digits_cfg(*base, "optimizer.weight_decay=0", "regularizer=l2", "regularizer.l2.coef=1e-2"),
        run_dir=in_tmp / "l2")
    run(digits_cfg(*base, "optimizer.weight_decay=1.0"), run_dir=in_tmp / "wd")
    none, l2, wd = (weight_norm(in_tmp / n) for n in ("none", "l2", "wd"))
    assert l2 < 0.97 * none and wd < 0.97 * none
    assert abs(l2 - wd) > 0.01 * none


def test_early_stopping_stops_at_the_patience_and_restores_the_best_weights(tmp_path):
    model = nn.Linear(2, 2)
    state = SimpleNamespace(run_dir=tmp_path, model=model, device="cpu", history=[], should_stop=False,
                            recorder=SimpleNamespace(summary={}), status="completed", monitor="val/loss", best={},
                            cfg=SimpleNamespace(trainer=SimpleNamespace(checkpoint=False)))
    stopper = EarlyStopping(monitor="val/loss", mode="min", patience=3, min_delta=0.01)
    weights = {}
    for epoch, loss in enumerate([1.0, 0.8, 0.795, 0.9, 0.7995, 0.6], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)  # the weights say which epoch they are from
        weights[epoch] = model.weight.clone()
        metrics = {"epoch": epoch, "val/loss": loss}
        state.history.append(metrics)
        stopper.on_epoch_end(state, metrics)
        if state.should_stop:
            break
    # best at epoch 2 (0.795 and 0.7995 are within min_delta): epochs 3, 4, 5 without improvement
    assert (epoch, stopper.best_epoch, stopper.stopped_epoch) == (5, 2, 5)
    stopper.on_train_end(state)
    stopper.on_run_end(state)
    assert torch.equal(model.weight, weights[2])
    assert state.recorder.summary["early_stopping"]["stopped_epoch"] == 5
    assert state.recorder.summary["early_stopping"]["metrics_at_best"] == {"val/loss": 0.8}


def test_an_early_stopped_run_is_completed_and_reports_the_restored_model(in_tmp):
    # train/loss falls every epoch, so with mode=max it never improves after epoch 1
    summary = run(digits_cfg("epochs=6", "regularizer=early_stopping", "regularizer.early_stopping.monitor=train/loss",
                             "regularizer.early_stopping.mode=max", "regularizer.early_stopping.patience=2"),
                  run_dir=in_tmp / "r")
    assert (summary["status"], summary["epochs_completed"]) == ("completed", 3)
    stop = summary["early_stopping"]
    assert (stop["stopped_epoch"], stop["best_epoch"], stop["restored_best"]) == (3, 1, True)
    # the confusion matrix is of the restored (epoch 1) model
    matrix = torch.tensor(summary["test/confusion"])
    assert (matrix.diag().sum() / matrix.sum()).item() == pytest.approx(stop["metrics_at_best"]["test/acc"])
    # and so is every other number: the splits' metrics, best/ and best.pt
    at_best = stop["metrics_at_best"]
    assert [summary[k] for k in ("test/acc", "val/loss", "train/loss")] == [at_best[k] for k in
                                                                           ("test/acc", "val/loss", "train/loss")]
    assert (summary["best/epoch"], summary["best/val/acc"]) == (1, at_best["val/acc"])
    last = read_metrics(in_tmp / "r")[-1]
    assert last["epoch"] == 3 and last["test/acc"] != summary["test/acc"]
    best = torch.load(in_tmp / "r" / "checkpoints" / "best.pt", weights_only=False)
    restored = torch.load(in_tmp / "r" / "checkpoints" / "early_stopping_best.pt", weights_only=False)["model"]
    assert best["epoch"] == 1 and all(torch.equal(best["model"][k], restored[k]) for k in restored)


def test_augmentation_keeps_labels_and_shapes_and_changes_pixels():
    torch.manual_seed(0)
    levels = torch.arange(8.0)
    # each image is constant at its label's level plus a bright square, so labels stay checkable
    x = levels.view(8, 1, 1, 1).repeat(1, 1, 12, 12)
    x[:, :, 2:5, 2:5] += 100
    split = Split(x, torch.arange(8))
    augment = Augment(crop_padding=2, hflip=True, rotation=15, noise_std=0.0)
    (xb, yb), = list(Batches(split, 8, True, torch.Generator().manual_seed(0), transform=augment))
    assert xb.shape == (8, 1, 12, 12)
    assert torch.equal(torch.median(xb.flatten(1), dim=1).values, yb.float())  # background level = label
    assert not torch.equal(xb, x[yb])
    noisy = Augment(noise_std=0.5)(x)
    assert noisy.shape == x.shape and 0.4 < (noisy - x).std().item() < 0.6


@pytest.mark.parametrize("fill, most", [("replicate", 1.0), ("reflect", 2.0), ("zero", None)])
def test_a_crop_pads_as_its_fill_says(fill, most):
    from dlbench.data.augment import random_crop

    torch.manual_seed(0)
    x = torch.arange(1.0, 7.0).view(1, 1, 6, 1).repeat(600, 1, 1, 6)  # row r holds r + 1
    top = random_crop(x, 1, fill)[:, 0, 0, 3]  # the crop's top row: padding (offset 0), row 0 or row 1
    if most is None:  # zero: the padding row is 0, a third of the time
        assert 0.25 < (top == 0).float().mean() < 0.42
    else:  # replicate copies row 0 (value 1) into the padding, reflect row 1 (value 2): two thirds each
        assert (top == most).float().mean() > 0.6 and set(top.tolist()) == {1.0, 2.0}


def test_the_cifar_recipe_pads_four_reflected_pixels_and_flips_without_rotating():
    from dlbench.config import compose

    node = compose(["regularizer=[augmentation_cifar]"]).regularizer.augmentation
    assert (node.crop_padding, node.crop_fill, node.hflip, node.rotation) == (4, "reflect", True, 0.0)


def test_augmentation_is_applied_to_training_batches_only(in_tmp):
    import dlbench.run.build as t

    cfg = digits_cfg("epochs=2", "regularizer=augmentation", "regularizer.augmentation.noise_std=3.0",
                     "regularizer.augmentation.hflip=false")
    data = build(cfg.dataset, seed=0)
    state, _ = t._training_state(cfg, in_tmp, torch.device("cpu"), data, build(cfg.model, in_shape=(1, 8, 8),
                                                                                num_classes=10))
    assert isinstance(state.train_batches.transform, Augment)
    summary = run(cfg, run_dir=in_tmp / "r")
    # noise this strong would move every evaluation; the epoch's test/acc equals the accuracy of
    # the confusion matrix, which is computed on clean batches: evaluation is not augmented
    matrix = torch.tensor(summary["test/confusion"])
    assert summary["test/acc"] == pytest.approx((matrix.diag().sum() / matrix.sum()).item())


# ---------------------------------------------------------------- losses

def test_mse_on_one_hot_trains_and_is_reported_as_such(in_tmp):
    summary = run(digits_cfg("loss=mse", "loss.reduction=sum", "epochs=4", "lr=0.5"), run_dir=in_tmp / "r")
    losses = [m["train/loss"] for m in read_metrics(in_tmp / "r")]
    assert losses[-1] < 0.8 * losses[0]
    assert summary["loss"] == "MeanSquaredError"
    logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([1])
    p = torch.softmax(logits, 1)[0]
    squared = (p[0] ** 2 + (p[1] - 1) ** 2).item()
    assert build(compose(["loss=mse", "loss.reduction=sum"]).loss)(logits, y).item() == pytest.approx(squared)
    assert build(compose(["loss=mse"]).loss)(logits, y).item() == pytest.approx(squared / 2)  # mean over 2 classes


def test_mse_means_what_torchs_mse_loss_means_and_sum_is_k_times_it():
    """loss=mse on classification: nn.MSELoss (Keras' mean_squared_error) of softmax against one-hot,
    a gradient 1/K of the summed form's; on regression the plain mean squared error."""
    logits, y = torch.randn(16, 10, requires_grad=True), torch.randint(0, 10, (16,))
    mean, total = build(compose(["loss=mse"]).loss), build(compose(["loss=mse", "loss.reduction=sum"]).loss)
    expected = nn.MSELoss()(logits.softmax(1), nn.functional.one_hot(y, 10).float())
    assert mean(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)
    g_mean, = torch.autograd.grad(mean(logits, y), logits)
    g_sum, = torch.autograd.grad(total(logits, y), logits)
    assert torch.allclose(g_sum, 10 * g_mean, rtol=1e-5, atol=1e-8)
    out, target = torch.randn(16, 3), torch.randn(16, 3)
    assert mean(out, target).item() == pytest.approx(nn.MSELoss()(out, target).item(), rel=1e-6)
    assert total(out, target).item() == pytest.approx(3 * nn.MSELoss()(out, target).item(), rel=1e-6)


def test_class_weights_are_inverse_frequency():
    counts = torch.tensor([10, 30, 60])
    assert inverse_frequency_weights(counts).tolist() == pytest.approx([100 / 30, 100 / 90, 100 / 180])
    data = build(compose(["dataset=digits", "dataset.imbalance={classes:[0],keep:0.1}"]).dataset, seed=0)
    loss = build_loss(compose(["loss=weighted_cross_entropy"]).loss, data)
    counts = torch.bincount(data.train.y, minlength=10).double()
    assert loss.weight.tolist() == pytest.approx((counts.sum() / (10 * counts)).tolist(), rel=1e-6)
    assert loss.weight[0] > 5 * loss.weight[1]


def test_bce_is_binary_cross_entropy_on_the_log_odds():
    logits, y = torch.tensor([[0.5, 2.0], [1.0, -1.0]]), torch.tensor([1, 0])
    loss = build(compose(["loss=bce"]).loss)(logits, y)
    p1 = torch.sigmoid(torch.tensor([1.5, -2.0]))
    expected = -(torch.log(p1[0]) + torch.log(1 - p1[1])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------- initialisation

@pytest.mark.parametrize("init, std", [
    ("xavier_uniform", math.sqrt(2 / (1000 + 500))),
    ("xavier_normal", math.sqrt(2 / (1000 + 500))),
    ("kaiming_uniform", math.sqrt(2 / 1000)),
    ("kaiming_normal", math.sqrt(2 / 1000)),
    ("lecun_uniform", 1 / math.sqrt(1000) / math.sqrt(3)),  # U(-b, b) has std b / sqrt(3)
    ("normal", 0.05),
])
def test_each_init_has_the_std_of_its_formula(init, std):
    torch.manual_seed(0)
    model = create_model("mlp", in_shape=(1, 1, 1000), num_classes=10, hidden=[500], init=init, init_std=0.05)
    first = model[1]  # Linear(1000, 500): fan_in 1000, fan_out 500
    assert first.weight.std().item() == pytest.approx(std, rel=0.02)
    assert first.bias.abs().sum().item() == 0.0


def test_default_init_is_torchs_and_unknown_init_is_refused():
    torch.manual_seed(0)
    a = create_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden=[5])
    torch.manual_seed(0)
    b = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="valid: default, normal, xavier_uniform"):
        create_model("mlp", in_shape=(1, 4, 4), num_classes=3, init="glorot")


def test_init_applies_to_every_registered_model():
    cnn = create_model("cnn", in_shape=(1, 28, 28), num_classes=10, init="normal", init_std=0.05)
    conv = cnn[0]
    assert conv.weight.std().item() == pytest.approx(0.05, rel=0.15)


# ---------------------------------------------------------------- class imbalance

def test_imbalance_keeps_the_fraction_of_the_chosen_classes_only():
    full = build_dataset("digits", seed=0)
    thin = build_dataset("digits", seed=0, imbalance={"classes": [3, 7], "keep": 0.1})
    a, b = torch.bincount(full.train.y, minlength=10), torch.bincount(thin.train.y, minlength=10)
    assert b[3] == math.ceil(0.1 * a[3]) and b[7] == math.ceil(0.1 * a[7])
    others = [k for k in range(10) if k not in (3, 7)]
    assert torch.equal(a[others], b[others])
    assert torch.equal(full.test.y, thin.test.y) and torch.equal(full.val.y, thin.val.y)


def test_oversampling_draws_balanced_epochs_by_index():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 5)
    sampler = Oversample(labels)
    order = sampler(torch.Generator().manual_seed(0))
    assert len(order) == len(sampler) == 150
    assert torch.bincount(labels[order]).tolist() == [50, 50, 50]
    assert sorted(order[labels[order] == 0].tolist()) == list(range(50))  # the largest class: each once
    split = Split(torch.arange(65.0).view(65, 1, 1, 1), labels)
    batches = Batches(split, 32, True, torch.Generator().manual_seed(1), sampler=sampler)
    ys = torch.cat([y for _, y in batches])
    assert torch.bincount(ys).tolist() == [50, 50, 50] and len(batches) == 5


def test_per_class_accuracy_and_confusion_matrix_are_reported(in_tmp):
    summary = run(digits_cfg("epochs=2", "dataset.imbalance={classes:[0,1],keep:0.2}", "dataset.sampler=oversample",
                             "loss=weighted_cross_entropy"), run_dir=in_tmp / "r")
    matrix = torch.tensor(summary["test/confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 359
    assert (matrix.diag().sum() / matrix.sum()).item() == pytest.approx(summary["test/acc"])
    per_class = summary["test/per_class_acc"]
    assert per_class["3"] == pytest.approx((matrix[3, 3] / matrix[3].sum()).item())
    counts = summary["train/class_counts"]
    assert counts[0] < 0.3 * counts[2] and counts[1] < 0.3 * counts[2]
    for name in ("confusion.png", "class_distribution.png"):
        assert (in_tmp / "r" / "plots" / name).is_file()
    assert confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist() == [[1, 1], [0, 1]]
    assert json.loads((in_tmp / "r" / "summary.json").read_text())["test/confusion"] == summary["test/confusion"]


# ---------------------------------------------------------------- denormal floats

class DenormalProducts(Callback):
    """Inside the run: whether a denormal float (1e-42, below float32's smallest normal 1.2e-38) times
    one, and any entry of a matmul whose every entry is a sum of denormals (computed by all the
    threads), is non-zero, read from the bits (a float comparison would itself flush)."""
    seen = None

    def on_epoch_start(self, state):
        tiny = torch.full((512, 512), 714, dtype=torch.int32).view(torch.float32)  # 1e-42 from its bits: no rounding
        DenormalProducts.seen = (bool((tiny[0, :1] * 1.0).view(torch.int32).ne(0).any()),
                                 bool((torch.ones(256, 512) @ tiny).view(torch.int32).ne(0).any()))


def set_flush_everywhere(flush: bool) -> None:
    from dlbench.threads import flush_denormals
    flush_denormals(flush)


@pytest.mark.parametrize("flush", [True, False])
def test_a_run_flushes_denormals_to_zero_in_every_thread_unless_told_not_to(in_tmp, extra_callback, flush):
    """torch.set_flush_denormal sets the calling thread's flags only; OpenMP's workers, made before,
    keep theirs: with two threads half the matmul would still see denormals."""
    extra_callback(DenormalProducts())
    set_flush_everywhere(not flush)  # whatever the process had before, the run sets its own
    try:
        summary = run(digits_cfg("epochs=1", "trainer.threads=2", f"trainer.flush_denormal={str(flush).lower()}"),
                      run_dir=in_tmp / "r")
    finally:
        set_flush_everywhere(True)
    assert summary["flush_denormal"] is flush
    assert DenormalProducts.seen == (not flush, not flush)
