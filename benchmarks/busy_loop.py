"""A real-time busy loop that starves whatever shares its CPU, on demand and for a bounded time.

    python benchmarks/busy_loop.py --cpu 1 --on-ms 150 --off-ms 50 --duration-s 60

It pins itself to ``--cpu``, switches to SCHED_FIFO (root or CAP_SYS_NICE), then spins for
``--on-ms`` and sleeps for ``--off-ms`` in turn until ``--duration-s`` has passed, and exits
by itself: a benchmark that dies cannot leave a core taken. A normal-priority process on that
CPU runs only in the off windows (and in the 5% the kernel's ``sched_rt_runtime_us`` keeps for
others), which is how a harness sharing its cores with a busy engine is starved. The first
line on stdout says "spinning" once the policy is set, or "refused: ..." before exiting 3.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REFUSED_EXIT = 3
PRIORITY = 50  # below the kernel's own real-time threads (99), above every normal process


def spin(on_s: float, off_s: float, duration_s: float) -> int:
    """Alternate spinning and sleeping until ``duration_s`` is over; return the cycles run."""
    end = time.monotonic() + duration_s
    cycles = 0
    while (now := time.monotonic()) < end:
        stop = min(now + on_s, end)
        while time.monotonic() < stop:
            pass
        cycles += 1
        if (left := end - time.monotonic()) > 0:
            time.sleep(min(off_s, left))
    return cycles


def become_realtime(cpu: int, priority: int = PRIORITY) -> str:
    """Pin to ``cpu`` and take SCHED_FIFO; return "" or why the kernel refused."""
    try:
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def start(
    cpu: int, on_ms: float = 150, off_ms: float = 50, duration_s: float = 60
) -> subprocess.Popen[str]:
    """Launch the loop as a child and wait until it spins; raise PermissionError if refused."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--cpu",
            str(cpu),
            "--on-ms",
            str(on_ms),
            "--off-ms",
            str(off_ms),
            "--duration-s",
            str(duration_s),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if first != "spinning":
        proc.wait(timeout=10)
        raise PermissionError(f"the real-time busy loop was refused ({first or 'no output'})")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """End the loop now (it would end by itself at its duration)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--on-ms", type=float, default=150.0)
    parser.add_argument("--off-ms", type=float, default=50.0)
    parser.add_argument("--duration-s", type=float, default=60.0)
    args = parser.parse_args()
    if why := become_realtime(args.cpu):
        print(f"refused: {why}", flush=True)
        return REFUSED_EXIT
    print("spinning", flush=True)
    spin(args.on_ms / 1000, args.off_ms / 1000, min(args.duration_s, 3600.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
