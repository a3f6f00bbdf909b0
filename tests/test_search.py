"""`l2compile sweep --search random|tpe --trials N --prune median|asha`: the
spaces and their errors, and real searches of tiny builds on Optuna (a
pruned trial; Ctrl-C and --resume finishing the same study)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from l2compile import search, spaces
from l2compile.overrides import OverrideError
from tests.conftest import SMALL_SPEC, make_mnist_npz

#: Three epochs, so that a trial can be pruned before it ends.
SPEC = SMALL_SPEC.replace("epochs: 1", "epochs: 3")
#: An l2 above 1 leaves this model at chance: a region certain to be bad.
SPACES = ("--set", "l2=loguniform(1e-4,30)", "--set", "layers.1.units=choice(4,16)")


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


# --- spaces -------------------------------------------------------------------


@pytest.mark.unit
def test_spaces_are_read_with_their_ends() -> None:
    space = spaces.parse_space("l2=loguniform(1e-6, 1e-1)")
    assert isinstance(space, spaces.Space)
    assert (space.kind, space.field, space.override.values) == (
        "loguniform",
        "l2",
        (1e-6, 0.1),
    )
    distribution = space.distribution()
    assert (distribution.low, distribution.high, distribution.log) == (1e-6, 0.1, True)
    units = spaces.parse_space("layers[1].units=intuniform(16,256)")
    assert isinstance(units, spaces.Space)
    assert units.override.path == ("layers", 1, "units")
    assert (units.distribution().low, units.distribution().high) == (16, 256)
    choice = spaces.parse_space("layers.1.units=choice(32,64,128)")
    assert isinstance(choice, spaces.Space)
    assert choice.distribution().choices == (32, 64, 128)
    # Plain values: several are a choice, one is fixed for every trial.
    plain = spaces.parse_space("train.optimizer.type=adam,sgd")
    assert isinstance(plain, spaces.Space) and plain.kind == "choice"
    fixed = spaces.parse_space("train.batch_size=64")
    assert not isinstance(fixed, spaces.Space) and fixed.values == (64,)
    assert spaces.is_space("l2=uniform(0,1)") and not spaces.is_space("l2=0,1")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("l2=loguniform(0,1)", "loguniform needs a low above 0"),
        ("l2=loguniform(1e-3)", "loguniform takes two values, low and high"),
        ("l2=uniform(1,0.5)", "low must be below high"),
        ("l2=uniform(a,1)", "uniform takes two finite numbers"),
        ("l2=uniform(.nan,1)", "uniform takes two finite numbers"),
        ("layers.1.units=intuniform(1.5,8)", "intuniform takes two whole numbers"),
        ("layers.1.units=choice(8,8)", "a value is given twice"),
        ("layers.1.units=choice([1],[2])", "choice takes plain values"),
        ("l2=normal(0,1)", "unknown space 'normal'"),
        ("l2=choice()", "choice() needs values"),
    ],
)
def test_a_bad_space_is_an_error_at_its_set(text: str, message: str) -> None:
    with pytest.raises(OverrideError) as error:
        spaces.parse_space(text)
    assert str(error.value).startswith(f"--set {text}: ")
    assert message in str(error.value)


@pytest.mark.unit
def test_a_space_whose_end_the_spec_refuses_is_reported_before_anything_runs(
    tmp_path: Path,
) -> None:
    found = spaces.plan_search(
        _spec(tmp_path),
        ["layers.1.units=intuniform(0,8)", "l2=uniform(0.001,0.1)"],
        search="tpe",
        trials=4,
    )
    assert isinstance(found, list)
    (error,) = found
    assert error.file == "--set layers.1.units=intuniform(0,8)"
    assert "layers[1].units" in str(error)
    assert not (tmp_path / "out").exists()


#: The same field in two --set.
TWICE = ["--set", "l2=uniform(0,1)", "--set", "l2=choice(0,1)", "--search", "tpe"]
TWICE += ["--trials", "3"]


@pytest.mark.unit
def test_a_search_needs_a_space_and_the_cli_says_what_goes_with_what(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from l2compile.cli import main

    spec = str(_spec(tmp_path))
    runner = CliRunner()
    cases = [
        (["--set", "l2=0.01", "--search", "tpe", "--trials", "3"], "no --set ranges"),
        (["--set", "l2=loguniform(1e-3,1)"], "add --search random|tpe"),
        (["--set", "l2=0,1", "--trials", "3"], "--trials and --prune go with --search"),
        (["--set", "l2=uniform(0,1)", "--search", "random"], "needs --trials N"),
        (
            TWICE,
            "--set l2 and --set l2 set the same field",
        ),
        (
            ["--set", "l2=uniform(0,1)", "--search", "tpe", "--trials", "2000"],
            "--trials 2000: from 1 to 1,000",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["sweep", spec, *args, "--out", "o"])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


# --- real searches ----------------------------------------------------------------


def _study_states(out: Path) -> list[str]:
    import optuna

    study = optuna.load_study(
        study_name=search.STUDY_NAME, storage=f"sqlite:///{out / search.STUDY}"
    )
    return [t.state.name for t in study.trials if not t.user_attrs.get("restarted")]


def _command(spec: Path, data: Path, *more: str) -> list[str]:
    return [
        *(sys.executable, "-m", "l2compile", "sweep", str(spec), *SPACES),
        *("--search", "tpe", "--trials", "6", "--prune", "median"),
        *("--data", str(data), "--out", "out", *more),
    ]


@pytest.mark.build
def test_a_tpe_search_prunes_a_trial_in_the_bad_region(tmp_path: Path) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
    done = subprocess.run(
        _command(_spec(tmp_path), data),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    rows = json.loads((out / "results.json").read_text())["trials"]
    assert len(rows) == 6
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned, [(r["l2"], r["status"]) for r in rows]
    assert any(r["l2"] > 1 for r in pruned)  # the bad region
    for r in pruned:
        assert r["epochs_trained"] < 3 and isinstance(r["val_accuracy"], float)
        assert not (out / "trials" / r["trial"] / "metrics.json").exists()
        assert not (out / "trials" / f".{r['trial']}.partial").exists()
    assert "pruned after epoch" in done.stderr
    assert sorted(_study_states(out)) == sorted(
        "PRUNED" if r["status"] == "pruned" else "COMPLETE" for r in rows
    )
    best = json.loads((out / "results.json").read_text())["best"]
    assert best in {r["trial"] for r in rows if r["status"] == "ok"}
    with (out / "results.csv").open() as f:
        assert sum(",pruned," in line for line in f) == len(pruned)
    assert "pruned" in (out / "report.html").read_text()


@pytest.mark.build
def test_ctrl_c_and_resume_finish_the_same_study(tmp_path: Path) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    process = subprocess.Popen(
        _command(spec, data),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Stop it once two trials have finished and the third has begun.
    ends = time.monotonic() + 600
    while not (out / "trials" / "002.log").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < ends
        time.sleep(0.1)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "add --resume to continue" in stderr
    before = json.loads((out / "results.json").read_text())["trials"]
    assert 2 <= len(before) < 6

    done = subprocess.run(
        _command(spec, data, "--resume"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["trials"]
    assert len(rows) == 6
    assert {r["trial"]: r["l2"] for r in before}.items() <= {
        r["trial"]: r["l2"] for r in rows
    }.items()
    states = _study_states(out)
    assert len(states) == 6 and all(s in ("COMPLETE", "PRUNED") for s in states)


@pytest.mark.external
def test_a_search_through_a_local_ray_head(tmp_path: Path) -> None:
    """The Ray variant: Tune's OptunaSearch draws, ASHAScheduler prunes, each
    trial one build on the head that the test starts on 127.0.0.1."""
    from tests.test_sweep import local_ray_head

    with local_ray_head() as env:
        data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
        command = [*(sys.executable, "-m", "l2compile", "sweep"), str(_spec(tmp_path))]
        command += [*SPACES, "--search", "tpe", "--trials", "4", "--prune", "asha"]
        command += ["--data", str(data), "--out", "out", "--engine", "ray"]
        done = subprocess.run(
            [*command, "--jobs", "2"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    rows = results["trials"]
    assert sorted(r["trial"] for r in rows) == ["000", "001", "002", "003"]
    assert {r["status"] for r in rows} <= {"ok", "pruned"}
    assert all(1e-4 <= r["l2"] <= 30 and r["layers.1.units"] in (4, 16) for r in rows)
    finished = [r for r in rows if r["status"] == "ok"]
    assert finished and results["best"] in {r["trial"] for r in finished}
    for r in finished:
        assert (out / "trials" / r["trial"] / "metrics.json").is_file()
    for r in rows:
        assert not (out / "trials" / f".{r['trial']}.partial").exists()
