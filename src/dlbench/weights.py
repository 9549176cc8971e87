"""Weight files written atomically: a torch object to a path, and checkpoints/best.pt (the model of
the run's best epoch so far), which both the checkpoint and early stopping write."""
from pathlib import Path

import torch

from dlbench.artifacts import atomic_path


def save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_best(state) -> None:
    """checkpoints/best.pt: the model as it is now, with state.best saying which epoch it is."""
    save_atomic({"model": state.model.state_dict(), "epoch": state.best.get("epoch"), "best": state.best,
                 "config": state.config()}, state.run_dir / "checkpoints" / "best.pt")
