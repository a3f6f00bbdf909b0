"""`l2compile sweep`: planning a grid, choosing on validation, the results
and plots, and real sweeps of tiny builds (two fields, Ctrl-C and --resume)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from l2compile import pages, plots
from l2compile import sweep as sweep_
from l2compile.cli import main
from l2compile.errors import BuildError
from l2compile.overrides import OverrideError, parse
from tests.conftest import SMALL_SPEC, make_mnist_npz
from tests.pagecheck import check_in_chromium

ROOT = Path(__file__).resolve().parent.parent


def _spec(tmp_path: Path, text: str = SMALL_SPEC) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _plan(tmp_path: Path, *sets: str, text: str = SMALL_SPEC) -> sweep_.SweepPlan:
    planned = sweep_.plan_sweep(_spec(tmp_path, text), [parse(s) for s in sets])
    assert isinstance(planned, sweep_.SweepPlan), planned
    return planned


# --- planning ------------------------------------------------------------------


@pytest.mark.unit
def test_every_trial_is_checked_before_any_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        main,
        [
            "sweep",
            str(_spec(tmp_path)),
            "--set",
            "l2=0,-1",
            "--set",
            "layers[1].units=4,0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2
    lines = result.output.splitlines()
    # Each bad value once, at its --set, however many trials it is in.
    assert lines[:2] == [
        "--set l2=-1: error: l2: must be greater than or equal to 0, got -1",
        "--set layers[1].units=0: error: layers[1].units: must be greater than "
        "0, got 0",
    ]
    assert not out.exists()


@pytest.mark.unit
def test_trials_get_their_own_seeds_derived_from_the_specs(tmp_path: Path) -> None:
    planned = _plan(tmp_path, "l2=0,0.01", "layers[1].units=4,8")
    seeds = [t.seed for t in planned.trials]
    assert len(set(seeds)) == 4
    assert [t.sets[2] for t in planned.trials] == [f"train.seed={s}" for s in seeds]
    assert sweep_.seed_of(7, planned.trials[1].values) == planned.trials[1].seed
    # A swept seed is the trial's seed.
    seeded = _plan(tmp_path, "train.seed=3,5")
    assert [t.seed for t in seeded.trials] == [3, 5]


@pytest.mark.unit
def test_seeds_do_not_depend_on_how_the_set_options_are_written(
    tmp_path: Path,
) -> None:
    one = _plan(tmp_path, "l2=0.001,0", "layers[1].units=4")
    other = _plan(tmp_path, "layers[1].units=4", "l2=1e-3,0")
    assert one.trials[0].seed == other.trials[0].seed
    assert one.trials[1].seed == other.trials[1].seed != one.trials[0].seed


@pytest.mark.unit
def test_what_the_sweep_sets_itself_never_meets_a_users_set(tmp_path: Path) -> None:
    # A spec with TFLite options sweeps with export off, its options and all.
    text = SMALL_SPEC + "export: {formats: [tflite], tflite: {quantize: [int8]}}\n"
    planned = _plan(tmp_path, "l2=0,0.01", text=text)
    assert "export={formats: []}" in planned.trials[0].sets
    # Without --export, a --set export... would change nothing.
    refused = sweep_.plan_sweep(
        _spec(tmp_path), [parse("l2=0,0.01"), parse("export.formats=[keras]")]
    )
    assert isinstance(refused, list)
    assert str(refused[0]) == (
        "--set export.formats=[keras]: error: trials export nothing without "
        "--export; add --export"
    )
    # A --set above train.seed or train.validation replaces the sweep's own.
    train = "{recipe: mnist, epochs: 1, batch_size: 32, seed: 5, validation: 0.2}"
    planned = _plan(tmp_path, f"train={train}")
    assert planned.trials[0].seed == 5
    sets = planned.trials[0].sets
    assert not any(t.startswith(("train.seed", "train.validation")) for t in sets)
    # Or a metric the trials are not compared by.
    refused = sweep_.plan_sweep(
        _spec(tmp_path), [parse("train.metrics=[accuracy],[top_k_accuracy]")]
    )
    assert isinstance(refused, list)
    assert "a sweep compares its trials by val_accuracy" in str(refused[0])
    with pytest.raises(OverrideError, match="make 1,331 trials; a sweep runs at most"):
        sweep_.plan_sweep(
            _spec(tmp_path),
            [parse(f"f{i}=" + ",".join(map(str, range(11)))) for i in range(3)],
        )


@pytest.mark.unit
def test_a_spec_that_validates_on_test_is_swept_on_a_held_out_share(
    tmp_path: Path,
) -> None:
    planned = _plan(tmp_path, "l2=0,0.01")
    assert all("train.validation=0.1" in t.sets for t in planned.trials)
    assert any("holds out 0.1" in note for note in planned.notes)
    assert all("export={formats: []}" in t.sets for t in planned.trials)
    chosen = _plan(tmp_path, "l2=0,0.01", "train.validation=0.2")
    assert not any(s == "train.validation=0.1" for s in chosen.trials[0].sets)
    refused = sweep_.plan_sweep(
        _spec(tmp_path), [parse("l2=0,0.01"), parse("train.validation=test,0.2")]
    )
    assert isinstance(refused, list)
    assert [str(e) for e in refused] == [
        "--set train.validation=test: error: a sweep chooses its best trial on "
        "validation data, never on the test split: set a share of the training "
        "split (train.validation=0.1)"
    ]


def _metrics(val: float, epochs: int = 2, kept: int | None = None) -> dict[str, Any]:
    return {
        "history": {
            "loss": [1.0 + i for i in range(epochs)],
            "accuracy": [0.5 + i / 10 for i in range(epochs)],
            "val_accuracy": [val - 0.1 * (epochs - 1 - i) for i in range(epochs)],
        },
        "history_split": {
            "data_loss": [0.9 + i for i in range(epochs)],
            "val_data_loss": [0.8 + i for i in range(epochs)],
            "l2_penalty": [0.1 * (i + 1) for i in range(epochs)],
        },
        "validation": {"scores": {"accuracy": val, "loss": 1.0}},
        "test_accuracy": 0.7,
        "test_loss": 1.2,
        "test_loss_split": {"data_loss": 1.0, "l2_penalty": 0.2},
        "epochs_trained": epochs,
        "early_stopping": {"weights_of_epoch": kept} if kept else None,
        "l2_norms": {"m/dense_1/kernel": 3.0, "m/dense_1/bias": 4.0, "m/out/kernel": 1},
    }


@pytest.mark.unit
def test_a_row_reads_the_kept_epoch_and_the_best_is_chosen_on_validation(
    tmp_path: Path,
) -> None:
    planned = _plan(tmp_path, "l2=0,0.01,0.1")
    for trial, (val, kept) in zip(
        planned.trials, [(0.8, None), (0.9, 1), (0.85, None)], strict=True
    ):
        folder = sweep_.trial_dir(tmp_path, trial)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(_metrics(val, kept=kept)))
        manifest = {"spec": {"sha256": planned.spec_sha256}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = [sweep_.row(planned, tmp_path, t, {"seconds": 1.5}) for t in planned.trials]
    kept_first = rows[1]
    assert kept_first["train_accuracy"] == 0.5  # epoch 1's, the weights kept
    assert kept_first["gap"] == pytest.approx(0.5 - 0.8)
    assert kept_first["l2_penalty"] == pytest.approx(0.1)
    assert rows[0]["data_loss"] == pytest.approx(1.9)  # the last epoch's
    assert rows[0]["layer_norms"] == {"dense_1": 5.0, "out": 1.0}
    assert rows[0]["l2"] == 0 and rows[0]["status"] == "ok"
    # The best validation score, although another trial's test score is higher.
    rows[0]["test_accuracy"] = 0.99
    assert sweep_.best(planned, rows) is rows[1]
    # A tie goes to the lower validation loss, then to the first trial.
    tied = [
        {"trial": "001", "status": "ok", "val_accuracy": 0.9, "val_loss": 0.5},
        {"trial": "000", "status": "ok", "val_accuracy": 0.9, "val_loss": 0.7},
        {"trial": "002", "status": "ok", "val_accuracy": 0.9, "val_loss": 0.5},
    ]
    assert sweep_.best(planned, tied) is tied[0]
    regression = sweep_.SweepPlan(
        **{**planned.__dict__, "metric": "accuracy", "higher_is_better": False}
    )
    assert sweep_.best(regression, rows) is rows[0]


@pytest.mark.unit
def test_results_csv_has_a_row_per_trial_and_a_column_per_field(
    tmp_path: Path,
) -> None:
    planned = _plan(tmp_path, "l2=0,0.01")
    rows = [
        {"trial": "001", "l2": 0.01, "status": "failed", "error": "diverged"},
        {"trial": "000", "l2": 0, "status": "ok", "val_accuracy": 0.5},
    ]
    results = sweep_.write_results(planned, tmp_path, rows)
    assert results["best"] == "000"
    with (tmp_path / "results.csv").open(encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["trial"] for r in read] == ["000", "001"]
    assert read[1]["error"] == "diverged"
    assert json.loads((tmp_path / "results.json").read_text())["chosen_by"] == (
        "val_accuracy"
    )


@pytest.mark.unit
def test_a_ray_sweep_without_a_cluster_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    planned = _plan(tmp_path, "l2=0,0.01")
    with pytest.raises(BuildError, match="set RAY_ADDRESS"):
        sweep_.run_sweep(planned, tmp_path / "out", engine="ray", log=str)
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_a_sweep_folder_is_continued_only_by_the_same_sweep(tmp_path: Path) -> None:
    planned = _plan(tmp_path, "l2=0,0.01")
    out = tmp_path / "out"
    assert len(sweep_.open_folder(out, planned, resume=False)) == 2
    with pytest.raises(BuildError, match="holds a sweep already: add --resume"):
        sweep_.open_folder(out, planned, resume=False)
    other = _plan(tmp_path, "l2=0,0.1")
    with pytest.raises(BuildError, match="holds another sweep"):
        sweep_.open_folder(out, other, resume=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(BuildError, match="is not a sweep folder"):
        sweep_.open_folder(tmp_path / "busy", planned, resume=False)


# --- plots and pages -------------------------------------------------------------


@pytest.mark.unit
def test_a_lambda_axis_is_logarithmic_with_zero_shown() -> None:
    from matplotlib.figure import Figure

    axes = Figure().subplots()
    where = plots._x_axis(axes, [0, 1e-4, 1e-2, 1e-1])
    assert axes.get_xscale() == "symlog"
    assert [t.get_text() for t in axes.get_xticklabels()] == [
        "0",
        "0.0001",
        "0.01",
        "0.1",
    ]
    assert where["0"] == 0.0
    axes = Figure().subplots()
    plots._x_axis(axes, [1e-3, 1e-1])
    assert axes.get_xscale() == "log"
    axes = Figure().subplots()
    assert plots._x_axis(axes, ["relu", "tanh"]) == {"relu": 0.0, "tanh": 1.0}


@pytest.mark.unit
def test_the_weight_norm_chart_of_a_large_model_stays_drawable() -> None:
    # 3,000 bars would be 84,000 pixels tall, which matplotlib refuses.
    png = plots.weight_norms({f"dense_{i}/kernel": float(i) for i in range(3000)})
    _, height = struct.unpack(">II", png[16:24])
    assert height <= (0.6 + 0.28 * plots.MAX_BARS) * plots.DPI + 1


@pytest.mark.unit
def test_the_sweep_figures_and_page(tmp_path: Path) -> None:
    rows = [
        {
            "trial": f"00{i}",
            "l2": l2,
            "units": units,
            "status": "ok" if i != 3 else "failed",
            "val_accuracy": 0.5 + i / 10,
            "train_accuracy": 0.6 + i / 10,
            "data_loss": 1.0,
            "val_data_loss": 1.1,
            "l2_penalty": l2,
            "layer_norms": {"dense_1": 2.0 + i},
        }
        for i, (l2, units) in enumerate([(0, 4), (0, 8), (0.1, 4), (0.1, 8)])
    ]
    results = {
        "trials": rows,
        "fields": ["l2", "units"],
        "chosen_by": "val_accuracy",
        "best": "002",
        "spec": str(_spec(tmp_path)),
    }
    figures = pages.sweep_figures(results)
    assert sorted(figures) == ["heat_map", "l2", "units"]
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    page = pages.sweep_page(results, figures, "name: t\n")
    assert page.count("data:image/png;base64,") == 3
    assert '<tr class="best">' in page


@pytest.mark.unit
def test_a_page_shows_hostile_spec_text_and_loads_nothing(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script><img src=http://example.com/x>"
    spec = _spec(tmp_path, SMALL_SPEC.replace("for fast tests", hostile))
    page = pages.spec_section(str(spec), spec.read_text(), ["l2=<b>"])
    html = pages.render("t", hostile, [page])
    assert "<script>" not in html and "<img src=http" not in html
    assert "&lt;script&gt;" in html and "--set l2=&lt;b&gt;" in html
    assert "default-src &#39;none&#39;" in html or "default-src 'none'" in html


# --- real sweeps of tiny builds ---------------------------------------------------


def _sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2compile", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.external
def test_a_two_field_sweep_of_tiny_builds(tmp_path: Path) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
    spec = _spec(tmp_path)
    result = _sweep(
        str(spec),
        "--set",
        "l2=0,0.01",
        "--set",
        "layers[1].units=4,8",
        "--data",
        str(data),
        "--out",
        "out",
        "--jobs",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    rows = results["trials"]
    assert [(r["l2"], r["layers[1].units"]) for r in rows] == [
        (0, 4),
        (0, 8),
        (0.01, 4),
        (0.01, 8),
    ]
    assert all(r["status"] == "ok" for r in rows)
    assert [r["l2_penalty"] == 0 for r in rows] == [True, True, False, False]
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert results["best"] == best["trial"]
    assert f"Best by val_accuracy: trial {best['trial']}" in result.stdout
    for r in rows:
        assert r["seconds"] > 0 and r["peak_memory_mb"] > 50
        trial = out / "trials" / r["trial"]
        manifest = json.loads((trial / "manifest.json").read_text())
        assert f"train.seed={r['seed']}" in manifest["spec"]["set"]
        # Export is off for trials: no model files.
        assert not list(trial.glob("*.tflite")) and not (trial / "model.keras").exists()
        assert (trial / "report.html").is_file()
    with (out / "results.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "heat_map.png",
        "l2.png",
        "layers_1_.units.png",
    ]
    assert (out / "report.html").read_text().count("data:image/png") == 3
    check_in_chromium(out / "report.html", "sweep_report.png", images=3)


def _wait_for(path: Path, process: subprocess.Popen[str], seconds: float) -> None:
    ends = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < ends, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.build
def test_ctrl_c_keeps_the_finished_trials_and_resume_runs_the_rest(
    tmp_path: Path,
) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
    args = [str(_spec(tmp_path)), "--set", "l2=0,0.01,0.1", "--data", str(data)]
    args += ["--out", "out"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "l2compile", "sweep", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = tmp_path / "out"
    try:
        # The first trial is done: its row, plots and page are written last.
        _wait_for(out / "report.html", sweep, 300)
        sweep.send_signal(signal.SIGINT)
        _, stderr = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, stderr
    assert "describes the finished trials: add --resume to continue" in stderr
    with (out / "results.csv").open(encoding="utf-8") as f:
        kept = list(csv.DictReader(f))
    assert [(r["trial"], r["status"]) for r in kept] == [("000", "ok")]
    # The plots and page describe the finished trial too.
    assert (out / "plots" / "l2.png").is_file()
    assert '<tr class="best"><td>000</td>' in (out / "report.html").read_text()
    first = json.loads((out / "results.json").read_text())["trials"][0]

    again = _sweep(*args, cwd=tmp_path)
    assert again.returncode == 3, again.stderr  # the folder holds a sweep
    assert "add --resume" in again.stderr
    resumed = _sweep(*args, "--resume", "--jobs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 trials, 2 to run (1 finished before)" in resumed.stderr
    rows = json.loads((out / "results.json").read_text())["trials"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert rows[0] == first  # not run again
    assert os.path.exists(out / "report.html")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_ray_head() -> Iterator[dict[str, str]]:
    """A Ray head on 127.0.0.1 for the test's time (no usage report); the
    environment that reaches it (RAY_ADDRESS)."""
    import shutil
    import tempfile

    pytest.importorskip("ray", reason='the test extra installs "l2compile[ray]"')
    ray = str(Path(sys.executable).parent / "ray")
    # Loopback only (README: On a Ray cluster), no usage report.
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    temp = Path(tempfile.mkdtemp(prefix="rayh", dir="/tmp"))  # short: its sockets
    head, address = _ray_head(ray, env, temp)
    try:
        yield {**env, "RAY_ADDRESS": address}
    finally:
        head.terminate()
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _ray_head(ray: str, env: dict[str, str], temp: Path) -> tuple[Any, str]:
    """A Ray head on 127.0.0.1 only, in `temp`; the process and its address."""
    import threading

    port, client = _free_port(), _free_port()
    head = subprocess.Popen(
        [
            *(ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1"),
            *(f"--port={port}", f"--ray-client-server-port={client}"),
            *("--num-cpus=2", "--num-gpus=0", "--include-dashboard=false"),
            *("--disable-usage-stats", "--include-log-monitor=false"),
            f"--temp-dir={temp}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    said: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert head.stdout is not None
        for line in head.stdout:
            said.append(line)
            if "Ray runtime started" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(180):
        head.kill()
        pytest.fail("the Ray head did not start:\n" + "".join(said))
    return head, f"127.0.0.1:{port}"


@pytest.mark.external
def test_a_sweep_through_a_local_ray_head(tmp_path: Path) -> None:
    with local_ray_head() as env:
        data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
        result = subprocess.run(
            [
                *(sys.executable, "-m", "l2compile", "sweep", str(_spec(tmp_path))),
                *("--set", "l2=0,0.01", "--set", "layers[1].units=4"),
                *("--data", str(data), "--out", "out"),
                *("--engine", "ray", "--jobs", "2"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr
    assert "2 at a time on the ray engine" in result.stderr
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    rows = results["trials"]
    assert [(r["l2"], r["layers[1].units"], r["status"]) for r in rows] == [
        (0, 4, "ok"),
        (0.01, 4, "ok"),
    ]
    # The same row as the local engine's: the build's scores and the launcher's
    # time and memory.
    for r in rows:
        assert {"val_accuracy", "test_accuracy", "gap", "l2_penalty"} <= set(r)
        assert r["seconds"] > 0 and r["peak_memory_mb"] > 50
        assert (out / "trials" / r["trial"] / "report.html").is_file()
    assert results["best"] == max(rows, key=lambda r: r["val_accuracy"])["trial"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "heat_map.png",
        "l2.png",
        "layers_1_.units.png",
    ]


@pytest.mark.build
def test_a_trials_build_stops_when_its_launcher_is_killed(tmp_path: Path) -> None:
    """Ray stops a trial by killing its worker's children: the launcher. The
    build it started must then get SIGTERM (and save its epochs), not run on."""
    from l2compile.engines import _LAUNCHER

    launcher = subprocess.Popen(
        [
            *(sys.executable, "-I", "-S", "-c", _LAUNCHER, str(tmp_path / "peak")),
            *(str(os.getpid()), "/bin/sleep", "60"),
        ],
        start_new_session=True,
    )
    try:
        ends = time.monotonic() + 10
        children: list[str] = []
        while not children and time.monotonic() < ends:
            found = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
            children = found.read_text().split()
            time.sleep(0.05)
        (build,) = children
        launcher.kill()
        launcher.wait(timeout=10)
        stat = Path(f"/proc/{build}/stat")
        while stat.exists() and stat.read_text().split()[2] != "Z":
            assert time.monotonic() < ends, "the build outlived its launcher"
            time.sleep(0.05)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
