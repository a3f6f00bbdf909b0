"""The spaces of `l2compile sweep --search`, and the search's plan: what
`--set FIELD=space(...)` ranges over, checked against the spec before
anything runs (l2compile.search runs a search here, l2compile.search_ray on
a Ray cluster).

A `--set` takes a space: `l2=loguniform(1e-6,1e-1)`, `uniform(0,0.5)`,
`intuniform(16,256)` or `choice(32,64,128)` (`a,b,c` is a choice too; one
value is fixed). Each space's ends (each choice) are compiled into the spec
before anything runs, so a bad one is reported at its `--set`, as a grid's
values are. Each trial is then what a grid's is (l2compile.sweep).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from l2compile import sweep as sweep_
from l2compile.errors import SpecError
from l2compile.overrides import (
    Override,
    OverrideError,
    check_distinct,
    parse,
    split_values,
)

Log = Callable[[str], None]

SEARCHES = ("random", "tpe")
PRUNERS = ("median", "asha")
#: The most trials one search runs.
MAX_TRIALS = sweep_.MAX_TRIALS
#: `FIELD=name(args)`: a space.
_SPACE = re.compile(r"\s*([a-z]+)\s*\((.*)\)\s*", re.DOTALL)
#: Each space: how many arguments it takes (None: one or more).
SPACES: dict[str, int | None] = {
    "loguniform": 2,
    "uniform": 2,
    "intuniform": 2,
    "choice": None,
}


@dataclass(frozen=True)
class Space:
    """One `--set FIELD=space(...)`: the field and the values it ranges over."""

    override: Override  #: the field, with the space's ends (or choices)
    kind: str  #: loguniform, uniform, intuniform or choice

    @property
    def field(self) -> str:
        return self.override.field

    def distribution(self) -> Any:
        from optuna import distributions

        low, *rest = self.override.values
        if self.kind == "choice":
            return distributions.CategoricalDistribution(list(self.override.values))
        if self.kind == "intuniform":
            return distributions.IntDistribution(int(low), int(rest[0]))
        return distributions.FloatDistribution(
            float(low), float(rest[0]), log=self.kind == "loguniform"
        )


def is_space(text: str) -> bool:
    """Whether a `--set` is written as a space: `FIELD=name(...)`."""
    _, sep, value = text.partition("=")
    return bool(sep) and _SPACE.fullmatch(value) is not None


def parse_space(text: str) -> Space | Override:
    """One `--set` of a search: a space, or a value fixed for every trial.
    Several plain values (`a,b,c`) are a choice."""
    field, sep, value = text.partition("=")
    found = _SPACE.fullmatch(value) if sep else None
    if found is None:
        fixed = parse(text)
        if len(fixed.values) == 1:
            return fixed
        return _checked(Space(fixed, "choice"), text)
    kind, args = found.groups()
    where = f"--set {text if len(text) <= 80 else text[:60] + '...'}"
    if kind not in SPACES:
        raise OverrideError(
            f"{where}: unknown space {kind!r}; a search takes "
            + ", ".join(f"{k}(...)" for k in SPACES)
        )
    if not args.strip():
        raise OverrideError(f"{where}: {kind}() needs values")
    override = parse(f"{field}={','.join(split_values(args, where))}")
    return _checked(Space(override, kind), text)


def _checked(space: Space, text: str) -> Space:
    where = f"--set {text if len(text) <= 80 else text[:60] + '...'}"
    values, kind = space.override.values, space.kind
    wanted = SPACES[kind]
    if wanted is not None and len(values) != wanted:
        raise OverrideError(f"{where}: {kind} takes two values, low and high")
    if kind == "choice":
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise OverrideError(f"{where}: a value is given twice")
        if not all(isinstance(v, str | int | float | bool) for v in values):
            raise OverrideError(
                f"{where}: choice takes plain values (numbers, text, true/false)"
            )
        return space
    numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in values
    )
    if not numbers:
        raise OverrideError(f"{where}: {kind} takes two finite numbers")
    low, high = values
    if kind == "intuniform" and not all(float(v).is_integer() for v in values):
        raise OverrideError(f"{where}: intuniform takes two whole numbers")
    if not low < high:
        raise OverrideError(f"{where}: low must be below high ({low} >= {high})")
    if kind == "loguniform" and low <= 0:
        raise OverrideError(
            f"{where}: loguniform needs a low above 0 (got {low}); for a range "
            "from 0, add the 0 as a trial of its own or use uniform"
        )
    return space


@dataclass(frozen=True)
class SearchPlan:
    """A search, checked: its spaces, the sweep it shares everything else
    with (its trials are drawn as it runs), and how it searches and prunes."""

    sweep: sweep_.SweepPlan
    spaces: tuple[Space, ...]
    fixed: tuple[Override, ...]
    search: str
    trials: int
    prune: str | None
    seed: int  #: the sampler's (the spec's train.seed)
    epochs: int  #: each trial's (--epochs, else the spec's)
    texts: tuple[str, ...] = field(default=())  #: the --set as given

    def record(self) -> dict[str, Any]:
        """What --resume compares: the same spec, spaces, search and trials."""
        return {
            "spec": str(self.sweep.spec),
            "spec_sha256": self.sweep.spec_sha256,
            "search": self.search,
            "trials": self.trials,
            "prune": self.prune,
            "sets": list(self.texts),
            "epochs": self.sweep.epochs,
            "export": self.sweep.export,
        }


def plan_search(
    spec: Path,
    texts: Sequence[str],
    *,
    search: str,
    trials: int,
    prune: str | None = None,
    **options: Any,
) -> SearchPlan | list[SpecError]:
    """The search's spaces, each one's ends (or choices) compiled into the
    spec with the fixed values (every error, at its --set)."""
    if not 1 <= trials <= MAX_TRIALS:
        raise sweep_.SweepError(f"--trials {trials}: from 1 to {MAX_TRIALS:,}")
    parsed = [parse_space(text) for text in texts]
    check_distinct([p.override if isinstance(p, Space) else p for p in parsed])
    spaces: tuple[Space, ...] = tuple(p for p in parsed if isinstance(p, Space))
    fixed = tuple(p for p in parsed if isinstance(p, Override))
    if not spaces:
        raise sweep_.SweepError(
            f"--search {search}: no --set ranges over anything; give a space "
            "such as --set 'l2=loguniform(1e-6,1e-1)'"
        )
    errors: list[SpecError] = []
    base: sweep_.SweepPlan | None = None
    written = [(p, t) for p, t in zip(parsed, texts, strict=True) if p in spaces]
    for space, text in written:
        # Each space's ends (or choices), with the fixed values; an error at
        # one end is placed at the space's --set, as written.
        planned = sweep_.plan_sweep(spec, [*fixed, space.override], **options)
        if isinstance(planned, list):
            here = f"--set {space.field}="
            placed = [
                replace(e, file=f"--set {text}") if e.file.startswith(here) else e
                for e in planned
            ]
            errors += [e for e in placed if str(e) not in map(str, errors)]
        elif base is None:
            base = planned
    if errors or base is None:
        return errors
    fields = tuple(o.field for o in (*fixed, *(s.override for s in spaces)))
    return SearchPlan(
        sweep=replace(base, fields=fields, trials=()),
        spaces=spaces,
        fixed=fixed,
        search=search,
        trials=trials,
        prune=prune,
        seed=base.base_seed,
        epochs=base.epochs or _spec_epochs(spec),
        texts=tuple(texts),
    )


def _spec_epochs(spec: Path) -> int:
    from l2compile.generate import compile_spec

    found = compile_spec(spec)
    return 1 if isinstance(found, list) else found.plan.epochs


def make_trial(plan: SearchPlan, number: int, params: dict[str, Any]) -> sweep_.Trial:
    """The sweep trial of Optuna's trial `number` with the values `params`."""
    values = tuple(plan.fixed) + tuple(
        parse(f"{s.field}={json.dumps(params[s.field])}") for s in plan.spaces
    )
    return sweep_.make_trial(plan.sweep, f"{number:03d}", values)


def pruning_score(plan: SearchPlan, history: dict[str, list[float]]) -> list[float]:
    """The validation score each epoch: the one that chooses, where the build
    logs it each epoch, else the validation loss."""
    chosen = plan.sweep.choose
    key = chosen if chosen in history else "val_loss"
    return list(history.get(key, []))


def sampler(plan: SearchPlan) -> Any:
    """Optuna's sampler for the search, seeded by the spec's seed (the same
    locally and through Ray Tune's OptunaSearch): TPE draws its first
    min(10, trials / 2) trials at random."""
    import optuna

    if plan.search == "tpe":
        return optuna.samplers.TPESampler(
            seed=plan.seed, n_startup_trials=min(10, plan.trials // 2 or 1)
        )
    return optuna.samplers.RandomSampler(seed=plan.seed)
