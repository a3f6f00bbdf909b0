"""The `l2compile` command line: validate, generate, build.

Nothing here imports TensorFlow; only `build` does, through `l2compile.build`,
and only once the spec is valid and the data found.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click

from l2compile import __version__, report
from l2compile.errors import BuildError, SpecError
from l2compile.plan import ModelPlan, plan_spec
from l2compile.render import render_module
from l2compile.spec import load_spec

EXIT_OK = 0
EXIT_SPEC_ERROR = 2
EXIT_FAILURE = 3
EXIT_INTERRUPTED = 130

_EXIT_CODES = f"""\b
Exit codes, the same for every command:
  {EXIT_OK}    success
  {EXIT_SPEC_ERROR}    a spec (or the command line) is invalid; nothing was written
  {EXIT_FAILURE}    anything else failed (data not found, training or export
       failed); nothing was written or replaced
  {EXIT_INTERRUPTED}  interrupted; nothing was written or replaced
"""

_CONTEXT = {"help_option_names": ["-h", "--help"]}


@dataclass(frozen=True)
class Compiled:
    """A spec compiled to a plan and the generated module's source."""

    plan: ModelPlan
    code: str


def display_path(path: Path) -> str:
    """How a spec is named in messages and headers: relative to the cwd if inside."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def compile_spec(path: Path) -> Compiled | list[SpecError]:
    """Spec file -> spec -> plan -> source; every error of the file otherwise."""
    loaded = load_spec(path, display_path(path))
    if isinstance(loaded, list):
        return loaded
    plan = plan_spec(loaded)
    if isinstance(plan, list):
        return plan
    return Compiled(plan, render_module(plan))


def _report(errors: list[SpecError]) -> None:
    for error in errors:
        click.echo(str(error), err=True)
    count = len(errors)
    click.echo(
        f"{count} error{'s' if count != 1 else ''} in {errors[0].file}", err=True
    )


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _compile_or_exit(path: Path) -> Compiled:
    compiled = compile_spec(path)
    if isinstance(compiled, list):
        _report(compiled)
        sys.exit(EXIT_SPEC_ERROR)
    return compiled


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file beside `path`, so it is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group(context_settings=_CONTEXT, epilog=_EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="l2compile")
def main() -> None:
    """Compile declarative Keras model specs (YAML) into readable Keras code,
    and train and export the models they describe."""


@main.command(epilog=_EXIT_CODES)
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(specs: tuple[Path, ...]) -> None:
    """Check SPECS and report every error, with its file, line and field."""
    failed = False
    for path in specs:
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
def inspect(spec: Path, as_json: bool) -> None:
    """List every weight of SPEC's model: shape, parameters, L2 and weight decay."""
    plan = _compile_or_exit(spec).plan
    if as_json:
        click.echo(json.dumps(report.as_data(plan), indent=2))
    else:
        click.echo(report.as_table(plan))


@main.command(epilog=_EXIT_CODES)
@click.argument("spec", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="File to write, or a folder (existing, or ending in /) for <name>.py. "
    "Default: ./<name>.py",
)
def generate(spec: Path, output: str | None) -> None:
    """Write the Keras module for SPEC, without training."""
    compiled = _compile_or_exit(spec)
    filename = f"{compiled.plan.name}.py"
    target = Path(output or filename)
    if target.is_dir() or (output or "").endswith(("/", os.sep)):
        target = target / filename
    try:
        write_atomically(target, compiled.code)
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror or exc}")
    click.echo(f"wrote {target}")


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
def build(spec: Path, out: Path | None, data: Path | None, epochs: int | None) -> None:
    """Generate SPEC's module, train the model it builds, and export it.

    Writes <name>.py, model.keras, saved_model/, model.tflite, metrics.json
    and manifest.json into the build folder, replacing an earlier build only
    when everything has succeeded.
    """
    compiled = _compile_or_exit(spec)
    from l2compile import build as builder  # imports TensorFlow when it trains

    out = out or Path("build") / compiled.plan.name
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the work folder
    # is removed and the previous build is left as it was.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = builder.build(
            compiled.plan,
            compiled.code,
            out,
            data=data,
            epochs=epochs,
            log=lambda message: click.echo(f"l2compile: {message}", err=True),
        )
    except BuildError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(f"interrupted; {out} was not changed", EXIT_INTERRUPTED)
    except Exception as exc:
        if os.environ.get("L2COMPILE_DEBUG"):
            raise
        _fail(
            f"the build failed: {type(exc).__name__}: {exc}\n"
            f"{out} was not changed. Set L2COMPILE_DEBUG=1 to see the traceback."
        )
    click.echo(f"Artifacts in {result.out}/:")
    for name in result.artifacts:
        click.echo(f"  {result.out / name}")
