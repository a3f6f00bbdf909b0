"""The task node of the plan, what the model's output means: every task kind
l2compile knows, one kind per module.

Importing this package registers them all; `TASKS` maps each spec `task` to
its class (see `l2compile.tasks.base` for what a kind states).
"""

from __future__ import annotations

import importlib

from l2compile.tasks.base import (
    LOSSES,
    METRIC_KINDS,
    METRICS,
    TASKS,
    Loss,
    Metric,
    Parity,
    Task,
    plan_task,
    register,
)

#: The task modules, in the order messages list their kinds. Each registers
#: its kind as it is imported.
MODULES = ("classification", "binary", "multilabel", "regression")
for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")

# The kinds' classes, for the tests and for data read without a plan.
from l2compile.tasks.binary import Binary  # noqa: E402
from l2compile.tasks.classification import Classification  # noqa: E402
from l2compile.tasks.multilabel import Multilabel  # noqa: E402
from l2compile.tasks.regression import Regression  # noqa: E402

__all__ = [
    "LOSSES",
    "METRICS",
    "METRIC_KINDS",
    "MODULES",
    "TASKS",
    "Binary",
    "Classification",
    "Loss",
    "Metric",
    "Multilabel",
    "Parity",
    "Regression",
    "Task",
    "plan_task",
    "register",
]
