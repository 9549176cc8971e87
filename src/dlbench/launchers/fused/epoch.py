"""A group's training: its members in lockstep, epoch by epoch, each member's epoch beginning and
ending as it does alone, members leaving as they diverge or stop; the epoch's batches (shared,
stacked or gathered per member) and its per-step numbers."""
import time
from contextlib import suppress
from typing import Iterator

import torch

from dlbench.errors import Diverged
from dlbench.launchers.fused.members import Ledger, Member, MemberLogs, member_rng
from dlbench.launchers.fused.model import Group
from dlbench.status import Status


def train_group(members: list[Member], logs: MemberLogs, ledger: Ledger) -> None:
    """Train the members in lockstep until each is done (its epochs, early stopping, divergence):
    each run's phases as it trains alone (dlbench.run.lifecycle), its steps taken with the group's."""
    for m in members:
        logs.current = m.logs
        with ledger.only([m]):
            m.run.begin()
    active = [m for m in members if not m.run.done]
    kept: dict = {}
    try:
        while active:
            group, diverged = train_epoch(Group(active, kept), logs, ledger)
            for k, m in enumerate(group.members if group is not None else []):
                if m.run.done:
                    group.release(k)
            for m in active:
                if m in diverged or m.run.done:
                    logs.current = m.logs
                    with ledger.only([m]):
                        m.run.finish()
            active = [m for m in active if m.state.status == Status.RUNNING]
    except BaseException as err:
        for m in active:
            if m.state.status == Status.RUNNING:
                m.run.stopped_by(err)
                logs.current = m.logs
                with suppress(Exception):
                    m.run.finish(trained=False)
        raise


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
            clocks[m] = m.run.begin_epoch()
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
                m.run.after_step(step)
            except Diverged as stop:
                m.run.stopped_by(stop)
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
        group.optimizer.export(k)
        train = {key: value[k] if isinstance(value, list) else value for key, value in means.items()}
        if group.clip[k] is None:
            train.pop("grad/norm", None)
        with ledger.only([m]), member_rng(m):  # the checkpoint saves the random state this member draws from
            result, train_seconds, examples = m.state.task.after_training(m.state, train, seconds)
            m.run.end_epoch(clocks[m], result, train_seconds, examples)


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

