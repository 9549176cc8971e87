"""One optimizer step for K runs' stacked parameters (K, ...), each run with its own hyper-
parameters, computed as torch's own SGD, Adam and AdamW compute them (their single-tensor code,
what a CPU run uses), so a run trained in a group follows the run trained alone to rounding.

Each run keeps its torch optimizer: its schedule sets the learning rate there, the step reads it,
and its checkpoint holds the run's own slices of the state (`export`), in torch's format, so a run
can resume alone or in a group.
"""
import torch

PER_MEMBER = ("lr", "weight_decay", "momentum", "dampening", "nesterov", "betas", "eps")


def _column(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


class VectorisedOptimizer:
    def __init__(self, optimizers: list[torch.optim.Optimizer], member_params: list[list[torch.nn.Parameter]],
                 stacked: list[torch.Tensor]):
        """optimizers[k] and member_params[k]: run k's optimizer and its parameters, in the order of
        `stacked` (each (K, *shape), whose [k] the run's parameter is a view of)."""
        self.optimizers, self.member_params, self.stacked = optimizers, member_params, stacked
        self.kind = type(optimizers[0]).__name__
        self.cached: tuple | None = None
        self.state = [self._gather(i, p) for i, p in enumerate(stacked)]
        if self.kind != "SGD":  # a run's parameters all take their steps together: one count per run
            self.steps = self.state[0]["step"].tolist()

    def _gather(self, i: int, stacked: torch.Tensor) -> dict:
        """Stacked optimizer state of parameter i from the runs' torch optimizers (a resumed run has some)."""
        states = [opt.state.get(params[i], {}) for opt, params in zip(self.optimizers, self.member_params)]
        if self.kind == "SGD":
            has = [s.get("momentum_buffer") is not None for s in states]
            buf = torch.stack([s["momentum_buffer"] if h else torch.zeros_like(stacked[0])
                               for s, h in zip(states, has)])
            return {"momentum_buffer": buf, "has": _column(has, stacked).bool()}
        zeros = torch.zeros_like(stacked[0])
        return {"step": torch.tensor([float(s.get("step", 0.0)) for s in states], dtype=torch.float64),
                "exp_avg": torch.stack([s.get("exp_avg", zeros) for s in states]),
                "exp_avg_sq": torch.stack([s.get("exp_avg_sq", zeros) for s in states])}

    def hyper(self) -> dict:
        """Each run's hyper-parameters now (its schedule may have changed lr), as (K,) columns."""
        groups = [opt.param_groups[0] for opt in self.optimizers]
        values = tuple(tuple(str(g.get(k)) for k in PER_MEMBER) for g in groups)
        if values != self.cached:
            like = self.stacked[0]
            self.cached, self.h = values, {key: [g.get(key) for g in groups] for key in PER_MEMBER}
            self.h["lr_t"] = _column(self.h["lr"], like)
            self.h["wd_t"] = _column(self.h["weight_decay"], like)
            if self.kind == "SGD":
                self.h["m_t"] = _column(self.h["momentum"], like)
                self.h["one_minus_d_t"] = _column([1 - d for d in self.h["dampening"]], like)
                self.h["nesterov_t"] = _column([bool(n) for n in self.h["nesterov"]], like).bool()
            else:
                self.h["one_minus_b1_t"] = _column([1 - b[0] for b in self.h["betas"]], like)
                self.h["b2_t"] = _column([b[1] for b in self.h["betas"]], like)
                self.h["one_minus_b2_t"] = _column([1 - b[1] for b in self.h["betas"]], like)
                self.h["eps_t"] = _column(self.h["eps"], like)
        return self.h

    @torch.no_grad()
    def step(self) -> None:
        h = self.hyper()
        if self.kind != "SGD":  # the bias corrections, in double as torch's scalars, once for every parameter
            self.steps = [s + 1 for s in self.steps]
            like = self.stacked[0]
            h["neg_step_size_t"] = _column([-lr / (1 - b[0] ** s) for lr, b, s in zip(h["lr"], h["betas"], self.steps)],
                                           like)
            h["bc2_sqrt_t"] = _column([(1 - b[1] ** s) ** 0.5 for b, s in zip(h["betas"], self.steps)], like)
        for param, state in zip(self.stacked, self.state):
            if param.grad is not None:
                (self._sgd if self.kind == "SGD" else self._adam)(param, param.grad, state, h)

    @staticmethod
    def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (like.dim() - 1)))

    def _sgd(self, p, g, state, h) -> None:
        col = lambda t: self._col(t, p)  # noqa: E731
        if any(h["weight_decay"]):
            g = g + col(h["wd_t"]) * p
        if any(h["momentum"]):
            buf, has = state["momentum_buffer"], col(state["has"])
            buf.copy_(torch.where(has, buf * col(h["m_t"]) + col(h["one_minus_d_t"]) * g, g))
            state["has"].fill_(True)
            g = torch.where(col(h["nesterov_t"]), g + col(h["m_t"]) * buf, buf)
        p.sub_(col(h["lr_t"]) * g)

    def _adam(self, p, g, state, h) -> None:
        col = lambda t: self._col(t, p)  # noqa: E731
        decoupled = self.kind == "AdamW"
        if any(h["weight_decay"]):
            if decoupled:  # 1 - lr * wd in double, as torch computes its scalar
                if "decay_t" not in h:
                    h["decay_t"] = _column([1 - lr * wd for lr, wd in zip(h["lr"], h["weight_decay"])], p)
                p.mul_(col(h["decay_t"]))
            else:
                g = g + col(h["wd_t"]) * p
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(g, col(h["one_minus_b1_t"]))
        exp_avg_sq.mul_(col(h["b2_t"])).addcmul_(g, g * col(h["one_minus_b2_t"]))
        denom = (exp_avg_sq.sqrt() / col(h["bc2_sqrt_t"])).add_(col(h["eps_t"]))
        p.addcdiv_(exp_avg * col(h["neg_step_size_t"]), denom)

    def export(self, k: int) -> None:
        """Run k's slices of the state into its torch optimizer (views: nothing is copied)."""
        opt, params = self.optimizers[k], self.member_params[k]
        for i, state in enumerate(self.state):
            if self.kind == "SGD":  # torch keeps no state for a run without momentum
                if opt.param_groups[0]["momentum"] != 0 and bool(state["has"][k]):
                    opt.state[params[i]] = {"momentum_buffer": state["momentum_buffer"][k]}
            elif self.steps[k] > 0:
                opt.state[params[i]] = {"step": torch.tensor(float(self.steps[k])),
                                        "exp_avg": state["exp_avg"][k], "exp_avg_sq": state["exp_avg_sq"][k]}


OPTIMIZERS = {torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW}
