"""The `l2compile` command line: validate, generate, build.

Nothing here imports TensorFlow; only `build` does, through `l2compile.build`,
and only once the spec is valid and the data found.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click

from l2compile import __version__, backends, interrupts, report, terminal
from l2compile import generate as generate_
from l2compile.errors import BuildError, Interrupted, SpecError
from l2compile.generate import Compiled, compile_spec, display_path
from l2compile.spec import json_schema

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


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    if code == EXIT_INTERRUPTED and interrupts.installed():
        interrupts.stop_raising()  # the one line is all a user should see
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _compile_or_exit(path: Path, backend: str | None = None) -> Compiled:
    compiled = compile_spec(path, backend=backend)
    if isinstance(compiled, list):
        _report(compiled)
        sys.exit(EXIT_SPEC_ERROR)
    return compiled


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file beside `path`, so it is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        # mkstemp makes the file private; keep the old file's mode, or the umask's.
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    for path in generate_.spec_files(list(specs)):
        compiled = compile_spec(path)
        if isinstance(compiled, list):
            _report(compiled)
            failed = True
            continue
        plan = compiled.plan
        click.echo(
            f"{display_path(path)}: ok ({plan.name}: {len(plan.layers)} layers, "
            f"{plan.params:,} parameters, {plan.regularized_params:,} with L2)"
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
    plan = _compile_or_exit(spec).plan
    if as_json:
        click.echo(json.dumps(report.as_data(plan), indent=2))
    elif show_layers:
        click.echo(report.as_layer_table(plan))
    else:
        click.echo(report.as_table(plan))


@main.command("eval", epilog=_EXIT_CODES)
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
@_VERBOSE
def eval_(
    artifact: Path, spec_path: Path | None, data: Path | None, verbose: bool
) -> None:
    """Score ARTIFACT (a .keras file, a SavedModel folder or a .tflite file) on
    the test split of the spec's recipe: the task's metrics (accuracy, auc,
    mae, ...), loss, size and latency.

    A SavedModel runs its own graph: evaluate only artifacts you trust
    (a .keras file is loaded in Keras' safe mode)."""
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
    compiled = _compile_or_exit(spec_path)
    try:
        result = evaluate.evaluate_artifact(
            artifact, compiled.plan, compiled.code, data
        )
    except BuildError as exc:
        _fail(str(exc))
    except Exception as exc:
        if interrupts.received():  # TensorFlow turned the interrupt into this
            raise KeyboardInterrupt from None
        if os.environ.get(terminal.DEBUG_ENV):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(f"cannot evaluate {artifact}: {type(exc).__name__}: {reason}")
    click.echo(f"artifact:  {artifact} ({result.kind})")
    click.echo(f"spec:      {compiled.plan.source_file}{named_by}")
    click.echo(f"data:      {result.data} ({result.samples:,} test samples)")
    for metric, value in result.scores.items():
        click.echo(f"{metric + ':':<10} {value:.4f}")
    click.echo(f"loss:      {result.loss:.4f} ({result.loss_note})")
    click.echo(f"size:      {result.size_bytes:,} bytes")
    click.echo(
        f"latency:   {result.mean_latency_ms:.4f} ms per sample "
        f"(mean, in batches of {result.batch})"
    )


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
    files = generate_.spec_files(list(specs))
    if not files:
        _fail(
            f"no spec files (*.yaml, *.yml) in {', '.join(map(str, specs))}",
            EXIT_SPEC_ERROR,
        )
    compiled = []
    failed = False
    for path in files:
        result = compile_spec(path, version_header=not no_version_header)
        if isinstance(result, list):
            _report(result)
            failed = True
        else:
            compiled.append((path, result))
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


@main.command(epilog=_EXIT_CODES)
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
    type=click.Choice(backends.NAMES),
    help="Train on this Keras backend instead of the spec's train.backend "
    f"(default {backends.DEFAULT}). The export always runs on TensorFlow.",
)
@_VERBOSE
def build(
    spec: Path,
    out: Path | None,
    data: Path | None,
    epochs: int | None,
    resume: bool,
    backend: str | None,
    verbose: bool,
) -> None:
    """Generate SPEC's module, train the model it builds, and export it.

    Writes <name>.py, model.keras, saved_model/, model.tflite, metrics.json
    and manifest.json into the build folder, replacing an earlier build only
    when everything has succeeded. Each finished epoch is saved in a hidden
    work folder beside it, so that an interrupted build can be continued
    with --resume.
    """
    if verbose:
        terminal.show_native_logs()
    compiled = _compile_or_exit(spec, backend)
    from l2compile import build as builder  # imports Keras when it trains
    from l2compile import processes

    plan = compiled.plan
    processes.claim(plan.backend, tensorflow=plan.recipe.streamed)  # it trains
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
            log=lambda message: click.echo(f"l2compile: {message}", err=True),
        )
    except Interrupted as exc:
        saved = (
            f"Epoch 1 of {exc.epochs} is"
            if exc.epoch == 1
            else f"Epochs 1-{exc.epoch} of {exc.epochs} are"
        )
        _fail(
            f"interrupted; {out} was not changed. {saved} saved in {exc.work}: "
            "add --resume to continue",
            EXIT_INTERRUPTED,
        )
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
    try:
        interrupts.phase("published")
        if not result.published:
            click.echo("Not the chief worker: the chief publishes the artifacts.")
            return
        click.echo(f"Artifacts in {result.out}/:")
        for name in result.artifacts:
            click.echo(f"  {result.out / name}")
    except KeyboardInterrupt:
        pass
    if interrupts.received():  # it came while publishing, too late to stop it
        _fail(
            f"interrupted after the build was published: {out} holds the new build",
            EXIT_INTERRUPTED,
        )
