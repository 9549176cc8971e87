"""run(cfg) -> summary: data -> model -> optimizer -> loop -> artifacts."""
import logging
import time
import traceback
from datetime import datetime
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dlbench import checkpoint
from dlbench.artifacts import failed_at_start, plot_curves, read_json, write_json_atomic
from dlbench.callbacks import Callback, Callbacks
from dlbench.callbacks.divergence import DivergenceGuard
from dlbench.callbacks.progress import EpochLog, ProgressBar, wants_progress_bar
from dlbench.callbacks.tensorboard import SampleImages, StepScalars
from dlbench.config import build
from dlbench.errors import Diverged
from dlbench.losses import build_loss
from dlbench.optim import build_optimizer, build_schedule
from dlbench.recorder import Recorder, TensorBoardSink
from dlbench.regularizers import build_regularizers
from dlbench.runtime import resolve_device, seed_everything
from dlbench.state import RunState
from dlbench.status import FINISHED, Status

log = logging.getLogger("dlbench")


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
    checkpoint.resume(state, callbacks)
    return fit(state, callbacks)


def build_state(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> tuple[RunState, Callbacks]:
    """Everything a run holds, and the callbacks that watch it (in no order that matters)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build(cfg.dataset, seed=cfg.seed, device=device)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(device)
    state, regularizer_callbacks = _training_state(cfg, run_dir, device, data, model)
    state.overrides = overrides
    probes = [build(node) for node in (cfg.get("probe") or {}).values()]
    return state, Callbacks(regularizer_callbacks + probes + data.task.callbacks(cfg) + default_callbacks(cfg))


def _training_state(cfg: DictConfig, run_dir: Path, device: torch.device, data, model) -> tuple[RunState, list]:
    """The optimizer, schedule, losses, regularizers and batches that train `model` on `data`."""
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    loss_fn = build_loss(cfg.loss, data)
    regs = build_regularizers(cfg, model, loss_fn, data)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = data.train_batches(cfg.batch_size, generator, transform=regs.transform)
    schedule = build_schedule(cfg.scheduler, optimizer, cfg.epochs, len(batches), cfg.warmup_steps,
                              monitor="val/loss" if data.val is not None else "train/loss")
    clip_grad = regs.clip_grad if regs.clip_grad is not None else data.clip_grad_norm  # grad_clip wins
    state = RunState(cfg=cfg, run_dir=run_dir, device=device, data=data, model=model, optimizer=optimizer,
                     schedule=schedule, loss_fn=loss_fn, train_loss=regs.train_loss, train_batches=batches,
                     generator=generator, recorder=Recorder(run_dir, cfg.epochs), clip_grad=clip_grad)
    return state, regs.callbacks


def default_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks: list[Callback] = [EpochLog(), DivergenceGuard(every=cfg.trainer.log_every,
                                                             factor=cfg.trainer.diverge_factor)]
    if cfg.logger.enabled:
        callbacks.append(StepScalars(cfg.trainer.log_every))
        if cfg.logger.sample_images:
            callbacks.append(SampleImages(cfg.logger.sample_images))
    if wants_progress_bar(cfg.trainer.progress):
        callbacks.append(ProgressBar(log_every=cfg.trainer.log_every))
    return callbacks


def fit(state: RunState, callbacks: Callbacks) -> dict:
    if state.cfg.logger.enabled:
        state.recorder.sinks.append(TensorBoardSink(state.run_dir, state.cfg, fresh=state.epoch == 0))
    try:
        callbacks.on_run_start(state)
        write_json_atomic(state.run_dir / "summary.json", state.summary())
        while state.epoch < state.cfg.epochs and not state.should_stop:
            run_epoch(state, callbacks)
        state.status = Status.DIVERGED if state.diverged else Status.COMPLETED
    except Diverged as stop:
        state.status, state.diverged = Status.DIVERGED, stop.info
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (the CLI turns it into this)
        state.status = Status.INTERRUPTED
        raise
    except Exception:
        state.status, state.error = Status.FAILED, traceback.format_exc()
        raise
    finally:
        state.ended = time.perf_counter()
        end_run(state, callbacks)
    return state.summary()


def end_run(state: RunState, callbacks: Callbacks) -> None:
    """The callbacks' last word, then the run's files: a callback that fails here fails the run."""
    try:
        callbacks.close(state)
    except Exception:
        state.status, state.error = Status.FAILED, traceback.format_exc()
        raise
    finally:
        write_json_atomic(state.run_dir / "summary.json", state.summary())
        if state.history:
            title = f"{state.cfg.model.name} on {state.cfg.dataset.name}  {' '.join(state.overrides)}"
            plot_curves(state.history, state.run_dir / "plots" / "curves.png", title=title)
        state.recorder.close(state.status)


def run_epoch(state: RunState, callbacks: Callbacks) -> None:
    """One epoch: the task trains and evaluates; the schedule, the clock, the callbacks and the
    records are the same for every task."""
    start = time.perf_counter()
    callbacks.on_epoch_start(state)
    lr = state.optimizer.param_groups[0]["lr"]  # the rate the epoch starts with

    def on_step(step: dict) -> None:
        state.global_step += 1
        state.schedule.step_batch()
        callbacks.on_step(state, step)

    result, train_seconds, examples = state.task.train_and_evaluate(state, on_step)
    metrics = {"epoch": state.epoch + 1, **result, "lr": lr}
    state.schedule.step_epoch(metrics)
    metrics["epoch_seconds"] = round(time.perf_counter() - start, 4)
    state.end_epoch(metrics, train_seconds, examples)
    callbacks.on_epoch_end(state, metrics)  # may add to metrics (probes) or ask to stop
    state.recorder.epoch(metrics)
    write_json_atomic(state.run_dir / "summary.json", state.summary())
    if state.cfg.trainer.checkpoint:
        checkpoint.save(state, callbacks)


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
