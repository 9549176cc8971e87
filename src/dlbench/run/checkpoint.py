"""checkpoints/last.pt after every epoch (everything needed to continue exactly: the model,
optimizer, schedule, RNG states and every callback's state) and best.pt; and resuming from them."""
import logging
from pathlib import Path

import torch

from dlbench.artifacts import truncate_metrics
from dlbench.errors import CorruptFileError, RunFolderError, first_line
from dlbench.run.runfolder import tolerated
from dlbench.runtime import rng_state, set_rng_state
from dlbench.weights import save_atomic, save_best

log = logging.getLogger("dlbench")


def save(state, callbacks) -> None:
    folder = state.run_dir / "checkpoints"
    save_atomic(full_state(state, callbacks), folder / "last.pt")
    if state.best.get("epoch") == state.epoch:
        save_best(state)


def full_state(state, callbacks) -> dict:
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "precision": state.precision.state_dict(),  # the grad scaler's scale and growth count
        "generator": state.generator.get_state(),
        "rng": rng_state(),
        "callbacks": callbacks.state_dict(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best": state.best,
        "train_seconds": state.train_seconds,
        "train_examples": state.train_examples,
        "wall_seconds": state.wall_seconds,
        "config": state.config(),
    }


def resume(state, callbacks) -> None:
    """Continue from checkpoints/last.pt if the folder has one. metrics.jsonl keeps only the epochs
    the checkpoint covers: a kill between a metrics line and its checkpoint redoes that epoch."""
    path = state.run_dir / "checkpoints" / "last.pt"
    if path.exists():
        ckpt = load(path, state.device)
        _check_same_config(state, ckpt["config"])
        restore(state, callbacks, ckpt)
        log.info("resuming %s from its checkpoint after epoch %d", state.run_dir, state.epoch)
    state.history = truncate_metrics(state.run_dir, state.epoch)


def load(path: Path, device) -> dict:
    """A checkpoint dlbench wrote; one that cannot be read is named, with what to do about it."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)  # our own file: RNG states
    except Exception as err:
        why = first_line(err)
    else:
        if isinstance(ckpt, dict) and {"model", "epoch", "config"} <= set(ckpt):
            return ckpt
        why = "not a dlbench checkpoint"
    raise CorruptFileError(path, f"is not a readable checkpoint ({why})",
                           "delete it to train the run again from its start (metrics.jsonl is cut back to match)")


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _check_same_config(state, saved: dict) -> None:
    """Every knob that changes what the epochs so far computed must be as the checkpoint's;
    epochs (train on) and the tolerated ones (progress bar, logging, threads) may differ."""
    old, new = _flat(saved), _flat(state.config())
    changed = sorted(k for k in set(old) | set(new)
                     if not tolerated(k) and k != "epochs" and old.get(k) != new.get(k))
    if changed:
        shown = "; ".join(f"{k}: {old.get(k, '(none)')} there, {new.get(k, '(none)')} now" for k in changed[:5])
        raise RunFolderError(f"{state.run_dir} holds a run whose checkpoint has another config ({shown}); resume "
                             "it with its own overrides, or train into another folder")


def restore(state, callbacks, ckpt: dict) -> None:
    """Load last.pt's contents into a freshly built run so it continues where it was taken."""
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.schedule.load_state_dict(ckpt["schedule"])
    state.precision.load_state_dict(ckpt.get("precision", {}))
    state.generator.set_state(ckpt["generator"].cpu())
    set_rng_state(ckpt["rng"])
    callbacks.load_state_dict(ckpt.get("callbacks", {}))
    for key in ("epoch", "global_step", "best", "train_seconds", "train_examples"):
        setattr(state, key, ckpt[key])
    state.wall_before = ckpt["wall_seconds"]
