"""Where a sweep's trials run: processes on this machine (`local`), or Ray
Tune trials on the cluster at $RAY_ADDRESS (`ray`).

Either way a trial is one `l2compile build` process (l2compile.sweep makes its
command line), run by `run_trial`, which measures its wall time and peak
memory; the engines differ only in where that function runs. Ray is an extra
(`pip install "l2compile[ray]"`), imported only by the ray engine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from l2compile.errors import BuildError

ENGINES = ("local", "ray")
#: How long stopped trials get to save their epochs and leave.
STOP_SECONDS = 60.0
#: How long the ray engine waits for $RAY_ADDRESS to answer.
CONNECT_SECONDS = 5.0
#: The file, beside a trial's log, where its launcher writes its peak memory.
PEAK_PREFIX = ".peak-"


@dataclass(frozen=True)
class TrialRun:
    """One trial's build process: its command and where its output goes."""

    id: str
    command: tuple[str, ...]
    log: str  #: the file its stdout and stderr go to
    cwd: str  #: the folder it runs in (the sweep's)


Done = Callable[[TrialRun, dict[str, Any]], None]

#: The build is started by this small program (`launcher PEAK_FILE
#: PARENT_PID COMMAND...`), which writes the build's peak memory when it
#: ends: on Linux a process's peak counts the memory of the process it was
#: started from (a Ray worker, the sweep), so measuring from a small one keeps
#: that out. It leaves Ctrl-C to the build. A trial dies with what started
#: it: the launcher gets SIGTERM when its parent (the sweep, or the Ray
#: worker) dies, however it died (SIGKILL too), and the build gets SIGTERM
#: (and stops, keeping its epochs) when the launcher dies: Ray stops a trial
#: by killing its worker's own children only. The parent's pid is checked
#: after the signal is asked for, so a parent that died before misses nothing.
_LAUNCHER = """\
import ctypes, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
prctl = ctypes.CDLL(None, use_errno=True).prctl
prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[2]):
    sys.exit(143)
parent = os.getpid()
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(143)
    os.execv(sys.argv[3], sys.argv[3:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_trial(
    run: TrialRun,
    started: Callable[[Any], bool] | None = None,
    *,
    own_session: bool = True,
) -> dict[str, Any]:
    """Run the trial's build to its end: its status, the error it ended
    with, its seconds and its peak memory (the build and the children it
    waited for, as the kernel counts them). `started` gets the process and
    may refuse it (the sweep is stopping). In `own_session` (the local
    engine), a Ctrl-C at the terminal reaches the sweep alone, which stops
    the builds itself."""
    began = time.perf_counter()
    fd, peak_file = tempfile.mkstemp(prefix=PEAK_PREFIX, dir=Path(run.log).parent)
    os.close(fd)
    try:
        with open(run.log, "wb") as log:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-I", "-S", "-c", _LAUNCHER),
                    *(peak_file, str(os.getpid()), *run.command),
                ],
                cwd=run.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=own_session,
            )
            if started is not None and not started(process):
                stop(process)
            code = process.wait()
        peak = Path(peak_file).read_text(encoding="ascii").strip()
    finally:
        Path(peak_file).unlink(missing_ok=True)
    return {
        "status": "ok" if code == 0 else "interrupted" if code == 130 else "failed",
        "error": "" if code == 0 else _last_error(Path(run.log), code),
        "seconds": round(time.perf_counter() - began, 2),
        # Linux counts KiB; none if the launcher was killed.
        "peak_memory_mb": round(int(peak) / 1024, 1) if peak.isdigit() else None,
    }


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    """Send a trial's build (and its launcher) `sig`: Ctrl-C by default."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


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
                stop(process)
        # The stopped builds save their state; wait for them, not for ever.
        wait(pending, timeout=STOP_SECONDS)
        with lock:
            for process in running.values():
                stop(process, signal.SIGKILL)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: The variables a Ray trial gets from the sweep (a trial runs in the
#: environment of the node's Ray worker, not the sweep's).
PASSED_ON = ("L2COMPILE_", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")
#: The keys of a trial's report (Tune adds its own to what it reports).
REPORTED = ("status", "error", "seconds", "peak_memory_mb")


def _ray_trial(config: dict[str, Any]) -> None:
    """A Ray Tune trial: one build, reported as one result."""
    from ray import tune

    run = TrialRun(**{**config["run"], "command": tuple(config["run"]["command"])})
    # In the worker's process group; the launcher stops the build if Ray
    # kills it.
    tune.report(run_trial(run, own_session=False))


def ray_settings(address: str) -> None:
    """Ray and Tune as a sweep wants them, set before Ray is imported: quiet,
    no usage report, Ctrl-C raised out of Tuner.fit (Tune's own handler waits
    and then returns as if the trials had finished)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    if address.startswith(("127.", "localhost")):
        # Otherwise Ray replaces a loopback address with the host's, and a
        # head that listens on loopback only is never reached.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def check(engine: str) -> None:
    """What `engine` needs, before the sweep writes anything."""
    if engine != "ray":
        return
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        raise BuildError(
            "--engine ray runs the trials on an existing Ray cluster: set "
            "RAY_ADDRESS to its address (ray start --head prints it)"
        )
    if importlib.util.find_spec("ray") is None:
        raise BuildError('--engine ray needs Ray Tune: pip install "l2compile[ray]"')
    _check_reachable(address)


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port of a cluster address (`HOST:PORT`, `ray://HOST:PORT`,
    `[IPv6]:PORT`); None for one Ray resolves itself (`auto`)."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def _check_reachable(address: str) -> None:
    """Refuse, within CONNECT_SECONDS, a cluster address that does not answer:
    ray.init retries one for about 14 minutes, silent, before it gives up."""
    found = _host_port(address)
    if found is None:
        return
    try:
        with socket.create_connection(found, timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        reason = (
            f"no answer in {CONNECT_SECONDS:g} s"
            if isinstance(exc, TimeoutError)
            else exc.strerror or str(exc)
        )
        raise BuildError(
            f"--engine ray: cannot reach the Ray cluster at {address} (from "
            f"RAY_ADDRESS): {reason}; start it (ray start --head) or set "
            "RAY_ADDRESS to its address"
        ) from None


def run_ray(runs: Sequence[TrialRun], jobs: int, done: Done) -> None:
    """Run the trials as Ray Tune trials on the cluster at $RAY_ADDRESS,
    `jobs` at a time, each on one CPU; `done` gets each as it finishes."""
    by_id = {run.id: run for run in runs}
    reported: set[str] = set()
    with ray_tune() as (tune, storage):
        callback: Any = tune.Callback

        class Reported(callback):  # type: ignore[misc]
            def on_trial_result(
                self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
            ) -> None:
                run = by_id[trial.config["run"]["id"]]
                reported.add(run.id)
                done(run, {k: result.get(k) for k in REPORTED})

        tuner = tune.Tuner(
            tune.with_resources(_ray_trial, {"cpu": 1}),
            param_space={"run": tune.grid_search([asdict(r) for r in runs])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=jobs,
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=run_config(tune, storage, Reported()),
        )
        grid = tuner.fit()
        for result in (grid[i] for i in range(len(grid))):
            run = by_id[(result.config or {})["run"]["id"]]
            if run.id not in reported:  # the trial itself failed in Ray
                done(run, {"status": "failed", "error": str(result.error)})


@contextlib.contextmanager
def ray_tune() -> Iterator[tuple[Any, str]]:
    """Ray joined to the cluster at $RAY_ADDRESS as a sweep wants it (quiet,
    the sweep's variables passed to the trials), and a temporary folder for
    Tune's own files: Tune, and the folder."""
    check("ray")
    address = os.environ["RAY_ADDRESS"]
    ray_settings(address)
    import ray
    from ray import tune

    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failures are rows
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ON)}
    ray.init(
        address=address,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    try:
        with tempfile.TemporaryDirectory(prefix="l2compile-ray-") as storage:
            yield tune, storage
    finally:
        ray.shutdown()


def run_config(tune: Any, storage: str, callback: Any) -> Any:
    """Tune's run settings for a sweep: its files in `storage`, silent, a
    trial that fails is not retried, and `callback` hears each result."""
    return tune.RunConfig(
        storage_path=storage,
        verbose=0,
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=0),
    )
