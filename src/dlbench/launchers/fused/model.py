"""A fused group as one model: each member's parameters views of a stack, the batched-matmul
forward of stacked MLPs (vmap for any other model), each member's dropout masks, and one step of
every member (loss, backward, clipping, vectorised optimizer)."""
import copy
import logging

import torch
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call, vmap

from dlbench.launchers.fused.members import Member
from dlbench.launchers.fused.vectorised import StackedParameters, VectorisedOptimizer

log = logging.getLogger("dlbench")


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

