"""K runs' parameters stacked, and one optimizer step for all of them, computed as torch's own SGD,
Adam and AdamW compute it (their single-tensor code, what a CPU run uses), so a run trained in a
group follows the run trained alone to rounding.

Two layouts, for the two ways a step spends its time:

- small models pay per operation: Adam on a 3-layer net is some 60 small operations per run. Their
  parameters live in one flat (K, P) buffer (each stacked parameter a view of it, its gradient a
  view of a second buffer that backward adds into), and a step is about ten operations for all K
  runs together;
- large models pay per byte: each pass over the parameters costs far more than launching it. Each
  parameter is its own contiguous (K, *shape) tensor, backward's gradients are taken as they come
  (no zeroing, no adding into a buffer), and the update makes as few passes as it can.

Each run keeps its torch optimizer: its schedule sets the learning rate there, the step reads it,
and its checkpoint holds the run's own slices of the state (`export`), in torch's format, so a run
can resume alone or in a group.
"""
import warnings

import torch

# A stacked parameter of the flat layout is a (K, *shape) view of rows of the buffer, not dense, so
# torch's layout rule wants its gradient contiguous and warns that a strided one "may impair
# performance". Backward adds into the strided view in place all the same (check_grads makes
# sure), and that is the point.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

PER_MEMBER = ("lr", "weight_decay", "momentum", "dampening", "nesterov", "betas", "eps")
OPTIMIZERS = {torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW}
FLAT_ELEMENTS_PER_TENSOR = 50_000  # flat while K * P is at most this per parameter tensor: a pass over
# 50k floats (200 KB) costs about what launching an operation costs on a CPU (~20 us)


class StackedParameters:
    """K runs' parameters (each a list in one order, the same shapes), stacked: `stacked[i]` is
    parameter i of every run, (K, *shape), a leaf for autograd; each run's own parameters become
    views of it. `units` are the tensors the optimizer updates: the flat (K, P) buffer, or the
    stacked parameters themselves."""

    def __init__(self, member_params: list[list[torch.nn.Parameter]], flat: bool | None = None):
        first = member_params[0]
        self.shapes = [p.shape for p in first]
        self.sizes = [p.numel() for p in first]
        self.offsets = [0, *torch.tensor(self.sizes).cumsum(0).tolist()][:-1]
        k, total = len(member_params), sum(self.sizes)
        self.flat = flat if flat is not None else k * total <= FLAT_ELEMENTS_PER_TENSOR * len(first)
        with torch.no_grad():
            if self.flat:
                self.data = torch.stack([torch.cat([p.detach().reshape(-1) for p in params])
                                         for params in member_params])
                self.grad = torch.zeros_like(self.data)
                self.stacked = [self.slice(self.data, i).requires_grad_() for i in range(len(first))]
                for i, p in enumerate(self.stacked):
                    p.grad = self.slice(self.grad, i)  # backward adds into it in place: one zero_ clears all
                self.units = [self.data]
            else:
                self.stacked = [torch.stack([params[i].detach() for params in member_params]).requires_grad_()
                                for i in range(len(first))]
                self.units = [p.detach() for p in self.stacked]
        for r, params in enumerate(member_params):
            for i, p in enumerate(params):
                p.data = self.member(self.units, i, r)

    def slice(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """Parameter i's columns of a (K, P) buffer, as (K, *shape) (a view)."""
        a = self.offsets[i]
        return flat[:, a:a + self.sizes[i]].unflatten(1, self.shapes[i])

    def member(self, units: list[torch.Tensor], i: int, k: int) -> torch.Tensor:
        """Run k's parameter i (or its optimizer state) within tensors laid out as `units`: a view."""
        return self.slice(units[0], i)[k] if self.flat else units[i][k]

    def member_grads(self, k: int) -> list[torch.Tensor | None]:
        """Run k's gradients of the last backward (after any clipping), views in parameter order."""
        if self.flat:
            return [self.slice(self.grad, i)[k] for i in range(len(self.sizes))]
        return [p.grad[k] if p.grad is not None else None for p in self.stacked]

    def unit_grads(self) -> list[torch.Tensor | None]:
        return [self.grad] if self.flat else [p.grad for p in self.stacked]

    def zero_grad(self) -> None:
        if self.flat:
            self.grad.zero_()
        else:
            for p in self.stacked:
                p.grad = None

    def scale_grads(self, coef: torch.Tensor) -> None:
        """Each run's gradients times its coef (K,)."""
        for g in self.unit_grads():
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    def check_grads(self) -> None:
        """After a backward, in the flat layout: every gradient is still the view of `grad`."""
        if self.flat and any(p.grad is None or p.grad.data_ptr() != self.slice(self.grad, i).data_ptr()
                             for i, p in enumerate(self.stacked)):
            raise RuntimeError("fused: backward replaced a gradient instead of adding into the flat buffer")


class VectorisedOptimizer:
    def __init__(self, optimizers: list[torch.optim.Optimizer], member_params: list[list[torch.nn.Parameter]],
                 params: StackedParameters):
        """optimizers[k] and member_params[k]: run k's optimizer and its parameters, in the order of
        `params`'."""
        self.optimizers, self.member_params, self.params = optimizers, member_params, params
        self.kind = type(optimizers[0]).__name__
        self.cached: tuple | None = None
        self.like = params.units[0]
        states = [[opt.state.get(p, {}) for p in ps] for opt, ps in zip(self.optimizers, self.member_params)]
        if self.kind == "SGD":  # a run's parameters all take their steps together: one flag, one count per run
            self.state = {"momentum_buffer": self._gather(states, "momentum_buffer")}
            self.has = [bool(run) and run[0].get("momentum_buffer") is not None for run in states]
        else:
            self.state = {key: self._gather(states, key) for key in ("exp_avg", "exp_avg_sq")}
            self.steps = [float(run[0].get("step", 0.0)) if run and run[0] else 0.0 for run in states]

    def _gather(self, states: list[list[dict]], key: str) -> list[torch.Tensor]:
        """State `key` laid out as the parameters' units, from the runs' torch optimizers (a resumed
        run has some; zeros where a run has none)."""
        units = [torch.zeros_like(u) for u in self.params.units]
        for k, run in enumerate(states):
            for i, s in enumerate(run):
                if s.get(key) is not None:
                    self.params.member(units, i, k).copy_(s[key])
        return units

    def _column(self, values) -> torch.Tensor:
        """(K,): one value per run."""
        return torch.tensor(values, dtype=self.like.dtype, device=self.like.device)

    def hyper(self) -> dict:
        """Each run's hyper-parameters now (its schedule may have changed lr), as (K,) columns."""
        groups = [opt.param_groups[0] for opt in self.optimizers]
        values = tuple(tuple(str(g.get(k)) for k in PER_MEMBER) for g in groups)
        if values != self.cached:
            self.cached, h = values, {key: [g.get(key) for g in groups] for key in PER_MEMBER}
            h["neg_lr_t"] = self._column([-lr for lr in h["lr"]])
            h["wd_t"] = self._column(h["weight_decay"])
            if self.kind == "SGD":
                h["m_t"] = self._column(h["momentum"])
                h["one_minus_d_t"] = self._column([1 - d for d in h["dampening"]])
                h["nesterov_t"] = self._column([bool(n) for n in h["nesterov"]]).bool()
            else:
                h["one_minus_b1_t"] = self._column([1 - b[0] for b in h["betas"]])
                h["b2_t"] = self._column([b[1] for b in h["betas"]])
                h["one_minus_b2_t"] = self._column([1 - b[1] for b in h["betas"]])
                h["eps_t"] = self._column(h["eps"])
                h["decay_t"] = self._column([1 - lr * wd for lr, wd in zip(h["lr"], h["weight_decay"])])
                # AdamW's 1 - lr * wd, in double as torch computes its scalar
            self.h = h
        return self.h

    @torch.no_grad()
    def step(self) -> None:
        h = self.hyper()
        units, grads = self.params.units, self.params.unit_grads()
        if self.kind == "SGD":
            for i, (p, g) in enumerate(zip(units, grads)):
                if g is not None:
                    self._sgd(p, g, self.state["momentum_buffer"][i], h)
            if any(h["momentum"]):
                self.has = [True] * len(self.has)
            return
        self.steps = [s + 1 for s in self.steps]  # the bias corrections, in double as torch's scalars
        h["neg_step_size_t"] = self._column([-lr / (1 - b[0] ** s) for lr, b, s in zip(h["lr"], h["betas"], self.steps)])
        h["bc2_sqrt_t"] = self._column([(1 - b[1] ** s) ** 0.5 for b, s in zip(h["betas"], self.steps)])
        for i, (p, g) in enumerate(zip(units, grads)):
            if g is not None:
                self._adam(p, g, self.state["exp_avg"][i], self.state["exp_avg_sq"][i], h)

    @staticmethod
    def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (like.dim() - 1)))

    def _sgd(self, p, g, buf, h) -> None:
        col = lambda key: self._col(h[key], p)  # noqa: E731
        if any(h["weight_decay"]):
            g = torch.addcmul(g, p, col("wd_t"))  # grad + wd * param
        if any(h["momentum"]):
            if all(self.has):  # buf = momentum * buf + (1 - dampening) * grad
                buf.mul_(col("m_t")).addcmul_(g, col("one_minus_d_t"))
            elif not any(self.has):  # torch's first step: the buffer is the gradient
                buf.copy_(g)
            else:
                has = self._col(self._column(self.has).bool(), p)
                buf.copy_(torch.where(has, buf * col("m_t") + col("one_minus_d_t") * g, g))
            if all(h["nesterov"]):
                g = torch.addcmul(g, buf, col("m_t"))
            elif any(h["nesterov"]):
                g = torch.where(col("nesterov_t"), g + col("m_t") * buf, buf)
            else:
                g = buf
        p.addcmul_(g, col("neg_lr_t"))  # param - lr * grad, in one pass

    def _adam(self, p, g, exp_avg, exp_avg_sq, h) -> None:
        col = lambda key: self._col(h[key], p)  # noqa: E731
        if any(h["weight_decay"]):
            if self.kind == "AdamW":
                p.mul_(col("decay_t"))
            else:
                g = torch.addcmul(g, p, col("wd_t"))
        exp_avg.lerp_(g, col("one_minus_b1_t"))
        exp_avg_sq.mul_(col("b2_t")).addcmul_(g, g * col("one_minus_b2_t"))
        denom = (exp_avg_sq.sqrt() / col("bc2_sqrt_t")).add_(col("eps_t"))
        p.addcdiv_(exp_avg * col("neg_step_size_t"), denom)

    def export(self, k: int) -> None:
        """Run k's slices of the state into its torch optimizer (views: nothing is copied)."""
        opt, params, member = self.optimizers[k], self.member_params[k], self.params.member
        for i, p in enumerate(params):
            if self.kind == "SGD":  # torch keeps no state for a run without momentum
                if opt.param_groups[0]["momentum"] != 0 and self.has[k]:
                    opt.state[p] = {"momentum_buffer": member(self.state["momentum_buffer"], i, k)}
            elif self.steps[k] > 0:
                opt.state[p] = {"step": torch.tensor(float(self.steps[k])),
                                "exp_avg": member(self.state["exp_avg"], i, k),
                                "exp_avg_sq": member(self.state["exp_avg_sq"], i, k)}
