"""checkpoints/last.pt after every epoch (everything needed to continue exactly) and best.pt."""
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dlbench.callbacks import Callback
from dlbench.runtime import rng_state, set_rng_state


def save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Checkpointer(Callback):
    def on_epoch_end(self, state, metrics: dict) -> None:
        folder = state.run_dir / "checkpoints"
        save_atomic(full_state(state), folder / "last.pt")
        if state.best.get("epoch") == state.epoch:
            save_atomic({"model": state.model.state_dict(), "epoch": state.epoch, "best": state.best,
                         "config": OmegaConf.to_container(state.cfg, resolve=True)}, folder / "best.pt")


def full_state(state) -> dict:
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "generator": state.generator.get_state(),
        "rng": rng_state(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best": state.best,
        "first_loss": state.first_loss,
        "train_seconds": state.train_seconds,
        "train_examples": state.train_examples,
        "wall_seconds": state.wall_seconds,
        "config": OmegaConf.to_container(state.cfg, resolve=True),
    }


def restore(state, ckpt: dict) -> None:
    """Load last.pt's contents into a freshly built run so it continues where it was taken."""
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.schedule.load_state_dict(ckpt["schedule"])
    state.generator.set_state(ckpt["generator"].cpu())
    set_rng_state(ckpt["rng"])
    for key in ("epoch", "global_step", "best", "first_loss", "train_seconds", "train_examples"):
        setattr(state, key, ckpt[key])
    state.wall_before = ckpt["wall_seconds"]
