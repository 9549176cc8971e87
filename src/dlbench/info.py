"""`dlbench info`: what a model costs before it trains. One forward pass of a single dummy example
of the dataset's shape gives, per layer, the output shape, parameters, FLOPs (torch.utils.flop_counter),
activation memory, and the receptive field and stride of every spatial layer.

Everything but the parameters scales linearly with the batch, so one example is measured (in eval
mode, so batch norm and dropout behave per example) and the memory is multiplied by the batch size.
Activation memory is the sum of every layer's output: an estimate of what training keeps for the
backward pass (in-place activations share memory, some ops save their inputs instead).
"""
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from dlbench import schema
from dlbench.config import build, compose_or_explain, sweep_points
from dlbench.errors import UserError
from dlbench.run.check import check_fit
from dlbench.data import DataShape, data_shape


@dataclass
class Layer:
    name: str               # module path in the model, e.g. "3.p2.1"
    kind: str               # class name
    shape: list[int]        # output shape, batch dimension included
    params: int             # own parameters (not its children's)
    flops: int              # per example
    activation_bytes: int   # of the output, for the whole batch
    receptive_field: int | None = None  # input pixels one output pixel sees (height; kernels are square)
    stride: int | None = None           # input pixels between neighbouring output pixels


# FLOPs of layers the counter may not see into: torch's fused GRU/LSTM kernels on the CPU
# (nn.RNN decomposes into matmuls the counter does see)
def recurrent_flops(module: nn.RNNBase, inputs, output) -> int:
    steps = inputs[0].shape[1]  # batch_first
    gates = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}[module.mode]
    h, d = module.hidden_size, 2 if module.bidirectional else 1
    widths = [module.input_size] + [h * d] * (module.num_layers - 1)
    return sum(2 * steps * gates * h * (w + h) * d for w in widths)  # x @ W_ih and h @ W_hh per step


OPAQUE_FLOPS = {nn.RNNBase: recurrent_flops}


def conv_rf(module, rf: int, jump: int, in_shape) -> tuple[int, int]:
    """A kernel k (dilation d) adds (k_eff - 1) input steps of the current stride; the stride multiplies."""
    pick = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731  (height)
    k, s = pick(module.kernel_size), pick(module.stride or module.kernel_size)
    d = pick(getattr(module, "dilation", 1))
    return rf + (d * (k - 1)) * jump, jump * s


def adaptive_rf(module, rf: int, jump: int, in_shape) -> tuple[int, int]:
    size = module.output_size[0] if isinstance(module.output_size, tuple) else module.output_size
    h = in_shape[-2]
    k, s = math.ceil(h / size), h // size  # the widest window the adaptive pool uses, and its step
    return rf + (k - 1) * jump, jump * s


RF_RULES = {nn.Conv2d: conv_rf, nn.MaxPool2d: conv_rf, nn.AvgPool2d: conv_rf,
            nn.AdaptiveAvgPool2d: adaptive_rf, nn.AdaptiveMaxPool2d: adaptive_rf}


class ReceptiveFields(TorchFunctionMode):
    """Follows (receptive field, stride) along every tensor of the forward pass: an op outside the
    convolutions and pools (add, cat, relu, ...) passes on the largest of its inputs', so branches
    and residual connections come out right; conv and pool modules apply their rule (RF_RULES) to
    their own output, overwriting what the op inside them passed on."""

    def __init__(self):
        super().__init__()
        self.fields: dict[int, tuple[int, int]] = {}  # id(tensor) -> (rf, stride)
        self.alive: list[torch.Tensor] = []           # keeps ids from being reused during the pass

    def mark(self, tensor: torch.Tensor, field: tuple[int, int]) -> None:
        self.fields[id(tensor)] = field
        self.alive.append(tensor)

    def get(self, tensor) -> tuple[int, int] | None:
        return self.fields.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        known = [f for f in map(self.get, _tensors((args, kwargs))) if f is not None]
        if known:
            field = (max(f[0] for f in known), max(f[1] for f in known))
            for t in _tensors(out):
                self.mark(t, field)
        return out


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


def dummy_input(shape: DataShape) -> torch.Tensor:
    return shape.task.example_input(shape.in_shape, shape.num_classes)


def _leaf_hook(name, layers, fields, batch_size):
    def hook(module, inputs, output):
        out = _tensors(output)[0]  # a recurrent layer returns (outputs, state): the outputs
        rule, field = _rule(RF_RULES, module), fields.get(inputs[0]) if inputs else None
        if rule and field:
            field = rule(module, *field, inputs[0].shape)
            fields.mark(out, field)
        opaque = _rule(OPAQUE_FLOPS, module)
        spatial = out.dim() == 4 and field is not None
        layers.append(Layer(name, type(module).__name__, [batch_size, *out.shape[1:]],
                            sum(p.numel() for p in module.parameters(recurse=False)),
                            opaque(module, inputs, output) if opaque else 0,
                            _output_bytes(module, output) * batch_size,
                            field[0] if spatial else None, field[1] if spatial else None))
    return hook


def _output_bytes(module: nn.Module, output) -> int:
    if getattr(module, "inplace", False):
        return 0  # ReLU(inplace=True) writes over its input: no new memory
    return sum(t.numel() * t.element_size() for t in _tensors(output))


def _rule(table: dict, module: nn.Module):
    return next((rule for cls, rule in table.items() if isinstance(module, cls)), None)


def layer_table(model: nn.Module, x: torch.Tensor, batch_size: int = 1) -> list[Layer]:
    """Every leaf module in the order it ran, measured on the single example x."""
    layers: list[Layer] = []
    fields = ReceptiveFields()
    root = type(model).__name__
    # leaves, and modules with parameters of their own (attention's in_proj, a transformer's positions)
    watched = {m: n for n, m in model.named_modules() if not list(m.children()) or _own_params(m)}
    hooks = [m.register_forward_hook(_leaf_hook(n or root, layers, fields, batch_size))
             for m, n in watched.items()]
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter, fields:
            if x.is_floating_point():
                fields.mark(x, (1, 1))  # an input pixel sees itself
            model(x)
    finally:
        for h in hooks:
            h.remove()
    _credit_unseen_params(model, layers)
    counts = counter.get_flop_counts()
    for layer in layers:
        key = root if layer.name == root else f"{root}.{layer.name}"
        layer.flops = sum(counts.get(key, {}).values()) or layer.flops  # the formula where the counter saw nothing
    for layer in layers:  # a module with children keeps only the FLOPs its measured children do not have
        module = model if layer.name == root else model.get_submodule(layer.name)
        if list(module.children()):
            inside = [other for other in layers if other is not layer
                      and (layer.name == root or other.name.startswith(layer.name + "."))]
            layer.flops = max(0, layer.flops - sum(other.flops for other in inside))
    return layers


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _credit_unseen_params(model: nn.Module, layers: list[Layer]) -> None:
    """A module whose parent uses its weights directly never runs itself (attention calls its
    out_proj's weight functionally): its parameters count in the nearest ancestor that ran."""
    rows = {layer.name: layer for layer in layers}
    rows[""] = rows.get(type(model).__name__)
    for name, module in model.named_modules():
        if name in rows or not _own_params(module):
            continue
        parts = name.split(".")
        ancestor = next((rows[".".join(parts[:k])] for k in range(len(parts) - 1, -1, -1)
                         if rows.get(".".join(parts[:k])) is not None), None)
        if ancestor is not None:
            ancestor.params += _own_params(module)


def describe(model: nn.Module, shape: DataShape, batch_size: int) -> dict:
    layers = layer_table(model, dummy_input(shape), batch_size)
    params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    flops = sum(layer.flops for layer in layers)
    activations = sum(layer.activation_bytes for layer in layers)
    return {
        "model": type(model).__name__, "input_shape": [batch_size, *shape.in_shape], "batch_size": batch_size,
        "params": params, "param_bytes": param_bytes, "activation_bytes": activations,
        "flops_per_example": flops, "layers": [asdict(layer) for layer in layers],
        "top_memory": _top(layers, "activation_bytes", activations),
        "top_flops": _top(layers, "flops", flops),
    }


def _top(layers: list[Layer], key: str, total: int, n: int = 3) -> list[dict]:
    ranked = sorted(layers, key=lambda layer: getattr(layer, key), reverse=True)[:n]
    return [{"name": layer.name, "kind": layer.kind, key: getattr(layer, key),
             "share": getattr(layer, key) / total if total else 0.0} for layer in ranked if getattr(layer, key)]


def info(cfg) -> dict:
    """`dlbench info <overrides>`: the configured model on a dummy input of the configured data's shape."""
    shape = data_shape(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model = build(cfg.model, in_shape=shape.in_shape, num_classes=shape.num_classes)
    return {"model_name": cfg.model.name, "dataset": cfg.dataset.name, **describe(model, shape, cfg.batch_size)}


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def render(report: dict) -> str:
    """The report as a table a person reads: one line per layer, then the totals and the leaders."""
    head = f"{'layer':<22} {'kind':<18} {'output':<22} {'params':>11} {'FLOPs/ex':>11} {'act/batch':>12} {'RF':>5} {'stride':>6}"
    lines = [f"{report['model_name']} ({report['model']}) on {report['dataset']}: input "
             f"{'x'.join(map(str, report['input_shape']))} (batch {report['batch_size']})", "", head, "-" * len(head)]
    for layer in report["layers"]:
        rf = "" if layer["receptive_field"] is None else str(layer["receptive_field"])
        stride = "" if layer["stride"] is None else str(layer["stride"])
        lines.append(f"{layer['name'][:22]:<22} {layer['kind'][:18]:<18} {'x'.join(map(str, layer['shape']))[:22]:<22} "
                     f"{layer['params']:>11,} {_si(layer['flops']):>11} {_mib(layer['activation_bytes']):>12} "
                     f"{rf:>5} {stride:>6}")
    lines += ["", f"parameters              {report['params']:,} ({_mib(report['param_bytes'])})",
              f"activation memory       {_mib(report['activation_bytes'])} for a batch of {report['batch_size']}",
              f"FLOPs per example       {_si(report['flops_per_example'], 'FLOP')} "
              f"(x{report['batch_size']}: {_si(report['flops_per_example'] * report['batch_size'], 'FLOP')} per batch"
              f" forward; backward is about twice that)"]
    for title, key, fmt in (("most activation memory", "top_memory", lambda v: _mib(v)),
                            ("most compute", "top_flops", lambda v: _si(v, "FLOP"))):
        value_key = "activation_bytes" if key == "top_memory" else "flops"
        lines.append(f"{title + ':':<24}" + ", ".join(
            f"{t['name']} {t['kind']} {fmt(t[value_key])} ({t['share']:.0%})" for t in report[key]))
    return "\n".join(lines)


def main(args: list[str]) -> int:
    overrides = [a for a in args if a not in ("--json", "--debug")]
    if len(sweep_points(overrides)) > 1 or "-m" in overrides:
        raise UserError(f"{' '.join(overrides)}: info describes one config; give one value per key")
    cfg = compose_or_explain(overrides)
    schema.check(cfg)
    check_fit(cfg)
    report = info(cfg)
    print(json.dumps(report, indent=2) if "--json" in args else render(report))
    return 0
