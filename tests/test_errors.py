"""Every mistake gets one clear line, every failure is recorded, no folder is corrupted.

One table of bad inputs and faults, each through the real command line (in this process, so the
table stays fast): the exit status, the one-line message naming the key and the fix, no
traceback on the terminal, the status the run recorded, and that no file that was there before
changed (but those the case says it may). Validation errors need no data and no training.
"""
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dlbench import cli, launch
from dlbench.callbacks import Callback

BASE = ["dataset=digits", "trainer.progress=false", "logger=none"]


@dataclass
class Case:
    args: list[str]
    says: tuple[str, ...]         # the message holds each of these
    status: int = 2
    recorded: str | None = None   # the status the run's summary.json says afterwards
    may_change: tuple[str, ...] = ()  # files (relative to the case folder) allowed to change
    prepare: object = None        # prepare(folder): faults set up in a finished run's copy
    trains: bool = False          # the command may reach training
    bug: bool = False             # a program bug, not a user's mistake: its traceback shows where
    extra: list = field(default_factory=list)  # callbacks added to the run
    env: dict = field(default_factory=dict)    # environment variables set for the command


def train(*args: str) -> list[str]:
    return ["train", *BASE, *args]


def into_run(*args: str) -> list[str]:
    return ["train", *BASE, *args, "--into", "run"]


# ------------------------------------------------------------------ values out of type or range (no data, no run)
VALUES = {
    "lr-text": (["lr=abc"], ("lr=abc", "not a number", "> 0")),
    "lr-nan": (["lr=nan"], ("lr=nan", "not a finite number")),
    "lr-negative": (["lr=-1"], ("lr=-1", "must be > 0")),
    "lr-zero": (["lr=0"], ("lr=0", "must be > 0")),
    "epochs-negative": (["epochs=-1"], ("epochs=-1", "must be >= 1", "integer")),
    "epochs-zero": (["epochs=0"], ("epochs=0", ">= 1")),
    "epochs-fraction": (["epochs=1.5"], ("epochs=1.5", "not an integer")),
    "epochs-text": (["epochs=ten"], ("epochs=ten", "not an integer")),
    "batch-zero": (["batch_size=0"], ("batch_size=0", ">= 1")),
    "batch-negative": (["batch_size=-3"], ("batch_size=-3", ">= 1")),
    "batch-bool": (["batch_size=true"], ("batch_size=true", "not an integer")),
    "seed-negative": (["seed=-1"], ("seed=-1", ">= 0")),
    "device-unknown": (["device=tpu"], ("device=tpu", "valid: auto, cpu, cuda, mps")),
    "target-text": (["target_acc=abc"], ("target_acc=abc", "not a number", "<= 1")),
    "target-above-one": (["target_acc=2"], ("target_acc=2", "<= 1")),
    "warmup-negative": (["warmup_steps=-1"], ("warmup_steps=-1", ">= 0")),
    "val-split-negative": (["dataset.val_split=-0.2"], ("dataset.val_split=-0.2", ">= 0")),
    "val-split-one": (["dataset.val_split=1"], ("dataset.val_split=1", "< 1")),
    "limit-negative": (["dataset.limit=-5"], ("dataset.limit=-5", ">= 1", "null: every training example")),
    "limit-zero": (["dataset.limit=0"], ("dataset.limit=0", ">= 1")),
    "eval-limit-zero": (["dataset.eval_limit=0"], ("dataset.eval_limit=0", ">= 1")),
    "normalize-unknown": (["dataset.normalize=minmax"], ("dataset.normalize=minmax",
                                                          "valid: standardize, unit, symmetric")),
    "stop-at-target-text": (["trainer.stop_at_target=maybe"], ("trainer.stop_at_target=maybe", "valid: true, false")),
    "quick-text": (["quick=maybe"], ("quick=maybe", "valid: true, false")),
    "label-noise-negative": (["dataset.label_noise=-0.5"], ("dataset.label_noise=-0.5", ">= 0")),
    "label-noise-above-one": (["dataset.label_noise=1.5"], ("dataset.label_noise=1.5", "<= 1")),
    "resize-zero": (["dataset.resize=0"], ("dataset.resize=0", ">= 1")),
    "sampler-unknown": (["dataset.sampler=weighted"], ("dataset.sampler=weighted", "valid: oversample")),
    "imbalance-keep-zero": (["dataset.imbalance={classes: [0], keep: 0}"], ("dataset.imbalance.keep=0", "> 0")),
    "imbalance-shape": (["dataset.imbalance={classes: [0]}"], ("dataset.imbalance", "classes and keep")),
    "hidden-zero": (["model.hidden=[0]"], ("model.hidden=[0]", "entry 0", ">= 1")),
    "hidden-negative": (["model.hidden=[-1,2]"], ("model.hidden=[-1,2]", "entry -1")),
    "activation-unknown": (["model.activation=swish"], ("model.activation=swish", "valid: relu, leaky_relu")),
    "init-unknown": (["model.init=glorot"], ("model.init=glorot", "xavier_uniform")),
    "init-std-zero": (["model.init_std=0"], ("model.init_std=0", "> 0")),
    "dropout-one": (["model.dropout=1"], ("model.dropout=1", "< 1")),
    "pool-unknown": (["model=cnn", "model.pool=median"], ("model.pool=median", "valid: max, avg")),
    "kernel-zero": (["model=cnn", "model.kernel_size=0"], ("model.kernel_size=0", ">= 1")),
    "channels-empty": (["model=cnn", "model.channels=[]"], ("model.channels=[]", "fewer than 1")),
    "heads-divide": (["dataset=modular", "model=transformer", "model.heads=3"], ("model.heads=3", "does not divide")),
    "momentum-negative": (["optimizer.momentum=-0.1"], ("optimizer.momentum=-0.1", ">= 0")),
    "momentum-above-one": (["optimizer.momentum=1.5"], ("optimizer.momentum=1.5", "< 1")),
    "nesterov-no-momentum": (["optimizer.nesterov=true"], ("optimizer.nesterov=true", "optimizer.momentum=0.9")),
    "betas-length": (["optimizer=adam", "optimizer.betas=[0.9]"], ("optimizer.betas=[0.9]", "not 2")),
    "eps-zero": (["optimizer=adam", "optimizer.eps=0"], ("optimizer.eps=0", "> 0")),
    "weight-decay-negative": (["optimizer.weight_decay=-1"], ("optimizer.weight_decay=-1", ">= 0")),
    "step-size-zero": (["scheduler=step", "scheduler.step_size=0"], ("scheduler.step_size=0", ">= 1")),
    "gamma-zero": (["scheduler=step", "scheduler.gamma=0"], ("scheduler.gamma=0", "> 0")),
    "milestones-order": (["scheduler=multistep", "scheduler.milestones=[8,5]"], ("scheduler.milestones", "increasing")),
    "decay-steps-zero": (["scheduler=exponential_decay", "scheduler.decay_steps=0"], ("scheduler.decay_steps=0", ">= 1")),
    "pct-start-one": (["scheduler=onecycle", "scheduler.pct_start=1"], ("scheduler.pct_start=1", "< 1")),
    "plateau-factor-one": (["scheduler=plateau", "scheduler.factor=1"], ("scheduler.factor=1", "< 1")),
    "dropout-rate": (["regularizer=dropout", "regularizer.dropout.rate=1.2"], ("regularizer.dropout.rate=1.2", "< 1")),
    "l2-negative": (["regularizer=l2", "regularizer.l2.coef=-1"], ("regularizer.l2.coef=-1", ">= 0")),
    "l2-layers": (["regularizer=l2", "regularizer.l2.layers=output"], ("regularizer.l2.layers=output", "valid: all, hidden")),
    "mse-reduction": (["loss=mse", "loss.reduction=max"], ("loss.reduction=max", "valid: mean, sum")),
    "seeds-zero": (["seeds=0"], ("seeds=0", ">= 1")),
    "seeds-and-a-seed-sweep": (["-m", "seeds=3", "seed=0,1"], ("seeds=3", "the sweep sets seed too", "drop seeds=N")),
    "seeds-of-one-run": (["experiment=init", "seeds=2", "hydra.mode=RUN"], ("seeds=2", "trains one run")),
    "flush-denormal": (["trainer.flush_denormal=maybe"], ("trainer.flush_denormal=maybe", "valid: true, false")),
    "smoothing-one": (["regularizer=label_smoothing", "regularizer.label_smoothing.eps=1"],
                      ("regularizer.label_smoothing.eps=1", "< 1")),
    "clip-zero": (["regularizer=grad_clip", "regularizer.grad_clip.max_norm=0"], ("max_norm=0", "> 0")),
    "patience-zero": (["regularizer=early_stopping", "regularizer.early_stopping.patience=0"], ("patience=0", ">= 1")),
    "stop-mode": (["regularizer=early_stopping", "regularizer.early_stopping.mode=up"], ("mode=up", "valid: min, max")),
    "stop-monitor": (["regularizer=early_stopping", "regularizer.early_stopping.monitor=val/accuracy"],
                     ("monitor=val/accuracy", "valid: train/loss, train/acc, val/loss, val/acc")),
    "rotation-negative": (["regularizer=augmentation", "regularizer.augmentation.rotation=-5"], ("rotation=-5", ">= 0")),
    "log-every-zero": (["trainer.log_every=0"], ("trainer.log_every=0", ">= 1")),
    "eval-batch-zero": (["trainer.eval_batch_size=0"], ("trainer.eval_batch_size=0", ">= 1")),
    "diverge-factor-below-one": (["trainer.diverge_factor=0.5"], ("trainer.diverge_factor=0.5", ">= 1")),
    "threads-zero": (["trainer.threads=0"], ("trainer.threads=0", ">= 1", "null")),
    "precision-unknown": (["trainer.precision=8"], ("trainer.precision=8", "valid: 32, bf16, 16")),
    "progress-unknown": (["trainer.progress=maybe"], ("trainer.progress=maybe", "valid: auto, true, false")),
    "sample-images-negative": (["logger=tensorboard", "logger.sample_images=-3"], ("logger.sample_images=-3", ">= 0")),
    "probe-every-zero": (["probe=grad_norm", "probe.grad_norm.every=0"], ("probe.grad_norm.every=0", ">= 1")),
    "embedding-method": (["probe=embeddings", "probe.embeddings.method=lda"], ("method=lda", "valid: pca, tsne, umap")),
    "embedding-package-missing": (["probe=embeddings", "probe.embeddings.method=umap"],
                                  ("probe.embeddings.method=umap", "needs the umap package", "pip install umap-learn")),
    "sharpness-iterations": (["probe=sharpness", "probe.sharpness.iterations=0"], ("iterations=0", ">= 1")),
    "trajectory-every": (["probe=trajectory", "probe.trajectory.every=0"], ("probe.trajectory.every=0", ">= 1")),
    "interval-empty": (["dataset=function", "loss=mse", "dataset.interval=[1,0]"], ("dataset.interval=[1,0]", "low < high")),
    "n-train-zero": (["dataset=function", "loss=mse", "dataset.n_train=0"], ("dataset.n_train=0", ">= 1")),
    "modulus-one": (["dataset=modular", "model=token_mlp", "dataset.p=1"], ("dataset.p=1", ">= 2")),
    "train-fraction-one": (["dataset=modular", "model=token_mlp", "dataset.train_fraction=1"],
                           ("dataset.train_fraction=1", "< 1")),
    "operation-unknown": (["dataset=modular", "model=token_mlp", "dataset.operation=pow"],
                          ("dataset.operation=pow", "valid: add, sub, mul, div")),
    "playground-kind": (["dataset=playground", "dataset.kind=moons"], ("dataset.kind=moons", "circle")),
    "playground-feature": (["dataset=playground", "dataset.features=[x3]"], ("dataset.features=[x3]", "x1sq")),
    "boolean-function": (["dataset=boolean", "dataset.function=implies"], ("dataset.function=implies", "xnor")),
    "seq-len-zero": (["dataset=timemachine", "model=rnn", "dataset.seq_len=0"], ("dataset.seq_len=0", ">= 1")),
    "partition-unknown": (["dataset=timemachine", "model=rnn", "dataset.partition=shuffled"],
                          ("dataset.partition=shuffled", "sequential")),
    "objective-typo": (["objective=best/val/accc"], ("objective=best/val/accc", "valid:", "best/val/acc")),
    "interpolation-missing": (["lr=${nosuch}"], ("lr", "cannot be resolved")),
    # valid alone, impossible at the edge or inside a study's own sweep
    "lr-beyond-float32": (["lr=1e308"], ("lr=1e+308", "<= 3.40282e+38")),
    "study-quick-bad-value": (["experiment=lr_sweep", "quick=true", "lr=abc"], ("lr=abc", "not a number")),
}

# ------------------------------------------------------------------ two groups that do not fit (shapes on the meta device)
FIT = {
    "bce-ten-classes": (["loss=bce"], ("loss=bce", "two classes", "has 10", "loss=cross_entropy")),
    "cross-entropy-regression": (["dataset=function"], ("dataset=function is a regression", "use loss=mse")),
    "class-weights": (["loss=weighted_cross_entropy", "loss.weight=[1,2]"], ("loss.weight=[1,2]", "10 classes")),
    "transformer-on-images": (["model=transformer"], ("model=transformer", "does not fit dataset=digits", "mlp")),
    "mlp-on-text": (["dataset=timemachine", "model=mlp"], ("model=mlp", "does not fit dataset=timemachine",
                                                         "models that fit it: gru, lstm, rnn")),
    "alexnet-on-8x8": (["model=alexnet"], ("model=alexnet", "1x8x8", "dataset.resize", "alexnet28")),
    "dropout-without-site": (["model=lenet", "dataset.resize=28", "regularizer=dropout"], ("regularizer=dropout", "no dropout site")),
    "batchnorm-without-layers": (["model=lenet", "dataset.resize=28", "regularizer=batchnorm"], ("regularizer=batchnorm", "no batch norm")),
    "l2-without-hidden-layer": (["regularizer=l2", "regularizer.l2.layers=hidden", "model.hidden=[]"],
                                ("regularizer=l2", "no weight matrix", "regularizer.l2.layers=all")),
    "smoothing-with-mse": (["loss=mse", "regularizer=label_smoothing"], ("regularizer=label_smoothing", "loss=cross_entropy")),
    "augment-points": (["dataset=playground", "regularizer=augmentation"], ("regularizer=augmentation", "no images")),
    "stop-on-missing-split": (["dataset=playground", "regularizer=early_stopping"],
                              ("monitor=val/loss", "dataset=playground", "test/loss")),
    "imbalance-class-beyond": (["dataset.imbalance={classes: [12], keep: 0.1}"], ("classes=[12]", "0..9")),
    "cuda-without-gpu": (["device=cuda"], ("device=cuda", "no CUDA GPU", "device=auto")),
    "function-syntax": (["dataset=function", "loss=mse", "dataset.function='x**'"],
                        ("dataset=function", "could not be evaluated", "an expression in x")),
    "function-not-finite": (["dataset=function", "loss=mse", "dataset.function='1/x'"],
                            ("dataset=function", "not finite at x=0", "write the limit in")),
    "function-not-a-number": (["dataset=function", "loss=mse", "dataset.function=sin"],
                              ("dataset=function", "not a number for each x", "sin(2 * pi * x)")),
}

# ------------------------------------------------------------------ what Hydra, the command line and other commands are given
COMMAND = {
    "model-unknown": (train("model=nosuch"), ("model=nosuch", "valid: alexnet", "vgg")),
    "dataset-unknown": (train("dataset=nosuch"), ("dataset=nosuch", "fashion_mnist")),
    "regularizer-unknown-in-list": (train("regularizer=[dropout,nosuch]"),
                                    ("regularizer=[dropout,nosuch]", "no regularizer config named 'nosuch'",
                                     "valid: augmentation")),
    "probe-unknown-in-list": (train("probe=[grad_norm,nosuch]"), ("probe=[grad_norm,nosuch]", "'nosuch'",
                                                                   "valid: embeddings")),
    "optimizer-unknown": (train("optimizer=lamb"), ("optimizer=lamb", "valid: adagrad, adam")),
    "experiment-unknown": (train("experiment=nosuch"), ("experiment=nosuch", "grokking")),
    "key-typo": (train("lrr=0.1"), ("lrr=0.1", "no such key", "did you mean lr")),
    "nested-key-typo": (train("model.hiden=[8]"), ("model.hiden=[8]", "did you mean model.hidden")),
    "append-existing": (train("+lr=0.1"), ("+lr=0.1", "already in the config", "drop the +")),
    "unparsable": (train("lr=["), ("lr=[", "cannot be parsed", "quote")),
    "sweep-without-m": (train("lr=1,0.1"), ("lr=1,0.1", "add -m", "lr=[1,0.1]")),
    "sweep-bad-point": (["train", "-m", *BASE, "lr=0.1,abc"], ("lr=abc", "not a number")),
    "into-without-folder": (["train", "--into"], ("--into", "no folder given")),
    "unknown-command": (["tain"], ("unknown command 'tain'", "train")),
    "resume-nothing": (["resume", "nosuch"], ("nosuch", "neither a run folder", "sweep")),
    "resume-no-folder": (["resume"], ("no folder given", "usage: dlbench resume")),
    "report-no-folder": (["report", "nosuch"], ("nosuch", "no such folder")),
    "info-bad-batch": (["info", "batch_size=-3"], ("batch_size=-3", ">= 1")),
    "info-misfit": (["info", "dataset=digits", "model=alexnet"], ("model=alexnet", "does not fit")),
    "info-sweep": (["info", "lr=1,2"], ("lr=1,2", "add -m")),
    # Hydra's own keys and the launchers' knobs: checked before Hydra starts, as the task's are
    "hydra-launcher-unknown": (["train", "-m", *BASE, "lr=0.1,0.2", "hydra/launcher=nosuch"],
                               ("hydra/launcher=nosuch", "no such option", "valid: basic, fused, joblib")),
    "hydra-sweeper-unknown": (["train", "-m", *BASE, "lr=0.1,0.2", "hydra/sweeper=nosuch"],
                              ("hydra/sweeper=nosuch", "valid: basic, search")),
    "joblib-no-jobs": (["train", "-m", *BASE, "lr=0.1,0.2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
                       ("hydra.launcher.n_jobs=0", "runs no job", "-1 for one per core")),
    "fused-group-zero": (["train", "-m", *BASE, "lr=0.1,0.2", "hydra/launcher=fused", "hydra.launcher.max_group=0"],
                         ("hydra.launcher.max_group=0", ">= 1")),
    "slurm-no-cpus": (["train", "-m", *BASE, "lr=0.1,0.2", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=0"],
                      ("hydra.launcher.cpus_per_task=0", ">= 1")),
    "sweep-of-nothing": (["train", "-m", *BASE, "seed=range(0,0)"], ("seed=range(0,0)", "a sweep of no value")),
    # dlbench's search (hydra/sweeper=search): checked before Hydra starts
    "search-sampler-unknown": (["train", "-m", *BASE, "experiment=lr_search", "hydra.sweeper.sampler.name=nosuch"],
                               ("hydra.sweeper.sampler.name=nosuch", "is not a sampler", "valid: tpe, random")),
    "search-pruner-option": (["train", "-m", *BASE, "experiment=lr_search", "+hydra.sweeper.pruner.patiense=2"],
                             ("hydra.sweeper.pruner.patiense=2", "not an option of the successive_halving pruner", "valid:")),
    "search-interval-reversed": (["train", "-m", *BASE, "hydra/sweeper=search", "lr=interval(1, 0.1)"],
                                 ("lr=interval(1.0, 0.1)", "low end below its high end")),
    "search-nothing-to-search": (["train", "-m", *BASE, "hydra/sweeper=search", "lr=0.1"],
                                 ("hydra.sweeper.params", "nothing to search", "tag(log, interval")),
    "search-trials-text": (["train", "-m", *BASE, "experiment=lr_search", "hydra.sweeper.n_trials=abc"],
                           ("hydra.sweeper.n_trials=abc", "is a count")),
    "search-jobs-in-process": (["train", "-m", *BASE, "experiment=lr_search", "hydra.sweeper.n_jobs=2"],
                               ("hydra.sweeper.n_jobs=2", "trains in this process", "hydra/launcher=joblib")),
    "search-grid-continuous": (["train", "-m", *BASE, "experiment=lr_search", "hydra.sweeper.sampler.name=grid"],
                               ("hydra.sweeper.params.lr", "is continuous", "choice(...) or range(...)")),
}


def finished(*args: str) -> list[str]:
    return into_run(*args)


def _corrupt(name: str, text: bytes):
    def prepare(folder: Path) -> None:
        (folder / "run" / name).write_bytes(text)
    return prepare


def _unfinished(also=None):
    """The finished run made to look killed after its first epoch, then `also` done to it."""
    def prepare(folder: Path) -> None:
        summary = json.loads((folder / "run" / "summary.json").read_text())
        (folder / "run" / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
        if also:
            also(folder)
    return prepare


def _empty(folder: Path) -> None:
    shutil.rmtree(folder / "run")  # a fresh run


def _hold_lock(folder: Path) -> None:
    fd = os.open(folder / "run" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"pid 4242 on testhost since today", 0)
    _held.append(fd)


_held: list[int] = []


class FailAt(Callback):
    def __init__(self, hook: str):
        self.hook = hook

    def __getattribute__(self, name):
        if name == object.__getattribute__(self, "hook"):
            def fail(*args):
                raise RuntimeError(f"boom in {name}")
            return fail
        return object.__getattribute__(self, name)


def _other_data(folder: Path) -> None:
    """run2: run's checkpoint as if trained on 2-D points (the playground): same model config, other shapes."""
    import torch

    shutil.copytree(folder / "run", folder / "run2")
    path = folder / "run2" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    first = next(k for k, v in ckpt["model"].items() if v.dim() == 2)
    ckpt["model"][first] = torch.zeros(ckpt["model"][first].shape[0], 2)
    ckpt["config"]["dataset"]["name"] = "playground"
    torch.save(ckpt, path)


def _diverged(folder: Path) -> None:
    """div: the run as a diverged one leaves it, NaN in its weights, its trajectory finite at epoch 0 only."""
    import torch

    shutil.copytree(folder / "run", folder / "div")
    path = folder / "div" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    flat = torch.cat([v.flatten() for v in ckpt["model"].values() if v.is_floating_point()])
    first = next(k for k, v in ckpt["model"].items() if v.dim() == 2)
    ckpt["model"][first] = torch.full_like(ckpt["model"][first], float("nan"))
    torch.save(ckpt, path)
    (folder / "div" / "trajectory").mkdir()
    torch.save(flat, folder / "div" / "trajectory" / "epoch_0000.pt")
    torch.save(torch.full_like(flat, float("inf")), folder / "div" / "trajectory" / "epoch_0001.pt")


def _a_file(folder: Path) -> None:
    (folder / "afile").write_text("not a folder\n")


# ------------------------------------------------------------------ a finished run in the folder, then a fault
FOLDER = {
    "other-overrides": Case(finished("epochs=2", "lr=0.5"), ("holds a run with other overrides", "lr: (default) there, 0.5 now",
                                                            "another folder")),
    "more-epochs": Case(finished("epochs=5"), ("completed run of 2 epochs", "dlbench resume", "epochs=5")),
    "in-use": Case(finished("epochs=2"), ("is in use by pid 4242 on testhost", "wait"), prepare=_hold_lock),
    "corrupt-summary": Case(finished("epochs=2"), ("summary.json", "not a run summary", "delete it"),
                            prepare=_corrupt("summary.json", b"{\"stat")),
    "corrupt-overrides": Case(finished("epochs=2"), ("overrides.yaml", "not a YAML list"),
                              prepare=_corrupt(".hydra/overrides.yaml", b"- [unclosed")),
    "corrupt-checkpoint": Case(finished("epochs=2"), ("last.pt", "not a readable checkpoint", "delete it"),
                               recorded="failed", may_change=("run/summary.json", "run/train.log"),
                               prepare=_unfinished(_corrupt("checkpoints/last.pt", b"garbage"))),
    "corrupt-metrics-line": Case(finished("epochs=2"), ("metrics.jsonl", "line 1 is not a JSON record"),
                                 recorded="failed", may_change=("run/summary.json", "run/train.log"),
                                 prepare=_unfinished(lambda f: (f / "run/metrics.jsonl").write_text(
                                     "{oops\n" + (f / "run/metrics.jsonl").read_text()))),
    "resume-other-config": Case(finished("epochs=2"), ("checkpoint has another config", "there", "now"),
                                prepare=_unfinished(lambda f: _rewrite_checkpoint(f, lr=0.5))),
    "resume-corrupt-multirun": Case(["resume", "run"], ("multirun.yaml", "not the record of a sweep"),
                                    prepare=_corrupt("multirun.yaml", b"hydra: [")),
    "report-metric": Case(["report", "run", "--metric", "nosuch"], ("--metric nosuch", "valid:", "test/acc")),
    "report-rows": Case(["report", "run", "--rows", "nosuch"], ("--rows/--cols nosuch", "no run has that override")),
    "interpolate-no-checkpoint": Case(["interpolate", "run", "nosuch"], ("nosuch", "no checkpoints/last.pt")),
    "interpolate-alphas": Case(["interpolate", "run", "run", "--alphas", "1:2"], ("--alphas 1:2", "FROM:TO:N")),
    "interpolate-other-data": Case(["interpolate", "run", "run2"], ("weights of different shapes", "dataset=digits and "
                                   "playground", "same model on the same data"), prepare=_other_data),
    "trajectory-no-snapshots": Case(["trajectory", "run"], ("no trajectory/ snapshots", "probe=trajectory")),
    "interpolate-diverged": Case(["interpolate", "run", "div"], ("div: its weights are not finite", "the run diverged"),
                                 prepare=_diverged),
    "trajectory-diverged": Case(["trajectory", "div"], ("div: 1 snapshot(s) with finite weights", "two or more"),
                                prepare=_diverged),
    "start-callback-fails": Case(into_run("epochs=1"), ("boom in on_run_start",), status=1, recorded="failed",
                                 trains=True, bug=True, extra=[FailAt("on_run_start")], prepare=_empty),
    "end-callback-fails": Case(into_run("epochs=1"), ("boom in on_run_end",), status=1, recorded="failed",
                               trains=True, bug=True, extra=[FailAt("on_run_end")], prepare=_empty),
    "fewer-epochs": Case(finished("epochs=1"), ("completed run of 2 epochs", "1 were asked for", "another folder")),
    # the paths people type: checked once (dlbench.paths), one message style
    "into-a-file": Case(["train", *BASE, "--into", "afile"], ("--into afile", "is a file, not a folder"),
                        prepare=_a_file),
    "sweep-into-a-file": Case(["train", "-m", *BASE, "lr=0.1,0.2", "--into", "afile"],
                              ("--into afile", "is a file, not a folder"), prepare=_a_file),
    "into-nothing": Case(["train", *BASE, "--into", ""], ("--into ''", "an empty folder name", "unset shell variable")),
    "report-out-a-file": Case(["report", "run", "--out", "afile"], ("--out afile", "is a file, not a folder"),
                              prepare=_a_file),
    # valid values that leave a run nothing to train on: refused when its data is built, recorded failed
    "split-leaves-no-example": Case(["train", *BASE, "dataset.val_split=0.9999", "--into", "r2"],
                                    ("dataset.val_split=0.9999", "leaves none of the", "smaller fraction"),
                                    trains=True),
    "text-shorter-than-a-batch": Case(["train", "trainer.progress=false", "logger=none", "dataset=timemachine",
                                       "dataset.path=short.txt", "model=rnn", "--into", "r2"],
                                      ("gives no training batch", "a lower batch_size"), trains=True,
                                      prepare=lambda f: (f / "short.txt").write_text("the time machine, in brief\n")),
    "data-root-a-file": Case(["train", "trainer.progress=false", "logger=none", "epochs=1", "--into", "r2"],
                             ("dataset.root ($DLBENCH_DATA when set)", "afile: is a file, not a folder"),
                             env={"DLBENCH_DATA": "afile"}, prepare=_a_file, trains=True),
}


def _rewrite_checkpoint(folder: Path, **config) -> None:
    import torch

    path = folder / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["config"].update(config)
    torch.save(ckpt, path)


CASES = {**{k: Case(train(*a), says) for k, (a, says) in VALUES.items()},
         **{k: Case(train(*a), says) for k, (a, says) in FIT.items()},
         **{k: Case(a, says) for k, (a, says) in COMMAND.items()},
         **FOLDER}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed 2-epoch run on digits, trained once for the whole table."""
    folder = tmp_path_factory.mktemp("finished")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as done:
            cli.main(into_run("epochs=2"))
        assert done.value.code == 0
    finally:
        os.chdir(cwd)
    return folder / "run"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_gets_one_line_and_changes_nothing(name, finished_run, tmp_path, monkeypatch, capsys, extra_callback):
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "1")
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    shutil.copytree(finished_run, tmp_path / "run")
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.prepare:
        case.prepare(tmp_path)
    if case.extra:
        extra_callback(case.extra[0])
    if not case.trains and not any(a.startswith("--into") for a in case.args):
        monkeypatch.setattr(launch, "_hydra_train", _must_not_train)
    before = snapshot(tmp_path)
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main(case.args)
    finally:
        while _held:
            os.close(_held.pop())
    out, err = capsys.readouterr()
    assert ended.value.code == case.status, f"{name}: exit {ended.value.code}\n{out}\n{err}"
    assert ("Traceback" in out + err) == case.bug, err
    message = [line for line in err.splitlines() if line.startswith("dlbench")] or [err]
    for part in case.says:
        assert part in (message[0] if case.status == 2 else err), f"{name}: {part!r} not in {message[0]!r}"
    if case.status == 2:
        assert len(message) == 1 and (";" in message[0] or "usage" in message[0]), message  # what, then the fix
    after = snapshot(tmp_path)
    changed = sorted(k for k in before if before[k] != after.get(k))  # files made by the command may be new
    assert set(changed) <= set(case.may_change) | ({"run/summary.json", "run/train.log", "run/metrics.jsonl"}
                                                   if case.trains else set()), changed
    if case.recorded:
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["status"] == case.recorded and summary["error"]
        assert "Traceback" in (tmp_path / "run" / "train.log").read_text()  # the traceback is in the run's log


def _must_not_train():
    raise AssertionError("a bad value reached training")


def test_the_table_is_large():
    assert len(CASES) >= 80


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="epochs=-1: must be >= 1"):
        cli.main(["train", "--debug", *BASE, "epochs=-1"])
