"""The kinds of data a run can train on, one frozen object each (see base.Task). A dataset carries
its task; the run, `info`, `interpolate` and `report` ask it rather than compare names.

To add a task, add its object here (and, if it draws something at the end, its callback), then a
dataset builder that sets `task=` and a config under conf/dataset/.
"""
from dlbench.callbacks.classes import ClassReport
from dlbench.callbacks.figures import DecisionBoundary, FunctionPlot, Grokking
from dlbench.tasks.base import Task
from dlbench.tasks.lm import GeneratedText, LanguageModelTask, recurrent_forward

CLASSIFY = Task("classify", metric="acc", final="test/acc", default_loss="cross_entropy",
                report_extra=("epochs_to_target",), end_callbacks=lambda cfg: [ClassReport()])
REGRESS = Task("regress", metric="loss", final="test/loss", default_loss="mse", regression=True,
               end_callbacks=lambda cfg: [FunctionPlot()])
POINTS = Task("points", metric="acc", final="test/acc", default_loss="cross_entropy",  # 2-D toys
              report_extra=("epochs_to_target",), end_callbacks=lambda cfg: [ClassReport(), DecisionBoundary()])
# grokking's record is the step where training accuracy reaches 99%: the running mean over an epoch
# of 100 steps lags the model, so training is re-measured on every pair at the epoch's end
MODULAR = Task("modular", metric="acc", final="val/acc", default_loss="cross_entropy", tokens=True, eval_train=True,
               report_extra=("grokking/train_step", "grokking/val_step"),
               end_callbacks=lambda cfg: [Grokking(cfg.dataset.threshold)])
LM = LanguageModelTask("lm", metric="ppl", final="val/ppl", default_loss="cross_entropy", tokens=True,
                       report_extra=("tokens_per_second",), end_callbacks=lambda cfg: [GeneratedText()],
                       forward=recurrent_forward)

TASKS = {task.name: task for task in (CLASSIFY, REGRESS, POINTS, MODULAR, LM)}

__all__ = ["CLASSIFY", "LM", "MODULAR", "POINTS", "REGRESS", "TASKS", "Task"]
