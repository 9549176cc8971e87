"""hydra/launcher=fused: the runs of a sweep that train the same shapes on the same data, trained
together as one vectorised model.

A small model's step is mostly per-operation overhead: eight function-fitting runs trained one
after another pay it eight times. Here each group's parameters are stacked (K, ...), one forward
runs every member at once (torch.func.functional_call under vmap), one backward gives every
member's gradients, and one vectorised optimizer step updates them all, with each member's own
learning rate, momentum, weight decay and schedule. Everything else is each member's own, as if it
trained alone: its folder, batch order, dropout masks (drawn from the random state it would have
had alone), callbacks (divergence, early stopping, logging, TensorBoard), evaluation, summary and
checkpoints. A member that diverges or stops leaves the group, which trains on without it.

Probes run on each member's own model (its parameters are views of the stack); the gradient-norm
probe reads the member's own slice of the stacked gradients. Runs that cannot be fused (batch norm,
augmentation, a loss penalty, a recurrent task, ...) and runs with no partner of the same
architecture and data run one at a time, as the basic launcher runs them; the launcher says which
and why.
"""
import copy
import logging
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import open_dict
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call, vmap

from dlbench import runfolder
from dlbench.callbacks import Callbacks
from dlbench.errors import Diverged, RunFolderError, UserError
from dlbench.launchers.vectorised import OPTIMIZERS, StackedParameters, VectorisedOptimizer
from dlbench.loop import plain_forward
from dlbench.state import RunState
from dlbench.status import Status
from dlbench.train import after_step, begin_epoch, begin_fit, end_epoch, finish_fit

log = logging.getLogger("dlbench")


@dataclass(eq=False)  # members are told apart by identity (sets of them)
class Member:
    """One run of a group: its state and callbacks as `dlbench train` builds them, and the random
    state its dropout draws from (torch's global one, alone)."""
    state: RunState
    callbacks: Callbacks
    rng: torch.Generator
    logs: logging.Handler
    job: JobReturn | None = None
    lock: ExitStack = field(default_factory=ExitStack)  # the run folder's lock, held until the run ends

    @property
    def name(self) -> str:
        return self.state.run_dir.name


class MaskedDropout(nn.Module):
    """Dropout with its mask given (as a buffer, one per member under vmap): the mask is drawn
    outside, from the member's own generator, exactly as F.dropout draws it alone."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x):
        return x * self.mask if self.training else x


ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity)


def mlp_plan(model: nn.Module) -> list[tuple[str, object]] | None:
    """A plain MLP (an nn.Sequential of Flatten, Linear, parameter-free elementwise activations and
    dropout) as the steps of a stacked forward by batched matmuls; None for any other model
    (it goes through vmap instead)."""
    if not isinstance(model, nn.Sequential):
        return None
    plan = []
    for name, m in model.named_children():
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            plan.append(("flatten", None))
        elif isinstance(m, nn.Linear):
            plan.append(("linear", name))
        elif isinstance(m, nn.Dropout):
            plan.append(("dropout", name))
        elif isinstance(m, ELEMENTWISE) and not any(True for _ in m.parameters()):
            plan.append(("elementwise", m))
        else:
            return None
    return plan


def batched_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """(K, B, in) inputs through (K, out, in) weights and (K, out) biases: one bmm for all K."""
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)) if b is not None else torch.bmm(h, w.transpose(1, 2))


MATMUL_PER_MEMBER = {"cpu"}  # devices where StackedLinear runs one matmul per member rather than bmm


class StackedLinear(torch.autograd.Function):
    """K linear layers at once, (K, B, in) inputs and (K, out, in) weights, for layers large enough
    that a step is arithmetic, with the weight gradient computed in the weights' own layout (bmm's
    backward gives it transposed, and handing a transposed gradient to a parameter copies it: 14% of
    the MLP 784-512-512-10's fused step). On a CPU, one matmul per member, each on all the cores:
    bmm splits its batch among the threads, and 3 members on 2 threads ran 1.3x slower per member.
    Elsewhere (a GPU), bmm: one kernel for all K. First-order only: the fused step is the one place
    it is used."""

    @staticmethod
    def forward(ctx, h, w, b):
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        if h.device.type not in MATMUL_PER_MEMBER:
            return batched_linear(h, w, b)
        out = h.new_empty(w.shape[0], h.shape[1], w.shape[1])
        for k in range(len(w)):
            if b is not None:
                torch.addmm(b[k], h[k], w[k].t(), out=out[k])
            else:
                torch.mm(h[k], w[k].t(), out=out[k])
        return out

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        grad_b = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if g.device.type not in MATMUL_PER_MEMBER:  # g^T h: (K, out, in), as the weight is laid out
            return (torch.bmm(g, w) if want_h else None), (torch.bmm(g.transpose(1, 2), h) if want_w else None), grad_b
        grad_h = torch.empty_like(h, memory_format=torch.contiguous_format) if want_h else None
        grad_w = torch.empty_like(w, memory_format=torch.contiguous_format) if want_w else None
        for k in range(len(w)):
            if grad_h is not None:
                torch.mm(g[k], w[k], out=grad_h[k])
            if grad_w is not None:
                torch.mm(g[k].t(), h[k], out=grad_w[k])
        return grad_h, grad_w, grad_b


def mlp_forward(plan, params: dict, masks: dict, x: torch.Tensor, shared: bool, own_layout: bool = False
                ) -> torch.Tensor:
    """K stacked MLPs on x: (K, B, ...) inputs, or (B, ...) shared by every member (the same batch
    order). Returns (K, B, outputs). Small layers (the flat layout: their gradients are added into
    one buffer, so nothing is copied) run as baddbmm, and a shared batch's first layer as one matmul
    with all K weight matrices side by side. Large ones, `own_layout`, run as StackedLinear: its
    Python-level backward costs less than the copies it saves, and on a CPU its matmuls are the
    ones each run makes alone."""
    h, k = x, next(iter(params.values())).shape[0]
    for kind, what in plan:
        if kind == "flatten":
            h = h.flatten(1 if shared else 2)
        elif kind == "elementwise":
            h = what(h)
        elif kind == "dropout":
            h = h * masks[f"{what}.mask"]  # (K, B, ...): a shared h becomes each member's own here
            shared = False
        else:
            w, b = params[f"{what}.weight"], params.get(f"{what}.bias")
            if own_layout:  # a shared batch too: one (B, in) @ (in, K * out) is slower than K (B, in) @ (in, out)
                h = StackedLinear.apply(h.expand(k, *h.shape) if shared else h, w, b)
                shared = False
            elif shared:  # (B, in) @ (in, K * out) -> (K, B, out)
                flat = w.reshape(-1, w.shape[-1]).t()
                h = (torch.addmm(b.reshape(-1), h, flat) if b is not None else h @ flat)
                h = h.view(h.shape[0], k, -1).transpose(0, 1)
                shared = False
            else:
                h = batched_linear(h, w, b)
    return h.expand(k, *h.shape) if shared else h


def why_not_fused(state: RunState) -> str | None:
    """Why this run cannot train in a group (None: it can)."""
    cfg = state.cfg
    if str(cfg.trainer.get("precision", 32)) != "32" or cfg.trainer.get("compile"):
        return "16-bit precision and compile train alone"
    if state.task.forward is not plain_forward:
        return f"a {state.task.name} task carries state between batches"
    if any(True for _ in state.model.buffers()):
        return "the model keeps running statistics (batch norm)"
    if state.train_loss is not state.loss_fn:
        return "the loss has a penalty (l2) on this run's weights"
    if getattr(state.train_batches, "transform", None) is not None:
        return "augmentation draws from the global random state"
    if type(state.optimizer) not in OPTIMIZERS or len(state.optimizer.param_groups) != 1:
        return f"{type(state.optimizer).__name__} has no vectorised step (SGD, Adam, AdamW have)"
    return None


def group_key(state: RunState) -> tuple:
    """Runs with equal keys can share a step: the same modules computing the same function of their
    parameters (of the same shapes), optimizer kind, examples per epoch and batch size (so the same
    batch sizes step by step), data shape and device."""
    shapes = tuple((name, tuple(p.shape)) for name, p in state.model.named_parameters())
    return (shapes, structure(state.model), type(state.optimizer), state.train_batches.num_examples,
            state.train_batches.batch_size, tuple(state.data.in_shape), str(state.device), state.task.name,
            type(state.loss_fn))


def structure(model: nn.Module) -> tuple:
    """What each module computes besides its parameters: its type and settings (a tanh is not a
    sigmoid; 4 heads are not 8), all but a dropout's rate, which each member has its own of."""
    def settings(module: nn.Module) -> tuple:
        plain = (bool, int, float, str, tuple, type(None))
        own = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"
               and isinstance(v, plain) and not (isinstance(module, nn.Dropout) and k == "p")}
        return tuple(sorted(own.items()))
    return tuple((name, type(m).__name__, settings(m)) for name, m in model.named_modules())


class Group:
    """K members as one model: stacked parameters that each member's own parameters are views of.
    A group is made again each epoch (members leave); `kept` holds what its epochs share: whether
    the batched-matmul forward passed its check against vmap's, the members' stacked data."""

    def __init__(self, members: list[Member], kept: dict | None = None):
        self.members = members
        model = members[0].state.model
        self.base = copy.deepcopy(model)
        for name, module in list(self.base.named_modules()):
            if isinstance(module, nn.Dropout):
                _set_module(self.base, name, MaskedDropout())
        self.names = [name for name, _ in model.named_parameters()]
        self.own = [[dict(m.state.model.named_parameters())[n] for n in self.names] for m in members]
        self.params = StackedParameters(self.own)  # each member's parameters become views of the stack
        self.grad_readers = [k for k, m in enumerate(members) if m.callbacks.reads_grads]  # probes
        self.stacked = dict(zip(self.names, self.params.stacked))
        self.optimizer = VectorisedOptimizer([m.state.optimizer for m in members], self.own, self.params)
        self.grads_checked = False
        self.dropouts = [(name, [dict(m.state.model.named_modules())[name].p for m in members])
                         for name, module in model.named_modules() if isinstance(module, nn.Dropout)]
        self.mask_shapes: dict[tuple, list[tuple]] = {}
        self.clip = [m.state.clip_grad for m in members]
        self.loss = stacked_loss(members[0].state.loss_fn) if same_losses(members) else None
        self.call = vmap(lambda p, x: functional_call(self.base, p, (x,)))
        self.kept = kept if kept is not None else {}
        self.plan = mlp_plan(model) if self.kept.get("plan", True) else None  # None: through vmap
        self.checked = self.plan is None or "plan" in self.kept
        self.base.train()  # only training runs through it: evaluation uses each member's own model
        for m in members:  # torch's schedulers warn unless they have seen their optimizer's step taken
            m.state.optimizer._opt_called = True

    def without(self, left: list[int]) -> "Group | None":
        """The members but those at `left`, which leave (their state their own again), as a new
        group (None if none is left); this one is spent."""
        for k in range(len(self.members)):
            self.optimizer.export(k)  # every member's state in its torch optimizer, for the new group
        for k in left:
            self.release(k)
        rest = [m for k, m in enumerate(self.members) if k not in left]
        return Group(rest, self.kept) if rest else None

    def release(self, k: int) -> None:
        """Member k leaves: its parameters and optimizer state get storage of their own."""
        self.optimizer.export(k)
        member = self.members[k]
        for p in member.state.model.parameters():
            p.data = p.data.clone()
        opt = member.state.optimizer
        for p, state in list(opt.state.items()):
            opt.state[p] = {key: v.clone() if torch.is_tensor(v) else v for key, v in state.items()}

    def shapes(self, x: torch.Tensor) -> list[tuple]:
        """The input shape of each dropout layer for a batch like x (measured once per batch size)."""
        if len(x) not in self.mask_shapes:
            seen = []
            hooks = [dict(self.members[0].state.model.named_modules())[name].register_forward_pre_hook(
                lambda mod, args: seen.append(tuple(args[0].shape))) for name, _ in self.dropouts]
            with torch.no_grad():
                self.members[0].state.model.eval()(x)
            for h in hooks:
                h.remove()
            self.mask_shapes[len(x)] = seen
        return self.mask_shapes[len(x)]

    def masks(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each member's dropout masks, drawn as F.dropout draws them alone: bernoulli(1 - p) / (1 - p)
        from the member's generator, layer after layer."""
        if not self.dropouts:
            return {}
        shapes = self.shapes(x)
        per_layer = [[] for _ in self.dropouts]
        for k, member in enumerate(self.members):
            for i, ((_, ps), shape) in enumerate(zip(self.dropouts, shapes)):
                keep = 1 - ps[k]
                per_layer[i].append(torch.empty(shape, device=x.device).bernoulli_(keep, generator=member.rng).div_(keep))
        return {f"{name}.mask": torch.stack(masks) for (name, _), masks in zip(self.dropouts, per_layer)}

    def forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Every member's outputs (K, B, C) for x: (K, B, ...), or (B, ...) when shared by all."""
        masks = self.masks(x if shared else x[0])
        if "members" not in self.kept:
            self.check_members(x, shared)
        if not self.checked:
            self.check_plan(x, shared, masks)
        if self.plan is not None:
            return mlp_forward(self.plan, self.stacked, masks, x, shared, own_layout=not self.params.flat)
        return self.call({**self.stacked, **masks}, x.expand(len(self.members), *x.shape) if shared else x)

    @torch.no_grad()
    def check_members(self, x: torch.Tensor, shared: bool) -> None:
        """Once: the group's model gives each member the outputs its own model gives (dropout off).
        `group_key` puts only such runs together; a model it cannot tell apart fails here, loudly,
        rather than training as another run's architecture."""
        self.kept["members"] = True
        x = x[:4] if shared else x[:, :4]
        self.base.eval()
        got = self.call(dict(self.stacked), x.expand(len(self.members), *x.shape) if shared else x)
        self.base.train()
        for k, member in enumerate(self.members):
            model, training = member.state.model, member.state.model.training
            want = model.eval()(x if shared else x[k])
            model.train(training)
            if not torch.allclose(got[k], want, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"fused: {member.name} computes another function than "
                                   f"{self.members[0].name} with parameters of the same shapes; train them "
                                   "with the basic launcher and report this model")

    @torch.no_grad()
    def check_plan(self, x: torch.Tensor, shared: bool, masks: dict) -> None:
        """The batched-matmul forward, once, against vmap's: where they differ (a model this module
        reads wrong), vmap it is."""
        self.checked = True
        want = self.call({**self.stacked, **masks}, x.expand(len(self.members), *x.shape) if shared else x)
        try:
            got = mlp_forward(self.plan, self.stacked, masks, x, shared, own_layout=not self.params.flat)
            same = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
        except RuntimeError:
            same = False
        if not same:
            log.debug("fused: the batched-matmul forward differs from vmap's for this model; using vmap")
            self.plan = None
        self.kept["plan"] = same

    def step(self, x: torch.Tensor, y: torch.Tensor, shared: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step of every member on its batch (x: (K, B, ...), y: (K, B, ...); or x: (B, ...) and
        y: (B, ...), one batch for all): the (K,) losses, the (K, B, C) outputs and, when a member
        clips, the (K,) gradient norms before clipping."""
        out = self.forward(x, shared)
        if shared:
            y = y.expand(len(self.members), *y.shape)
        losses = (self.loss(out, y) if self.loss is not None else
                  torch.stack([m.state.loss_fn(o, t) for m, o, t in zip(self.members, out, y)]))
        self.params.zero_grad()
        losses.sum().backward()
        if not self.grads_checked:
            self.params.check_grads()
            self.grads_checked = True
        norms = self.clip_gradients() if any(c is not None for c in self.clip) else None
        self.optimizer.step()
        for k in self.grad_readers:  # the gradients each run's step used, as its own parameters' .grad
            for p, g in zip(self.own[k], self.params.member_grads(k)):
                p.grad = g
        return losses.detach(), out.detach(), norms

    @torch.no_grad()
    def clip_gradients(self) -> torch.Tensor:
        """clip_grad_norm_ of each member's own gradients, as torch computes it for one model."""
        grads = [p.grad for p in self.stacked.values()]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (K,)
        limit = torch.tensor([c if c is not None else float("inf") for c in self.clip], dtype=norms.dtype)
        coef = (limit / (norms + 1e-6)).clamp(max=1.0)
        self.params.scale_grads(coef)
        return norms


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def stacked_loss(loss_fn: nn.Module):
    """The (K,) losses of (K, B, ...) outputs against (K, B, ...) targets: torch's plain
    cross-entropy and MSE computed directly, any other loss under vmap."""
    if type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.label_smoothing == 0 \
            and loss_fn.reduction == "mean":
        return lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none",
                                              ignore_index=loss_fn.ignore_index).view(y.shape).mean(1)
    if type(loss_fn) is nn.MSELoss and loss_fn.reduction == "mean":
        return lambda out, y: (out - y).square().flatten(1).mean(1)
    return vmap(loss_fn)


def same_losses(members: list[Member]) -> bool:
    """Whether one loss module can stand for every member's (then it runs once, vectorised)."""
    def signature(loss):
        settings = sorted((k, repr(v)) for k, v in vars(loss).items() if not k.startswith("_"))
        return type(loss), repr(settings), repr([(k, b.tolist()) for k, b in loss.named_buffers()])
    first = signature(members[0].state.loss_fn)
    return all(signature(m.state.loss_fn) == first for m in members[1:])


class MemberLogs(logging.Handler):
    """The run log of whichever member is speaking: each member's lines go to its own train.log."""

    def __init__(self):
        super().__init__()
        self.current: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.current is not None:
            self.current.handle(record)


class Ledger:
    """Whose work the launcher is doing. The runs of a sweep are prepared one after another, trained
    in groups (their shared steps) or alone, and evaluated, recorded and drawn one after another;
    each run's clock (wall_seconds, epoch_seconds and so seconds_to_target) counts what is done for
    it, its own work and its group's, and leaves out what is done only for other runs while it
    waits, as it would be timed alone."""

    def __init__(self) -> None:
        self.scope: list[list[Member]] = [[]]  # the outermost: every member prepared so far

    def add(self, member: Member) -> None:
        self.scope[0].append(member)

    @contextmanager
    def only(self, members: list[Member]):
        """Work done for these members alone: the others of the enclosing work, while their runs
        last, are credited its time."""
        outer, began = self.scope[-1], time.perf_counter()
        self.scope.append(members)
        try:
            yield
        finally:
            self.scope.pop()
            spent, inside = time.perf_counter() - began, set(map(id, members))
            for m in outer:
                if id(m) not in inside and m.state.ended is None:
                    m.state.elsewhere += spent


def train_group(members: list[Member], logs: MemberLogs, ledger: Ledger) -> None:
    """Train the members in lockstep until each has finished (its epochs, early stopping, divergence)."""
    for m in members:
        logs.current = m.logs
        with ledger.only([m]):
            begin_fit(m.state, m.callbacks)
    active = [m for m in members if not finished(m.state)]
    kept: dict = {}
    try:
        while active:
            group, diverged = train_epoch(Group(active, kept), logs, ledger)
            for k, m in enumerate(group.members if group is not None else []):
                if finished(m.state):
                    group.release(k)
            for m in active:
                if m in diverged or finished(m.state):
                    logs.current = m.logs
                    with ledger.only([m]):
                        finish_fit(m.state, m.callbacks)
            active = [m for m in active if m.state.status == Status.RUNNING]
    except BaseException as err:
        status = Status.INTERRUPTED if isinstance(err, KeyboardInterrupt) else Status.FAILED
        for m in active:
            if m.state.status == Status.RUNNING:
                m.state.status = status
                m.state.error = None if status == Status.INTERRUPTED else traceback.format_exc()
                logs.current = m.logs
                with suppress(Exception):
                    finish_fit(m.state, m.callbacks)
        raise


def finished(state: RunState) -> bool:
    return state.epoch >= state.cfg.epochs or state.should_stop or state.diverged is not None


STACK_BYTES = 64 * 2**20  # members' own training sets up to this size in all are stacked, for one gather a step


def group_batches(members: list[Member], kept: dict) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    """One epoch of the members' batches, each member's in the order it draws alone, as (x, y,
    shared): stacked (K, B, ...), or one (B, ...) batch when every member trains on one copy of the
    data in the same order (the same seed: a learning-rate sweep). A step's batches are one gather
    when the members share their data, or when their own copies are small enough to stack (a seed
    sweep of small data, stacked once in `kept`); otherwise each member gathers its own."""
    batches = [m.state.train_batches for m in members]
    if not all(b.draws for b in batches):
        yield from stacked(zip(*batches))
        return
    orders = [b.order() for b in batches]  # each from its member's generator, as iterating it alone draws
    first, splits = batches[0], [b.split for b in batches]
    same_size = all(b.batch_size == first.batch_size and b.transform is None for b in batches)
    if same_size and all(s is splits[0] for s in splits) and all(torch.equal(o, orders[0]) for o in orders[1:]):
        x, y, size, prepare = first.split.x, first.split.y, first.batch_size, first.split.prepare
        order = orders[0].to(x.device, non_blocking=True)
        for i in range(0, len(order), size):
            idx = order[i:i + size]
            yield prepare(x[idx]), y[idx], True
        return
    data = stacked_splits(splits, kept) if same_size else None
    if data is None:
        yield from stacked(zip(*(b.epoch(o) for b, o in zip(batches, orders))))
        return
    x, y = data
    order, rows, size = torch.stack(orders).to(x.device), torch.arange(len(members), device=x.device)[:, None], first.batch_size
    for i in range(0, order.shape[1], size):
        idx = order[:, i:i + size]
        yield x[rows, idx], y[rows, idx], False


def stacked(steps: Iterator[tuple]) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    """Each step's K (x, y) batches, one per member, stacked as (K, B, ...)."""
    for batches in steps:
        yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches]), False


def stacked_splits(splits: list, kept: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The members' training sets stacked (K, N, ...), made once for the group's life; None where
    they differ in shape, transform their batches, or are too large to copy."""
    key = ("splits", tuple(id(s) for s in splits))
    if key not in kept:
        for old in [k for k in kept if k[0] == "splits"]:  # a stack for members since gone
            del kept[old]
        first = splits[0]
        fits = all(s.transform is None and s.x.shape == first.x.shape and s.y.shape == first.y.shape
                   and s.x.dtype == first.x.dtype and s.y.dtype == first.y.dtype for s in splits)
        size = len(splits) * (first.x.numel() * first.x.element_size() + first.y.numel() * first.y.element_size())
        kept[key] = (torch.stack([s.x for s in splits]), torch.stack([s.y for s in splits])) \
            if fits and size <= STACK_BYTES else None
    return kept[key]


def train_epoch(group: Group, logs: MemberLogs, ledger: Ledger) -> tuple[Group, set]:
    """One epoch of every member. A member that diverges leaves at once, as it stops alone, and the
    others go on as a new group without it (no step is spent on it). Returns the group at the
    epoch's end and the members that diverged."""
    members, diverged = list(group.members), set()
    clocks = {}
    for m in members:
        logs.current = m.logs
        with ledger.only([m]):
            clocks[m] = (*begin_epoch(m.state, m.callbacks), m.state.elsewhere)
    start = time.perf_counter()
    classify = not members[0].state.task.regression
    steps = Steps(group.members)
    rows = None  # the live members' rows of a batch stacked for all of them, once some have left
    for x, y, shared in group_batches(members, group.kept):
        if rows is not None and not shared:
            x, y = x[rows], y[rows]
        loss, out, norm = group.step(x, y, shared)
        steps.add(loss, (out.argmax(-1) == y).sum(-1) if classify else None, out.shape[1], norm)
        left = []
        for k, m in enumerate(group.members):
            step = {"loss": loss[k]}
            if norm is not None and group.clip[k] is not None:
                step["grad/norm"] = norm[k]
            logs.current = m.logs
            try:
                after_step(m.state, m.callbacks, step)
            except Diverged as stop:
                m.state.status, m.state.diverged = Status.DIVERGED, stop.info
                left.append(k)
        if left:
            diverged.update(group.members[k] for k in left)
            group = group.without(left)
            if group is None:
                break
            steps.regroup(group.members)
            rows = torch.tensor([members.index(m) for m in group.members], device=loss.device)
    if group is not None:
        end_group_epoch(group, steps.means(), time.perf_counter() - start, clocks, logs, ledger)
    return group, diverged


def end_group_epoch(group: Group, means: dict, seconds: float, clocks: dict, logs: MemberLogs, ledger: Ledger) -> None:
    """Each member's epoch ends as it ends alone: its own state in its torch optimizer, its
    evaluation, records and checkpoint, on its clock (less the other members' beginnings and
    endings)."""
    for k, m in enumerate(group.members):
        logs.current = m.logs
        began, lr, elsewhere = clocks[m]
        group.optimizer.export(k)
        train = {key: value[k] if isinstance(value, list) else value for key, value in means.items()}
        if group.clip[k] is None:
            train.pop("grad/norm", None)
        with ledger.only([m]), member_rng(m):  # the checkpoint saves the random state this member draws from
            result, train_seconds, examples = m.state.task.after_training(m.state, train, seconds)
            end_epoch(m.state, m.callbacks, began + m.state.elsewhere - elsewhere, lr, result, train_seconds, examples)


class Steps:
    """The epoch's per-step numbers of the group's members, (K,) device tensors per step, kept in
    chunks of the same members (a member that leaves starts a new chunk); reduced once at the end."""

    def __init__(self, members: list[Member]):
        self.chunks: list[tuple[list[Member], dict[str, list]]] = []
        self.sizes: list[int] = []
        self.regroup(members)

    def regroup(self, members: list[Member]) -> None:
        self.chunks.append((list(members), {"loss": [], "acc": [], "grad/norm": []}))

    def add(self, loss, correct, size: int, norm) -> None:
        lists = self.chunks[-1][1]
        for key, value in (("loss", loss), ("acc", correct), ("grad/norm", norm)):
            if value is not None:
                lists[key].append(value)
        self.sizes.append(size)

    def columns(self, key: str, members: list[Member]) -> list[torch.Tensor | None]:
        """Each member's values of `key` over the epoch's steps, (steps,); each chunk stacked once."""
        stacks = [(chunk, torch.stack(lists[key])) for chunk, lists in self.chunks if lists[key]]
        return [torch.cat([s[:, chunk.index(m)] for chunk, s in stacks]) if stacks else None for m in members]

    def means(self) -> dict:
        """What train_one_epoch returns, for the members of the last chunk (per-member values as lists)."""
        members = self.chunks[-1][0]
        columns = {key: self.columns(key, members) for key in ("loss", "acc", "grad/norm")}
        weights = torch.tensor(self.sizes, dtype=columns["loss"][0].dtype, device=columns["loss"][0].device)
        result = {"loss": [float((c * weights).sum() / weights.sum()) for c in columns["loss"]]}
        if columns["acc"][0] is not None:
            result["acc"] = [float(c.sum() / weights.sum()) for c in columns["acc"]]
        if columns["grad/norm"][0] is not None:
            result["grad/norm"] = [float(c.mean()) for c in columns["grad/norm"]]
        return {**result, "examples": sum(self.sizes), "rows": sum(self.sizes)}


@contextmanager
def member_rng(member: Member):
    """torch's global random state set to the member's while its epoch ends (a checkpoint saves
    it; a probe that samples draws from it), and the member's taken back after."""
    cuda = member.rng.device.type == "cuda"
    saved = torch.cuda.get_rng_state() if cuda else torch.get_rng_state()
    (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(member.rng.get_state())
    try:
        yield
    finally:
        member.rng.set_state(torch.cuda.get_rng_state() if cuda else torch.get_rng_state())
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(saved)


def own_rng(device: torch.device) -> torch.Generator:
    """A generator holding torch's global random state now: what this run's dropout would draw from alone."""
    rng = torch.Generator(device=device)
    rng.set_state(torch.cuda.get_rng_state() if device.type == "cuda" else torch.get_rng_state())
    return rng


class KeptCompositions:
    """Hydra's sweeper composes every run's config to check it can (validate_batch_is_legal), and
    throws it away; a launcher then composes it again. Composing costs a good part of a second
    per run, more than a small model's whole training, so this launcher keeps the sweeper's and
    takes it (each once) instead of composing a second time."""

    def __init__(self, loader) -> None:
        self.compose, self.kept = loader.load_sweep_config, {}
        loader.load_sweep_config = self.composing  # the instance's, for the sweeper that shares it

    def composing(self, master_config, sweep_overrides):
        cfg = self.compose(master_config, sweep_overrides)
        self.kept[id(master_config), tuple(sweep_overrides)] = cfg
        return cfg

    def take(self, master_config, overrides: list[str]):
        kept = self.kept.pop((id(master_config), tuple(overrides)), None)
        return kept if kept is not None else self.compose(master_config, overrides)


class FusedLauncher:
    """Hydra's launcher protocol: every run is prepared in its folder as `dlbench train` would
    (lock, claim, build, resume), then the fusable ones train in groups and the rest one at a time."""

    def __init__(self, max_group: int = 64) -> None:
        self.max_group = max_group

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.composed = KeptCompositions(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.data_cache: dict = {}
        self.ledger = Ledger()
        jobs = []
        for i, overrides in enumerate(job_overrides):
            sweep_config = self.composed.take(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
            self.directions = str(sweep_config.hydra.sweeper.get("direction", "maximize"))
            with self.ledger.only([]):  # the runs prepared so far wait
                jobs.append(run_job(hydra_context=self.hydra_context, task_function=self.prepare, config=sweep_config,
                                    job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            if isinstance(jobs[-1].return_value, Member):
                self.ledger.add(jobs[-1].return_value)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        members = [m for m in (job.return_value for job in jobs) if isinstance(m, Member)]
        for member, job in zip(members, [j for j in jobs if isinstance(j.return_value, Member)]):
            member.job = job
        self.train(members)
        self.data_cache.clear()
        return jobs

    def prepare(self, cfg) -> "Member | float | None":
        """Inside the run's Hydra job: its folder claimed and its state built, or, where it does not
        proceed, what `dlbench train` returns for it (its objective, or None)."""
        from dlbench.launch import current, refused
        from dlbench.sweep import objective_value
        from dlbench.train import start

        hydra_cfg = HydraConfig.get()
        run_dir, overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
        current.append(run_dir)
        lock = ExitStack()
        try:
            lock.enter_context(runfolder.locked(run_dir))
            previous = runfolder.claim(run_dir, overrides, cfg.epochs)
            if previous is not None:
                lock.close()
                print(f"dlbench: {run_dir} already holds a {previous['status']} run; not running it again",
                      file=sys.stderr)
                return objective_value(previous, cfg.objective, self.directions)
            state, callbacks = start(cfg, run_dir, overrides, self.data_cache)
            runfolder.write_hydra(run_dir, cfg)
        except UserError as err:
            lock.close()
            print(f"dlbench: run {hydra_cfg.job.num} ({run_dir}): {err}", file=sys.stderr)
            refused.extend([run_dir] if isinstance(err, RunFolderError) else [])
            return None
        except Exception:
            lock.close()
            log.exception("run failed: %s", run_dir)
            return None
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        member = Member(state, callbacks, own_rng(state.device), handler)
        member.lock = lock
        return member

    def train(self, members: list[Member]) -> None:
        groups: dict[tuple, list[Member]] = {}
        alone = []
        for m in members:
            why = why_not_fused(m.state)
            if why is None:
                groups.setdefault(group_key(m.state), []).append(m)
            else:
                alone.append(m)
                print(f"dlbench: {m.name} trains alone: {why}", file=sys.stderr)
        batches = [g[i:i + self.max_group] for g in groups.values() for i in range(0, len(g), self.max_group)]
        for g in batches:
            if len(g) == 1:
                alone.append(g[0])
        batches = [g for g in batches if len(g) > 1]
        root = logging.getLogger()
        hydra_files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        for h in hydra_files:  # the last job's log: each member writes its own instead
            root.removeHandler(h)
        logs = MemberLogs()
        root.addHandler(logs)
        try:
            for i, group in enumerate(batches, 1):
                print(f"dlbench: fused group {i}/{len(batches)}: {len(group)} runs as one model", file=sys.stderr)
                self.run_group(group, logs)
            for m in alone:
                self.run_alone(m, logs)
        finally:
            root.removeHandler(logs)
            for m in members:
                m.logs.close()
                m.lock.close()

    def run_group(self, group: list[Member], logs: MemberLogs) -> None:
        try:
            with self.ledger.only(group):
                train_group(group, logs, self.ledger)
        except KeyboardInterrupt:
            raise
        except Exception:
            log.exception("fused group failed: %s", ", ".join(m.name for m in group))
        finally:
            logs.current = None
        for m in group:
            self.returned(m)

    def run_alone(self, m: Member, logs: MemberLogs) -> None:
        from dlbench.train import fit

        logs.current = m.logs
        try:
            with self.ledger.only([m]):
                fit(m.state, m.callbacks)
        except KeyboardInterrupt:
            raise
        except Exception:
            log.exception("run failed: %s", m.state.run_dir)
        finally:
            logs.current = None
        self.returned(m)

    def returned(self, m: Member) -> None:
        from dlbench.sweep import objective_value

        summary = m.state.summary() if m.state.status != Status.FAILED else None
        m.job.return_value = objective_value(summary, m.state.cfg.objective, self.directions)
        m.job.status = JobStatus.COMPLETED
