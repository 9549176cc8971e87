"""Datasets as in-memory tensors on the run's device, and the batches cut from them.

A *source* (registered by name) returns the raw uint8 images of the train and test sets;
`vision.build_dataset` splits off validation, applies `limit`, converts and normalises once on the
device. `synthetic` generates data from a seed and `text` reads a corpus. Each dataset names its
task (dlbench.tasks): how a run trains on it and what it is judged by.
"""
from dlbench.data import colour, folder, synthetic, text, vision  # registers the sources and their shapes
from dlbench.data.base import Dataset, DataShape, RawData, Split, corrupt_labels, make_imbalanced
from dlbench.data.loader import SAMPLERS, Batches, Oversample
from dlbench.data.registry import SHAPES, SOURCES, data_shape, load_source, register_source
from dlbench.data.vision import build_dataset
from dlbench.errors import DataNotFoundError

__all__ = ["Batches", "Dataset", "DataNotFoundError", "DataShape", "Oversample", "RawData", "SAMPLERS", "Split",
           "SHAPES", "SOURCES", "build_dataset", "corrupt_labels", "data_shape", "load_source", "make_imbalanced", "register_source",
           "colour", "folder", "synthetic", "text", "vision"]
