"""`l2compile sweep --search random|tpe --trials N`: a search of spaces
rather than a grid, on Optuna, with bad trials stopped early (`--prune
median|asha`).

The spaces (`--set 'l2=loguniform(1e-6,1e-1)'`) and the checked plan are
l2compile.spaces; on a Ray cluster, l2compile.search_ray runs the trials.
Each trial is what a grid's is (l2compile.sweep): an
ordinary `l2compile build --set ...` into `DIR/trials/<number>/`, with its
own seed, the sweep's data split and export off unless asked, read into one
row of results.csv.

While a trial trains, the search reads the state its build saves after
every epoch for --resume (its validation score, l2compile.resume) and
reports it to the study; a trial the pruner stops is interrupted like
Ctrl-C, its row marked `pruned`. The study lives in `study.db` (SQLite) in
the sweep folder, so `--resume` continues it: the trials that were running
are run again with the same values, continuing their saved epochs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from l2compile import engines, workfolder
from l2compile import resume as saved_state
from l2compile import sweep as sweep_
from l2compile.errors import BuildError
from l2compile.files import json_text, write_atomically
from l2compile.spaces import SearchPlan, make_trial, pruning_score, sampler

Log = Callable[[str], None]

#: The study's SQLite file in the sweep folder.
STUDY = "study.db"
STUDY_NAME = "l2compile"
#: The mark of a trial stopped with its search and run again.
RESTARTED = "restarted"
#: How often a search looks at its running trials' saved epochs.
POLL_SECONDS = 0.25


# --- running ----------------------------------------------------------------------


def check(search: str, engine: str) -> None:
    """The packages a search needs are installed, before anything is made."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise BuildError(
            f"--search {search} runs on Optuna, which is not installed; install "
            "it with: pip install 'l2compile[search]'"
        )
    engines.check(engine)


def _study(plan: SearchPlan, out: Path) -> Any:
    """The study in the sweep folder: made, or (on --resume) loaded."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: Any = optuna.pruners.NopPruner()
    if plan.prune == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    elif plan.prune == "asha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.create_study(
        storage=f"sqlite:///{(out / STUDY).resolve()}",
        study_name=STUDY_NAME,
        sampler=sampler(plan),
        pruner=pruner,
        direction="maximize" if plan.sweep.higher_is_better else "minimize",
        load_if_exists=True,
    )


@dataclass
class _Running:
    """A trial whose build runs: its Optuna trial, its sweep trial, its
    process (once started) and the epochs reported."""

    asked: Any
    trial: sweep_.Trial
    future: Future[dict[str, Any]] | None = None
    process: Any = None
    reported: int = 0
    pruned: dict[str, Any] | None = None


def run_search(
    plan: SearchPlan,
    out: Path,
    *,
    jobs: int = 1,
    engine: str = "local",
    data: Path | None = None,
    resume: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Run the search's trials until it has `plan.trials` finished (pruned
    and failed ones count), `jobs` at a time, writing results.csv,
    results.json, the plots and report.html as each ends; the results."""
    check(plan.search, engine)
    lock = sweep_.lock_folder(out)
    try:
        if resume and engine == "ray" and (out / sweep_.RECORD).is_file():
            raise BuildError(
                "--resume continues a search on the local engine; a search on Ray "
                "(--engine ray) starts over: choose another --out"
            )
        sweep_.open_record(out, plan.record(), resume)
        study = _study(plan, out)
        rows = _rows(plan, out, study)
        _rerun_stopped(plan, study, log)
        done = [t for t in study.trials if _counted(t)]
        todo = plan.trials - len(done)
        log(
            f"{plan.search} search: {plan.trials} trials, {todo} to run"
            + (f" ({len(done)} finished before)" if done else "")
            + f", {max(1, min(jobs, todo))} at a time"
            + (f", pruning with {plan.prune}" if plan.prune else "")
            + f"; logs in {out / sweep_.TRIALS}/"
        )
        if engine == "ray":
            _run_ray(plan, out, todo, jobs, data, rows, log)
        else:
            _run_local(plan, out, study, todo, jobs, data, rows, log)
        results = sweep_.write_results(plan.sweep, out, list(rows.values()))
        sweep_.write_report(plan.sweep, out, results)
        return results
    finally:
        os.close(lock)


def _counted(trial: Any) -> bool:
    """Whether an Optuna trial is one of the search's finished trials."""
    return bool(trial.state.is_finished()) and not trial.user_attrs.get(RESTARTED)


def _rows(plan: SearchPlan, out: Path, study: Any) -> dict[str, dict[str, Any]]:
    """The rows of the trials a search finished before (--resume)."""
    rows = {}
    for finished in study.trials:
        if _counted(finished) and "trial" in finished.user_attrs:
            trial = make_trial(plan, finished.number, finished.params)
            trial = replace(trial, id=finished.user_attrs["trial"])
            rows[trial.id] = sweep_.row(
                plan.sweep, out, trial, sweep_.read_run(out, trial)
            )
    return rows


def _rerun_stopped(plan: SearchPlan, study: Any, log: Log) -> None:
    """Trials a stopped search left running are run again, with the same
    values in the same folder (their builds continue their saved epochs)."""
    from optuna.trial import Trial, TrialState

    for stopped in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        folder = stopped.user_attrs.get("trial", f"{stopped.number:03d}")
        study.enqueue_trial(stopped.params, user_attrs={"trial": folder})
        # Counted neither as a trial nor as a row: its values run again.
        Trial(study, stopped._trial_id).set_user_attr(RESTARTED, True)
        study.tell(stopped.number, state=TrialState.FAIL)
        log(f"trial {folder} was running when the search stopped: running it again")


def _run_ray(
    plan: SearchPlan,
    out: Path,
    todo: int,
    jobs: int,
    data: Path | None,
    rows: dict[str, dict[str, Any]],
    log: Log,
) -> None:
    """Run `todo` trials through Ray Tune (l2compile.search_ray)."""
    from l2compile import search_ray

    def done(trial: sweep_.Trial, report: dict[str, Any]) -> None:
        _record(plan, out, trial, report, rows, log)

    search_ray.run(plan, out, todo, jobs, data, done)


def _run_local(
    plan: SearchPlan,
    out: Path,
    study: Any,
    todo: int,
    jobs: int,
    data: Path | None,
    rows: dict[str, dict[str, Any]],
    log: Log,
) -> None:
    """Run `todo` trials on this machine, `jobs` at a time, reporting each
    one's epochs to the study and stopping those it prunes."""
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    running: list[_Running] = []
    started = 0
    try:
        while started < todo or running:
            while started < todo and len(running) < jobs:
                started += 1
                found = _start(plan, out, study, pool, data, rows, log)
                if found is not None:
                    running.append(found)
            time.sleep(POLL_SECONDS)
            for each in list(running):
                _report(plan, out, each)
                assert each.future is not None
                if each.future.done():
                    running.remove(each)
                    _finish(plan, out, study, each, each.future.result(), rows, log)
    except BaseException:
        for each in running:
            if each.process is not None:
                engines.stop(each.process)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _start(
    plan: SearchPlan,
    out: Path,
    study: Any,
    pool: ThreadPoolExecutor,
    data: Path | None,
    rows: dict[str, dict[str, Any]],
    log: Log,
) -> _Running | None:
    """Ask the study for a trial and start its build; None where its values
    make an invalid spec (a failed trial, with its row)."""
    from optuna.trial import TrialState

    asked = study.ask({s.field: s.distribution() for s in plan.spaces})
    folder = asked.user_attrs.get("trial") or f"{asked.number:03d}"
    asked.set_user_attr("trial", folder)
    trial = replace(make_trial(plan, asked.number, asked.params), id=folder)
    problem = sweep_.trial_problem(plan.sweep, trial)
    if problem is not None:
        study.tell(asked, state=TrialState.FAIL)
        report = {"status": "failed", "error": problem}
        _record(plan, out, trial, report, rows, log)
        return None
    command = sweep_.build_command(plan.sweep, trial, out, data, resume=True)
    run = engines.TrialRun(
        trial.id,
        tuple(command),
        str((out / sweep_.TRIALS / f"{trial.id}.log").resolve()),
        str(Path.cwd()),
    )
    each = _Running(asked, trial)

    def started(process: Any) -> bool:
        each.process = process
        return True

    each.future = pool.submit(engines.run_trial, run, started)
    return each


def _report(plan: SearchPlan, out: Path, each: _Running) -> None:
    """Report the trial's newly saved epochs to the study; stop its build
    (as Ctrl-C does) where the pruner says so."""
    if each.pruned is not None or each.process is None:
        return
    work = workfolder.work_folder(sweep_.trial_dir(out, each.trial))
    try:
        saved = saved_state.read(work)
    except saved_state.UnreadableState:
        return  # being written: read at the next look
    if saved is None:
        return
    scores = pruning_score(plan, saved.history)
    for epoch in range(each.reported, len(scores)):
        each.asked.report(scores[epoch], epoch + 1)
        each.reported = epoch + 1
        if each.asked.should_prune():
            key = (
                plan.sweep.choose if plan.sweep.choose in saved.history else "val_loss"
            )
            each.pruned = {key: scores[epoch], "epochs_trained": epoch + 1}
            engines.stop(each.process)
            return


def _finish(
    plan: SearchPlan,
    out: Path,
    study: Any,
    each: _Running,
    report: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    log: Log,
) -> None:
    """Tell the study how the trial ended, and write its row."""
    from optuna.trial import TrialState

    trial = each.trial
    if each.pruned is not None:
        report = {**report, "status": "pruned", "error": "", "pruned": each.pruned}
        study.tell(each.asked, state=TrialState.PRUNED)
        _record(plan, out, trial, report, rows, log)
        return
    found = _record(plan, out, trial, report, rows, log)
    score = found.get(plan.sweep.choose)
    if found["status"] == "ok" and isinstance(score, int | float):
        study.tell(each.asked, float(score))
    else:
        study.tell(each.asked, state=TrialState.FAIL)


def _record(
    plan: SearchPlan,
    out: Path,
    trial: sweep_.Trial,
    report: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    log: Log,
) -> dict[str, Any]:
    """The trial's run record and row, then every results file whole."""
    if report.get("status") == "pruned":  # never continued: its epochs go
        work = workfolder.work_folder(sweep_.trial_dir(out, trial))
        shutil.rmtree(work, ignore_errors=True)
    write_atomically(sweep_.run_file(out, trial), json_text(report))
    found = sweep_.row(plan.sweep, out, trial, report)
    rows[trial.id] = found
    sweep_.write_report(
        plan.sweep, out, sweep_.write_results(plan.sweep, out, list(rows.values()))
    )
    score = found.get(plan.sweep.choose)
    if found["status"] == "pruned":
        pruned = report["pruned"]
        key = next(k for k in pruned if k != "epochs_trained")
        outcome = (
            f"pruned after epoch {pruned['epochs_trained']} ({key} {pruned[key]:.4f})"
        )
    elif isinstance(score, float):
        outcome = f"{plan.sweep.choose} {score:.4f}"
    else:
        outcome = f"{found['status']}: {found.get('error', '')}"
    log(
        f"[{len(rows)}/{plan.trials}] trial {trial.id} ({trial.label()}): {outcome}"
        + (f" ({report['seconds']:.0f} s)" if report.get("seconds") else "")
    )
    return found
