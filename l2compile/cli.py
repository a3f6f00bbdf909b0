"""The `l2compile` command line: validate, generate, build.

Nothing here imports TensorFlow; only `build` does, through `l2compile.build`,
and only once the spec is valid and the data found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from l2compile import __version__, backends, interrupts, report, terminal
from l2compile import generate as generate_
from l2compile import overrides as overrides_
from l2compile.backends import Choice
from l2compile.errors import BuildError, Interrupted, SpecError
from l2compile.files import write_atomically
from l2compile.formats import FORMATS, artifacts
from l2compile.generate import Compiled, compile_spec, display_path
from l2compile.nodes import ModelPlan
from l2compile.overrides import Override
from l2compile.spec import json_schema
from l2compile.tasks import METRIC_KINDS

EXIT_OK = 0
EXIT_STALE = 1
EXIT_SPEC_ERROR = 2
EXIT_FAILURE = 3
EXIT_INTERRUPTED = interrupts.EXIT_INTERRUPTED

_EXIT_CODES = f"""\b
Exit codes, the same for every command:
  {EXIT_OK}    success
  {EXIT_STALE}    generate --check: a generated module is missing or out of date
  {EXIT_SPEC_ERROR}    a spec (or the command line) is invalid; nothing was written
  {EXIT_FAILURE}    anything else failed (data not found, training or export
       failed); nothing was replaced (trained epochs are kept for --resume)
  {EXIT_INTERRUPTED}  interrupted; nothing was replaced (build keeps its finished
       epochs for --resume)
"""

_CONTEXT = {"help_option_names": ["-h", "--help"]}

_VERBOSE = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show what TensorFlow and LiteRT log themselves (as does "
    "L2COMPILE_DEBUG=1, which also shows tracebacks).",
)


def _report(errors: list[SpecError]) -> None:
    for error in errors:
        click.echo(str(error), err=True)
    count = len(errors)
    click.echo(
        f"{count} error{'s' if count != 1 else ''} in {errors[0].file}", err=True
    )


def _unexpected(exc: Exception, doing: str) -> NoReturn:
    """An unexpected failure as one line (its traceback with L2COMPILE_DEBUG),
    or the interrupt that TensorFlow turned into it."""
    if interrupts.received():
        raise KeyboardInterrupt from None
    if os.environ.get(terminal.DEBUG_ENV):
        raise exc
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    _fail(f"{doing}: {type(exc).__name__}: {reason}")


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    if code == EXIT_INTERRUPTED and interrupts.installed():
        interrupts.stop_raising()  # the one line is all a user should see
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _compile_or_exit(
    path: Path, backend: Choice | None = None, overrides: tuple[Override, ...] = ()
) -> Compiled:
    compiled = compile_spec(path, backend=backend, overrides=overrides)
    if isinstance(compiled, list):
        _report(compiled)
        sys.exit(EXIT_SPEC_ERROR)
    _warn(compiled)
    return compiled


def _with_data(compiled: Compiled, version_header: bool = True) -> Compiled:
    """A spec without input.shape, planned with the shape its data gives
    (read from the spec's train.data); exit 3 where the data cannot be read."""
    if not compiled.plan.derived_input:
        return compiled
    from l2compile import build as builder  # reads the data with numpy

    try:
        return builder.derived(
            compiled,
            lambda line: click.echo(f"l2compile: {line}", err=True),
            version_header=version_header,
        )
    except BuildError as exc:
        _fail(f"input.shape is derived from the data: {exc}")


def _warn(compiled: Compiled) -> None:
    """A valid spec's warnings, one line each."""
    for warning in compiled.plan.warnings:
        click.echo(str(warning), err=True)


def _overrides(sets: tuple[str, ...], *, several: bool) -> tuple[Override, ...]:
    """The --set options read; exit 2 on one that cannot be."""
    try:
        found = tuple(overrides_.parse(text) for text in sets)
        overrides_.check_distinct(found)
    except overrides_.OverrideError as exc:
        _fail(str(exc), EXIT_SPEC_ERROR)
    for override in found:
        if not several and len(override.values) > 1:
            _fail(
                f"--set {override.text}: build takes one value per field "
                "(l2compile sweep tries several)",
                EXIT_SPEC_ERROR,
            )
    return found


def _spec_files(specs: tuple[Path, ...]) -> list[Path]:
    files = generate_.spec_files(list(specs))
    if isinstance(files, str):
        _fail(files, EXIT_SPEC_ERROR)
    return files


_SET_HELP = (
    "Override a spec field, by its path as the errors write it: "
    "--set l2=0.001, --set train.optimizer.learning_rate=3e-4, "
    "--set layers[0].units=64. Values are read as YAML. Repeatable."
)


class _Commands(click.Group):
    """The commands, each ending with one line and exit 130 on Ctrl-C or
    SIGTERM, whatever it was doing (click's own answer is `Aborted!`, exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)


@click.group(cls=_Commands, context_settings=_CONTEXT, epilog=_EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="l2compile")
def main() -> None:
    """Compile declarative Keras model specs (YAML) into readable Keras code,
    and train and export the models they describe."""


@main.command(epilog=_EXIT_CODES)
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(specs: tuple[Path, ...]) -> None:
    """Check SPECS and report every error, with its file, line and field."""
    failed = False
    for path in _spec_files(specs):
        compiled = compile_spec(path)
        if isinstance(compiled, list):
            _report(compiled)
            failed = True
            continue
        _warn(compiled)
        plan = compiled.plan
        counts = (
            "input.shape derived from the data when it builds"
            if plan.derived_input
            else f"{plan.params:,} parameters, {plan.regularized_params:,} with L2"
        )
        click.echo(
            f"{display_path(path)}: ok ({plan.name}: {len(plan.layers)} layers, "
            f"{counts})"
        )
    sys.exit(EXIT_SPEC_ERROR if failed else EXIT_OK)


@main.command(epilog=_EXIT_CODES)
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--layers",
    "show_layers",
    is_flag=True,
    help="List the layers instead: names, inputs, output shapes (the graph).",
)
def inspect(spec: Path, as_json: bool, show_layers: bool) -> None:
    """List every weight of SPEC's model: shape, parameters, L2 and weight decay."""
    plan = _with_data(_compile_or_exit(spec)).plan
    if as_json:
        click.echo(json.dumps(report.as_data(plan), indent=2))
    elif show_layers:
        click.echo(report.as_layer_table(plan))
    else:
        click.echo(report.as_table(plan))


#: eval's help: what it scores, each export format by name (l2compile.formats).
_EVAL_HELP = f"""Score ARTIFACT ({artifacts()}) on
    the test split of the spec's recipe: the task's metrics (accuracy, auc,
    mae, ...), loss, size and latency.

    A SavedModel runs its own graph: evaluate only artifacts you trust
    (a .keras file is loaded in Keras' safe mode)."""


@main.command("eval", epilog=_EXIT_CODES, help=_EVAL_HELP)
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    help="The spec the artifact was built from (its recipe and preprocessing). "
    "Default: the one the build's manifest.json names (from the working folder, "
    "else from the build folder), if it is unchanged since the build.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The recipe's data, as for build. Default: as for build.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="The fields the build overrode, as build --set took them. Default: "
    "those the build's manifest records, when the spec is the one it names; "
    "given, they replace those.",
)
@_VERBOSE
def eval_(
    artifact: Path,
    spec_path: Path | None,
    data: Path | None,
    sets: tuple[str, ...],
    verbose: bool,
) -> None:
    # Its help: _EVAL_HELP.
    if verbose:
        terminal.show_native_logs()
    from l2compile import evaluate  # TensorFlow only once it scores

    named_by = ""
    if spec_path is None:
        try:
            found = evaluate.spec_of_build(artifact)
        except BuildError as exc:
            _fail(str(exc))
        spec_path, named_by = found.spec, f" (named by {found.manifest})"
        sets = sets or found.overrides
    compiled = _compile_or_exit(spec_path, overrides=_overrides(sets, several=False))
    try:
        result = evaluate.evaluate_artifact(
            artifact,
            compiled.plan,
            compiled.code,
            data,
            log=lambda message: click.echo(f"l2compile: {message}", err=True),
        )
    except BuildError as exc:
        _fail(str(exc))
    except Exception as exc:
        _unexpected(exc, f"cannot evaluate {artifact}")
    click.echo(f"artifact:  {artifact} ({result.kind})")
    click.echo(f"spec:      {compiled.plan.source_file}{named_by}")
    click.echo(f"data:      {result.data} ({result.samples:,} test samples)")
    for metric, value in result.scores.items():
        shown = f"{value:.4f}" if math.isfinite(value) else "undefined"
        why = METRIC_KINDS[metric].undefined if not math.isfinite(value) else ""
        click.echo(f"{metric + ':':<10} {shown}" + (f" ({why})" if why else ""))
    click.echo(f"loss:      {result.loss:.4f} ({result.loss_note})")
    click.echo(f"size:      {result.size_bytes:,} bytes")
    click.echo(
        f"latency:   {result.mean_latency_ms:.4f} ms per sample "
        f"(mean, in batches of {result.batch})"
    )
    for line in evaluate.breakdown_lines(result.breakdown):
        click.echo(line)


@main.command(epilog=_EXIT_CODES)
@click.argument("build_folder", type=click.Path(path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="New rows (a CSV file with the columns the model reads, labels "
    "optional), images or .txt documents (a folder, searched through, or one "
    "file).",
)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="The artifact to run: a .keras file, a SavedModel folder or a .tflite "
    "file. Default: the build's model.keras, else saved_model/, else "
    "model.tflite.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Write the predictions there (CSV), replacing it whole. Default: "
    "standard output.",
)
@_VERBOSE
def predict(
    build_folder: Path,
    data: Path,
    model: Path | None,
    out: Path | None,
    verbose: bool,
) -> None:
    """Predict with a build's model on new rows of a table, images or texts.

    Writes one row per input: its key (the line a row starts on, or a file's
    path in the folder), the class predicted and each class's
    probability (probability_<class>), or one column per regression target.
    The data is read with the build's own rules and encoders."""
    if verbose:
        terminal.show_native_logs()
    from l2compile import predict as predict_  # TensorFlow only once it runs

    def log(message: str) -> None:
        click.echo(f"l2compile: {message}", err=True)

    if out is not None and out.resolve() == data.resolve():
        _fail(f"-o {out} is the data it reads; write the predictions elsewhere")
    try:
        found = predict_.predict_build(build_folder, data, model, log=log)
        text = found.csv_text()
        if out is not None:
            write_atomically(out, text.encode("utf-8"))
    except BuildError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{out}: cannot write: {exc.strerror or exc}")
    except Exception as exc:
        _unexpected(exc, f"cannot predict with {build_folder}")
    if out is None:
        click.echo(text, nl=False)
    else:
        log(f"wrote {len(found.rows):,} predictions to {out}")


@main.command(epilog=_EXIT_CODES)
def schema() -> None:
    """Print the JSON Schema of spec files, for editor completion and checks."""
    click.echo(json.dumps(json_schema(), indent=2))


@main.command(epilog=_EXIT_CODES)
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="For one spec: the file to write, or a folder (existing, or ending in /). "
    "For several: the folder. Default: the working folder, <name>.py each.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing: exit 1 and show a diff if a module is missing or differs.",
)
@click.option(
    "--no-version-header",
    is_flag=True,
    help="Leave the l2compile version out of the header, so that upgrading "
    "l2compile does not change the output.",
)
def generate(
    specs: tuple[Path, ...], output: str | None, check: bool, no_version_header: bool
) -> None:
    """Write one Keras module per spec in SPECS (files or folders), without training."""
    files = _spec_files(specs)
    compiled = []
    failed = False
    for path in files:
        result = compile_spec(path, version_header=not no_version_header)
        if isinstance(result, list):
            _report(result)
            failed = True
        else:
            compiled.append((path, _with_data(result, not no_version_header)))
    if failed:
        sys.exit(EXIT_SPEC_ERROR)  # all or nothing: no module from a half-valid set
    outputs = generate_.plan_outputs(compiled, output)
    if isinstance(outputs, str):
        _fail(outputs, EXIT_SPEC_ERROR)
    if check:
        stale = [d for d in map(generate_.difference, outputs) if d is not None]
        for message in stale:
            click.echo(message)
        if stale:
            click.echo(
                f"{len(stale)} of {len(outputs)} generated module(s) out of date; "
                "run the same command without --check to update them",
                err=True,
            )
            sys.exit(EXIT_STALE)
        click.echo(f"{len(outputs)} generated module(s) up to date")
        return
    for item in outputs:
        try:
            write_atomically(item.target, item.code)
        except OSError as exc:
            _fail(f"cannot write {item.target}: {exc.strerror or exc}")
        click.echo(f"wrote {item.target}")


@main.command("import", epilog=_EXIT_CODES)
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="The spec file to write. Default: MODEL's file name with .yaml, in the "
    "working folder.",
)
@click.option(
    "--name", help="The spec's name. Default: the model's, made a Python name."
)
@click.option(
    "--l2",
    type=click.FloatRange(min=0),
    help="Put this L2 coefficient on every kernel, in place of the file's "
    "regularizers.",
)
@click.option(
    "--weights-from-model",
    is_flag=True,
    help="Also write the model's weights beside the spec (<spec>.weights.h5), "
    "which the spec's train.initial_weights loads before training.",
)
def import_(
    model: Path,
    output: Path | None,
    name: str | None,
    l2: float | None,
    weights_from_model: bool,
) -> None:
    """Write a spec for the Keras model in MODEL (.keras): its layers, wiring,
    arguments and regularizers, checked to plan to the same model. Nothing is
    written where any layer cannot be expressed; every such layer is listed."""
    from l2compile import processes
    from l2compile.import_check import import_model, weights_beside
    from l2compile.importing import ImportFailed, spec_name
    from l2compile.spec import module_name_problem

    if model.is_dir():
        _fail(
            f"{model} is a folder (a SavedModel?): import reads a .keras file, "
            "as model.save('model.keras') writes it",
            EXIT_SPEC_ERROR,
        )
    if not model.is_file():
        _fail(f"{model}: no such file", EXIT_SPEC_ERROR)
    if name is not None and (problem := module_name_problem(name)) is not None:
        _fail(f"--name {name!r}: {problem} (e.g. {spec_name(name)!r})", EXIT_SPEC_ERROR)
    out = output or Path(f"{name or spec_name(model.stem)}.yaml")
    taken = [out, *([weights_beside(out)] if weights_from_model else [])]
    for path in taken:
        if path.exists():
            _fail(
                f"{path} exists: give another --output, or remove it", EXIT_SPEC_ERROR
            )
    if not out.parent.is_dir():
        _fail(f"{out.parent}: no such folder", EXIT_SPEC_ERROR)
    processes.claim("jax")
    processes.import_keras()
    try:
        done = import_model(
            model,
            out,
            name=name,
            l2=l2,
            with_weights=weights_from_model,
            log=lambda step: click.echo(f"l2compile: {step}", err=True),
        )
    except ImportFailed as exc:
        _fail(str(exc), EXIT_SPEC_ERROR)
    plan = done.plan
    regularized = sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0)
    click.echo(
        f"wrote {done.spec}: {len(plan.layers)} layers, {plan.params:,} parameters, "
        f"L2 on {regularized} weights"
    )
    if done.weights is not None:
        click.echo(f"wrote {done.weights}: the model's weights (train.initial_weights)")
    click.echo(f"fill in its data part (train), then: l2compile build {done.spec}")


#: build's help: what it writes, each export format's (l2compile.formats).
_BUILD_HELP = f"""Generate SPEC's module, train the model it builds, and export it.

    Writes <name>.py, {", ".join(f.writes for f in FORMATS.values())}, metrics.json
    and manifest.json into the build folder, replacing an earlier build only
    when everything has succeeded. Each finished epoch is saved in a hidden
    work folder beside it, so that an interrupted build can be continued
    with --resume.
    """


@main.command(epilog=_EXIT_CODES, help=_BUILD_HELP)
@click.argument("spec", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Build folder. Default: build/<name>/",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The recipe's data: an .npz file, or a folder holding it. "
    "Default: $L2COMPILE_DATA, then the Keras cache, then Keras' download.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Train this many epochs instead of the spec's.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted build of the same spec, data and epochs from "
    "its last finished epoch; it ends as the uninterrupted build would. Without "
    "a saved state, train from the first epoch.",
)
@click.option(
    "--backend",
    type=click.Choice(backends.CHOICES),
    help="Train on this Keras backend instead of the spec's train.backend "
    f"(default {backends.DEFAULT}: TensorFlow for convolutions on a CPU, JAX "
    "otherwise). The export always runs on TensorFlow.",
)
@click.option(
    "--require-learning",
    is_flag=True,
    help="Fail (exit 3, publishing nothing, the epochs kept for --resume) when "
    "the model does not beat the trivial baseline on the validation data, as "
    "train.require_learning: true does. Without it, such a build warns.",
)
@click.option(
    "--save-split",
    is_flag=True,
    help="Also write split.json: the rows (or files) that train, validate and test.",
)
@click.option(
    "--track",
    multiple=True,
    type=click.Choice(["mlflow", "tensorboard"]),
    help="Also record the build as an MLflow run (to $MLFLOW_TRACKING_URI, else "
    "mlflow.db here) or as TensorBoard logs in its folder, as train.tracking "
    "does. Repeat for both.",
)
@click.option(
    "--coordinator",
    metavar="HOST:PORT",
    help="train.distribute: data_parallel on several processes (hosts): the "
    "address of process 0, where the others join it.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(min=1, max=4096),
    help="With --coordinator: how many processes train together.",
)
@click.option(
    "--process-id",
    type=click.IntRange(min=0),
    help="With --coordinator: this process's number, from 0 (0 publishes).",
)
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help=_SET_HELP)
@_VERBOSE
def build(
    spec: Path,
    out: Path | None,
    data: Path | None,
    epochs: int | None,
    resume: bool,
    backend: Choice | None,
    require_learning: bool,
    save_split: bool,
    track: tuple[str, ...],
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    sets: tuple[str, ...],
    verbose: bool,
) -> None:
    # Its help: _BUILD_HELP.
    if verbose:
        terminal.show_native_logs()
    compiled = _compile_or_exit(spec, backend, _overrides(sets, several=False))
    from l2compile import build as builder  # imports Keras when it trains
    from l2compile import processes

    plan = _with_options(compiled.plan, require_learning, track)
    _join(plan.distribute, coordinator, num_processes, process_id)
    processes.claim(plan.backend, tensorflow=plan.imports_tensorflow)  # it trains
    out = out or Path("build") / plan.name
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C (see __main__): the
    # previous build is left as it was, and the finished epochs are kept for
    # --resume.
    try:
        result = builder.build(
            plan,
            compiled.code,
            out,
            data=data,
            epochs=epochs,
            resume=resume,
            save_split=save_split,
            log=lambda message: click.echo(f"l2compile: {message}", err=True),
        )
    except Interrupted as exc:
        _fail(_interrupted(exc, out), EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _fail(f"interrupted; {out} was not changed", EXIT_INTERRUPTED)
    except BuildError as exc:
        _fail(str(exc))
    except Exception as exc:
        if interrupts.received():  # TensorFlow turned the interrupt into this
            _fail(f"interrupted; {out} was not changed", EXIT_INTERRUPTED)
        if os.environ.get(terminal.DEBUG_ENV):
            raise
        kind = getattr(exc, "kind", type(exc).__name__)  # from a child: its class
        _fail(
            f"the build failed: {kind}: {exc}\n"
            f"{out} was not changed. Set L2COMPILE_DEBUG=1 to see the traceback."
        )
    # Published: from here the build has succeeded, and a signal only ends
    # the listing early (it is recorded, never raised: exit 130 would say
    # that nothing was replaced).
    interrupts.stop_raising()
    interrupts.phase("published")
    if not result.published:
        click.echo("Not the chief worker: the chief publishes the artifacts.")
    else:
        click.echo(f"Artifacts in {result.out}/:")
        for name in result.artifacts:
            click.echo(f"  {result.out / name}")
    if interrupts.settle():
        click.echo(
            f"l2compile: interrupted after the build was published: {out} holds "
            "the new build",
            err=True,
        )


def _search_runner() -> Any:
    from l2compile import search as search_

    return search_.run_search


def _plan_grid(spec: Path, sets: tuple[str, ...], options: dict[str, Any]) -> Any:
    """A grid sweep's plan; exit 2 with every error in it."""
    from l2compile import spaces
    from l2compile import sweep as sweep_

    for text in sets:
        if spaces.is_space(text):
            _fail(
                f"--set {text}: a space such as loguniform(...) or choice(...) "
                "is searched: add --search random|tpe and --trials N",
                EXIT_SPEC_ERROR,
            )
    overrides = _overrides(sets, several=True)
    try:
        planned = sweep_.plan_sweep(spec, overrides, **options)
    except (overrides_.OverrideError, sweep_.SweepError) as exc:
        _fail(str(exc), EXIT_SPEC_ERROR)
    if isinstance(planned, list):
        _report(planned)
        sys.exit(EXIT_SPEC_ERROR)
    return planned


def _plan_search(
    spec: Path,
    sets: tuple[str, ...],
    search: str,
    trials: int | None,
    prune: str | None,
    options: dict[str, Any],
) -> Any:
    """A search's plan; exit 2 with every error in it."""
    from l2compile import spaces
    from l2compile import sweep as sweep_

    if trials is None:
        _fail(f"--search {search} needs --trials N", EXIT_SPEC_ERROR)
    try:
        planned = spaces.plan_search(
            spec, sets, search=search, trials=trials, prune=prune, **options
        )
    except (overrides_.OverrideError, sweep_.SweepError) as exc:
        _fail(str(exc), EXIT_SPEC_ERROR)
    if isinstance(planned, list):
        _report(planned)
        sys.exit(EXIT_SPEC_ERROR)
    return planned


def _with_options(
    plan: ModelPlan, require_learning: bool, track: tuple[str, ...]
) -> ModelPlan:
    """The plan with what build --require-learning and --track add."""
    if require_learning:
        plan = dataclasses.replace(plan, require_learning=True)
    tracked = dataclasses.replace(plan.tracking, **dict.fromkeys(track, True))
    return dataclasses.replace(plan, tracking=tracked)


#: What build --coordinator, --num-processes and --process-id set, for the
#: generated distribution() (keras.distribution.initialize reads them).
JOIN_ENV = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def _join(
    distribute: str,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
) -> None:
    """Set the variables that join data_parallel's processes; exit 2 where
    the options do not go together."""
    given = (coordinator, num_processes, process_id)
    if all(value is None for value in given):
        return
    if any(value is None for value in given):
        _fail(
            "--coordinator, --num-processes and --process-id go together: each "
            "process of a data_parallel build takes all three",
            EXIT_SPEC_ERROR,
        )
    if distribute != "data_parallel":
        _fail(
            "--coordinator joins the processes of train.distribute: data_parallel; "
            f"this spec's distribute is {distribute}",
            EXIT_SPEC_ERROR,
        )
    assert coordinator is not None and num_processes is not None
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"--coordinator {coordinator}: expected HOST:PORT", EXIT_SPEC_ERROR)
    if process_id is not None and process_id >= num_processes:
        _fail(
            f"--process-id {process_id}: the processes are numbered 0 to "
            f"{num_processes - 1}",
            EXIT_SPEC_ERROR,
        )
    for name, value in zip(JOIN_ENV, given, strict=True):
        os.environ[name] = str(value)


def _interrupted(exc: Interrupted, out: Path) -> str:
    """What an interrupted build says: nothing changed, which epochs are kept."""
    saved = (
        f"Epoch 1 of {exc.epochs} is"
        if exc.epoch == 1
        else f"Epochs 1-{exc.epoch} of {exc.epochs} are"
    )
    return (
        f"interrupted; {out} was not changed. {saved} saved in {exc.work}: "
        "add --resume to continue"
    )


@main.command(epilog=_EXIT_CODES)
@click.argument("spec", type=click.Path(path_type=Path))
@click.option(
    "--set",
    "sets",
    multiple=True,
    required=True,
    metavar="FIELD=V1,V2,...",
    help="A field and the values to try, by its path as the errors write it: "
    "--set l2=0,1e-3,1e-2. Several --set make a grid. Values are read as YAML.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Sweep folder. Default: build/<name>-sweep/",
)
@click.option(
    "--data", type=click.Path(path_type=Path), help="The recipe's data, as for build."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Train each trial this many epochs instead of the spec's.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Trials run at once (each is one build process).",
)
@click.option(
    "--engine",
    type=click.Choice(("local", "ray")),
    default="local",
    show_default=True,
    help="local: processes on this machine. ray: Ray Tune trials on the cluster "
    'at $RAY_ADDRESS (pip install "l2compile[ray]").',
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the sweep in --out: skip finished trials, continue "
    "interrupted ones from their last epoch.",
)
@click.option(
    "--export",
    is_flag=True,
    help="Also export each trial as its spec says (off: trials train and score).",
)
@click.option(
    "--choose",
    metavar="VAL_SCORE",
    help="The validation score that chooses the best trial: val_loss, val_ and "
    "one of the spec's metrics, val_balanced_accuracy or val_macro_f1. "
    "Default: val_ and the spec's first metric.",
)
@click.option(
    "--save-split",
    is_flag=True,
    help="Each trial writes split.json (the samples it trains, validates and "
    "tests on: the same in every trial).",
)
@click.option(
    "--track",
    multiple=True,
    type=click.Choice(["mlflow", "tensorboard"]),
    help="Track each trial as build --track does; with mlflow, the sweep is a "
    "run and each trial a run under it.",
)
@click.option(
    "--search",
    type=click.Choice(["random", "tpe"]),
    help="Search instead of a grid (Optuna): each --set is a space, "
    "loguniform(LOW,HIGH), uniform(LOW,HIGH), intuniform(LOW,HIGH) or "
    "choice(A,B,...), and --trials trials are drawn from them.",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    help="With --search: how many trials (pruned and failed ones count).",
)
@click.option(
    "--prune",
    type=click.Choice(["median", "asha"]),
    help="With --search: stop a trial whose validation score after an epoch "
    "is below the median of the others' at that epoch (median), or as "
    "successive halving does (asha).",
)
def sweep(
    spec: Path,
    sets: tuple[str, ...],
    out: Path | None,
    data: Path | None,
    epochs: int | None,
    jobs: int,
    engine: str,
    resume: bool,
    export: bool,
    choose: str | None,
    save_split: bool,
    track: tuple[str, ...],
    search: str | None,
    trials: int | None,
    prune: str | None,
) -> None:
    """Build SPEC once per combination of the --set values (or, with
    --search, --trials times with values drawn from the --set spaces), and
    compare the trials: results.csv, results.json, plots/ and report.html in
    the sweep folder. The best trial is chosen by its validation score, never
    by its test score."""
    from l2compile import sweep as sweep_

    options = dict(epochs=epochs, export=export, choose=choose, track=track)
    options["save_split"] = save_split
    if (trials is not None or prune is not None) and search is None:
        _fail("--trials and --prune go with --search random|tpe", EXIT_SPEC_ERROR)
    if search is not None:
        planned: Any = _plan_search(spec, sets, search, trials, prune, options)
    else:
        planned = _plan_grid(spec, sets, options)
    try:
        sweep_.check_jobs(jobs, engine)
    except sweep_.SweepError as exc:
        _fail(str(exc), EXIT_SPEC_ERROR)
    name = _compile_or_exit(spec).plan.name  # and its warnings
    out = out or Path("build") / f"{name}-sweep"
    run: Any = sweep_.run_sweep if search is None else _search_runner()
    try:
        results = run(
            planned,
            out,
            jobs=jobs,
            engine=engine,
            data=data,
            resume=resume,
            log=lambda message: click.echo(f"l2compile: {message}", err=True),
        )
    except KeyboardInterrupt:
        table = out / sweep_.RESULTS_CSV
        _fail(
            f"interrupted; {table} describes the finished trials: add --resume "
            "to continue"
            if table.is_file()
            else f"interrupted before any trial finished: add --resume to continue "
            f"the sweep in {out}",
            EXIT_INTERRUPTED,
        )
    except BuildError as exc:
        _fail(str(exc))
    # A pruned trial was stopped on purpose: it did not fail.
    failed = [r for r in results["trials"] if r["status"] not in ("ok", "pruned")]
    if results["best"] is not None:
        chosen = next(r for r in results["trials"] if r["trial"] == results["best"])
        key = results["chosen_by"]
        click.echo(f"Best by {key}: trial {results['best']} ({chosen[key]:.4f})")
    click.echo(f"Results in {out}/: {', '.join(sweep_.written(out))}")
    if failed:
        _fail(
            f"{len(failed)} of {len(results['trials'])} trials failed; "
            f"see results.csv and {out / sweep_.TRIALS}/<trial>.log"
        )
