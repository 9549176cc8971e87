"""run(cfg) -> summary: data -> model -> optimizer -> loop -> artifacts."""
import logging
import sys
import time
import traceback
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dlbench import checkpoint, runfolder, schema, sweep
from dlbench.artifacts import failed_at_start, plot_curves, write_json_atomic
from dlbench.callbacks import Callback, Callbacks
from dlbench.callbacks.divergence import DivergenceGuard
from dlbench.callbacks.early_stopping import StopAtTarget
from dlbench.callbacks.progress import EpochLog, ProgressBar, wants_progress_bar
from dlbench.callbacks.tensorboard import SampleImages, StepScalars
from dlbench.config import build
from dlbench.errors import Diverged, RunFolderError
from dlbench.losses import build_loss
from dlbench.optim import build_optimizer, build_schedule
from dlbench.precision import Precision, prepare
from dlbench.recorder import Recorder, TensorBoardSink, run_hparams
from dlbench.regularizers import build_regularizers
from dlbench.runtime import resolve_device, rng_state, seed_everything, set_rng_state
from dlbench.state import RunState
from dlbench.status import FINISHED, Status
from dlbench.threads import ShareThreads

log = logging.getLogger("dlbench")


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train one run into run_dir (Hydra's output dir under the CLI) and return its summary.
    A folder that holds an unfinished run with the same overrides is resumed from its last
    checkpoint; a finished one is left as it is and its summary returned; one that holds another
    run, or that another process trains in, is refused (RunFolderError) with nothing changed."""
    run_dir, overrides = _run_dir_and_overrides(run_dir)
    with runfolder.locked(run_dir):
        previous = runfolder.claim(run_dir, overrides, cfg.epochs)
        if previous is not None:
            # not in train.log: a run that does not proceed changes nothing in the folder
            print(f"dlbench: {run_dir} already holds a {previous['status']} run; not running it again", file=sys.stderr)
            return previous
        state, callbacks = start(cfg, run_dir, overrides)
        runfolder.write_hydra(run_dir, cfg)  # the run proceeds: the folder is its own
        return fit(state, callbacks)


def start(cfg: DictConfig, run_dir: Path, overrides: list[str], data_cache: dict | None = None
          ) -> tuple[RunState, Callbacks]:
    """Check the config, build the run and resume it from its checkpoint. Whatever raises on the
    way, the folder's summary.json says `failed` (or `interrupted`) with the error, and train.log
    has the traceback."""
    try:
        schema.check(cfg)
        schema.check_fit(cfg)
        if isinstance(cfg.trainer.threads, int):  # auto: ShareThreads sets them as the run goes
            torch.set_num_threads(cfg.trainer.threads)
        state, callbacks = build_state(cfg, run_dir, overrides, data_cache)
        checkpoint.resume(state, callbacks)
        return state, callbacks
    except RunFolderError:  # the folder holds another run: it is left as it was
        raise
    except KeyboardInterrupt:
        record_failure(run_dir, failed_at_start(cfg, overrides, None, runfolder.read_summary_or_none(run_dir),
                                                Status.INTERRUPTED))
        raise
    except Exception:
        record_failure(run_dir, failed_at_start(cfg, overrides, traceback.format_exc(),
                                                runfolder.read_summary_or_none(run_dir)))
        raise


def record_failure(run_dir: Path, summary: dict) -> None:
    """summary.json says how the run ended; the traceback goes to train.log (never to the terminal:
    the CLI prints one line for a user's error)."""
    if summary.get("error"):
        with suppress(OSError), open(run_dir / "train.log", "a") as f:
            f.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}][dlbench][ERROR] - run {summary['status']}:\n{summary['error'].rstrip()}\n")
    with suppress(OSError):  # a full disk keeps the last good summary
        write_json_atomic(run_dir / "summary.json", summary)


def build_state(cfg: DictConfig, run_dir: Path, overrides: list[str], data_cache: dict | None = None
                ) -> tuple[RunState, Callbacks]:
    """Everything a run holds, and the callbacks that watch it (in no order that matters)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build_data(cfg, device, data_cache)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(device)
    precision = Precision.build(cfg.trainer, device)
    model = prepare(model, cfg.trainer, precision)
    state, regularizer_callbacks = _training_state(cfg, run_dir, device, data, model)
    state.precision = precision
    state.overrides = overrides
    state.swept = sweep.swept_keys()  # read here, inside the run's Hydra job, whichever launcher trains it
    choices = dict(HydraConfig.get().runtime.choices) if state.swept else {}
    state.hparams = run_hparams(cfg, state.swept, choices)
    probes = [build(node) for node in (cfg.get("probe") or {}).values()]
    return state, Callbacks(regularizer_callbacks + probes + data.task.callbacks(cfg) + default_callbacks(cfg))


def build_data(cfg: DictConfig, device: torch.device, cache: dict | None):
    """The run's dataset; with a cache (runs trained together), one copy for runs of the same data
    and seed, and the random state left as building it left it, so the model starts as it would alone."""
    if cache is None:
        return build(cfg.dataset, seed=cfg.seed, device=device)
    key = (OmegaConf.to_yaml(cfg.dataset, resolve=True), cfg.seed, str(device))
    if key not in cache:
        cache[key] = (build(cfg.dataset, seed=cfg.seed, device=device), rng_state())
    data, after = cache[key]
    set_rng_state(after)
    return data


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
    if cfg.trainer.threads == "auto":
        callbacks.append(ShareThreads())
    if cfg.trainer.get("stop_at_target"):
        callbacks.append(StopAtTarget())
    if wants_progress_bar(cfg.trainer.progress):
        callbacks.append(ProgressBar(log_every=cfg.trainer.log_every))
    return callbacks


def begin_fit(state: RunState, callbacks: Callbacks) -> None:
    if state.cfg.logger.enabled:
        state.recorder.sinks.append(TensorBoardSink(state.run_dir, state.hparams, state.swept,
                                                    fresh=state.epoch == 0))
    callbacks.on_run_start(state)
    write_json_atomic(state.run_dir / "summary.json", state.summary())


def finish_fit(state: RunState, callbacks: Callbacks) -> None:
    """A run that trained to its end (or was stopped with its status set): its last word and files."""
    if state.status == Status.RUNNING:
        state.status = Status.DIVERGED if state.diverged else Status.COMPLETED
    state.ended = time.perf_counter()
    end_run(state, callbacks)


def fit(state: RunState, callbacks: Callbacks) -> dict:
    try:
        begin_fit(state, callbacks)
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
    """The callbacks' last word, then the run's files: a callback that fails here fails the run,
    and so does failing to write them (the summary then says so, if the disk lets it)."""
    try:
        callbacks.close(state)
    except Exception:
        state.status, state.error = Status.FAILED, traceback.format_exc()
        raise
    finally:
        try:
            summary = state.summary()
            if state.error:
                record_failure(state.run_dir, summary)
            else:
                write_json_atomic(state.run_dir / "summary.json", summary)
            if state.history:
                title = f"{state.cfg.model.name} on {state.cfg.dataset.name}  {' '.join(state.overrides)}"
                plot_curves(state.history, state.run_dir / "plots" / "curves.png", title=title)
            state.recorder.close(state.status)
        except Exception:
            state.status, state.error = Status.FAILED, traceback.format_exc()
            record_failure(state.run_dir, failed_at_start(state.cfg, state.overrides, state.error,
                                                          runfolder.read_summary_or_none(state.run_dir)))
            raise


def run_epoch(state: RunState, callbacks: Callbacks) -> None:
    """One epoch: the task trains and evaluates; the schedule, the clock, the callbacks and the
    records are the same for every task."""
    start, lr = begin_epoch(state, callbacks)
    result, train_seconds, examples = state.task.train_and_evaluate(state, lambda step: after_step(state, callbacks, step))
    end_epoch(state, callbacks, start, lr, result, train_seconds, examples)


def begin_epoch(state: RunState, callbacks: Callbacks) -> tuple[float, float]:
    """The epoch's clock and the rate it starts with."""
    start = time.perf_counter()
    callbacks.on_epoch_start(state)
    return start, state.optimizer.param_groups[0]["lr"]


def after_step(state: RunState, callbacks: Callbacks, step: dict) -> None:
    state.global_step += 1
    state.schedule.step_batch()
    callbacks.on_step(state, step)


def end_epoch(state: RunState, callbacks: Callbacks, start: float, lr: float, result: dict, train_seconds: float,
              examples: int) -> None:
    """The schedule, the callbacks, the records and the checkpoint of an epoch trained and evaluated."""
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
