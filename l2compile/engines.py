"""Where a sweep's trials run: processes on this machine (`local`), or Ray
Tune trials on the cluster at $RAY_ADDRESS (`ray`).

Either way a trial is one `l2compile build` process (l2compile.sweep makes its
command line), run by `run_trial`, which measures its wall time and peak
memory; the engines differ only in where that function runs. Ray is an extra
(`pip install "l2compile[ray]"`), imported only by the ray engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from l2compile.errors import BuildError

ENGINES = ("local", "ray")
#: How long stopped trials get to save their epochs and leave.
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class TrialRun:
    """One trial's build process: its command and where its output goes."""

    id: str
    command: tuple[str, ...]
    log: str  #: the file its stdout and stderr go to


Done = Callable[[TrialRun, dict[str, Any]], None]


def run_trial(
    run: TrialRun, started: Callable[[Any], bool] | None = None
) -> dict[str, Any]:
    """Run the trial's build to its end: its status, the error it ended
    with, its seconds and its peak memory (the process and the children it
    waited for, as the kernel counts them). `started` gets the process and
    may refuse it (the sweep is stopping)."""
    began = time.perf_counter()
    with open(run.log, "wb") as log:
        process = subprocess.Popen(
            run.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the sweep alone passes a Ctrl-C on
        )
        if started is not None and not started(process):
            process.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    code = process.returncode
    return {
        "status": "ok" if code == 0 else "interrupted" if code == 130 else "failed",
        "error": "" if code == 0 else _last_error(Path(run.log), code),
        "seconds": round(time.perf_counter() - began, 2),
        "peak_memory_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }


def _last_error(log: Path, code: int) -> str:
    """The line the build ended with (`error: ...`), else its exit status."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][len("error: ") :] if errors else f"exit status {code}"


def run_local(runs: Sequence[TrialRun], jobs: int, done: Done) -> None:
    """Run the trials `jobs` at a time; `done` gets each as it finishes. On
    Ctrl-C, stop the running ones (they keep their epochs) and raise."""
    lock = threading.Lock()
    running: dict[str, subprocess.Popen[bytes]] = {}
    stopping = threading.Event()

    def one(run: TrialRun) -> dict[str, Any]:
        def started(process: subprocess.Popen[bytes]) -> bool:
            with lock:
                running[run.id] = process
                return not stopping.is_set()

        if stopping.is_set():
            return {"status": "interrupted", "error": "not started"}
        try:
            return run_trial(run, started)
        finally:
            with lock:
                running.pop(run.id, None)

    pool = ThreadPoolExecutor(max_workers=jobs)
    pending: dict[Future[dict[str, Any]], TrialRun] = {
        pool.submit(one, run): run for run in runs
    }
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(pending.pop(future), future.result())
    except BaseException:
        stopping.set()
        with lock:
            for process in running.values():
                process.send_signal(signal.SIGINT)
        # The stopped builds save their state; wait for them, not for ever.
        wait(pending, timeout=STOP_SECONDS)
        with lock:
            for process in running.values():
                process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_trial(config: dict[str, Any]) -> None:
    """A Ray Tune trial: one build, reported as one result."""
    from ray import tune

    run = TrialRun(**{**config["run"], "command": tuple(config["run"]["command"])})
    tune.report(run_trial(run))


def run_ray(runs: Sequence[TrialRun], jobs: int, done: Done) -> None:
    """Run the trials as Ray Tune trials on the cluster at $RAY_ADDRESS,
    `jobs` at a time, each on one CPU; `done` gets each when all have ended."""
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        raise BuildError(
            "--engine ray runs the trials on an existing Ray cluster: set "
            "RAY_ADDRESS to its address (ray start --head prints it)"
        )
    try:
        import ray
        from ray import tune
    except ImportError:
        raise BuildError(
            '--engine ray needs Ray Tune: pip install "l2compile[ray]"'
        ) from None
    by_id = {run.id: run for run in runs}
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="l2compile-ray-") as storage:
            tuner = tune.Tuner(
                tune.with_resources(_ray_trial, {"cpu": 1}),
                param_space={"run": tune.grid_search([asdict(r) for r in runs])},
                tune_config=tune.TuneConfig(max_concurrent_trials=jobs),
                run_config=tune.RunConfig(storage_path=storage, verbose=0),
            )
            for result in tuner.fit():
                run = by_id[result.config["run"]["id"]]
                if result.error is not None:
                    report = {"status": "failed", "error": str(result.error)}
                else:
                    report = dict(result.metrics or {})
                done(run, report)
    finally:
        ray.shutdown()
