"""How much a command takes: wall and CPU seconds, and the memory of every
process it starts, each read at its peak. The benchmarks in this folder
measure with it.

A build trains in one process and may export in another, at the same time;
`wait4` gives only the largest of a process and its children. So this reads
each process's peak (VmHWM in /proc) every 50 ms while the command runs, and
gives both the largest and the sum: the sum bounds what they held at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _peak_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(
    command: list[str], env: dict[str, str] | None = None
) -> dict[str, float | str]:
    """Run a command in the project's root: its wall and CPU seconds, the
    peak memory of its largest process and the sum of its processes' peaks
    (MiB), and what it printed (stdout and stderr)."""
    env = {**(os.environ if env is None else env), "TF_CPP_MIN_LOG_LEVEL": "2"}
    began = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peaks: dict[int, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in _descendants(process.pid):
                peak = _peak_kib(pid)
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0), peak)
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert process.stdout is not None
    out = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    done.set()
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{out[-3000:]}")
    # A process too short-lived to be seen still counts at wait4's figure (the
    # largest of the command and the children it waited for).
    largest = max(max(peaks.values(), default=0), usage.ru_maxrss)
    return {
        "wall_s": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "memory_mib": max(sum(peaks.values()), largest) / 1024,
        "largest_mib": largest / 1024,
        "out": out,
    }
