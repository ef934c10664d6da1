"""Other sessions share this machine's CPUs: bench/gguf.py waits for a quiet moment before a timed
child and measures how much CPU other processes used while it ran."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import ClassVar


class Quiet:
    """Other sessions share these CPUs: wait for a quiet moment before a timed child, and measure
    how much CPU others used while it ran (all CPU time in /proc/stat minus this process's and its children's)."""

    gate = 0.15  # others' share of all CPUs above which a timed child waits
    max_wait_s = 180.0  # per child
    budget_s = 600.0  # in all; then timed children start without waiting
    waited_s = 0.0
    foreign: ClassVar[list[tuple[str, float]]] = []  # (kind, others' share of all CPUs during the child)


def cpu_busy_s() -> float:
    """Seconds of CPU time all processes have used since boot (every CPU together)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def others_share(seconds: float) -> float:
    """Others' share of all CPUs over the next `seconds` (this process sleeps meanwhile)."""
    b0, o0 = cpu_busy_s(), own_cpu_s()
    time.sleep(seconds)
    return max(0.0, (cpu_busy_s() - b0 - (own_cpu_s() - o0)) / (seconds * (os.cpu_count() or 1)))


def wait_for_quiet(kind: str) -> None:
    """Sleep while other processes use more than `Quiet.gate` of the CPUs (within the waiting limits)."""
    started = time.time()
    while Quiet.waited_s < Quiet.budget_s and time.time() - started < Quiet.max_wait_s:
        share = others_share(2.0)
        if share <= Quiet.gate:
            break
        print(f"[quiet] others use {share:.0%} of the CPUs; {kind} waits", file=sys.stderr, flush=True)
    Quiet.waited_s += time.time() - started
