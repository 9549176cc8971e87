"""How a run can end: one enum that summary.json, the sweep's exit status and `report` all read."""
from enum import Enum


class Status(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: resumable
    FAILED = "failed"            # an exception: the traceback is in summary.json's `error`

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.COMPLETED, Status.DIVERGED)  # a folder holding one of these is not run again
# whose model can still be run at the end (to draw or sample from); a failed run's may not
USABLE_MODEL = (Status.COMPLETED, Status.INTERRUPTED, Status.DIVERGED)
