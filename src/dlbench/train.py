"""run(cfg) -> summary: data -> model -> optimizer -> loop -> artifacts."""
import logging
import time
import traceback
from datetime import datetime
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dlbench.artifacts import build_summary, failed_at_start, read_json, write_json_atomic
from dlbench.callbacks import Callbacks, default_callbacks
from dlbench.callbacks.checkpoint import restore
from dlbench.callbacks.divergence import Diverged
from dlbench.config import build
from dlbench.data import Batches
from dlbench.loop import evaluate, train_one_epoch
from dlbench.optim import build_optimizer, build_scheduler
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
        state = build_state(cfg, run_dir, overrides)
    except Exception:
        # a run that cannot even start is still one of its sweep's runs: its folder says why
        write_json_atomic(run_dir / "summary.json", failed_at_start(cfg, overrides, traceback.format_exc(), previous))
        raise
    _resume_if_checkpointed(state)
    return fit(state, Callbacks(default_callbacks(cfg)))


def build_state(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> RunState:
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build(cfg.dataset, seed=cfg.seed, device=device)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    return RunState(cfg=cfg, run_dir=run_dir, device=device, data=data, model=model, optimizer=optimizer,
                    scheduler=build_scheduler(cfg.scheduler, optimizer), loss_fn=instantiate(cfg.loss),
                    generator=torch.Generator().manual_seed(cfg.seed), overrides=overrides)


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
    cfg, data = state.cfg, state.data
    start = time.perf_counter()
    callbacks.on_epoch_start(state)

    def on_step(loss: torch.Tensor) -> None:
        state.global_step += 1
        callbacks.on_step(state, loss)

    batches = Batches(data.train, cfg.batch_size, shuffle=True, generator=state.generator)
    train = train_one_epoch(state.model, batches, state.loss_fn, state.optimizer, on_step=on_step)
    train_seconds = time.perf_counter() - start
    metrics = {"epoch": state.epoch + 1, "train/loss": train["loss"], "train/acc": train["acc"]}
    for name, split in data.eval_splits().items():
        result = evaluate(state.model, Batches(split, cfg.trainer.eval_batch_size, shuffle=False), state.loss_fn)
        metrics.update({f"{name}/loss": result["loss"], f"{name}/acc": result["acc"]})
    metrics["lr"] = state.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
    if state.scheduler is not None:
        state.scheduler.step()
    metrics["epoch_seconds"] = round(time.perf_counter() - start, 4)
    state.end_epoch(metrics, train_seconds, len(data.train))
    callbacks.on_epoch_end(state, metrics)


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


def _resume_if_checkpointed(state: RunState) -> None:
    path = state.run_dir / "checkpoints" / "last.pt"
    if not path.exists():
        return
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
