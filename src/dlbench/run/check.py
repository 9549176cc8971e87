"""What a config asks of torch but not of the data, checked before a run builds anything: the
device exists, the model takes the data's inputs and gives what the loss judges, each regularizer
has somewhere to act, and the metrics that `objective` and early stopping name are ones the run
writes. The model is built on torch's meta device (shapes only) and, when it is small, once on the
CPU for its example. Each failure is one ConfigError line, as dlbench.schema's are."""
import torch
from omegaconf import DictConfig

from dlbench.config import build
from dlbench.data import data_shape
from dlbench.errors import ConfigError, first_line
from dlbench.losses import check_loss
from dlbench.models import MODELS, create_model
from dlbench.models.registry import count_params
from dlbench.regularizers import build_regularizers
from dlbench.runtime import resolve_device

SUMMARY_NUMBERS = ("params", "wall_seconds", "epochs_completed", "epochs_to_target", "seconds_to_target",
                   "train_examples_per_second", "best/epoch")


def check_fit(cfg: DictConfig) -> None:
    """Raise a ConfigError for the first thing this run could not do with its data and model."""

    resolve_device(cfg.device)
    try:
        shape = data_shape(cfg.dataset)  # the generated datasets are built: their builders check their keys
    except (ValueError, TypeError) as err:
        raise ConfigError("dataset", cfg.dataset.name, _cause(err),
                          f"see conf/dataset/{cfg.dataset.name}.yaml for its keys") from None
    classes = (cfg.dataset.get("imbalance") or {}).get("classes") or []
    if any(k >= shape.num_classes for k in classes):
        raise ConfigError("dataset.imbalance.classes", list(classes), f"names a class beyond the {shape.num_classes} "
                          f"classes of dataset={cfg.dataset.name}", f"give class ids 0..{shape.num_classes - 1}")
    with torch.device("meta"):
        model = _model_on(cfg, shape)
        loss = build(cfg.loss)
        check_loss(loss, cfg.dataset.name, shape.task, shape.num_classes)
        build_regularizers(cfg, model, loss if isinstance(loss, torch.nn.Module) else torch.nn.CrossEntropyLoss(),
                           shape)
    _check_metric_names(cfg, shape)


# Up to this many parameters a model is also built on the CPU and given real examples: cheaper than
# running it on the meta device, whose first linear layer imports torch's Python decompositions
# (about 900 modules, 1.4 s on a 2-core machine) in every `dlbench train` process.
CPU_FORWARD_PARAMS = 20_000_000


def _model_on(cfg: DictConfig, shape):
    """The model built for the data's shape (on the caller's meta device), once one example of the
    data went through it: through a copy built on the CPU when the model is small, else on meta."""

    try:
        model = build(cfg.model, in_shape=shape.in_shape, num_classes=shape.num_classes).eval()
        if count_params(model) <= CPU_FORWARD_PARAMS:
            with torch.device("cpu"), torch.random.fork_rng():  # the run's random state stays as it was
                _one_forward(build(cfg.model, in_shape=shape.in_shape, num_classes=shape.num_classes).eval(), shape)
        else:
            _one_forward(model, shape)
        return model
    except ConfigError:
        raise
    except Exception as err:
        inputs = "x".join(map(str, shape.in_shape))
        fits = ", ".join(models_that_fit(shape)) or "none"
        raise ConfigError("model", cfg.model.name, f"does not fit dataset={cfg.dataset.name} "
                          f"({inputs} inputs, {shape.num_classes} outputs): {_cause(err)}",
                          f"models that fit it: {fits}") from None


def _one_forward(model, shape) -> None:
    """Two examples through the model the way the task feeds them; the output must have one
    column per class (or target)."""
    x = torch.cat([shape.task.example_input(shape.in_shape, shape.num_classes)] * 2)
    out, _, _ = shape.task.forward(model, x, shape.task.example_target(x, shape.num_classes), None)
    if out.shape[-1] != shape.num_classes:
        raise ValueError(f"it gives {out.shape[-1]} outputs per example")


def models_that_fit(shape) -> list[str]:
    """The registered models that, with their builders' defaults, take this data."""

    names = []
    with torch.device("meta"):
        for name in sorted(MODELS):
            try:
                _one_forward(create_model(name, in_shape=shape.in_shape, num_classes=shape.num_classes).eval(), shape)
                names.append(name)
            except Exception:
                continue
    return names


def _cause(err: Exception) -> str:

    cause = err.__cause__ if err.__cause__ is not None and "InstantiationException" in type(err).__name__ else err
    return first_line(cause, 300).rstrip(".")


def _check_metric_names(cfg: DictConfig, shape) -> None:
    epoch_metrics = shape.task.metric_names(shape.splits)
    monitor = cfg.get("regularizer", {}).get("early_stopping", {}) or {}
    if monitor and monitor.get("monitor") not in epoch_metrics:
        raise ConfigError("regularizer.early_stopping.monitor", monitor.get("monitor"),
                          f"is not a metric of a run on dataset={cfg.dataset.name}", f"valid: {', '.join(epoch_metrics)}")
    objective = cfg.get("objective")
    known = list(dict.fromkeys([*epoch_metrics, f"best/{shape.monitor}", *shape.task.report_extra, *SUMMARY_NUMBERS]))
    if objective is not None and objective not in known:
        raise ConfigError("objective", objective, f"is not a number the summary of a run on dataset={cfg.dataset.name} "
                          "holds", f"valid: {', '.join(known)}")
