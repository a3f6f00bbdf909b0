"""`l2compile sweep --search random|tpe --engine ray`: a search on a Ray
cluster, through Ray Tune: Optuna's sampler by Tune's `OptunaSearch`, and
`ASHAScheduler` (`--prune asha`) or `MedianStoppingRule` (`--prune median`)
stopping trials.

Each trial is still one `l2compile build` (l2compile.search makes its
command), run by a Tune function on a cluster node; that function reports
each epoch the build saves (its validation score) to Tune, and the trial's
end. A trial Tune stops is a `pruned` row; the rows, results and page are a
local search's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2compile import engines, workfolder
from l2compile import resume as saved_state
from l2compile import sweep as sweep_
from l2compile.spaces import SearchPlan, make_trial, pruning_score, sampler

#: How often a trial looks at its build's saved epochs.
POLL_SECONDS = 0.25

Log = Callable[[str], None]
#: What a trial reports each epoch, and the order Tune compares it in.
SCORE = "score"
EPOCH = "epoch"


def run(
    plan: SearchPlan,
    out: Path,
    todo: int,
    jobs: int,
    data: Path | None,
    done: Callable[[sweep_.Trial, dict[str, Any]], None],
) -> None:
    """Run `todo` trials on the cluster at $RAY_ADDRESS, `jobs` at a time;
    `done` gets each trial and how it ended (a pruned one with its last
    score)."""
    from ray.tune.search.optuna import OptunaSearch

    mode = "max" if plan.sweep.higher_is_better else "min"
    last: dict[str, dict[str, Any]] = {}
    ended: set[str] = set()
    with engines.ray_tune() as (tune, storage):
        callback: Any = tune.Callback

        class Reported(callback):  # type: ignore[misc]
            def on_trial_result(
                self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
            ) -> None:
                last[trial.trial_id] = dict(result)
                if result.get("ended"):
                    ended.add(trial.trial_id)
                    done(_of(plan, result), dict(result["report"]))

        searcher = OptunaSearch(
            space={f"p{i}": s.distribution() for i, s in enumerate(plan.spaces)},
            metric=SCORE,
            mode=mode,
            sampler=sampler(plan),
        )
        trainable = tune.with_parameters(
            _trial, plan=plan, out=str(out.resolve()), data=data, cwd=os.getcwd()
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(
                metric=SCORE,
                mode=mode,
                search_alg=searcher,
                scheduler=_scheduler(plan),
                num_samples=todo,
                max_concurrent_trials=jobs,
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=engines.run_config(tune, storage, Reported()),
        )
        grid = tuner.fit()
        for result in (grid[i] for i in range(len(grid))):
            _unreported(plan, result, last, ended, done)


def _unreported(
    plan: SearchPlan,
    result: Any,
    last: dict[str, dict[str, Any]],
    ended: set[str],
    done: Callable[[sweep_.Trial, dict[str, Any]], None],
) -> None:
    """A trial that did not report its end: stopped by the scheduler (pruned,
    with its last score), or failed in Ray."""
    metrics = result.metrics or {}
    trial_id = metrics.get("trial_id")
    if trial_id in ended or "trial" not in metrics:
        if trial_id not in ended and result.error is not None:
            raise RuntimeError(
                f"a Ray trial failed before its build began: {result.error}"
            )
        return
    latest = last.get(str(trial_id), metrics)
    trial = _of(plan, latest)
    if result.error is not None:
        done(trial, {"status": "failed", "error": str(result.error)})
        return
    key = plan.sweep.choose if latest.get("choose_logged") else "val_loss"
    pruned = {key: latest[SCORE], "epochs_trained": latest[EPOCH]}
    done(trial, {"status": "pruned", "error": "", "pruned": pruned})


def _of(plan: SearchPlan, result: dict[str, Any]) -> sweep_.Trial:
    """The sweep trial a Tune result reports on."""
    return make_trial(plan, int(result["trial"]), dict(result["params"]))


def _scheduler(plan: SearchPlan) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if plan.prune == "asha":
        epochs = plan.sweep.epochs or plan.epochs
        # A trial that reaches the last epoch ends as its build does.
        return ASHAScheduler(
            time_attr=EPOCH, max_t=epochs, grace_period=1, stop_last_trials=False
        )
    if plan.prune == "median":
        return MedianStoppingRule(
            time_attr=EPOCH, grace_period=1, min_samples_required=2
        )
    return FIFOScheduler()  # type: ignore[no-untyped-call]


def _next_number(out: Path) -> int:
    """The next trial's number, from 0 in the order trials start: a counter
    in the sweep folder (which every node shares), taken under a lock."""
    import fcntl

    with open(out / sweep_.TRIALS / ".numbers", "a+", encoding="ascii") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        taken = len(counter.read())
        counter.write("x")
        return taken


def _trial(
    config: dict[str, Any], plan: SearchPlan, out: str, data: Path | None, cwd: str
) -> None:
    """A Tune trial: one build, its saved epochs reported as they come, then
    its end."""
    from ray import tune

    number = _next_number(Path(out))
    params = {s.field: config[f"p{i}"] for i, s in enumerate(plan.spaces)}
    trial = make_trial(plan, number, params)
    about = {"trial": number, "params": params}
    problem = sweep_.trial_problem(plan.sweep, trial)
    if problem is not None:
        report = {"status": "failed", "error": problem}
        tune.report({SCORE: 0.0, EPOCH: 0, "ended": True, "report": report, **about})
        return
    command = sweep_.build_command(plan.sweep, trial, Path(out), data, resume=False)
    run = engines.TrialRun(
        trial.id,
        tuple(command),
        str(Path(out) / sweep_.TRIALS / f"{trial.id}.log"),
        cwd,
    )
    ended: dict[str, Any] = {}
    build = threading.Thread(
        target=lambda: ended.update(engines.run_trial(run, own_session=False))
    )
    build.start()
    work = workfolder.work_folder(sweep_.trial_dir(Path(out), trial))
    reported, score = 0, 0.0
    while build.is_alive():
        build.join(POLL_SECONDS)
        try:
            saved = saved_state.read(work)
        except saved_state.UnreadableState:
            continue
        if saved is None:
            continue
        logged = plan.sweep.choose in saved.history
        for score in pruning_score(plan, saved.history)[reported:]:
            reported += 1
            tune.report(
                {SCORE: score, EPOCH: reported, "choose_logged": logged, **about}
            )
    tune.report(
        {SCORE: score, EPOCH: reported, "ended": True, "report": ended, **about}
    )
