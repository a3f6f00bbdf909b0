"""Build: train the model that the generated code builds, export and measure it.

There is one way to build a model: the generated module. The build writes it,
imports it, and calls its `preprocess`, `build_model`, `compile_model` and
`train`, so what a user checks in is exactly what was trained.

A build works in a folder of its own beside `--out`, `.NAME.partial/`:

- `.l2compile`: says the folder is l2compile's (a folder without it, or a link,
  is never emptied or written);
- `resume/`: the training state of the last finished epoch (`l2compile.resume`),
  so that an interrupted or killed build can be continued with `--resume`;
- `artifacts/`: every output, moved to `--out` only when all artifacts and
  checks have succeeded: a failed build leaves the previous build untouched;
- while publishing, `publishing` (a journal) and `previous/` (the build that
  `--out` held). A build killed while publishing is finished or rolled back by
  the next build of the same `--out`, before anything else (`_recover`).

The folder is locked while a build uses it. `--out` itself is replaced only if
it is empty or an earlier l2compile build: a folder whose files its
`manifest.json` lists, and nothing else (`check_out_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from l2compile import export, interrupts, manifest
from l2compile import resume as resume_
from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError, Interrupted, some_of
from l2compile.plan import ModelPlan, TFLitePlan
from l2compile.resume import Saved

#: TFLite float32 must agree with Keras to this accuracy on the test split.
TFLITE_TOLERANCE = 0.001
METRICS = "metrics.json"

# The work folder's parts (see the module's docstring).
OWNER = ".l2compile"
ARTIFACTS = "artifacts"
JOURNAL = "publishing"
PREVIOUS = "previous"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """What a finished build wrote and measured."""

    out: Path
    metrics: dict[str, Any]
    artifacts: tuple[str, ...]
    published: bool = True


def check_out_dir(out: Path) -> None:
    """Refuse, before any work, an `--out` that the build may not or cannot
    replace: the folder the build runs in (or one that holds it), a link, a
    folder that is not an earlier l2compile build, or one it cannot move."""
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise BuildError(
            f"--out {out}: is the folder you are in, or holds it; name a folder of "
            "its own for the build, such as build/NAME"
        )
    if out.is_symlink():
        raise BuildError(
            f"--out {out}: is a symbolic link (to {os.readlink(out)}); the build "
            "replaces --out, so name the folder itself"
        )
    if not out.exists():
        return
    if not out.is_dir():
        raise BuildError(f"--out {out}: exists and is not a folder")
    foreign = manifest.foreign(out)
    if foreign:
        raise BuildError(
            f"--out {out}: is not an earlier l2compile build, so the build will not "
            f"replace it: {foreign}. Name another folder, or empty this one yourself"
        )
    _check_replaceable(out)


def _check_replaceable(out: Path) -> None:
    """What would make publishing fail, found before training: moving --out
    aside needs write access to it, and removing it afterwards to each of its
    folders; a mount point cannot be moved; in a sticky folder (like /tmp)
    only the owner may move it."""
    if os.path.ismount(out):
        raise BuildError(f"--out {out}: is a mount point, which cannot be replaced")
    for root, _, _ in os.walk(out):
        if not os.access(root, os.W_OK | os.X_OK):
            raise BuildError(
                f"--out {out}: cannot be replaced: {root} is not writable, so the "
                "earlier build in it could not be removed"
            )
    parent = out.parent.stat()
    if parent.st_mode & 0o1000 and os.geteuid() not in (
        0,
        parent.st_uid,
        out.stat().st_uid,
    ):
        raise BuildError(
            f"--out {out}: cannot be replaced: it belongs to another user, in a "
            "folder where only a file's owner may move it"
        )


def build(
    plan: ModelPlan,
    code: str,
    out: Path,
    *,
    data: Path | None = None,
    epochs: int | None = None,
    resume: bool = False,
    log: Log = print,
) -> BuildResult:
    """Train, evaluate and export `plan`'s model into `out`, atomically.

    With `resume`, continue an interrupted build of the same code, data and
    epochs from its last finished epoch (or start afresh if there is none).
    """
    out = Path(os.path.normpath(out))  # build/x/ and build/./x are build/x
    check_out_dir(out)
    if resume and plan.distribute == "multi_worker":
        raise BuildError(
            "--resume is not available with train.distribute: multi_worker: its "
            "custom training loop saves no state; build without --resume"
        )
    interrupts.phase("data")
    dataset = load_dataset(
        plan.recipe, data, spec_path=plan.data_path, model_input=plan.model_input
    )
    log(
        f"data: {dataset.source} ({len(dataset.x_train):,} train, "
        f"{len(dataset.x_test):,} test samples)"
    )
    epochs = plan.epochs if epochs is None else epochs
    key = resume_.build_key(code, dataset, epochs)
    work, lock = _open_work(out, log)
    try:
        saved = _take_over(work, out, plan, key, resume, log)
        try:
            _check_free_space(work, plan)
            metrics = _build_into(
                work, out, plan, code, dataset, epochs, key, saved, log
            )
            if not is_chief():
                # Every worker trains and exports (they run in lockstep); only
                # the chief publishes.
                with interrupts.deferred():
                    shutil.rmtree(work)
                log("not the chief worker: nothing published")
                return BuildResult(out, metrics, (), published=False)
            interrupts.phase("publishing")
            with interrupts.deferred():
                # From here on the build is published; an interrupt waits, and
                # the caller says it came after (cli.py, "published").
                _publish(work, out)
                artifacts = sorted(
                    p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                )
                return BuildResult(out, metrics, tuple(artifacts))
        except BaseException as exc:
            with interrupts.deferred():  # a second Ctrl-C does not cut this short
                _keep_or_clean(work, out, key, exc, log)
            raise
    finally:
        os.close(lock)


def _keep_or_clean(
    work: Path, out: Path, key: dict[str, Any], exc: BaseException, log: Log
) -> None:
    """After a failure: keep this build's finished epochs, so that --resume can
    continue them (unless training diverged: it would again), and raise what
    the user should read; otherwise leave nothing of this build. The state of
    an earlier, different build is left as it was, and not spoken of."""
    interrupted = isinstance(exc, KeyboardInterrupt) or interrupts.received()
    state = _readable_state(work)
    if state is not None and state.key != key:
        shutil.rmtree(work / ARTIFACTS, ignore_errors=True)
        if interrupted and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return
    kept = None if isinstance(exc, Diverged) else state
    if isinstance(exc, ParityError) and not interrupted:
        if kept is None:
            resume_.discard(work)
        raise BuildError(
            f"{exc}\nNothing was published and {out} was not changed; this "
            f"build's files are kept for inspection in {work / ARTIFACTS}"
            + (
                ", with its trained model: add --resume to export it "
                "again without training"
                if kept is not None
                else ""
            )
        ) from exc
    if kept is None:
        shutil.rmtree(work, ignore_errors=True)
        if interrupted and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # it came out as another error
        return
    shutil.rmtree(work / ARTIFACTS, ignore_errors=True)
    if interrupted:
        raise Interrupted(work, kept.epoch, kept.epochs) from None
    if isinstance(exc, OSError) and exc.filename is not None:
        raise BuildError(
            f"cannot write {exc.filename}: {exc.strerror or exc}. "
            f"{out} was not changed; {_saved_epochs(kept)} saved in {work}: "
            "add --resume to continue"
        ) from exc
    log(f"{_saved_epochs(kept)} saved in {work}: add --resume to continue")


class Diverged(BuildError):
    """Training stopped on a loss that is not finite."""


def _readable_state(work: Path) -> Saved | None:
    try:
        return resume_.read(work)
    except resume_.UnreadableState:
        return None


def _saved_epochs(saved: Saved) -> str:
    if saved.epoch == 1:
        return f"epoch 1 of {saved.epochs} is"
    return f"epochs 1-{saved.epoch} of {saved.epochs} are"


def _open_work(out: Path, log: Log) -> tuple[Path, int]:
    """Create (or reuse) the build's work folder beside `out`, and lock it.

    The name is stable, `.NAME.partial` (one per worker when several train
    together), so that `--resume` finds an interrupted build's state. Only a
    real folder that l2compile made is used, never through a link. The lock
    keeps two builds from writing the same `--out` at once; it is released
    when the descriptor is closed, or the process dies.
    """
    task = "" if is_chief() else "-" + _task_name()
    work = out.parent / f".{out.name}.partial{task}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if work.is_symlink():
                raise BuildError(
                    f"--out {out}: its work folder {work} is a symbolic link (to "
                    f"{os.readlink(work)}); l2compile works only in a folder it "
                    "made itself. Remove the link"
                )
            created = False
            with contextlib.suppress(FileExistsError):
                work.mkdir(mode=0o777)
                created = True
            try:
                lock = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue  # an ending build removed it; make a new one
            except NotADirectoryError:
                raise BuildError(
                    f"--out {out}: {work}, where the build works, exists and is "
                    "not a folder; move it away"
                ) from None
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                raise BuildError(
                    f"--out {out}: another l2compile build is writing it now (its "
                    f"work folder {work} is locked); wait for that build to end"
                ) from None
            try:
                same = os.path.samestat(os.fstat(lock), os.lstat(work))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(lock)  # an ending build removed it; take a new one
                continue
            try:
                _claim(work, out, created)
                _recover(work, out, log)
            except BaseException:
                os.close(lock)
                raise
            return work, lock
    except OSError as exc:
        raise BuildError(
            f"--out {out}: cannot write the build beside it in {out.parent}: "
            f"{exc.strerror or exc}"
        ) from exc
    raise BuildError(f"--out {out}: cannot take its work folder {work}; try again")


def _claim(work: Path, out: Path, created: bool) -> None:
    """Mark a new work folder as l2compile's; refuse one that is not."""
    owner = work / OWNER
    if owner.is_file() and not owner.is_symlink():
        return
    entries = sorted(p.name for p in work.iterdir())
    # An empty folder holds nothing to lose; one with only a saved state is
    # an earlier l2compile's, from before the folder was marked.
    if created or not entries or (entries == [resume_.FOLDER] and _only_state(work)):
        owner.write_text(
            "This folder is l2compile's work folder for a build of "
            f"{out.name}; it may be removed when no build runs.\n",
            encoding="utf-8",
        )
        return
    raise BuildError(
        f"--out {out}: {work}, where the build works, was not made by l2compile "
        f"(it holds {some_of(entries)} and no {OWNER}); move it away"
    )


def _only_state(work: Path) -> bool:
    """Whether `work/resume` holds only what l2compile saves there."""
    folder = work / resume_.FOLDER
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(
        p.is_file()
        and not p.is_symlink()
        and re.fullmatch(r"state\.json|epoch-\d{4,}\.npz|\..+\.tmp", p.name)
        for p in folder.iterdir()
    )


def _recover(work: Path, out: Path, log: Log) -> None:
    """Finish or roll back a publish that was stopped half-way (a kill, a lost
    machine). Before the new build is moved to `out`, the previous one goes
    back; after it, only tidying up is left."""
    artifacts, previous = work / ARTIFACTS, work / PREVIOUS
    if not (work / JOURNAL).exists():
        shutil.rmtree(previous, ignore_errors=True)  # a tidy-up that was cut short
        return
    stopped = f"an earlier build of {out} was stopped while publishing"
    if artifacts.is_dir():
        if previous.exists():
            if out.exists() or out.is_symlink():
                raise BuildError(
                    f"{stopped}: {previous} holds what {out} held before, and "
                    f"{out} exists again; move one of them away"
                )
            os.replace(previous, out)
        log(f"{stopped}; {out} is as it was before it")
    else:
        shutil.rmtree(previous, ignore_errors=True)
        resume_.discard(work)
        log(f"{stopped}, after it was in place; {out} holds it")
    (work / JOURNAL).unlink()
    _sync_folder(work)


def _task_name() -> str:
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"


def _take_over(
    work: Path,
    out: Path,
    plan: ModelPlan,
    key: dict[str, Any],
    resume: bool,
    log: Log,
) -> Saved | None:
    """Clear what an earlier build left in `artifacts/`; with `resume`, read,
    check and return the saved state of an interrupted build of the same
    code, data and epochs.

    Without `resume`, a saved state is not read, and is left in place until
    this build's first epoch replaces it, so that stopping at once still lets
    it be resumed.
    """
    shutil.rmtree(work / ARTIFACTS, ignore_errors=True)
    state = work / resume_.FOLDER
    if state.is_symlink() and not resume:
        state.unlink()  # never written through; --resume refuses it by name
    if not resume:
        if resume_.exists(work):
            log(
                f"an interrupted build's saved epochs are in {work}; this build "
                "starts over and replaces them when its first epoch ends (stop it "
                "now and add --resume to continue them instead)"
            )
        return None
    try:
        saved = resume_.read(work)
    except resume_.UnreadableState as exc:
        raise BuildError(
            f"--resume: {exc}. Build without --resume to start over"
        ) from None
    if saved is None:
        log(f"--resume: no saved state for {out}; training from the first epoch")
        return None
    unknown = sorted(set(saved.history) - set(plan.history_keys))
    missing = sorted(set(plan.history_keys) - set(saved.history))
    if unknown or missing:
        problem = (
            f"history holds {unknown[0]!r}, which this training does not log"
            if unknown
            else f"history lacks {missing[0]!r}, which this training logs"
        )
        raise BuildError(
            f"--resume: the saved state in {work / resume_.FOLDER} cannot be read: "
            f"state.json: {problem}. Build without --resume to start over"
        )
    changed = resume_.differences(saved.key, key)
    if changed:
        raise BuildError(
            f"--resume: the interrupted build in {work} cannot be continued, "
            f"because these changed since: {'; '.join(changed)}. Build without "
            "--resume to start over."
        )
    log(f"resuming after epoch {saved.epoch} of {saved.epochs}")
    return saved


def _check_free_space(work: Path, plan: ModelPlan) -> None:
    """Refuse to train when the artifacts clearly cannot fit on the disk."""
    # .keras keeps weights and optimizer state (3 copies), the SavedModel one,
    # the TFLite files up to 4 + 2 + 1 + 1 bytes a parameter; the resume state
    # 3 copies, twice while one epoch's replaces the last; plus 20 MB.
    need = plan.params * 4 * 12 + 20 * 2**20
    free = shutil.disk_usage(work).free
    if free < need:
        raise BuildError(
            f"{work.parent}: {free / 2**20:,.0f} MiB free, but the build of "
            f"{plan.params:,} parameters needs about {need / 2**20:,.0f} MiB"
        )


def is_chief() -> bool:
    """Whether this process publishes: always, unless TF_CONFIG names another
    task as the chief (the 'chief' task, else worker 0)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    if kind is None:
        return True
    if "chief" in config.get("cluster", {}):
        return bool(kind == "chief")
    return bool(kind == "worker" and index == 0)


def _publish(work: Path, out: Path) -> None:
    """Move the finished build to `out`, and the earlier one out of the way.

    A journal written first lets the next build finish or roll back a publish
    that a kill stopped half-way (`_recover`); the saved training state goes
    only once the new build is in place. Ctrl-C and SIGTERM wait until the end.
    """
    artifacts, previous = work / ARTIFACTS, work / PREVIOUS
    with interrupts.deferred():
        if out.is_symlink() or out.exists():  # looked at again: training is long
            try:
                check_out_dir(out)
            except BuildError as exc:
                raise BuildError(f"{exc} (it changed while the build ran)") from None
        journal = work / JOURNAL
        journal.write_text(f"publishing {work / ARTIFACTS} to {out}\n")
        _sync_folder(work)
        try:
            if out.exists():
                os.replace(out, previous)
            interrupts.phase("moving")
            os.replace(artifacts, out)
        except BaseException:
            if previous.exists() and not out.exists():
                os.replace(previous, out)
            journal.unlink()
            raise
        _sync_folder(out.parent)
        interrupts.phase("tidying")
        shutil.rmtree(previous, ignore_errors=True)
        resume_.discard(work)
        journal.unlink()
        shutil.rmtree(work, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def import_generated(path: Path, name: str) -> ModuleType:
    """Import a generated module from its file, without touching sys.path."""
    spec = importlib.util.spec_from_file_location(f"l2compile_generated_{name}", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot import the generated module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_into(
    work: Path,
    out: Path,
    plan: ModelPlan,
    code: str,
    dataset: Dataset,
    epochs: int,
    key: dict[str, Any],
    saved: Saved | None,
    log: Log,
) -> dict[str, Any]:
    dest = work / ARTIFACTS
    dest.mkdir()
    module_path = dest / f"{plan.name}.py"
    module_path.write_text(code, encoding="utf-8")

    interrupts.phase("import")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ chatter out
    import keras

    generated = import_generated(module_path, plan.name)

    generated.set_seeds()
    x_train, y_train = generated.preprocess(dataset.x_train, dataset.y_train)
    x_test, y_test = generated.preprocess(dataset.x_test, dataset.y_test)

    def make_model() -> Any:
        model = generated.compile_model(generated.build_model())
        if saved is not None:
            resume_.restore(model, work, saved)
        return model

    replicas = 1
    if plan.distribute != "none":
        strategy = generated.make_strategy()
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            model = make_model()
    else:
        model = make_model()
    interrupts.phase("training")
    log(
        f"training {plan.name}: {plan.params:,} parameters, {epochs} "
        + ("epoch" if epochs == 1 else "epochs")
        + (f", {replicas} replicas" if plan.distribute != "none" else "")
    )
    # Keras' progress bar in a terminal; one line per epoch in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    penalties = list(saved.penalties) if saved is not None else []
    divergence = _divergence_guard(keras)
    callbacks = [_penalty_recorder(keras, penalties), divergence]
    resumable: dict[str, Any] = {}
    if plan.distribute != "multi_worker":  # its custom loop prints its own lines
        callbacks.insert(0, _progress_bar(keras))
    if plan.distribute != "multi_worker":  # its custom loop cannot resume
        callbacks.append(resume_.saver(keras, work, key, epochs, saved, penalties))
        resumable["initial_epoch"] = saved.epoch if saved is not None else 0
    began = time.perf_counter()
    history = generated.train(
        model,
        x_train,
        y_train,
        x_test,
        y_test,
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
        **resumable,
    )
    if divergence.found is not None:
        raise Diverged(divergence.message(plan, epochs))
    interrupts.phase("evaluating")

    train_seconds = time.perf_counter() - began
    logged = {k: [float(v) for v in values] for k, values in history.history.items()}
    if saved is not None:
        train_seconds += saved.train_seconds
        logged = {
            k: saved.history.get(k, []) + logged.get(k, [])
            for k in {**saved.history, **logged}
        }
    if plan.distribute == "multi_worker":
        scores = generated.evaluate(model, x_test, y_test)  # evaluate() fails there
    else:
        scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    test_loss = float(scores["loss"])
    test_accuracy = float(scores["accuracy"])
    print("Test loss:", test_loss)
    print("Test accuracy:", test_accuracy)

    probabilities = np.concatenate(
        [
            np.asarray(model(x_test[i : i + 1000], training=False))
            for i in range(0, len(x_test), 1000)
        ]
    )
    data_loss = float(
        np.mean(keras.losses.sparse_categorical_crossentropy(y_test, probabilities))
    )
    penalty = float(sum(float(loss) for loss in model.losses))

    metrics: dict[str, Any] = {
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "test_loss_split": {"data_loss": data_loss, "l2_penalty": penalty},
        "epochs": epochs,
        "parameters": plan.params,
        "regularized_parameters": plan.regularized_params,
        "history": logged,
        "timing": {"train_seconds": train_seconds},
        "resumed_after_epoch": saved.epoch if saved is not None else None,
        "replicas": replicas,
        "history_split": _history_split(logged, penalties),
        "l2_norms": _l2_norms(model, plan),
    }

    formats = plan.export_formats
    if "keras" in formats:
        interrupts.phase("keras")
        log("saving model.keras")
        export.save_keras(model, dest / "model.keras")
    if "saved_model" in formats:
        interrupts.phase("saved_model")
        log("exporting saved_model/")
        export.export_saved_model(model, dest / "saved_model")
    if plan.tflite is not None:
        metrics["tflite"] = _export_tflite(
            dest,
            plan,
            plan.tflite,
            model,
            generated,
            dataset,
            x_test,
            y_test,
            test_accuracy,
            log,
        )
        interrupts.phase("deploy_files")
        _write_deploy_files(dest, plan, plan.tflite, dataset, metrics["tflite"])

    interrupts.phase("manifest")
    _write_json(dest / METRICS, metrics)
    manifest.write(dest, out, plan, dataset, module_path.name)
    return metrics


def _progress_bar(keras: Any) -> Any:
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


def _penalty_recorder(keras: Any, penalties: list[float]) -> Any:
    """A callback noting the L2 penalty of the weights at each epoch's end."""

    class PenaltyRecorder(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            penalties.append(float(sum(float(loss) for loss in self.model.losses)))

    return PenaltyRecorder()


def _divergence_guard(keras: Any) -> Any:
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


def _history_split(history: dict[str, Any], penalties: list[float]) -> dict[str, Any]:
    """Per epoch: the L2 penalty at the epoch's end and the losses without it.

    The validation split is exact (the weights are fixed while validating);
    the training loss is a mean over the epoch's batches, so its split uses
    the end-of-epoch penalty and is approximate.
    """
    split: dict[str, Any] = {"l2_penalty": penalties}
    for key, name in (("val_loss", "val_data_loss"), ("loss", "data_loss")):
        if key in history:
            split[name] = [
                float(v) - p for v, p in zip(history[key], penalties, strict=True)
            ]
    return split


def _l2_norms(model: Any, plan: ModelPlan) -> dict[str, float]:
    """The L2 norm of every regularized weight at the end of training."""
    wanted = {
        w.path(plan.name, layer.name)
        for layer in plan.layers
        for w in layer.weights
        if w.l2 > 0 or w.weight_decay > 0
    }
    return {
        v.path: float(np.linalg.norm(np.asarray(v, dtype=np.float64)))
        for v in model.weights
        if v.path in wanted
    }


_MODES = {
    "none": "float32",
    "float16": "float16 weights",
    "dynamic": "dynamic range: int8 weights, float activations",
    "int8": "full integer, calibrated",
}


class ParityError(BuildError):
    """A TFLite file predicts worse than allowed; its artifacts are kept."""


def _export_tflite(
    work: Path,
    plan: ModelPlan,
    options: TFLitePlan,
    model: Any,
    generated: ModuleType,
    dataset: Dataset,
    x_test: Any,
    y_test: Any,
    keras_accuracy: float,
    log: Log,
) -> dict[str, Any]:
    """Convert one TFLite file per mode, score each on the test split, and
    fail (keeping the files) if one loses more accuracy than allowed."""
    source = work / "tflite_source"
    interrupts.phase("tflite_source")
    log("exporting the SavedModel that TFLite is converted from")
    export.export_tflite_source(model, source, plan.input_shape, options.batch)
    representative = None
    if "int8" in options.quantize:
        # Calibration data: the training split, preprocessed, seeded.
        rng = np.random.default_rng(plan.seed)
        count = min(options.representative_samples, len(dataset.x_train))
        pick = np.sort(rng.choice(len(dataset.x_train), size=count, replace=False))
        representative, _ = generated.preprocess(
            dataset.x_train[pick], dataset.y_train[pick]
        )
        representative = np.asarray(representative, dtype=np.float32)
    scores: dict[str, Any] = {"keras_test_accuracy": keras_accuracy, "files": {}}
    failures = []
    for mode in options.quantize:
        name = export.TFLITE_FILES[mode]
        interrupts.phase(f"converting {mode}")
        log(f"converting {name} ({_MODES[mode]})")
        try:
            export.convert_tflite(
                source, work / name, mode, representative, options.int8_io
            )
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BuildError(
                f"export.tflite.quantize: the TFLite converter could not make {name} "
                f"({mode}): {type(exc).__name__}: {reason}"
            ) from exc
        interrupts.phase(f"checking {mode}")
        log(f"checking {name} on the test split with the LiteRT interpreter")
        score = export.score_tflite(work / name, x_test, y_test)
        drop = keras_accuracy - score.accuracy
        limit = TFLITE_TOLERANCE if mode == "none" else options.max_accuracy_drop
        scores["files"][mode] = {
            "file": name,
            "size_bytes": score.size_bytes,
            "test_accuracy": score.accuracy,
            "accuracy_drop": drop,
            "test_data_loss": score.data_loss,
            "mean_latency_ms": score.mean_latency_ms,
            "latency_batch": score.batch,
        }
        if (abs(drop) if mode == "none" else drop) > limit:
            failures.append(
                f"{name} ({mode}) scores test accuracy {score.accuracy:.4f} against "
                f"the Keras model's {keras_accuracy:.4f}: a drop of {drop:.4f}, more "
                f"than the {limit} allowed"
                + ("" if mode == "none" else " (export.tflite.max_accuracy_drop)")
            )
    shutil.rmtree(source)
    if failures:
        _write_json(work / METRICS, {"tflite": scores})
        raise ParityError("\n".join(failures))
    return scores


def _write_deploy_files(
    work: Path,
    plan: ModelPlan,
    options: TFLitePlan,
    dataset: Dataset,
    scores: dict[str, Any],
) -> None:
    """labels.txt and model.json: what an app needs to feed and read the model."""
    from ai_edge_litert.interpreter import Interpreter

    recipe = plan.recipe
    (work / "labels.txt").write_text("".join(f"{name}\n" for name in recipe.labels))
    scaled = dataset.x_train.dtype == np.uint8 and not plan.integer_input
    if recipe.image_shape is not None:
        size = "x".join(str(d) for d in recipe.image_shape)
        source = f"a {size} grayscale image as uint8 pixels (0-255), row by row"
    else:
        source = f"one sample of the npz's x arrays ({dataset.x_train.dtype})"
    files = {}
    for mode, score in scores["files"].items():
        interpreter = Interpreter(model_path=str(work / score["file"]))
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        files[mode] = {
            "file": score["file"],
            "input": _tensor(inp),
            "output": _tensor(out),
        }
    batch = options.batch if options.batch is not None else -1
    model_json = {
        "name": plan.name,
        "signature": export.SIGNATURE,
        "input": {
            "name": export.INPUT_NAME,
            "shape": [batch, *plan.input_shape],
            "dtype": "float32",
            "source": source,
            "pixels": recipe.pixels,
            "preprocessing": {
                "formula": "input = (value * scale - mean) / std, reshaped to shape",
                "scale": 1 / 255 if scaled else 1.0,
                "mean": 0.0,
                "std": 1.0,
            },
        },
        "output": {
            "name": export.OUTPUT_NAME,
            "shape": [batch, recipe.num_classes],
            "meaning": "one probability per class; the class names, in order, "
            "are the lines of labels.txt",
            "labels": "labels.txt",
        },
        "files": files,
    }
    _write_json(work / "model.json", model_json)


def _tensor(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details["quantization"]
    tensor: dict[str, Any] = {
        "dtype": np.dtype(details["dtype"]).name,
        "shape": [int(d) for d in details["shape_signature"]],
    }
    if scale:
        tensor["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return tensor


def _write_json(path: Path, value: Any) -> None:
    """Strict JSON: a value that is not finite (NaN, infinity) is written as
    null, never as the bare NaN that JSON readers refuse."""
    text = json.dumps(_finite(value), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
