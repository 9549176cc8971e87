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

Runs that cannot be fused (another architecture, batch norm, augmentation, a loss penalty, a
recurrent task, probes, ...) run one at a time, as the basic launcher runs them; the launcher
says which and why.
"""
import copy
import logging
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import open_dict
from torch import nn
from torch.func import functional_call, vmap

from dlbench import runfolder
from dlbench.callbacks import Callbacks
from dlbench.errors import Diverged, RunFolderError, UserError
from dlbench.launchers.vectorised import OPTIMIZERS, VectorisedOptimizer
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
    if cfg.get("probe"):
        return "probes read each run's gradients and weights"
    if type(state.optimizer) not in OPTIMIZERS or len(state.optimizer.param_groups) != 1:
        return f"{type(state.optimizer).__name__} has no vectorised step (SGD, Adam, AdamW have)"
    return None


def group_key(state: RunState) -> tuple:
    """Runs with equal keys can share a step: the same parameter shapes, optimizer kind, batches
    per epoch and batch size, data shape and device."""
    shapes = tuple((name, tuple(p.shape)) for name, p in state.model.named_parameters())
    dropouts = tuple(name for name, m in state.model.named_modules() if isinstance(m, nn.Dropout))
    return (shapes, dropouts, type(state.optimizer), len(state.train_batches), state.train_batches.batch_size,
            tuple(state.data.in_shape), str(state.device), state.task.name, type(state.loss_fn))


class Group:
    """K members as one model: stacked parameters that each member's own parameters are views of."""

    def __init__(self, members: list[Member]):
        self.members = members
        model = members[0].state.model
        self.base = copy.deepcopy(model)
        for name, module in list(self.base.named_modules()):
            if isinstance(module, nn.Dropout):
                _set_module(self.base, name, MaskedDropout())
        self.names = [name for name, _ in model.named_parameters()]
        own = [dict(m.state.model.named_parameters()) for m in members]
        self.stacked = {n: torch.stack([p[n].detach() for p in own]).requires_grad_() for n in self.names}
        for k, params in enumerate(own):  # each member's parameters become views of the stack
            for n in self.names:
                params[n].data = self.stacked[n].detach()[k]
        self.optimizer = VectorisedOptimizer([m.state.optimizer for m in members],
                                             [[p[n] for n in self.names] for p in own],
                                             [self.stacked[n] for n in self.names])
        self.dropouts = [(name, [dict(m.state.model.named_modules())[name].p for m in members])
                         for name, module in model.named_modules() if isinstance(module, nn.Dropout)]
        self.mask_shapes: dict[tuple, list[tuple]] = {}
        self.clip = [m.state.clip_grad for m in members]
        self.loss = vmap(members[0].state.loss_fn) if same_losses(members) else None
        self.call = vmap(lambda p, x: functional_call(self.base, p, (x,)))
        self.base.train()  # only training runs through it: evaluation uses each member's own model
        for m in members:  # torch's schedulers warn unless they have seen their optimizer's step taken
            m.state.optimizer._opt_called = True

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

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step of every member on its batch (x: (K, B, ...), y: (K, B)): the (K,) losses, the
        (K, B, C) outputs and, when a member clips, the (K,) gradient norms before clipping."""
        out = self.call({**self.stacked, **self.masks(x[0])}, x)
        losses = (self.loss(out, y) if self.loss is not None else
                  torch.stack([m.state.loss_fn(o, t) for m, o, t in zip(self.members, out, y)]))
        for p in self.stacked.values():
            p.grad = None
        losses.sum().backward()
        norms = self.clip_gradients() if any(c is not None for c in self.clip) else None
        self.optimizer.step()
        return losses.detach(), out.detach(), norms

    @torch.no_grad()
    def clip_gradients(self) -> torch.Tensor:
        """clip_grad_norm_ of each member's own gradients, as torch computes it for one model."""
        grads = [p.grad for p in self.stacked.values()]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (K,)
        limit = torch.tensor([c if c is not None else float("inf") for c in self.clip], dtype=norms.dtype)
        coef = (limit / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
        return norms


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


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


def train_group(members: list[Member], logs: MemberLogs) -> None:
    """Train the members in lockstep until each has finished (its epochs, early stopping, divergence)."""
    for m in members:
        logs.current = m.logs
        begin_fit(m.state, m.callbacks)
    active = [m for m in members if not finished(m.state)]
    try:
        while active:
            group = Group(active)
            done = train_epoch(group, logs)
            for k, m in enumerate(active):
                if m in done or finished(m.state):
                    group.release(k)
                    logs.current = m.logs
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


def train_epoch(group: Group, logs: MemberLogs) -> set:
    """One epoch of every member; returns the members that diverged during it (they stop alone)."""
    members, diverged = group.members, set()
    clocks = []
    for m in members:
        logs.current = m.logs
        clocks.append(begin_epoch(m.state, m.callbacks))
    start = time.perf_counter()
    sums = [[] for _ in members]  # per member: (loss, correct, size, norm) device tensors
    for batches in zip(*(m.state.train_batches for m in members)):
        x = torch.stack([b[0] for b in batches])  # (K, B, ...)
        y = torch.stack([b[1] for b in batches])
        losses, out, norms = group.step(x, y)
        correct = (out.argmax(-1) == y).sum(1) if not members[0].state.task.regression else None
        for k, m in enumerate(members):
            if m in diverged:
                continue
            step = {"loss": losses[k]}
            if norms is not None and group.clip[k] is not None:
                step["grad/norm"] = norms[k]
            sums[k].append((losses[k], correct[k] if correct is not None else None, y.shape[1], step.get("grad/norm")))
            logs.current = m.logs
            try:
                after_step(m.state, m.callbacks, step)
            except Diverged as stop:
                m.state.status, m.state.diverged = Status.DIVERGED, stop.info
                diverged.add(m)
    seconds = time.perf_counter() - start
    for k, m in enumerate(members):
        if m in diverged:
            continue
        logs.current = m.logs
        group.optimizer.export(k)
        with member_rng(m):  # the checkpoint saves the random state this member draws from
            result, train_seconds, examples = m.state.task.after_training(m.state, epoch_means(sums[k]), seconds)
            end_epoch(m.state, m.callbacks, *clocks[k], result, train_seconds, examples)
    return diverged


def epoch_means(sums: list[tuple]) -> dict:
    """What train_one_epoch returns, from a member's per-step numbers."""
    losses, corrects, sizes, norms = zip(*sums)
    weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
    result = {"loss": float((torch.stack(losses) * weights).sum() / weights.sum())}
    if corrects[0] is not None:
        result["acc"] = float(torch.stack(corrects).sum() / weights.sum())
    if norms[0] is not None:
        result["grad/norm"] = float(torch.stack(norms).mean())
    return {**result, "examples": sum(sizes), "rows": sum(sizes)}


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


class FusedLauncher:
    """Hydra's launcher protocol: every run is prepared in its folder as `dlbench train` would
    (lock, claim, build, resume), then the fusable ones train in groups and the rest one at a time."""

    def __init__(self, max_group: int = 64) -> None:
        self.max_group = max_group

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.data_cache: dict = {}
        jobs = []
        for i, overrides in enumerate(job_overrides):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
            self.directions = str(sweep_config.hydra.sweeper.get("direction", "maximize"))
            jobs.append(run_job(hydra_context=self.hydra_context, task_function=self.prepare, config=sweep_config,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
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
            train_group(group, logs)
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
