"""The types and ranges of every knob, checked before anything loads.

`check(cfg)` reads the composed config alone (no torch, no data, milliseconds): every key in KNOBS
that the config has is checked for its type and range, then the rules between keys of one group.
What needs the data's shape and the model is checked next, by dlbench.run.check. Each failure is a ConfigError, one line:
`<key>=<value>: <what is wrong>; <the fix or the valid choices>`.

The choices of a knob (activations, inits, ...) are dlbench.choices', which the modules that
implement them key their tables by: this check needs no torch and cannot drift from the code.
"""
import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlbench import choices as C
from dlbench.errors import ConfigError


@dataclass(frozen=True)
class Num:
    """A number in a range: lo/hi bounds, open or closed; integer: whole numbers only."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    null: str | None = None   # what null means, when null is allowed

    def problem(self, value) -> str | None:
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"not {kind}"
        if self.integer and not isinstance(value, int):
            return "not an integer"
        if not math.isfinite(value):
            return "not a finite number"
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return f"must be {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return f"must be {'<' if self.hi_open else '<='} {self.hi:g}"
        return None

    def fix(self) -> str:
        bounds = []
        if self.lo is not None:
            bounds.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            bounds.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        text = f"give {'an integer' if self.integer else 'a number'} {' and '.join(bounds)}".rstrip()
        return text + (f" (null: {self.null})" if self.null else "")


@dataclass(frozen=True)
class Choice:
    options: tuple
    null: str | None = None

    def problem(self, value) -> str | None:
        return None if value in self.options and not isinstance(value, (dict, list)) else "not a valid choice"

    def fix(self) -> str:
        shown = ", ".join("true" if o is True else "false" if o is False else str(o) for o in self.options)
        return f"valid: {shown}" + (f", null ({self.null})" if self.null else "")


@dataclass(frozen=True)
class Text:
    null: str | None = None

    def problem(self, value) -> str | None:
        return None if isinstance(value, str) else "not a string"

    def fix(self) -> str:
        return "give a quoted string"


@dataclass(frozen=True)
class ListOf:
    item: object
    min_len: int = 0
    length: int | None = None
    null: str | None = None

    def problem(self, value) -> str | None:
        if not isinstance(value, (list, tuple)):
            return "not a list"
        if self.length is not None and len(value) != self.length:
            return f"has {len(value)} entries, not {self.length}"
        if len(value) < self.min_len:
            return f"has {len(value)} entries, fewer than {self.min_len}"
        for v in value:
            if (why := self.item.problem(v)) is not None:
                return f"entry {v!r} is {why.removeprefix('not ')}" if why.startswith("not") else f"entry {v!r} {why}"
        return None

    def fix(self) -> str:
        size = f"{self.length} " if self.length else ""
        return f"give a list of {size}entries, each: {self.item.fix().removeprefix('give ')}" + (
            f" (null: {self.null})" if self.null else "")


@dataclass(frozen=True)
class AnyOf:
    """A knob whose form differs between the options of its group (model.hidden: a list of
    widths for an MLP, one width for a recurrent net)."""
    rules: tuple

    @property
    def null(self) -> str | None:
        """What null means, when one of the forms allows it (trainer.threads: auto, N or null)."""
        return next((rule.null for rule in self.rules if getattr(rule, "null", None)), None)

    def problem(self, value) -> str | None:
        problems = [rule.problem(value) for rule in self.rules]
        return None if None in problems else problems[-1]

    def fix(self) -> str:
        return " or ".join(rule.fix() for rule in self.rules)


FLOAT32_MAX = 3.4028234663852886e38  # a rate beyond it overflows the float32 parameters' update
BOOL = Choice((True, False))
POS_INT, NONNEG_INT = Num(1, integer=True), Num(0, integer=True)
POS, NONNEG = Num(0, lo_open=True), Num(0)
FRACTION = Num(0, 1)              # [0, 1]
OPEN_FRACTION = Num(0, 1, lo_open=True, hi_open=True)  # (0, 1)
RATE = Num(0, 1, hi_open=True)    # [0, 1): a dropout or smoothing rate of 1 leaves nothing
WIDTHS = ListOf(POS_INT)

# every knob a config can have, by its full key; a key a config lacks is not checked
KNOBS: dict[str, object] = {
    # top level (conf/train.yaml)
    "lr": Num(0, FLOAT32_MAX, lo_open=True), "epochs": POS_INT, "batch_size": POS_INT, "seed": NONNEG_INT, "seeds": POS_INT, "device": Choice(C.DEVICES),
    "target_acc": FRACTION, "warmup_steps": NONNEG_INT, "objective": Text(null="best/<the judging metric>"),
    "trial": Num(0, integer=True, null="not a search's trial"),
    "quick": BOOL,
    # trainer, logger
    "trainer.eval_batch_size": POS_INT, "trainer.log_every": POS_INT, "trainer.diverge_factor": Num(1),
    "trainer.checkpoint": BOOL, "trainer.stop_at_target": BOOL, "trainer.progress": Choice(C.PROGRESS),
    "trainer.threads": AnyOf((Choice(("auto",)), Num(1, integer=True, null="torch's default, every core"))),
    "trainer.precision": Choice(C.PRECISIONS), "trainer.flush_denormal": BOOL, "trainer.compile": BOOL,
    "trainer.channels_last": BOOL,
    "logger.enabled": BOOL, "logger.sample_images": NONNEG_INT,
    # dataset: the image sets
    "dataset.val_split": RATE, "dataset.limit": Num(1, integer=True, null="every training example"),
    "dataset.eval_limit": Num(1, integer=True, null="every validation and test example"),
    "dataset.sampler": Choice(C.SAMPLERS, null="a permutation per epoch"),
    "dataset.resize": Num(1, integer=True, null="the images' own size"),
    "dataset.label_noise": FRACTION, "dataset.test_split": OPEN_FRACTION, "dataset.download": BOOL,
    "dataset.normalize": Choice(C.NORMALIZE), "dataset.root": Text(), "dataset.mirror": Text(null="no mirror"),
    "dataset.path": Text(null="none (image_folder needs one)"), "dataset.grayscale": BOOL,
    "dataset.imbalance.classes": ListOf(NONNEG_INT, min_len=1), "dataset.imbalance.keep": Num(0, 1, lo_open=True),
    # dataset: synthetic and text
    "dataset.function": Text(), "dataset.interval": ListOf(Num(), length=2),
    "dataset.n_train": POS_INT, "dataset.n_val": NONNEG_INT, "dataset.n_test": Num(2, integer=True),
    "dataset.noise": NONNEG, "dataset.steps_per_epoch": Num(1, integer=True, null="one pass over the training split"),
    "dataset.p": Num(2, integer=True), "dataset.operation": Choice(C.OPERATIONS),
    "dataset.train_fraction": OPEN_FRACTION, "dataset.threshold": Num(0, 1, lo_open=True),
    "dataset.kind": Choice(C.PLAYGROUND_KINDS), "dataset.n": Num(4, integer=True),
    "dataset.features": ListOf(Choice(C.FEATURES), min_len=1),
    "dataset.path": Text(null="<root>/timemachine/timemachine.txt, the mirror's, then the d2l.ai download"),
    "dataset.seq_len": POS_INT, "dataset.partition": Choice(C.PARTITIONS),
    "dataset.clip_grad_norm": Num(0, lo_open=True, null="no clipping"), "dataset.prefix": Text(),
    "dataset.generate_chars": NONNEG_INT,
    # model
    "model.init": Choice(C.INITS), "model.init_std": POS, "model.hidden": AnyOf((POS_INT, WIDTHS)), "model.activation": Choice(C.ACTIVATIONS),
    "model.batchnorm": BOOL, "model.dropout": RATE, "model.channels": ListOf(POS_INT, min_len=1),
    "model.kernel_size": POS_INT, "model.pool": Choice(C.POOLS), "model.params": Num(10, integer=True),
    "model.depth": POS_INT, "model.embed": Num(1, integer=True, null="one-hot tokens"), "model.dim": POS_INT,
    "model.heads": POS_INT, "model.mlp_ratio": POS, "model.layers": POS_INT, "model.bidirectional": BOOL,
    "model.impl": Choice(C.RECURRENT_IMPLS), "model.width": POS, "model.stem": Choice(C.STEMS),
    "model.blocks_per_stage": POS_INT, "model.blocks": ListOf(ListOf(POS_INT, length=2), min_len=1),
    # optimizer (lr is the top-level knob's)
    "optimizer.momentum": Num(0, 1, hi_open=True), "optimizer.weight_decay": NONNEG, "optimizer.nesterov": BOOL,
    "optimizer.betas": ListOf(Num(0, 1, hi_open=True), length=2), "optimizer.eps": POS,
    "optimizer.alpha": Num(0, 1, hi_open=True), "optimizer.lr_decay": NONNEG, "optimizer.dampening": Num(0, 1),
    # scheduler
    "scheduler.T_max": POS_INT, "scheduler.eta_min": NONNEG, "scheduler.gamma": Num(0, 1, lo_open=True),
    "scheduler.step_size": POS_INT, "scheduler.milestones": ListOf(POS_INT, min_len=1),
    "scheduler.decay_steps": POS_INT, "scheduler.decay_rate": Num(0, 1, lo_open=True), "scheduler.staircase": BOOL,
    "scheduler.max_lr": POS, "scheduler.pct_start": OPEN_FRACTION, "scheduler.div_factor": POS,
    "scheduler.final_div_factor": POS, "scheduler.mode": Choice(C.MONITOR_MODES),
    "scheduler.factor": Num(0, 1, lo_open=True, hi_open=True), "scheduler.patience": NONNEG_INT,
    "scheduler.threshold": NONNEG,
    # regularizers
    "regularizer.dropout.rate": RATE, "regularizer.batchnorm.enabled": BOOL, "regularizer.l2.coef": NONNEG,
    "regularizer.l2.weights_only": BOOL, "regularizer.l2.layers": Choice(C.L2_LAYERS), "regularizer.label_smoothing.eps": RATE,
    "regularizer.grad_clip.max_norm": POS, "regularizer.early_stopping.monitor": Text(),
    "regularizer.early_stopping.mode": Choice(C.MONITOR_MODES), "regularizer.early_stopping.patience": POS_INT,
    "regularizer.early_stopping.min_delta": NONNEG, "regularizer.early_stopping.restore_best": BOOL,
    "regularizer.augmentation.crop_padding": NONNEG_INT, "regularizer.augmentation.hflip": BOOL,
    "regularizer.augmentation.rotation": Num(0, 180), "regularizer.augmentation.noise_std": NONNEG,
    "regularizer.augmentation.crop_fill": Choice(C.CROP_FILLS),
    # loss
    "loss.label_smoothing": RATE, "loss.reduction": Choice(C.MSE_REDUCTIONS), "loss.weight": ListOf(NONNEG, min_len=1, null="inverse class frequency"),
    # probes
    "probe.grad_norm.first_steps": NONNEG_INT, "probe.grad_norm.every": POS_INT, "probe.grad_norm.per_layer": BOOL,
    "probe.embeddings.epochs": ListOf(NONNEG_INT, min_len=1, null="start, middle and end"),
    "probe.embeddings.examples": Num(2, integer=True), "probe.embeddings.method": Choice(C.EMBEDDING_METHODS),
    "probe.sharpness.every": Num(1, integer=True, null="at the end only"), "probe.sharpness.examples": POS_INT,
    "probe.sharpness.iterations": POS_INT, "probe.sharpness.exact_max_params": NONNEG_INT,
    "probe.trajectory.every": POS_INT, "probe.weight_norm.examples": POS_INT,
}


def _resolved(cfg: DictConfig) -> dict:
    """The config as plain values; an interpolation that cannot be resolved is the user's error."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(key, OmegaConf.select(cfg, key, default="?", throw_on_resolution_failure=False),
                          f"cannot be resolved ({str(err).splitlines()[0]})",
                          "write a plain value, or an interpolation of a key that exists") from None


def _get(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _interpolated(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node and OmegaConf.is_interpolation(node, leaf)


@dataclass(frozen=True)
class Jobs:
    """joblib's n_jobs: N workers, or -1 one per core, -2 all cores but one, ...; 0 means nothing."""
    null: str | None = "one job at a time"

    def problem(self, value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "not an integer"
        return "runs no job" if value == 0 else None

    def fix(self) -> str:
        return "give N >= 1 workers, or -1 for one per core (-2: every core but one)"


JOBS = Jobs()

# Hydra's launchers' own knobs, by launcher class (hydra.launcher.*), checked by dlbench.launch.check_hydra
HYDRA_KNOBS: dict[str, dict[str, object]] = {
    "JoblibLauncher": {"n_jobs": JOBS},
    "FusedLauncher": {"max_group": POS_INT},
    "SlurmLauncher": {"cpus_per_task": Num(1, integer=True, null="submitit's default"), "tasks_per_node": POS_INT,
                      "nodes": POS_INT, "timeout_min": POS_INT, "mem_gb": Num(0, lo_open=True, null="the partition's default"),
                      "gpus_per_node": Num(0, integer=True, null="none asked for"), "signal_delay_s": NONNEG_INT,
                      "max_num_timeout": NONNEG_INT, "array_parallelism": POS_INT},
    "LocalLauncher": {"cpus_per_task": Num(1, integer=True, null="submitit's default"), "tasks_per_node": POS_INT,
                      "nodes": POS_INT, "timeout_min": POS_INT, "mem_gb": Num(0, lo_open=True, null="no limit"),
                      "gpus_per_node": Num(0, integer=True, null="none asked for")},
}


def check_knobs(node, rules: dict, prefix: str) -> None:
    """A node's knobs against their rules, as check() does the task's: the first out of its type or
    range is a ConfigError named `prefix + key`."""
    for key, rule in rules.items():
        value = node.get(key, _MISSING) if node is not None else _MISSING
        if value is _MISSING or (value is None and getattr(rule, "null", None)):
            continue
        why = "null is not allowed" if value is None else rule.problem(value)
        if why is not None:
            raise ConfigError(prefix + key, value, why, rule.fix())


def check(cfg: DictConfig) -> dict:
    """Raise a ConfigError for the first knob out of its type or range, or two knobs of one group
    that contradict each other. Returns the resolved config."""
    tree = _resolved(cfg)
    for key, rule in KNOBS.items():
        if _interpolated(cfg, key):
            continue  # its source (optimizer.lr: ${lr}) is checked under its own name
        value = _get(tree, key)
        if value is _MISSING or (value is None and rule.null):
            continue
        why = "null is not allowed" if value is None else rule.problem(value)
        if why is not None:
            raise ConfigError(key, value, why, rule.fix())
    for rule in RULES:
        rule(tree)
    return tree


# ------------------------------------------------------------------ rules between keys of one group

def _nesterov(tree: dict) -> None:
    opt = tree.get("optimizer") or {}
    if opt.get("nesterov") and (not opt.get("momentum") or opt.get("dampening", 0)):
        raise ConfigError("optimizer.nesterov", True, "Nesterov momentum needs a momentum and no dampening",
                          "set optimizer.momentum=0.9 too, or optimizer.nesterov=false")


def _heads(tree: dict) -> None:
    model = tree.get("model") or {}
    if "heads" in model and "dim" in model and model["dim"] % model["heads"]:
        raise ConfigError("model.heads", model["heads"], f"does not divide model.dim={model['dim']}",
                          "choose heads that divide the width, e.g. model.heads=4 with model.dim=128")


def _interval(tree: dict) -> None:
    interval = (tree.get("dataset") or {}).get("interval")
    if interval and not interval[0] < interval[1]:
        raise ConfigError("dataset.interval", interval, "is empty: its start is not below its end",
                          "give [low, high] with low < high, e.g. dataset.interval=[0,1]")


def _milestones(tree: dict) -> None:
    milestones = (tree.get("scheduler") or {}).get("milestones")
    if milestones and list(milestones) != sorted(set(milestones)):
        raise ConfigError("scheduler.milestones", milestones, "are not increasing",
                          "list the epochs in increasing order, e.g. scheduler.milestones=[5,8]")


def _boolean_function(tree: dict) -> None:
    data = tree.get("dataset") or {}
    if data.get("name") == "boolean" and data.get("function") not in C.BOOLEAN_FUNCTIONS:
        raise ConfigError("dataset.function", data.get("function"), "is not a two-input boolean function",
                          f"valid: {', '.join(C.BOOLEAN_FUNCTIONS)}")


def _imbalance(tree: dict) -> None:
    imbalance = (tree.get("dataset") or {}).get("imbalance")
    if imbalance is not None and (not isinstance(imbalance, dict) or set(imbalance) != {"classes", "keep"}):
        raise ConfigError("dataset.imbalance", imbalance, "needs exactly the keys classes and keep",
                          "write dataset.imbalance='{classes: [0, 1], keep: 0.1}'")


def _study(tree: dict) -> None:
    from dlbench import study_block

    study_block.check(tree.get("study"))


# what a choice needs installed that dlbench does not install itself: checked at the door, not after training
OPTIONAL_PACKAGES = {("probe.embeddings.method", "umap"): ("umap", "pip install umap-learn")}


def _optional_packages(tree: dict) -> None:
    import importlib.util

    for (key, value), (module, install) in OPTIONAL_PACKAGES.items():
        if _get(tree, key) == value and importlib.util.find_spec(module) is None:
            raise ConfigError(key, value, f"needs the {module} package, which is not installed",
                              f"{install}, or choose another: valid {', '.join(C.EMBEDDING_METHODS)}")


RULES = (_optional_packages, _nesterov, _heads, _interval, _milestones, _boolean_function, _imbalance, _study)
