"""dlbench: a config-driven runner for deep-learning experiments."""

__version__ = "0.1.0"
