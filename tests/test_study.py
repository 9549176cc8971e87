"""Studies: an experiment file that runs its sweep, its analyses and its report in one command."""
import csv
import json

import pytest
import torch

from dlbench import cli, schema, study
from dlbench.config import build, compose, sweep_points
from dlbench.errors import ConfigError
from dlbench.train import run
from tests.conftest import digits_cfg

QUIET = ["trainer.progress=false"]


def train(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *args])
    return exit_.value.code


# ---------------------------------------------------------------- dataset.normalize

@pytest.mark.parametrize("normalize, low, high", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0)])
def test_normalize_puts_pixels_in_the_range_the_course_uses(normalize, low, high):
    from dlbench.config import build

    data = build(compose(["dataset=digits", f"dataset.normalize={normalize}"]).dataset, seed=0)
    for split in (data.train, data.val, data.test):
        assert split.x.min().item() == pytest.approx(low) and split.x.max().item() == pytest.approx(high)
    assert data.normalize == normalize


def test_standardize_gives_the_training_split_mean_zero_and_std_one():
    from dlbench.config import build

    data = build(compose(["dataset=digits"]).dataset, seed=0)
    assert data.train.x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.train.x.std().item() == pytest.approx(1.0, abs=1e-3)
    assert data.test.x.mean().item() != pytest.approx(0.0, abs=1e-3)  # the test split keeps its own offset


def test_the_summary_records_the_normalisation(in_tmp):
    summary = run(digits_cfg("dataset.normalize=symmetric", "epochs=1"), run_dir=in_tmp / "r")
    assert summary["normalize"] == "symmetric"
    assert json.loads((in_tmp / "r" / "summary.json").read_text())["normalize"] == "symmetric"


def test_eval_limit_caps_validation_and_test_only():
    from dlbench.config import build

    data = build(compose(["dataset=digits", "dataset.eval_limit=50"]).dataset, seed=0)
    assert len(data.test) == 50 and len(data.val) == 50 and len(data.train) > 1000


# ---------------------------------------------------------------- the command line of a study

def test_a_study_runs_as_a_sweep_and_quick_puts_its_overrides_before_the_users():
    assert study.expand(["experiment=first_mlp"])[0] == "-m"
    expanded = study.expand(["experiment=first_mlp", "quick=true", "epochs=3"])
    assert expanded == ["-m", "epochs=2", "dataset.limit=3000", "dataset.eval_limit=2000", "seeds=1",
                        "experiment=first_mlp", "quick=true", "epochs=3"]
    assert study.expand(["experiment=first_mlp", "hydra.mode=RUN"]) == ["experiment=first_mlp", "hydra.mode=RUN"]
    assert study.expand(["model=cnn", "lr=0.1"]) == ["model=cnn", "lr=0.1"]  # not a study: as typed


def test_seeds_repeats_every_cell_with_consecutive_seeds_fused_unless_a_launcher_was_chosen():
    expanded = study.expand(["seeds=3", "lr=0.1,0.01"])
    assert expanded == ["-m", "lr=0.1,0.01", "seed=range(0,3)", "hydra/launcher=fused"]
    assert len(sweep_points(expanded)) == 2 + 2  # lr's two values, seed's three: each checked before the sweep
    assert study.expand(["seeds=2", "seed=5", "model=cnn"]) == ["-m", "model=cnn", "seed=range(5,7)",
                                                               "hydra/launcher=fused"]
    assert study.expand(["-m", "seeds=2", "hydra/launcher=joblib", "lr=1,2"]) == [
        "-m", "hydra/launcher=joblib", "lr=1,2", "seed=range(0,2)"]
    assert study.expand(expanded) == expanded  # a sweep resumed from its record is not repeated twice
    assert study.expand(["seeds=1", "lr=0.1"]) == ["seeds=1", "lr=0.1"]
    # a study's own seeds: fused, unless its file chose a launcher (init times each run alone)
    assert study.expand(["experiment=regularisers"])[-2:] == ["seed=range(0,3)", "hydra/launcher=fused"]
    assert study.expand(["experiment=init"])[-1] == "seed=range(0,3)"
    assert study.expand(["experiment=init", "quick=true"])[-1] == "quick=true"  # quick: one seed


@pytest.mark.parametrize("args, clash", [(["-m", "seeds=3", "seed=0,1"], "the sweep sets seed too"),
                                         (["experiment=lr_search", "seeds=2"], "an Optuna search draws its own"),
                                         (["experiment=init", "seeds=2", "hydra.mode=RUN"], "trains one run")])
def test_seeds_with_a_seed_sweep_a_search_or_one_run_is_refused(args, clash):
    with pytest.raises(ConfigError, match=f"seeds=.*{clash}"):
        study.expand(args)


def test_quick_without_a_study_is_refused_with_the_studies_named():
    with pytest.raises(ConfigError, match="quick=true.*experiment=NAME.*first_mlp"):
        study.expand(["quick=true"])


def test_a_study_layout_with_an_unknown_key_or_analysis_is_refused():
    with pytest.raises(ConfigError, match="study.colums.*valid: about"):
        schema.check(compose(["experiment=first_mlp", "+study.colums=[lr]"]))
    with pytest.raises(ConfigError, match=r"study.analyses\[0\].*valid kinds: interpolate"):
        schema.check(compose(["experiment=first_mlp", "+study.analyses=[{kind: nosuch}]"]))


def test_every_study_has_a_line_and_a_valid_layout():
    import yaml

    from dlbench.config import CONF_DIR

    names = study.studies()
    assert {"first_mlp", "lr_sweep", "function_fit", "grokking", "flatness", "char_lm"} <= set(names)
    for name, about in names.items():
        assert about and len(about) < 120, name
        study.check(yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text())["study"])


@pytest.mark.slow  # some 200 compositions; `dlbench train` checks a study's points the same way before it runs
@pytest.mark.parametrize("name", sorted(study.studies()))
def test_every_study_composes_and_every_point_of_its_sweeps_passes_the_schema(name):
    args = [f"experiment={name}"]
    layout = compose(args).study
    for quick in ([], [str(o) for o in layout.quick]):
        for point in sweep_points([*study.sweep_params(args), *quick, *args, "-m"]):
            schema.check(compose(point))


def test_list_shows_each_study_with_its_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["list"])
    out = capsys.readouterr().out
    for name, about in study.studies().items():
        assert f"  {name:<26}{about}" in out


# ---------------------------------------------------------------- any sweep: progress and its report

@pytest.mark.slow
def test_a_sweep_says_which_run_it_is_on_and_ends_with_its_report(in_tmp, capsys):
    assert train("-m", "dataset=digits", "model.hidden=[16]", "epochs=1", "lr=0.1,0.01", "logger=none",
                 *QUIET, "--into", "sw") == 0
    err = capsys.readouterr().err
    assert "sweep run 1/2 (lr=0.1)" in err
    assert "sweep run 2/2 (lr=0.01); 1 done in" in err and "left" in err
    report = (in_tmp / "sw" / "report.md").read_text()
    assert "| lr |" in report and "| 0.01 |" in report and "| 0.1 |" in report
    # the same sweep grown by a rate: the two runs found finished take no time, so they give no estimate
    assert train("-m", "dataset=digits", "model.hidden=[16]", "epochs=1", "lr=0.1,0.01,0.001", "logger=none",
                 *QUIET, "--into", "sw") == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "sweep run 3/3" in x)
    assert "2 done in" in line and "left" not in line


def test_stop_at_target_ends_a_run_at_the_first_epoch_that_reaches_it(in_tmp):
    summary = run(digits_cfg("epochs=20", "target_acc=0.5", "trainer.stop_at_target=true"), run_dir=in_tmp / "r")
    assert summary["status"] == "completed"
    assert summary["epochs_to_target"] == summary["epochs_completed"] < 20


def test_a_cnn_without_pooling_keeps_the_image_size():
    from dlbench.models import create_model

    pooled = create_model("cnn", in_shape=(1, 8, 8), num_classes=10, channels=[4], hidden=[], pool="max")
    flat = create_model("cnn", in_shape=(1, 8, 8), num_classes=10, channels=[4], hidden=[], pool="none")
    assert sum(p.numel() for p in flat.parameters()) - sum(p.numel() for p in pooled.parameters()) == 4 * 48 * 10
    assert flat(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


# ---------------------------------------------------------------- every study's quick form, end to end

# besides report.md's table: what each study's analyses leave in its sweep folder
PRODUCES = {
    "gradients": ["analysis/grad_norm_first_100_steps.png"],
    "function_fit": ["analysis/function_overlay.png"],
    "grokking": ["analysis/grokking.png"],
    "params_vs_generalization": ["analysis/train_loss_test_loss_train_acc_test_acc_vs_params.png"],
    "flatness": ["analysis/interpolate/interpolation.png", "analysis/interpolate/interpolation.csv"],
    "trajectory": ["analysis/trajectory/trajectory.png", "analysis/trajectory/trajectory_1.png"],
    "class_imbalance": ["analysis/confusion.png"],
    "gradient_norm": ["analysis/sharpness_positive_fraction_vs_train_loss.png", "plots/grad_norm.png"],
    "embeddings": ["analysis/embeddings.png"],
    "playground": ["analysis/decision_boundaries.png"],
    "examples": ["analysis/examples.png"],
    "char_lm": ["plots/ppl.png"],
}
# what each study's report.md must say
SAYS = {
    "gradients": ["mean grad/norm over steps 1-100"],
    "class_imbalance": ["test/per_class_acc by class", "T-shirt/top"],
    "flatness": ["Along the line from batch_size=64 (alpha 0) to batch_size=1024 (alpha 1)"],
    "examples": ["| train | 2,000 |", "| val | 6,000 |", "| test | 10,000 |", "(2000, 1, 28, 28) float32"],
    "alexnet_analysis": ["alexnet_224: model=alexnet dataset.resize=224", "Memory against the batch size"],
    "char_lm": ["## generated", "time traveller"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(study.studies()))
def test_the_quick_form_of_each_study_trains_analyses_and_reports(name, in_tmp, capsys, monkeypatch):
    if compose([f"experiment={name}"]).dataset.name == "cifar10":  # no download here: small files in CIFAR's format
        from tests.test_colour_data import write_cifar10

        write_cifar10(in_tmp / "data", per_batch=60, test=40)
        monkeypatch.setenv("DLBENCH_DATA", str(in_tmp / "data"))
    assert train(f"experiment={name}", "quick=true", *QUIET, "--into", "s") == 0, capsys.readouterr().err
    folder = in_tmp / "s"
    with open(folder / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    # a study may show a run diverging (pooling's too-high rate); none fails
    assert runs and all(r["status"] in ("completed", "diverged") for r in runs), runs
    assert any(r["status"] == "completed" for r in runs), runs
    report = (folder / "report.md").read_text()
    layout = compose([f"experiment={name}"]).study
    header = next(line for line in report.splitlines() if line.startswith("| "))
    for metric in layout.metrics:
        assert metric in header, (metric, header)
    assert "Not drawn" not in report  # every analysis drew its section
    for path in PRODUCES.get(name, []):
        assert (folder / path).is_file(), path
    for text in SAYS.get(name, []):
        assert text in report, text
    for image in [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (folder / image).is_file(), image  # every figure the report shows is there


@pytest.mark.slow
def test_report_of_a_study_folder_rewrites_the_same_report(in_tmp, capsys):
    assert train("experiment=function_fit", "quick=true", "dataset.function=sinc", *QUIET, "--into", "s") == 0
    first = (in_tmp / "s" / "report.md").read_text()
    (in_tmp / "s" / "report.md").unlink()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "s"])
    assert exit_.value.code == 0
    assert (in_tmp / "s" / "report.md").read_text() == first
    assert "model.depth" in first and "## function of every run" in first


@pytest.mark.parametrize("overrides", [*(["experiment=classic_cnns", f"variant=classic_cnns/{v}"]
                                         for v in ("lenet", "alexnet", "vgg", "googlenet", "resnet18")),
                                       ["model=googlenet", "dataset.resize=96"]], ids=" ".join)
def test_each_classic_cnn_starts_with_logits_that_depend_on_the_image(overrides):
    """classic_cnns and model=googlenet initialise as the textbook does (Glorot uniform). Under torch's
    default GoogLeNet gives every image the same logits (std 4e-8 across a batch; 1.5e-4 with Glorot)
    and never learns."""
    cfg = compose(overrides)
    size = cfg.dataset.get("resize") or 28
    torch.manual_seed(0)
    model = build(cfg.model, in_shape=(1, size, size), num_classes=10).train()
    with torch.no_grad():
        logits = model(torch.rand(8, 1, size, size))
    assert logits.std(dim=0).mean() > 5e-5, f"{overrides}: the image is lost on its way to the logits"


@pytest.mark.slow
def test_seeds_trains_each_cell_n_times_and_the_report_gives_intervals(in_tmp, capsys):
    assert train("seeds=3", "-m", "dataset=digits", "model.hidden=[16]", "epochs=2", "lr=0.1,0.5", "logger=none",
                 *QUIET, "--into", "sw") == 0
    runs = {p.parent.name: json.loads(p.read_text()) for p in (in_tmp / "sw").glob("*/summary.json")}
    cells = sorted(tuple(part for part in name.split(",") if part.startswith(("lr=", "seed="))) for name in runs)
    assert cells == [(f"lr={lr}", f"seed={s}") for lr in ("0.1", "0.5") for s in range(3)]
    assert all(r["status"] == "completed" for r in runs.values())
    accs = [r["test/acc"] for name, r in runs.items() if "lr=0.1," in name]
    assert len(set(accs)) == 3  # three seeds, three different runs
    report = (in_tmp / "sw" / "report.md").read_text()
    assert "95% confidence interval over seeds" in report
    row = next(line for line in report.splitlines() if line.startswith("| 0.1 |"))
    assert row.count("(3)") >= 2  # every number a mean of three runs
    assert train("seeds=3", "-m", "dataset=digits", "model.hidden=[16]", "epochs=2", "lr=0.1,0.5", "logger=none",
                 *QUIET, "--into", "sw") == 0  # the same command again: every run found finished, none twice
    assert len(list((in_tmp / "sw").glob("*/summary.json"))) == 6


def dense_params(sizes: list[int], batchnorm: bool) -> int:
    """Weights and biases of dense layers of these widths, with batch norm's scale and shift after each
    hidden layer (the count Keras' summary gives as trainable)."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:])) + (2 * sum(sizes[1:-1]) if batchnorm else 0)


def conv_params(channels: list[int], batchnorm: bool, k: int = 3) -> int:
    """3x3 kernels; a convolution followed by batch norm has no bias (batch norm's shift is one)."""
    return sum(a * b * k * k + (2 * b if batchnorm else b) for a, b in zip([1, *channels], channels))


@pytest.mark.parametrize("arm, expected", [
    ("width_depth/base", dense_params([784, 512, 512, 10], False)),
    ("width_depth/wider", dense_params([784, 1024, 1024, 10], False)),
    ("width_depth/deeper", dense_params([784, 512, 512, 512, 10], False)),
    ("width_depth/base_bn", dense_params([784, 512, 256, 128, 64, 10], True)),  # 576,970
    ("width_depth/wider_bn", dense_params([784, 1024, 512, 256, 128, 64, 10], True)),
    ("width_depth/deeper_bn", dense_params([784, 512, 256, 128, 64, 32, 16, 10], True)),
    ("mlp_vs_cnn/mlp_bn", dense_params([784, 512, 256, 128, 64, 10], True)),
    ("mlp_vs_cnn/cnn", conv_params([32, 64], False) + dense_params([64 * 7 * 7, 128, 10], False)),
    ("mlp_vs_cnn/cnn_bn", conv_params([32, 64, 128], True) + dense_params([128 * 3 * 3, 512, 256, 128, 64, 10], True)),
])
def test_the_batch_norm_arms_are_the_exercises_nets(arm, expected):
    """width_depth's and mlp_vs_cnn's arms have the exercise's layers: their parameter counts, from
    the layer widths alone, match."""
    cfg = compose([f"experiment={arm.split('/')[0]}", f"variant={arm}"])
    model = build(cfg.model, in_shape=(1, 28, 28), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == arm.endswith("_bn")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_char_lm_scratch_cells_are_initialised_as_the_textbook_and_torchs_as_torch(cell):
    """d2l draws every weight of its from-scratch cells from N(0, 0.01^2) and zeroes the biases; its
    concise version keeps torch's U(+-1/sqrt(hidden))."""
    def params(variant):
        cfg = compose(["experiment=char_lm", f"model={cell}", f"variant=char_lm/{variant}"])
        torch.manual_seed(0)
        return dict(build(cfg.model, in_shape=(35,), num_classes=28).named_parameters())

    scratch, ours = params("scratch"), params("torch")
    for name, p in scratch.items():
        if p.dim() >= 2:
            assert p.std().item() == pytest.approx(0.01, rel=0.1), name
        else:
            assert p.abs().max().item() == 0, name
    bound = 1 / 256 ** 0.5
    recurrent = [p for name, p in ours.items() if name.startswith("rnn.")]
    assert all(0.9 * bound < p.abs().max().item() <= bound for p in recurrent)
