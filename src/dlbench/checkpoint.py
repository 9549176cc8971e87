"""checkpoints/last.pt after every epoch (everything needed to continue exactly: the model,
optimizer, schedule, RNG states and every callback's state) and best.pt; and resuming from them."""
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dlbench.artifacts import atomic_path, truncate_metrics
from dlbench.runtime import rng_state, set_rng_state

log = logging.getLogger("dlbench")
# top-level knobs a resumed run may change: they do not change what the epochs done so far computed
RESUME_MAY_CHANGE = ("epochs", "objective")


def save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save(state, callbacks) -> None:
    folder = state.run_dir / "checkpoints"
    save_atomic(full_state(state, callbacks), folder / "last.pt")
    if state.best.get("epoch") == state.epoch:
        save_atomic({"model": state.model.state_dict(), "epoch": state.epoch, "best": state.best,
                     "config": OmegaConf.to_container(state.cfg, resolve=True)}, folder / "best.pt")


def full_state(state, callbacks) -> dict:
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "generator": state.generator.get_state(),
        "rng": rng_state(),
        "callbacks": callbacks.state_dict(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best": state.best,
        "train_seconds": state.train_seconds,
        "train_examples": state.train_examples,
        "wall_seconds": state.wall_seconds,
        "config": OmegaConf.to_container(state.cfg, resolve=True),
    }


def resume(state, callbacks) -> None:
    """Continue from checkpoints/last.pt if the folder has one. metrics.jsonl keeps only the epochs
    the checkpoint covers: a kill between a metrics line and its checkpoint redoes that epoch."""
    path = state.run_dir / "checkpoints" / "last.pt"
    if path.exists():
        ckpt = torch.load(path, map_location=state.device, weights_only=False)  # our own file: RNG states
        _check_same_config(state, ckpt["config"])
        restore(state, callbacks, ckpt)
        log.info("resuming %s from its checkpoint after epoch %d", state.run_dir, state.epoch)
    state.history = truncate_metrics(state.run_dir, state.epoch)


def _check_same_config(state, saved: dict) -> None:
    current = OmegaConf.to_container(state.cfg, resolve=True)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUME_MAY_CHANGE and saved.get(k) != current.get(k))
    if changed:
        raise RuntimeError(f"{state.run_dir} holds a run with a different config (differs in: "
                           f"{', '.join(changed)}); resume it with the same overrides or choose another folder")


def restore(state, callbacks, ckpt: dict) -> None:
    """Load last.pt's contents into a freshly built run so it continues where it was taken."""
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.schedule.load_state_dict(ckpt["schedule"])
    state.generator.set_state(ckpt["generator"].cpu())
    set_rng_state(ckpt["rng"])
    callbacks.load_state_dict(ckpt.get("callbacks", {}))
    for key in ("epoch", "global_step", "best", "train_seconds", "train_examples"):
        setattr(state, key, ckpt[key])
    state.wall_before = ckpt["wall_seconds"]
