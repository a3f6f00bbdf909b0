"""The work folder beside `--out`, and publishing from it.

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

The folder is locked while a build uses it (`open_work`). `--out` itself is
replaced only if it is empty or an earlier l2compile build
(`check_out_dir`, `manifest.foreign`). After a failure, `keep_or_clean`
keeps this build's finished epochs and says what the user should read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2compile import interrupts, manifest
from l2compile import resume as resume_
from l2compile.errors import (
    BuildError,
    Diverged,
    Interrupted,
    ParityError,
    some_of,
)
from l2compile.nodes import ModelPlan
from l2compile.resume import Saved

Log = Callable[[str], None]

# The work folder's parts (see the module's docstring).
OWNER = ".l2compile"
ARTIFACTS = "artifacts"
JOURNAL = "publishing"
PREVIOUS = "previous"


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


def keep_or_clean(
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


def _readable_state(work: Path) -> Saved | None:
    try:
        return resume_.read(work)
    except resume_.UnreadableState:
        return None


def _saved_epochs(saved: Saved) -> str:
    if saved.epoch == 1:
        return f"epoch 1 of {saved.epochs} is"
    return f"epochs 1-{saved.epoch} of {saved.epochs} are"


def work_folder(out: Path, task: str = "") -> Path:
    """Where a build of `out` works: `.NAME.partial` beside it (`task`: a
    worker's suffix, where several train together)."""
    return out.parent / f".{out.name}.partial{task}"


def is_locked(folder: Path) -> bool:
    """Whether a running process holds `folder`'s lock, as a build holds its
    work folder's (`open_work`) and a sweep its folder's; False where there is
    no such folder. A lock ends with its process, so none is ever stale."""
    try:
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(lock)
    return False


def take_lock(folder: int) -> bool:
    """Take the exclusive lock of the open folder `folder` without waiting;
    False, with the descriptor closed, where another process holds it."""
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder)
        return False
    return True


def open_work(out: Path, log: Log) -> tuple[Path, int]:
    """Create (or reuse) the build's work folder beside `out`, and lock it.

    The name is stable, `.NAME.partial` (one per worker when several train
    together), so that `--resume` finds an interrupted build's state. Only a
    real folder that l2compile made is used, never through a link. The lock
    keeps two builds from writing the same `--out` at once; it is released
    when the descriptor is closed, or the process dies.
    """
    work = work_folder(out, "" if is_chief() else "-" + _task_name())
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
            if not take_lock(lock):
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
    process = os.environ.get(PROCESS_ID)
    if process is not None:  # data_parallel's processes
        return f"process{process}"
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"


def take_over(
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
    unknown = sorted(set(saved.history) - set(plan.task.history_keys))
    missing = sorted(set(plan.task.history_keys) - set(saved.history))
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


def check_free_space(work: Path, plan: ModelPlan) -> None:
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


#: Which of data_parallel's processes this is (keras.distribution.initialize
#: reads it too; build --process-id sets it).
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


def is_chief() -> bool:
    """Whether this process publishes: always, unless TF_CONFIG names another
    task as the chief (the 'chief' task, else worker 0), or it is not the
    first of data_parallel's processes."""
    process = os.environ.get(PROCESS_ID)
    if process is not None:
        return process.strip() == "0"
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    if kind is None:
        return True
    if "chief" in config.get("cluster", {}):
        return bool(kind == "chief")
    return bool(kind == "worker" and index == 0)


def publish(work: Path, out: Path) -> None:
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
