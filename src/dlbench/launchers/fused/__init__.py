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

The package, each module importing only those above it:

- vectorised: the stacked parameters and the vectorised optimizers (SGD, Adam, AdamW);
- members: a member run, its log and its clock (whose work the launcher is doing), its random state;
- model: the group as one stacked model (forward, masks, a step of every member);
- grouping: which runs can train together;
- epoch: a group's training, epoch by epoch, and its batches;
- launcher: FusedLauncher, Hydra's launcher protocol.
"""
from dlbench.launchers.fused.launcher import FusedLauncher

__all__ = ["FusedLauncher"]
