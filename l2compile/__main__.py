"""The `l2compile` program: `python -m l2compile`, and the installed command.

Ctrl-C and SIGTERM are handled from the moment this module runs, before the
heavier imports, so that an interrupt ends with one line and exit 130. Once
a command has finished, a signal no longer changes its exit status, and
the program leaves at once (`os._exit`), without
TensorFlow's slow teardown: a signal in that second would otherwise end the
process with Python's default 143, or 0, and no word.
"""

from __future__ import annotations

import sys

from l2compile import interrupts, terminal


def run() -> None:
    """Run the command line as a program."""
    interrupts.install()
    code: int | str | None = 0
    try:
        interrupts.phase("startup")
        from l2compile.cli import main
        from l2compile.terminal import quiet_native_logs

        quiet_native_logs()
        main()
    except SystemExit as exit:
        interrupts.stop_raising()
        code = exit.code
    except KeyboardInterrupt:
        # Only before a command runs: each command says what it left as it was.
        interrupts.stop_raising()
        sys.stderr.write("error: interrupted\n")
        code = interrupts.EXIT_INTERRUPTED
    interrupts.stop_raising()
    interrupts.phase("exiting")
    if interrupts.settle() and code in (0, None):
        # The command had done its work and said so; the signal came after,
        # so it succeeded (exit 130 would say that nothing was replaced).
        sys.stderr.write("l2compile: interrupted after the command had finished\n")
    if isinstance(code, str):
        sys.stderr.write(f"{code}\n")
        code = 1
    terminal.exit_now(code or 0)


if __name__ == "__main__":
    run()
