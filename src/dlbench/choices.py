"""Every choice a knob offers, defined once and without torch.

The schema checks a config against these before anything loads (dlbench.schema), and each module
that implements a choice keys its table by the same tuple through `implement`, which fails on
import when the table and the tuple differ: the check and the code cannot drift apart.
"""
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T", bound=Mapping)

DEVICES = ("auto", "cpu", "cuda", "mps")                          # runtime.resolve_device
PRECISIONS = (32, "bf16", 16)                                     # precision.DTYPES (keyed by str(choice))
PROGRESS = ("auto", True, False)                                  # callbacks.progress
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")   # models.layers
INITS = ("default", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
         "lecun_uniform")                                         # models.init
POOLS = ("max", "avg", "none")                                    # models.cnn
RECURRENT_IMPLS = ("torch", "scratch")                            # models.rnn
STEMS = ("auto", "imagenet", "small")                             # models.resnet ("auto": by input size)
CROP_FILLS = ("replicate", "reflect", "zero")                     # data.augment (augmentation.crop_fill)
SAMPLERS = ("oversample",)                                        # data.loader (null: a permutation)
NORMALIZE = ("standardize", "unit", "symmetric")                  # data.vision
PARTITIONS = ("sequential", "random")                             # data.text
FUNCTIONS_1D = ("sinc", "sign_sine")                              # data.synthetic (or an expression in x)
OPERATIONS = ("add", "sub", "mul", "div")                         # data.synthetic
PLAYGROUND_KINDS = ("circle", "xor", "gauss", "spiral")           # data.synthetic
FEATURES = ("x1", "x2", "x1sq", "x2sq", "x1x2", "sin_x1", "sin_x2")  # data.synthetic
BOOLEAN_FUNCTIONS = ("and", "or", "xor", "nand", "nor", "xnor")   # data.synthetic
EMBEDDING_METHODS = ("pca", "tsne", "umap")                       # callbacks.probes
MONITOR_MODES = ("min", "max")                                    # early stopping, reduce-on-plateau
MSE_REDUCTIONS = ("mean", "sum")                                  # losses.MeanSquaredError
L2_LAYERS = ("all", "hidden")                                     # regularizers.L2Penalty
SEARCH_SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc", "gp")  # search.study (hydra/sweeper=search)
SEARCH_PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "none")  # search.study
SEARCH_DIRECTIONS = ("maximize", "minimize")                      # search.study
ANALYSIS_KINDS = ("interpolate", "trajectory", "gallery", "overlay", "scatter", "per_class", "steps", "text",
                  "examples", "info")                             # study.analyses (a study's analyses: kind)


def implement(choices: tuple, table: T, extra: tuple = ()) -> T:
    """`table`, checked to implement exactly `choices` (less `extra`, the choices its caller
    handles itself, such as stem=auto): a table that misses or adds one fails here, on import."""
    want, have = [c for c in choices if c not in extra], list(table)
    if sorted(map(str, want)) != sorted(map(str, have)):
        missing = [str(c) for c in want if c not in have]
        unknown = [str(c) for c in have if c not in want]
        raise RuntimeError(f"a table of choices differs from dlbench.choices: missing {missing}, unknown {unknown}; "
                           "add the choice to both")
    return table
