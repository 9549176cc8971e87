"""Device choice, seeding and the RNG state a checkpoint carries."""
import random

import numpy as np
import torch

from dlbench import choices
from dlbench.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name not in choices.DEVICES:
        raise ConfigError("device", name, "is not a device dlbench runs on", f"valid: {', '.join(choices.DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "torch sees no CUDA GPU on this machine", "use device=auto or device=cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "torch sees no Apple GPU (MPS) on this machine", "use device=auto or device=cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() saved; states loaded with map_location=<gpu> are moved back, as
    torch only takes its generator states as CPU byte tensors."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
