"""run(cfg) -> summary: data -> model -> optimizer -> loop -> artifacts."""
import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dlbench.artifacts import build_summary, failed_at_start, read_json, truncate_metrics, write_json_atomic
from dlbench.callbacks import Callbacks, default_callbacks
from dlbench.callbacks.checkpoint import restore
from dlbench.callbacks.classes import ClassReport
from dlbench.callbacks.divergence import Diverged
from dlbench.callbacks.tasks import DecisionBoundary, FunctionPlot, Grokking
from dlbench.config import build
from dlbench.data import Batches
from dlbench.lm import lm_callbacks, lm_epoch
from dlbench.loop import evaluate, train_one_epoch
from dlbench.losses import build_loss
from dlbench.optim import build_optimizer, build_schedule
from dlbench.regularizers import build_regularizers
from dlbench.runtime import resolve_device, seed_everything
from dlbench.state import RunState

log = logging.getLogger("dlbench")
FINISHED = ("completed", "diverged")  # a run folder in one of these states is not run again
# top-level knobs a resumed run may change: they do not change what the epochs done so far computed
RESUME_MAY_CHANGE = ("epochs", "objective")


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train one run into run_dir (Hydra's output dir under the CLI) and return its summary.
    A folder that holds an unfinished run is resumed from its last checkpoint; a finished one is
    left as it is and its summary returned."""
    run_dir, overrides = _run_dir_and_overrides(run_dir)
    previous = read_json(run_dir / "summary.json")
    if previous and previous["status"] in FINISHED:
        log.info("%s already holds a %s run; not running it again", run_dir, previous["status"])
        return previous
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    try:
        state, callbacks = build_state(cfg, run_dir, overrides)
    except Exception:
        # a run that cannot even start is still one of its sweep's runs: its folder says why
        write_json_atomic(run_dir / "summary.json", failed_at_start(cfg, overrides, traceback.format_exc(), previous))
        raise
    _resume(state)
    return fit(state, callbacks)


def build_state(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> tuple[RunState, Callbacks]:
    """Everything a run holds, and the callbacks that watch it."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build(cfg.dataset, seed=cfg.seed, device=device)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(device)
    state, extra_callbacks = _training_state(cfg, run_dir, device, data, model)
    state.overrides = overrides
    probes = [build(node) for node in (cfg.get("probe") or {}).values()]
    # early stopping first (it restores weights before the end is reported), then probes (they add
    # to an epoch's metrics) and the task's own (they add to the summary) before the files and
    # TensorBoard record them
    task_callbacks = TASKS[data.task].callbacks(cfg)
    return state, Callbacks(extra_callbacks + probes + task_callbacks + default_callbacks(cfg))


def _training_state(cfg: DictConfig, run_dir: Path, device: torch.device, data, model) -> tuple[RunState, list]:
    """The optimizer, schedule, losses, regularizers and batches that train `model` on `data`."""
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    loss_fn = build_loss(cfg.loss, data)
    regs = build_regularizers(cfg.get("regularizer"), model, loss_fn)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = data.train_batches(cfg.batch_size, generator, transform=regs.transform)
    schedule = build_schedule(cfg.scheduler, optimizer, cfg.epochs, len(batches), cfg.warmup_steps,
                              monitor="val/loss" if data.val is not None else "train/loss")
    state = RunState(cfg=cfg, run_dir=run_dir, device=device, data=data, model=model, optimizer=optimizer,
                     schedule=schedule, loss_fn=loss_fn, train_loss=regs.train_loss, train_batches=batches,
                     generator=generator, clip_grad=regs.clip_grad)
    return state, regs.callbacks


def fit(state: RunState, callbacks: Callbacks) -> dict:
    callbacks.on_run_start(state)
    try:
        while state.epoch < state.cfg.epochs and not state.should_stop:
            run_epoch(state, callbacks)
        state.status = "completed"
    except Diverged as stop:
        state.status, state.diverged = "diverged", stop.info
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (the CLI turns it into this)
        state.status = "interrupted"
        raise
    except Exception:
        state.status, state.error = "failed", traceback.format_exc()
        raise
    finally:
        state.ended = time.perf_counter()
        callbacks.on_run_end(state)
    return build_summary(state)


def run_epoch(state: RunState, callbacks: Callbacks) -> None:
    """One epoch: the task trains and evaluates; the schedule, the clock and the callbacks are
    the same for every task."""
    start = time.perf_counter()
    callbacks.on_epoch_start(state)
    lr = state.optimizer.param_groups[0]["lr"]  # the rate the epoch starts with

    def on_step(step: dict) -> None:
        state.global_step += 1
        state.schedule.step_batch()
        callbacks.on_step(state, step)

    result, train_seconds, examples = TASKS[state.data.task].train_and_evaluate(state, on_step)
    metrics = {"epoch": state.epoch + 1, **result, "lr": lr}
    state.schedule.step_epoch(metrics)
    metrics["epoch_seconds"] = round(time.perf_counter() - start, 4)
    state.end_epoch(metrics, train_seconds, examples)
    callbacks.on_epoch_end(state, metrics)


def supervised_epoch(state: RunState, on_step, accuracy: bool = True) -> tuple[dict, float, int]:
    """Train one epoch and evaluate every split: (metrics, training seconds, examples trained on).
    accuracy=False for regression, whose metric is the loss alone."""
    start = time.perf_counter()
    train = train_one_epoch(state.model, state.train_batches, state.train_loss, state.optimizer, on_step=on_step,
                            clip_grad=state.clip_grad, accuracy=accuracy)
    seconds = time.perf_counter() - start
    metrics = {f"train/{k}": v for k, v in train.items() if k != "grad_norm"}
    if "grad_norm" in train:
        metrics["grad/norm"] = train["grad_norm"]  # mean norm before clipping
    for name, split in state.data.eval_splits().items():
        result = evaluate(state.model, Batches(split, state.cfg.trainer.eval_batch_size, shuffle=False),
                          state.loss_fn, accuracy)
        metrics.update({f"{name}/{k}": v for k, v in result.items()})
    return metrics, seconds, state.train_batches.num_examples


def modular_epoch(state: RunState, on_step) -> tuple[dict, float, int]:
    """As classification, but train/loss and train/acc are of the model at the epoch's end on every
    training pair: the running mean over an epoch of 100 steps lags the model, and grokking's
    record is the step where training accuracy reaches 99%."""
    metrics, seconds, examples = supervised_epoch(state, on_step)
    result = evaluate(state.model, Batches(state.data.train, state.cfg.trainer.eval_batch_size, shuffle=False),
                      state.loss_fn)
    metrics.update({"train/loss": result["loss"], "train/acc": result["acc"]})
    return metrics, seconds, examples


class Task(NamedTuple):
    train_and_evaluate: Callable[[RunState, Callable], tuple[dict, float, int]]
    # callbacks of the task's own, run before the default ones so that what they add to
    # state.extras reaches summary.json
    callbacks: Callable[[DictConfig], list] = lambda cfg: []


# how a run trains on each kind of data (the dataset's `task`) and what it draws at the end
TASKS = {
    "classify": Task(supervised_epoch, lambda cfg: [ClassReport()]),           # images: per-class reports
    "lm": Task(lm_epoch, lm_callbacks),                                          # characters: dlbench.lm
    "regress": Task(partial(supervised_epoch, accuracy=False), lambda cfg: [FunctionPlot()]),
    "points": Task(supervised_epoch, lambda cfg: [ClassReport(), DecisionBoundary()]),  # 2-D toys
    "modular": Task(modular_epoch, lambda cfg: [Grokking(cfg.dataset.threshold)]),
}


def _run_dir_and_overrides(run_dir: str | Path | None) -> tuple[Path, list[str]]:
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(run_dir or hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    if run_dir is None:
        run_dir = Path("outputs/runs") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log_to(run_dir / "train.log")  # Hydra does this for CLI runs
    return run_dir, []


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_dlbench_run_log", False)]:
        root.removeHandler(old)
        old.close()
    handler._dlbench_run_log = True
    root.addHandler(handler)
    log.setLevel(logging.INFO)


def _resume(state: RunState) -> None:
    """Continue from checkpoints/last.pt if the folder has one. metrics.jsonl keeps only the epochs
    the checkpoint covers: a kill between a metrics line and its checkpoint redoes that epoch."""
    path = state.run_dir / "checkpoints" / "last.pt"
    if path.exists():
        _restore_checkpoint(state, path)
    state.history = truncate_metrics(state.run_dir, state.epoch)


def _restore_checkpoint(state: RunState, path: Path) -> None:
    ckpt = torch.load(path, map_location=state.device, weights_only=False)  # our own file: RNG states
    saved = ckpt["config"]
    current = OmegaConf.to_container(state.cfg, resolve=True)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUME_MAY_CHANGE and saved.get(k) != current.get(k))
    if changed:
        raise RuntimeError(f"{state.run_dir} holds a run with a different config (differs in: "
                           f"{', '.join(changed)}); resume it with the same overrides or choose another folder")
    restore(state, ckpt)
    log.info("resuming %s from its checkpoint after epoch %d", state.run_dir, state.epoch)
