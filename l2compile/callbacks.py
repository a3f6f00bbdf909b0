"""The Keras callbacks a build trains with: the progress bar, the L2 penalty
at each epoch's end, and the guard against a diverging loss. (The one that
saves each epoch for `--resume` is `l2compile.resume.saver`.)"""

from __future__ import annotations

from typing import Any

import numpy as np

from l2compile import interrupts, measure
from l2compile.nodes import ModelPlan


def progress_bar(keras: Any) -> Any:
    """Keras' progress bar, with a count that stops at the epoch's steps, and
    a check for an interrupt that TensorFlow swallowed.

    With steps_per_execution, Keras reports the last step of each execution,
    which for the last (short) one runs past the epoch: `128/94`.
    """

    class ProgressBar(keras.callbacks.ProgbarLogger):  # type: ignore[misc]
        def _update_progbar(self, batch: int, logs: Any = None) -> None:
            interrupts.check()
            if self.target is not None:
                batch = min(batch, self.target - 1)
            super()._update_progbar(batch, logs)

    return ProgressBar()


def penalty_recorder(keras: Any, penalties: list[float]) -> Any:
    """A callback noting the L2 penalty of the weights at each epoch's end."""

    class PenaltyRecorder(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            penalties.append(measure.penalty(self.model))

    return PenaltyRecorder()


def divergence_guard(keras: Any) -> Any:
    """A callback that stops training as soon as the loss is NaN or infinite."""

    class DivergenceGuard(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.found: float | None = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def _check(self, logs: Any) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                self.found = float(loss)
                self.model.stop_training = True

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._check(logs)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch
            self._check(logs)

        def message(self, plan: ModelPlan, epochs: int) -> str:
            rate = next(c.value for c in plan.constants if c.name == "LEARNING_RATE")
            return (
                f"training diverged in epoch {self.epoch + 1} of {epochs}: the loss "
                f"became {self.found}. The usual cause is a learning rate too large "
                f"for the model (train.optimizer.learning_rate is {rate}), or an l2 "
                f"that large (l2 is {plan.l2!r}). Nothing was published."
            )

    return DivergenceGuard()


def stopping_restorer(
    keras: Any, stopper: Any, state: dict[str, Any], best_weights: list[Any]
) -> Any:
    """A callback that gives a resumed build's EarlyStopping (`stopper`) the
    state it had when the build stopped: Keras' on_train_begin resets it, so
    give this right after it."""

    class RestoreStopping(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: Any = None) -> None:
            stopper.wait = state["wait"]
            stopper.best = state["best"]
            stopper.best_epoch = state["best_epoch"]
            stopper.stopped_epoch = state["stopped_epoch"]
            stopper.best_weights = list(best_weights) or None

    return RestoreStopping()
