"""The model zoo: one file per family, each registering its builders (registry.py)."""
from dlbench.models import classic, cnn, googlenet, mlp, resnet, rnn, transformer  # registers the models
from dlbench.models.registry import MODELS, count_params, create_model, register_model

__all__ = ["MODELS", "classic", "cnn", "count_params", "create_model", "googlenet", "mlp", "register_model", "resnet",
           "rnn", "transformer"]
