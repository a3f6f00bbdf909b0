"""The `l2compile` program: `python -m l2compile`, and the installed command.

Ctrl-C and SIGTERM are handled from the first moment, before the heavier
imports, so that an interrupt at any time ends with one line and exit 130.
"""

from __future__ import annotations

import sys

from l2compile import interrupts


def run() -> None:
    """Run the command line as a program."""
    interrupts.install()
    try:
        interrupts.phase("startup")
        from l2compile.cli import main
        from l2compile.terminal import quiet_native_logs

        quiet_native_logs()
        main()
    except KeyboardInterrupt:
        # Only before a command runs: each command says what it left as it was.
        interrupts.stop_raising()
        sys.stderr.write("error: interrupted\n")
        sys.exit(interrupts.EXIT_INTERRUPTED)


if __name__ == "__main__":
    run()
