"""How a run can end: one enum that summary.json, the sweep's exit status and `report` all read."""
from enum import Enum


class Status(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    PRUNED = "pruned"            # a search's pruner stopped it early: a result (its curves so far), not a failure
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: resumable
    FAILED = "failed"            # an exception: the traceback is in summary.json's `error`

    def __str__(self) -> str:
        return self.value


# A folder holding one of these is not run again, and only these runs' end-of-run work runs the model
# (the per-class test pass, the figures of the fitted model, generated text): an interrupted run's
# weights are a part-finished epoch's, its resumed run does that work, and the grace a scheduler gives
# after SIGTERM (SLURM's KillWait: 30 s) goes to writing its files; a failed run's model may not run.
FINISHED = (Status.COMPLETED, Status.DIVERGED, Status.PRUNED)
